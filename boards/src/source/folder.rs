//! A folder of PNG/JPEG files played in file-name order (the order `ls` shows for zero-padded names).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::FrameSource;
use crate::error::{Error, Result};
use crate::frame::Frame;

/// Plays `*.png`, `*.jpg` and `*.jpeg` files (any case) of one folder, sorted by file name.
pub struct ImageFolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
}

impl ImageFolderSource {
    /// Lists the folder; an empty folder is an error naming it.
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(Error::Config {
                source_name: dir.display().to_string(),
                what: "no .png, .jpg or .jpeg files in this folder".into(),
            });
        }
        files.sort();
        Ok(ImageFolderSource { dir: dir.to_path_buf(), files, next: 0 })
    }

    /// The files in play order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for ImageFolderSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let Some(path) = self.files.get(self.next) else { return Ok(None) };
        let index = self.next as u64;
        self.next += 1;
        let bad = |what: String| Error::BadFrame { source_name: path.display().to_string(), index, what };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let image = image::load_from_memory(&bytes).map_err(|e| bad(format!("cannot decode: {e}")))?.to_rgb8();
        Ok(Some(Frame { image, captured: Instant::now(), index }))
    }

    fn describe(&self) -> String {
        format!("{} ({} images)", self.dir.display(), self.files.len())
    }
}
