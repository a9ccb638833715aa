//! Calibration inputs: the portraits and driving frames of a `--calibrate` directory.

use std::path::{Path, PathBuf};

use gaga_runtime::image_io::{load_image, CropBox};
use gaga_runtime::{driving, DrivingFrame, Error, Image, Result, SourceParams};

/// Source parameters used for a portrait without its own `NAME.json`.
const DEFAULT_SOURCE: &str = include_str!("../../../assets/defaults/source_params.json");
/// Driving frames used when DIR holds no `.jsonl` or `.pkl`.
const DEFAULT_DRIVER: &str = include_str!("../../../assets/defaults/expressions.jsonl");

/// A portrait to lift.
pub struct Portrait {
    pub name: String,
    pub image: Image,
    pub params: SourceParams,
}

/// Calibration inputs read from a directory.
pub struct Inputs {
    pub portraits: Vec<Portrait>,
    pub frames: Vec<DrivingFrame>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Reads the portraits and driving frames of `dir` (sorted by name, so runs are reproducible).
pub fn load_inputs(dir: &Path, image_size: usize) -> Result<Inputs> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let (mut portraits, mut frames) = (Vec::new(), Vec::new());
    for p in &paths {
        match ext(p).as_str() {
            "png" | "jpg" | "jpeg" => {
                let crop = match std::fs::read_to_string(p.with_extension("crop")) {
                    Ok(t) => Some(t.trim().parse::<CropBox>().map_err(|what| Error::Format { path: p.with_extension("crop"), what })?),
                    Err(_) => None,
                };
                let json = p.with_extension("json");
                let params = if json.exists() {
                    driving::read_source_params(&json)?
                } else {
                    driving::parse_source_params(DEFAULT_SOURCE, "bundled source_params.json")?
                };
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                portraits.push(Portrait { name, image: load_image(p, image_size, crop)?, params });
            }
            "jsonl" | "pkl" => frames.extend(driving::read_driving(p)?),
            _ => {}
        }
    }
    if portraits.is_empty() {
        return Err(Error::Format { path: dir.to_path_buf(), what: "calibration directory holds no portrait (*.png, *.jpg)".into() });
    }
    if frames.is_empty() {
        frames = driving::parse_jsonl(DEFAULT_DRIVER, "bundled expressions.jsonl")?;
    }
    Ok(Inputs { portraits, frames })
}
