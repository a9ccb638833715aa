//! What the tracker asks of a fit: landmarks in the 512 fitting crop in, FLAME driving parameters out.
//!
//! The FLAME fit ([`crate::fit::FlameFitter`]) implements [`LandmarkFit`]; [`for_model`] builds it.
//! [`HeadPoseFit`] is a light stand-in that needs no FLAME: the head rotation from rigid landmark directions
//! and the jaw from the mouth opening, zero expression and eyes, the frontal camera's distance. It drives
//! the kiosk when no model is loaded and lets the tracker's own tests run without a model; it is not a
//! FLAME fit.

use gaga_runtime::config::ModelConfig;
use gaga_runtime::weights::Weights;
use gaga_runtime::{DrivingFrame, SourceParams, Transform};

use crate::error::{Error, Result};
use crate::landmarks::{FaceLandmarks, MESH_POINTS};

/// A fit of FLAME parameters to face-mesh landmarks.
pub trait LandmarkFit {
    /// One video frame: the driving parameters and the fit's RMS landmark error in crop pixels.
    fn fit_frame(&mut self, lm: &FaceLandmarks) -> Result<(DrivingFrame, f32)>;
    /// A source photo: its identity (shape) and camera.
    fn fit_source(&mut self, lm: &FaceLandmarks) -> Result<SourceParams>;
    /// Forget temporal state (a new clip, or the face was lost).
    fn reset(&mut self);
    /// The identity (FLAME shape) video frames are fitted with, e.g. the avatar's. Fits without an identity
    /// ignore it (the default).
    fn set_identity(&mut self, _shapecode: &[f32]) -> Result<()> {
        Ok(())
    }
    /// Short name for logs.
    fn name(&self) -> &str;
}

/// The fit for a model: the FLAME fit ([`crate::fit::FlameFitter`]) on the model's FLAME tensors.
pub fn for_model(w: &dyn Weights, cfg: &ModelConfig) -> Result<Box<dyn LandmarkFit>> {
    Ok(Box::new(crate::fit::FlameFitter::new(w, cfg)?))
}

/// Mesh points used by [`HeadPoseFit`]: outer eye corners (person's right, left), forehead top, nose bridge
/// (all rigid: none moves with the jaw), inner upper and lower lip.
const RIGHT_EYE_OUTER: usize = 33;
const LEFT_EYE_OUTER: usize = 263;
const FOREHEAD: usize = 10;
const NOSE_BRIDGE: usize = 6;
const UPPER_LIP: usize = 13;
const LOWER_LIP: usize = 14;

/// The frontal camera (spec 3.3): R = diag(-1, 1, -1), T = (0, 0, 9.0144).
pub const FRONTAL_CAMERA: Transform = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, FRONTAL_DISTANCE]];
const FRONTAL_DISTANCE: f32 = 9.0144;
/// In MediaPipe's canonical face mesh, point 6 is 1.31 cm nearer the camera than point 10, over 5.79 cm of
/// height: the forehead-to-nose-bridge line leans 12.7 degrees towards the camera on an upright face. The
/// fit turns it back by this angle (atan2(1.3071, 5.7885) rad) so an upright face has zero pitch.
const DOWN_LEAN: f32 = 0.222_08;
/// Lip gap over eye-corner distance of a closed mouth (canonical mesh: 0.580 cm over 8.892 cm).
const REST_GAP: f32 = 0.065_3;
/// Jaw angle (radians) per unit of lip gap over eye-corner distance: a wide-open mouth (gap ~0.5 of the
/// eye distance) gives about 0.3 rad, FLAME's usual range.
const JAW_PER_GAP: f32 = 0.7;

/// The stand-in fit: head pose and jaw from a few landmarks.
#[derive(Clone, Debug)]
pub struct HeadPoseFit {
    expr_params: usize,
    shape_params: usize,
    frames: u64,
}

