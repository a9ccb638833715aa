//! MediaPipe's face mesh (`face_landmark.tflite`): 468 points of one face from an upright crop.
//!
//! The crop ("region of interest") is a square of 1.5 x the face box's long side, turned so the eyes are
//! level (from the detector's eye keypoints, or from mesh points 33 and 263 of the previous frame), shrunk
//! to 192 x 192 and scaled to [0, 1]. The network gives 468 x (x, y, z) in crop pixels (z in the same units
//! as x) and a face-presence logit; points are mapped back through the same rotation into frame pixels.

use std::path::Path;

use image::RgbImage;

use super::detect::{Detection, LEFT_EYE, RIGHT_EYE};
use super::net::TfliteNet;
use super::warp::{crop_to_tensor, Roi};
use crate::error::Result;
use crate::landmarks::MESH_POINTS;

const INPUT: usize = 192;
/// The crop is this many times the face box's long side (MediaPipe's `scale_x`/`scale_y`).
pub const ROI_SCALE: f32 = 1.5;
/// Mesh points on the outer eye corners that level the crop when tracking from landmarks (the person's
/// right eye, then left; MediaPipe's `rotation_vector_start/end_keypoint_index`).
pub const EYE_CORNERS: [usize; 2] = [33, 263];

/// The mesh of one face in frame pixels (continuous coordinates) and its presence probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Mesh {
    pub points: Vec<[f32; 3]>,
    pub presence: f32,
}

impl Mesh {
    /// The axis-aligned bounding box of the points' x and y: x0, y0, x1, y1.
    pub fn bbox(&self) -> [f32; 4] {
        self.points
            .iter()
            .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |b, p| [b[0].min(p[0]), b[1].min(p[1]), b[2].max(p[0]), b[3].max(p[1])])
    }
}

/// Rotation that levels the line from `a` (person's right eye) to `b` (left eye): MediaPipe's
/// `target_angle - atan2(-(b.y - a.y), b.x - a.x)` with a target angle of 0, wrapped to [-pi, pi].
pub fn level_rotation(a: [f32; 2], b: [f32; 2]) -> f32 {
    let r = -(-(b[1] - a[1])).atan2(b[0] - a[0]);
    let two_pi = std::f32::consts::TAU;
    r - two_pi * ((r + std::f32::consts::PI) / two_pi).floor()
}

/// The crop for a box with a rotation: centred on the box, side `ROI_SCALE` x its long side.
pub fn roi_for_box(bbox: [f32; 4], rotation: f32) -> Roi {
    let side = (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]) * ROI_SCALE;
    Roi { cx: (bbox[0] + bbox[2]) * 0.5, cy: (bbox[1] + bbox[3]) * 0.5, size: side, rotation }
}

/// The crop for a fresh detection.
pub fn roi_from_detection(d: &Detection) -> Roi {
    roi_for_box(d.bbox, level_rotation(d.keypoints[RIGHT_EYE], d.keypoints[LEFT_EYE]))
}

/// The crop for the next frame from this frame's mesh (MediaPipe's tracking: no detector needed while the
/// face stays in view).
pub fn roi_from_mesh(m: &Mesh) -> Option<Roi> {
    let (a, b) = (m.points.get(EYE_CORNERS[0])?, m.points.get(EYE_CORNERS[1])?);
    Some(roi_for_box(m.bbox(), level_rotation([a[0], a[1]], [b[0], b[1]])))
}

/// Maps network outputs (crop pixels of a `INPUT`-sized crop) back to frame pixels.
pub fn to_frame(raw: &[f32], roi: &Roi) -> Vec<[f32; 3]> {
    let n = INPUT as f32;
    raw.chunks_exact(3)
        .map(|p| {
            let [x, y] = roi.to_frame(p[0] / n, p[1] / n);
            [x, y, p[2] / n * roi.size]
        })
        .collect()
}

/// The face-mesh network: one interpreter, reused.
pub struct FaceMesh {
    net: TfliteNet,
}

impl FaceMesh {
    /// Loads `face_landmark.tflite` and checks its tensors (`conv2d_21`: 1404 = 468 x 3 values,
    /// `conv2d_31`: the presence logit).
    pub fn open(file: &Path) -> Result<Self> {
        let net = TfliteNet::open(file, &[1, INPUT, INPUT, 3], &[("conv2d_21", MESH_POINTS * 3), ("conv2d_31", 1)])?;
        Ok(FaceMesh { net })
    }

    /// Runs the mesh on the crop `roi` of `img`.
    pub fn run(&mut self, img: &RgbImage, roi: &Roi) -> Result<Mesh> {
        crop_to_tensor(img, roi, INPUT, 1.0, 0.0, self.net.input_mut()?);
        self.net.invoke()?;
        let points = to_frame(self.net.output(0)?, roi);
        let logit = self.net.output(1)?.first().copied().unwrap_or(f32::NEG_INFINITY);
        Ok(Mesh { points, presence: 1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_eyes_need_no_rotation_and_a_tilt_is_undone() {
        assert_eq!(level_rotation([10.0, 20.0], [30.0, 20.0]), 0.0);
        // The person's left eye lower on screen (y down): the head leans clockwise by 45 degrees.
        let r = level_rotation([10.0, 20.0], [30.0, 40.0]);
        assert!((r - std::f32::consts::FRAC_PI_4).abs() < 1e-6, "{r}");
        // Upside down wraps to pi or -pi, not 3 pi.
        assert!(level_rotation([30.0, 20.0], [10.0, 20.0]).abs() <= std::f32::consts::PI + 1e-6);
    }

    #[test]
    fn crop_outputs_map_back_through_the_rotation() {
        let roi = Roi { cx: 100.0, cy: 50.0, size: 96.0, rotation: std::f32::consts::FRAC_PI_2 };
        // Crop centre -> roi centre; crop right-middle -> below the centre (x axis turned down); z scales
        // by size / 192.
        let p = to_frame(&[96.0, 96.0, 10.0, 192.0, 96.0, 0.0], &roi);
        assert!((p[0][0] - 100.0).abs() < 1e-4 && (p[0][1] - 50.0).abs() < 1e-4 && (p[0][2] - 5.0).abs() < 1e-6);
        assert!((p[1][0] - 100.0).abs() < 1e-4 && (p[1][1] - 98.0).abs() < 1e-4, "{:?}", p[1]);
    }

    #[test]
    fn the_tracking_crop_is_one_and_a_half_times_the_long_side() {
        let roi = roi_for_box([10.0, 20.0, 50.0, 100.0], 0.0);
        assert_eq!((roi.cx, roi.cy, roi.size), (30.0, 60.0, 120.0));
    }
}
