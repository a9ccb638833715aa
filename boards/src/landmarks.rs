//! What the face-landmark network hands to the FLAME fit: MediaPipe's 468 face-mesh points for one face,
//! in the pixel coordinates of the fitting image (the 512x512 crop the avatar camera sees).

/// Number of points of MediaPipe's face mesh (`face_landmark.tflite`, without the iris refinement).
pub const MESH_POINTS: usize = 468;

/// One face's landmarks. `points[i]` is MediaPipe mesh point `i`: x to the right and y down in pixels of
/// an image `width` x `height` (pixel centres at integer coordinates, as the splatter's camera), z in the
/// same units as x, relative to the face centre, larger = farther from the camera (MediaPipe's convention).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceLandmarks {
    pub points: Vec<[f32; 3]>,
    pub width: u32,
    pub height: u32,
    /// The mesh network's face-presence probability in [0, 1].
    pub presence: f32,
}

impl FaceLandmarks {
    /// Mean of the points' x and y.
    pub fn centre(&self) -> [f32; 2] {
        let n = self.points.len().max(1) as f32;
        let (sx, sy) = self.points.iter().fold((0.0, 0.0), |(sx, sy), p| (sx + p[0], sy + p[1]));
        [sx / n, sy / n]
    }
}
