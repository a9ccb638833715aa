//! gaga-converter: official checkpoint (torch zip / safetensors) -> `.gaga` model file.
//!
//! Data flow: `source::SourceFile::open` maps a checkpoint and lists its tensors (`pt` for torch zips
//! via the runtime's unpickler, `safetensors_in` for safetensors); `convert::convert` infers the
//! configuration (`infer`), checks every tensor against `gaga_runtime::format::schema`, decides each
//! tensor's precision (`policy`), and `writer` streams the tensors, converted by `quant`, into the file.

pub mod calibrate;
pub mod convert;
pub mod dev;
pub mod infer;
pub mod pack;
pub mod policy;
pub mod pt;
pub mod quant;
pub mod safetensors_in;
pub mod source;
mod writer;

#[cfg(test)]
mod tests;

pub use convert::{convert, convert_with, Calibrated, ConvertOptions, Progress, Summary};
pub use policy::{Keep, Precision};

use std::io::Read;
use std::path::Path;

use gaga_runtime::{Error, Result};
use sha2::Digest;

/// Hex SHA-256 of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
