//! File displays: a numbered PNG sequence, and an MJPEG AVI through the runtime's writer.

use std::path::{Path, PathBuf};

use gaga_runtime::image_io::avi::AviWriter;
use image::RgbImage;

use super::{display_err, Display};
use crate::error::{Error, Result};
use crate::frame::to_planar;

/// Writes `frame_00000.png`, `frame_00001.png`, ... into a folder.
pub struct PngSequenceDisplay {
    dir: PathBuf,
    next: usize,
}

impl PngSequenceDisplay {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(PngSequenceDisplay { dir: dir.to_path_buf(), next: 0 })
    }
}

impl Display for PngSequenceDisplay {
    fn show(&mut self, frame: &RgbImage) -> Result<()> {
        let path = self.dir.join(format!("frame_{:05}.png", self.next));
        frame.save_with_format(&path, image::ImageFormat::Png).map_err(|e| display_err(path.display(), e.to_string()))?;
        self.next += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("PNG files in {}", self.dir.display())
    }
}

/// Writes an MJPEG AVI; the file is created at the first frame, whose size fixes the video's.
pub struct AviDisplay {
    path: PathBuf,
    fps: u32,
    writer: Option<AviWriter>,
    size: (u32, u32),
}

impl AviDisplay {
    pub fn new(path: &Path, fps: u32) -> Self {
        AviDisplay { path: path.to_path_buf(), fps: fps.max(1), writer: None, size: (0, 0) }
    }
}

impl Display for AviDisplay {
    fn show(&mut self, frame: &RgbImage) -> Result<()> {
        if self.writer.is_none() {
            self.size = frame.dimensions();
            self.writer = Some(AviWriter::create(&self.path, frame.width() as usize, frame.height() as usize, self.fps)?);
        }
        if frame.dimensions() != self.size {
            return Err(display_err(
                self.describe(),
                format!("frame size changed: expected {:?}, found {:?}", self.size, frame.dimensions()),
            ));
        }
        match self.writer.as_mut() {
            Some(w) => Ok(w.write_frame(&to_planar(frame))?),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.finish()?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("MJPEG AVI {}", self.path.display())
    }
}
