//! gaga-boards: what runs around the model on a board. Frames come from a [`source::FrameSource`]
//! (V4L camera, video file through ffmpeg, image folder), pass a [`tracker::Tracker`] and a render step,
//! get an [`overlay`] (FPS, latency, tracking state) and go to a [`display::Display`] (Linux framebuffer,
//! PNG files, MJPEG over HTTP). [`profile`] holds the board profiles, which are also the kiosk's flags;
//! [`kiosk`] is the loop that ties them together and measures capture-to-display latency.
//!
//! Pixels travel as [`image::RgbImage`] (8-bit interleaved RGB): what cameras, encoders and displays use.

pub mod display;
pub mod error;
pub mod fit;
pub mod frame;
pub mod kiosk;
pub mod landmarks;
pub mod overlay;
pub mod profile;
pub mod render;
pub mod source;
pub mod tracker;

pub use error::{Error, Result};
pub use frame::Frame;
pub use image::{self, RgbImage};
