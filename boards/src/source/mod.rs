//! Frame sources: where the kiosk's frames come from.
//!
//! A source hands out the newest frame it has. A frame that cannot be decoded is an `Err` for which
//! [`Error::is_frame_error`](crate::Error::is_frame_error) is true: the caller logs it and asks again.
//! `Ok(None)` is the end of a file or folder; a camera never ends.

use crate::error::Result;
use crate::frame::Frame;

pub mod camera;
pub mod folder;
pub mod jpeg_dht;
pub mod pixels;
#[cfg(target_os = "linux")]
pub mod v4l_device;
pub mod video;

#[cfg(target_os = "linux")]
pub use camera::V4lCamera;
pub use camera::{CameraConfig, PixelFormat};
pub use folder::ImageFolderSource;
pub use video::VideoFileSource;

/// Something that produces frames.
pub trait FrameSource {
    /// The newest frame, `Ok(None)` when the source is exhausted, or an error for this frame.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    /// One line naming the source for logs and errors (path or device, size).
    fn describe(&self) -> String;
}
