//! The boards crate's one error type. Each variant names the device, file or frame, and what was expected
//! and found. [`Error::is_frame_error`] tells the kiosk loop which errors cost one frame (log and skip) and
//! which end the run.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// One frame could not be decoded (corrupt MJPEG, short YUYV buffer, unreadable image file): skip it.
    #[error("{source_name}: frame {index}: {what}")]
    BadFrame { source_name: String, index: u64, what: String },
    /// The camera is gone (unplugged, ENODEV) or not back yet; the source keeps retrying with backoff.
    #[error("{device}: camera unavailable ({what}); retry {attempt} in {retry_ms} ms")]
    CameraLost { device: String, what: String, attempt: u32, retry_ms: u64 },
    /// A required external program (ffmpeg) is not installed or failed to start.
    #[error("{program}: {what}")]
    MissingProgram { program: String, what: String },
    /// A display could not show a frame (size mismatch, write failure, encoder error).
    #[error("display {display}: {what}")]
    Display { display: String, what: String },
    /// A board profile or kiosk setting that is invalid; `what` names the field, expected and found.
    #[error("{source_name}: {what}")]
    Config { source_name: String, what: String },
    /// A tracker network file (.tflite) that is missing, malformed or not the expected model; `what` names
    /// the tensor with expected and found.
    #[error("{}: {what}", file.display())]
    Model { file: PathBuf, what: String },
    #[error(transparent)]
    Runtime(#[from] gaga_runtime::Error),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// True when the error costs one frame and the source can go on (the caller logs and skips).
    pub fn is_frame_error(&self) -> bool {
        matches!(self, Error::BadFrame { .. } | Error::CameraLost { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