impl HeadPoseFit {
    /// `expr_params` and `shape_params` as in the model's configuration (100 and 300 officially).
    pub fn new(expr_params: usize, shape_params: usize) -> Self {
        HeadPoseFit { expr_params, shape_params, frames: 0 }
    }
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn unit(v: [f32; 3]) -> Option<[f32; 3]> {
    let n = dot(v, v).sqrt();
    (n > 1e-6 && n.is_finite()).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

/// The camera transform `[R | T]` (world-to-view, row-vector form) for a head whose axes are measured in
/// image coordinates (x right, y down, z away from the camera).
///
/// FLAME's world has x towards the person's left, y up, z out of the face; PyTorch3D's view has x left,
/// y up, z away, which is the image frame with x and y flipped. The columns of the column-vector rotation
/// are the world axes in view coordinates; the row-vector R is its transpose. A frontal face gives
/// diag(-1, 1, -1), the frontal camera.
pub fn camera_from_head_axes(left: [f32; 3], down: [f32; 3], distance: f32) -> Option<Transform> {
    let x = unit(left)?;
    let y = unit(sub(down, scale(x, dot(down, x))))?;
    let flip = |v: [f32; 3]| [-v[0], -v[1], v[2]];
    let (wx, wy) = (flip(x), flip([-y[0], -y[1], -y[2]]));
    let wz = cross(wx, wy);
    // R[i][j]: world axis i, view component j.
    Some([[wx[0], wx[1], wx[2], 0.0], [wy[0], wy[1], wy[2], 0.0], [wz[0], wz[1], wz[2], distance]])
}

fn scale(v: [f32; 3], s: f32) -> [f32; 3] {
    [v[0] * s, v[1] * s, v[2] * s]
}

impl HeadPoseFit {
    fn pose(&self, lm: &FaceLandmarks) -> Result<(Transform, f32)> {
        if lm.points.len() != MESH_POINTS {
            return Err(Error::Other(format!("head-pose fit: expected {MESH_POINTS} landmarks, found {}", lm.points.len())));
        }
        let p = |i: usize| lm.points[i];
        let degenerate = || Error::Other("head-pose fit: degenerate landmarks (eye corners, forehead or nose coincide)".into());
        let left = sub(p(LEFT_EYE_OUTER), p(RIGHT_EYE_OUTER));
        let x = unit(left).ok_or_else(degenerate)?;
        let raw_down = sub(p(NOSE_BRIDGE), p(FOREHEAD));
        let y = unit(sub(raw_down, scale(x, dot(raw_down, x)))).ok_or_else(degenerate)?;
        // Undo the canonical lean (a rotation about the eye line).
        let z = cross(x, y);
        let (s, c) = DOWN_LEAN.sin_cos();
        let down = [c * y[0] + s * z[0], c * y[1] + s * z[1], c * y[2] + s * z[2]];
        let t = camera_from_head_axes(left, down, FRONTAL_DISTANCE).ok_or_else(degenerate)?;
        let eyes = dot(left, left).sqrt().max(1e-6);
        let lips = sub(p(LOWER_LIP), p(UPPER_LIP));
        let gap = dot(lips, lips).sqrt();
        Ok((t, ((gap / eyes - REST_GAP) * JAW_PER_GAP).clamp(0.0, 0.5)))
    }
}

impl LandmarkFit for HeadPoseFit {
    fn fit_frame(&mut self, lm: &FaceLandmarks) -> Result<(DrivingFrame, f32)> {
        let (transform, jaw) = self.pose(lm)?;
        self.frames += 1;
        let frame = DrivingFrame {
            key: format!("frame_{}", self.frames - 1),
            expcode: vec![0.0; self.expr_params],
            posecode: [0.0, 0.0, 0.0, jaw, 0.0, 0.0],
            eyecode: [0.0; 6],
            transform,
            shapecode: None,
            face: true,
        };
        Ok((frame, 0.0))
    }
    fn fit_source(&mut self, lm: &FaceLandmarks) -> Result<SourceParams> {
        Ok(SourceParams { shapecode: vec![0.0; self.shape_params], transform: self.pose(lm)?.0 })
    }
    fn reset(&mut self) {}
    fn name(&self) -> &str {
        "head pose from landmarks (stand-in for the FLAME fit)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frontal_face_gives_the_frontal_camera() {
        let t = camera_from_head_axes([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], 9.0).expect("valid");
        assert_eq!(t, [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0]]);
    }

    #[test]
    fn a_head_turned_to_its_left_rotates_the_camera_about_the_vertical() {
        // The person turns to their left: their left eye moves away from the camera (z grows).
        let a = 0.3f32;
        let t = camera_from_head_axes([a.cos(), 0.0, a.sin()], [0.0, 1.0, 0.0], 9.0).expect("valid");
        gaga_runtime::driving::check_rotation(&t).expect("a rotation");
        // World x maps to view (-cos a, 0, sin a): the y row and column stay put (f32: 1e-6).
        assert!((t[0][0] + a.cos()).abs() < 1e-6 && (t[0][2] - a.sin()).abs() < 1e-6 && (t[1][1] - 1.0).abs() < 1e-6);
        assert!(camera_from_head_axes([0.0; 3], [0.0, 1.0, 0.0], 9.0).is_none());
    }

    /// MediaPipe's canonical mesh points (cm; x to the person's left, y up, z towards the camera) as image
    /// landmarks (x right, y down, z away) at 10 px per cm.
    fn canonical_face() -> FaceLandmarks {
        let canon: [(usize, [f32; 3]); 6] = [
            (33, [-4.445_859, 2.663_991, 3.173_422]),
            (263, [4.445_859, 2.663_991, 3.173_422]),
            (10, [0.0, 8.261_778, 4.481_535]),
            (6, [0.0, 2.473_255, 5.788_627]),
            (13, [0.0, -3.994_436, 5.219_482]),
            (14, [0.0, -4.542_4, 5.404_754]),
        ];
        let mut points = vec![[0.0; 3]; MESH_POINTS];
        for (i, p) in canon {
            points[i] = [256.0 + 10.0 * p[0], 256.0 - 10.0 * p[1], -10.0 * p[2]];
        }
        FaceLandmarks { points, width: 512, height: 512, presence: 1.0 }
    }

    #[test]
    fn the_canonical_face_gives_the_frontal_camera_and_a_closed_jaw() {
        let mut fit = HeadPoseFit::new(100, 300);
        let (f, _) = fit.fit_frame(&canonical_face()).expect("fits");
        // DOWN_LEAN is given to 5 digits: the rotation is frontal within 1e-4.
        let flat = |t: &Transform| t.iter().flatten().copied().collect::<Vec<f32>>();
        let worst = flat(&f.transform).iter().zip(flat(&FRONTAL_CAMERA)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "{:?}", f.transform);
        assert!(f.posecode[3] < 1e-3 && f.expcode.len() == 100, "jaw {}", f.posecode[3]);
        assert!(fit.fit_frame(&FaceLandmarks { points: vec![[0.0; 3]; 3], width: 1, height: 1, presence: 1.0 }).is_err());
        assert!(fit.fit_frame(&FaceLandmarks { points: vec![[0.0; 3]; MESH_POINTS], width: 1, height: 1, presence: 1.0 }).is_err());
    }
}
