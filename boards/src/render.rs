//! A [`Renderer`] over a runtime [`Session`]: the avatar rendered at the tracked pose, or at the neutral
//! pose while no face has been seen. Uses only the `Session` trait and the runtime's data types.

use gaga_runtime::backend::Session;
use gaga_runtime::{Avatar, DrivingFrame, Image, Transform};
use image::RgbImage;

use crate::error::Result;
use crate::frame::{from_planar, Frame};
use crate::kiosk::Renderer;

/// The neutral driving frame: zero expression, jaw, eyes and head rotation, seen through `transform`
/// (the source photo's camera).
pub fn neutral_pose(expr_params: usize, transform: Transform) -> DrivingFrame {
    DrivingFrame {
        key: "neutral".into(),
        expcode: vec![0.0; expr_params],
        posecode: [0.0; 6],
        eyecode: [0.0; 6],
        transform,
        shapecode: None,
        face: false,
    }
}

/// Renders the avatar through a session into an `size` x `size` frame.
pub struct SessionRenderer<'w> {
    session: Box<dyn Session + 'w>,
    avatar: Avatar,
    neutral: DrivingFrame,
    out: Image,
}

impl<'w> SessionRenderer<'w> {
    pub fn new(session: Box<dyn Session + 'w>, avatar: Avatar, neutral: DrivingFrame, size: usize) -> Self {
        // The avatar in the session's preferred storage (f16 colours on an int8 CPU session).
        let avatar = session.prepare_avatar(avatar);
        SessionRenderer { session, avatar, neutral, out: Image::new(size, size) }
    }
}

impl Renderer for SessionRenderer<'_> {
    fn render(&mut self, _camera: &Frame, pose: Option<&DrivingFrame>) -> Result<RgbImage> {
        let frame = pose.unwrap_or(&self.neutral);
        self.session.render(&self.avatar, frame, &mut self.out)?;
        Ok(from_planar(&self.out))
    }
}
