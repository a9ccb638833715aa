//! MediaPipe face mesh (468 points) to the 70 points of FLAME's landmark embedding
//! (`full_lmk_*_with_eye`: the 68 iBUG-300W points, then the pupils of the subject's right and left eye).
//!
//! Where the table comes from: derived here from MediaPipe's canonical face model
//! (`geometry_pipeline_metadata_landmarks.binarypb` in npm `@mediapipe/face_mesh@0.4.1657299874`, see
//! real-assets.md section 4) and its published contour index lists (face oval, brows, eyes, lips, nose
//! line). Each iBUG point is placed by its usual definition on the canonical mesh (cm, x toward the
//! subject's left, y up):
//! - eyes 36-47: the corners (33/133, 362/263) and the lid points at 1/3 and 2/3 of the corner-to-corner
//!   x span (canonical x -3.59 and -2.72 for the right eye: vertices 160/158 above, 144/153 below);
//! - brows 17-26: the brow's mid-line, each point the average of an upper-edge and a lower-edge vertex,
//!   outer end to inner end (70+46 ... 107+55);
//! - nose 27-30: the bridge from 168 (between the eyes, at the eye corners' height) to the tip 4 at equal
//!   arc length along the mid-line (1/3 and 2/3 fall between 6/197 and 195/5: pairs averaged);
//!   nostril base 31-35: alar bases 98/327, nostril mid-points 97/326, subnasale 2;
//! - outer lips 48-59: the corners 61/291, the cupid's-bow peaks 37/267 (50/52), the mid-points 0 and 17,
//!   the rest at 1/3 and 2/3 of the corner-to-centre x span; inner lips 60-67: the inner corners 78/308,
//!   13/14 in the middle, 81/311/402/178 half way;
//! - jaw 0-16: the face-oval contour from the vertex at the eye corners' height (127/356) down to the chin
//!   (152) at equal 3-D arc length, a vertex where the arc point is nearest one, an average of two where it
//!   falls near the middle of an edge;
//! - pupils 68-69: the 468-point model has no iris, so the mean of each eye's 16 contour vertices.
//!
//! Unreliable points: the jaw 0-16. MediaPipe's face oval is the visible silhouette, while FLAME's 0-16 are
//! fixed surface points: they agree only for a frontal face and part by a centimetre at 30 degrees of yaw.
//! [`default_weights`] gives them 0.1 (a tenth of the others). The pupils only follow the eye opening, so
//! the eye rotations are mostly held by their prior.

use crate::landmarks::{FaceLandmarks, MESH_POINTS};

/// Points of FLAME's `full_lmk_*_with_eye` embedding: 68 iBUG points + 2 pupils.
pub const FLAME_LANDMARKS: usize = 70;
/// iBUG jaw contour: points `0..JAW_CONTOUR`.
pub const JAW_CONTOUR: usize = 17;

const RIGHT_EYE_RING: [u16; 16] = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7];
const LEFT_EYE_RING: [u16; 16] = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249];

/// For each of the 70 FLAME landmarks, the MediaPipe points whose mean it is.
pub const MEDIAPIPE_TO_FLAME: [&[u16]; FLAME_LANDMARKS] = [
    // 0-16 jaw, subject's right ear to the chin (8) to the left ear.
    &[127],
    &[234],
    &[93, 132],
    &[132, 58],
    &[172],
    &[136],
    &[150, 149],
    &[176],
    &[152],
    &[400],
    &[379, 378],
    &[365],
    &[397],
    &[361, 288],
    &[323, 361],
    &[454],
    &[356],
    // 17-21 right brow outer to inner, 22-26 left brow inner to outer.
    &[70, 46],
    &[63, 53],
    &[105, 52],
    &[66, 65],
    &[107, 55],
    &[336, 285],
    &[296, 295],
    &[334, 282],
    &[293, 283],
    &[300, 276],
    // 27-30 nose bridge, 31-35 nostril base.
    &[168],
    &[6, 197],
    &[195, 5],
    &[4],
    &[98],
    &[97],
    &[2],
    &[326],
    &[327],
    // 36-41 right eye: outer corner, upper lid, inner corner, lower lid.
    &[33],
    &[160],
    &[158],
    &[133],
    &[153],
    &[144],
    // 42-47 left eye: inner corner, upper lid, outer corner, lower lid.
    &[362],
    &[385],
    &[387],
    &[263],
    &[373],
    &[380],
    // 48-59 outer lips from the right corner, upper lip first.
    &[61],
    &[40, 39],
    &[37],
    &[0],
    &[267],
    &[269, 270],
    &[291],
    &[321, 405],
    &[314],
    &[17],
    &[84],
    &[181, 91],
    // 60-67 inner lips.
    &[78],
    &[81],
    &[13],
    &[311],
    &[308],
    &[402],
    &[14],
    &[178],
    // 68-69 pupils.
    &RIGHT_EYE_RING,
    &LEFT_EYE_RING,
];

/// The iBUG point that mirrors point `i` across the face's mid-plane (used by the table's symmetry test).
pub fn mirror(i: usize) -> usize {
    match i {
        0..=16 => 16 - i,
        17..=26 => 43 - i,
        27..=30 | 33 | 51 | 57 | 62 | 66 => i,
        31..=35 => 66 - i,
        36..=39 => 81 - i,
        40 | 41 => 87 - i,
        42..=45 => 81 - i,
        46 | 47 => 87 - i,
        48..=54 => 102 - i,
        55..=59 => 114 - i,
        60..=64 => 124 - i,
        65 | 67 => 132 - i,
        68 => 69,
        _ => 68,
    }
}

/// Default per-landmark weights: 0.1 on the view-dependent jaw contour, 1 elsewhere.
pub fn default_weights() -> [f64; FLAME_LANDMARKS] {
    let mut w = [1.0; FLAME_LANDMARKS];
    w[..JAW_CONTOUR].iter_mut().for_each(|x| *x = 0.1);
    w
}

/// The 70 FLAME landmark positions (pixels) from MediaPipe's 468; `None` when `lm` does not hold 468
/// points (the caller reports the error).
pub fn flame_points(lm: &FaceLandmarks) -> Option<[[f64; 2]; FLAME_LANDMARKS]> {
    if lm.points.len() != MESH_POINTS {
        return None;
    }
    let mut out = [[0.0; 2]; FLAME_LANDMARKS];
    for (o, idx) in out.iter_mut().zip(MEDIAPIPE_TO_FLAME.iter()) {
        let n = idx.len() as f64;
        for &i in idx.iter() {
            let p = lm.points[i as usize];
            o[0] += p[0] as f64 / n;
            o[1] += p[1] as f64 / n;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
