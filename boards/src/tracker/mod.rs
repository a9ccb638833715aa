//! Face tracking: a frame in, a driving pose out, or "no face".
//!
//! [`MediaPipeTracker`] is the on-device tracker: BlazeFace detection ([`detect`]), the 468-point face mesh
//! ([`mesh`]) on an upright crop, the 512 fitting crop ([`crop`]), a FLAME fit ([`fit::LandmarkFit`]) and
//! the official tracker's temporal smoothing ([`smooth`]). Networks run through TF Lite ([`net`]).
//! [`PassThrough`] reports no face, so the kiosk holds the neutral pose. Design notes: docs/boards.md.

pub mod crop;
pub mod detect;
pub mod fit;
pub mod hold;
pub mod mediapipe;
pub mod mesh;
pub mod net;
pub mod run;
pub mod smooth;
pub mod warp;

pub use mediapipe::{model_paths, MediaPipeTracker, TrackedFace};

use gaga_runtime::DrivingFrame;

use crate::error::Result;
use crate::frame::Frame;

/// What a tracker found in one frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Tracking {
    /// A face, as one frame of driving parameters.
    Face(Box<DrivingFrame>),
    /// No face: the kiosk keeps the last good pose (or the neutral one).
    NoFace,
}

impl Tracking {
    /// The overlay's word for this state.
    pub fn label(&self) -> &'static str {
        match self {
            Tracking::Face(_) => "face",
            Tracking::NoFace => "no face",
        }
    }
}

/// Turns camera frames into driving poses.
pub trait Tracker {
    /// The pose in `frame`, or no face. An `Err` is a broken tracker (model error), not a bad frame.
    fn track(&mut self, frame: &Frame) -> Result<Tracking>;
    /// Short name for logs.
    fn name(&self) -> &str;
}

/// The placeholder tracker: never finds a face.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl Tracker for PassThrough {
    fn track(&mut self, _frame: &Frame) -> Result<Tracking> {
        Ok(Tracking::NoFace)
    }
    fn name(&self) -> &str {
        "pass-through (no tracker)"
    }
}
