//! Temporal smoothing of fitted poses, as the official tracker's `smoothed.pkl` but causal (frame by frame):
//! `s_t = a x_t + (1 - a) s_{t-1}` with a = 0.6 for the camera rotation (in the 6D form: the first two rows
//! of R, turned back into a rotation by Gram-Schmidt) and translation, and a = 0.7 for the eyes. Expression
//! and jaw pass unsmoothed, as in the official tracker.

use gaga_runtime::{DrivingFrame, Transform};

/// Weight of the newest rotation and translation.
pub const POSE_ALPHA: f32 = 0.6;
/// Weight of the newest eye rotations.
pub const EYE_ALPHA: f32 = 0.7;

/// The 6D rotation form: rows 0 and 1 of R.
pub fn rotation_to_6d(t: &Transform) -> [f32; 6] {
    [t[0][0], t[0][1], t[0][2], t[1][0], t[1][1], t[1][2]]
}

/// Gram-Schmidt on the two rows, third row = their cross product (PyTorch3D's `rotation_6d_to_matrix`).
pub fn rotation_from_6d(d: &[f32; 6]) -> [[f32; 3]; 3] {
    let norm = |v: [f32; 3]| {
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt().max(1e-12);
        [v[0] / n, v[1] / n, v[2] / n]
    };
    let b1 = norm([d[0], d[1], d[2]]);
    let a2 = [d[3], d[4], d[5]];
    let dot = b1[0] * a2[0] + b1[1] * a2[1] + b1[2] * a2[2];
    let b2 = norm([a2[0] - dot * b1[0], a2[1] - dot * b1[1], a2[2] - dot * b1[2]]);
    let b3 = [b1[1] * b2[2] - b1[2] * b2[1], b1[2] * b2[0] - b1[0] * b2[2], b1[0] * b2[1] - b1[1] * b2[0]];
    [b1, b2, b3]
}

/// Causal exponential smoothing of driving frames.
#[derive(Clone, Debug, Default)]
pub struct PoseSmoother {
    rot6d: Option<[f32; 6]>,
    translation: [f32; 3],
    eyes: [f32; 6],
}

impl PoseSmoother {
    /// Smooths `f` in place against the history, and records it.
    pub fn apply(&mut self, f: &mut DrivingFrame) {
        let r = rotation_to_6d(&f.transform);
        let t = [f.transform[0][3], f.transform[1][3], f.transform[2][3]];
        let Some(old) = self.rot6d else {
            // The first frame is taken as it is.
            (self.rot6d, self.translation, self.eyes) = (Some(r), t, f.eyecode);
            return;
        };
        let mix = |a: f32, new: f32, old: f32| a * new + (1.0 - a) * old;
        let r: [f32; 6] = std::array::from_fn(|i| mix(POSE_ALPHA, r[i], old[i]));
        let t: [f32; 3] = std::array::from_fn(|i| mix(POSE_ALPHA, t[i], self.translation[i]));
        let e: [f32; 6] = std::array::from_fn(|i| mix(EYE_ALPHA, f.eyecode[i], self.eyes[i]));
        let rot = rotation_from_6d(&r);
        for i in 0..3 {
            f.transform[i][..3].copy_from_slice(&rot[i]);
            f.transform[i][3] = t[i];
        }
        f.eyecode = e;
        (self.rot6d, self.translation, self.eyes) = (Some(r), t, e);
    }

    /// Forgets the history (face lost for a while, new clip).
    pub fn reset(&mut self) {
        self.rot6d = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(yaw: f32, tz: f32, eye: f32) -> DrivingFrame {
        let (s, c) = yaw.sin_cos();
        DrivingFrame {
            key: "f".into(),
            expcode: vec![0.5; 100],
            posecode: [0.0; 6],
            eyecode: [eye; 6],
            transform: [[c, 0.0, s, 0.0], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, c, tz]],
            shapecode: None,
            face: true,
        }
    }

    #[test]
    fn six_d_round_trips_a_rotation() {
        let f = frame(0.4, 9.0, 0.0);
        let r = rotation_from_6d(&rotation_to_6d(&f.transform));
        for (got, want) in r.iter().zip(&f.transform) {
            // Normalising an already unit row: f32 rounding, 1e-6.
            assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{r:?}");
        }
    }

    #[test]
    fn the_first_frame_passes_and_later_ones_follow_the_official_weights() {
        let mut s = PoseSmoother::default();
        let mut a = frame(0.0, 9.0, 0.0);
        s.apply(&mut a);
        assert_eq!(a, frame(0.0, 9.0, 0.0));
        let mut b = frame(0.0, 10.0, 1.0);
        s.apply(&mut b);
        // T: 0.6 x 10 + 0.4 x 9 = 9.6; eyes: 0.7 x 1 = 0.7; expression untouched (f32: 1e-6).
        assert!((b.transform[2][3] - 9.6).abs() < 1e-6 && (b.eyecode[0] - 0.7).abs() < 1e-6 && b.expcode[0] == 0.5);
        // A yaw step of 0.5 rad: the smoothed rotation is a proper rotation between the two.
        let mut c = frame(0.5, 9.6, 0.7);
        s.apply(&mut c);
        gaga_runtime::driving::check_rotation(&c.transform).expect("a rotation");
        let yaw = c.transform[0][2].atan2(c.transform[0][0]);
        assert!(yaw > 0.25 && yaw < 0.45, "{yaw}");
        s.reset();
        let mut d = frame(-1.0, 5.0, 0.0);
        s.apply(&mut d);
        assert_eq!(d, frame(-1.0, 5.0, 0.0));
    }
}
