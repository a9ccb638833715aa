//! The data that crosses stage boundaries: images, source and driving parameters, the lifted avatar.
//! Plain structs of arrays so every backend, the file writers and the tests can share them.

/// An RGB image, channel-major `[3, height, width]`, values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Image {
    pub fn new(width: usize, height: usize) -> Self {
        Image { width, height, data: vec![0.0; 3 * width * height] }
    }
}

/// A 3x4 world-to-view transform `[R | T]` in PyTorch3D's row-vector convention
/// (`x_view = x_world . R + T`), as the official tracker stores `transform_matrix`.
pub type Transform = [[f32; 4]; 3];

/// What the lift needs besides the photo: the tracked identity and camera of the source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceParams {
    /// FLAME identity coefficients (300 in the official model).
    pub shapecode: Vec<f32>,
    pub transform: Transform,
}

/// One frame of driving parameters (the official tracker's per-frame record).
#[derive(Clone, Debug, PartialEq)]
pub struct DrivingFrame {
    /// Frame key as found in the source (`video_12`, or the line number for JSON lines).
    pub key: String,
    /// FLAME expression coefficients (100).
    pub expcode: Vec<f32>,
    /// Global axis-angle (3, zero from the official tracker) then jaw axis-angle (3).
    pub posecode: [f32; 6],
    /// Axis-angle rotations of the two eyeball joints (FLAME joints 3 and 4).
    pub eyecode: [f32; 6],
    pub transform: Transform,
    /// The driver's own identity; reenactment uses the source's instead, so it may be absent.
    pub shapecode: Option<Vec<f32>>,
    /// False when a tracker found no face in this frame (JSON lines `face: false`); such frames carry
    /// the last good pose.
    pub face: bool,
}

/// The lifted avatar: every Gaussian's attributes, cached once per source photo.
/// Order: vertex Gaussians (one per FLAME vertex) then plane 0 then plane 1 (`ModelConfig::gaussians`).
/// Positions of the vertex Gaussians are zero here; each frame overwrites them with posed FLAME vertices.
#[derive(Clone, Debug, PartialEq)]
pub struct Avatar {
    pub count: usize,
    /// Feature channels per Gaussian (32).
    pub channels: usize,
    /// `[count, 3]` world positions.
    pub positions: Vec<f32>,
    /// `[count, channels]` features (the first three are the coarse RGB).
    pub colors: Vec<f32>,
    /// `[count]` opacities in (0, 1).
    pub opacities: Vec<f32>,
    /// `[count, 3]` scales in world units.
    pub scales: Vec<f32>,
    /// `[count, 4]` quaternions (w, x, y, z), not normalised (quirk 2 leaves them short).
    pub rotations: Vec<f32>,
    /// The source's FLAME identity coefficients, reused by every frame.
    pub shapecode: Vec<f32>,
}
