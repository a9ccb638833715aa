//! Face tracking: a frame in, a driving pose out, or "no face". The MediaPipe + FLAME tracker plugs in
//! here later; [`PassThrough`] reports no face, so the kiosk holds the neutral pose.

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
