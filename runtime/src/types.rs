//! The data that crosses stage boundaries: images, source and driving parameters, the lifted avatar.
//! Plain structs of arrays so every backend, the file writers and the tests can share them.

use std::borrow::Cow;

use gaga_kernels::splat::colors::{narrow_all, widen_all, Colors};
use gaga_kernels::splat::{GaussianSet, GaussianSetError};
use half::f16;

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
    /// `[count, channels]` features (the first three are the coarse RGB), f32 as lifted and stored; f16
    /// once a session that tolerates it has prepared the avatar (`Session::prepare_avatar`).
    pub colors: AvatarColors,
    /// `[count]` opacities in (0, 1).
    pub opacities: Vec<f32>,
    /// `[count, 3]` scales in world units.
    pub scales: Vec<f32>,
    /// `[count, 4]` quaternions (w, x, y, z), not normalised (quirk 2 leaves them short).
    pub rotations: Vec<f32>,
    /// `[count, 6]` 3D covariances of the scales and rotations, computed once by a CPU session that
    /// prepared the avatar (`Session::prepare_avatar`; `scales` and `rotations` are then empty, as only
    /// positions move per frame); empty otherwise. The lift and the `.gav` file use scales and rotations.
    pub covariances: Vec<f32>,
    /// The source's FLAME identity coefficients, reused by every frame.
    pub shapecode: Vec<f32>,
}

impl Avatar {
    /// The avatar's Gaussians as the splat reads them for one frame: its shapes (covariances when prepared,
    /// else scales and rotations), opacities and colours, with the first `posed.len() / 3` positions
    /// replaced by `posed` (the FLAME vertices of the frame). Errors name the inconsistent field.
    pub fn gaussians<'a>(&'a self, posed: &'a [f32]) -> Result<GaussianSet<'a>, GaussianSetError> {
        let (pos, op, colors, c) = (&self.positions[..], &self.opacities[..], self.colors.view(), self.channels);
        let set = if self.covariances.is_empty() {
            GaussianSet::with_colors(pos, &self.scales, &self.rotations, op, colors, c)
        } else {
            GaussianSet::with_covariances(pos, &self.covariances, op, colors, c)
        };
        set?.moving(posed)
    }
}

/// An avatar's `[count, channels]` feature vectors in the storage a session renders from. f16 halves the
/// largest array of the avatar (22 of its 29.6 MiB at official size); the splat widens each value exactly,
/// so f16 colours render bitwise as their widened f32 values. The lift and the `.gav` file use f32.
#[derive(Clone, Debug, PartialEq)]
pub enum AvatarColors {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl AvatarColors {
    /// Number of values (`count * channels`).
    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_f16(&self) -> bool {
        matches!(self, AvatarColors::F16(_))
    }

    /// Bytes the values occupy.
    pub fn bytes(&self) -> usize {
        match self {
            AvatarColors::F32(v) => 4 * v.len(),
            AvatarColors::F16(v) => 2 * v.len(),
        }
    }

    /// The values as the splatter takes them.
    pub fn view(&self) -> Colors<'_> {
        match self {
            AvatarColors::F32(v) => Colors::F32(v),
            AvatarColors::F16(v) => Colors::F16(v),
        }
    }

    /// The values as f32: borrowed when stored so, widened (exactly) when f16.
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        self.view().to_f32()
    }

    /// The values rounded to the nearest f16 (ties to even). Unchanged when already f16, and also when a
    /// finite value is beyond f16's range (|v| > 65504 would become infinite and cull its Gaussian): such an
    /// avatar keeps f32 colours rather than losing Gaussians.
    pub fn into_f16(self) -> AvatarColors {
        match self {
            AvatarColors::F32(v) => {
                let halves = narrow_all(&v);
                let overflow = v.iter().zip(&halves).any(|(w, h)| w.is_finite() && h.is_infinite());
                if overflow {
                    AvatarColors::F32(v)
                } else {
                    AvatarColors::F16(halves)
                }
            }
            f16s => f16s,
        }
    }

    /// The values as f32 (widened exactly when f16).
    pub fn into_f32(self) -> AvatarColors {
        match self {
            AvatarColors::F16(v) => AvatarColors::F32(widen_all(&v)),
            f32s => f32s,
        }
    }
}

impl From<Vec<f32>> for AvatarColors {
    fn from(v: Vec<f32>) -> Self {
        AvatarColors::F32(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_narrow_to_the_nearest_half_and_widen_back_exactly() {
        let v = vec![0.1f32, -2.5, 1.0 + 1.0 / 2048.0, 65504.0, 3.0e-8, f32::NAN];
        let half = AvatarColors::from(v.clone()).into_f16();
        assert!(half.is_f16());
        assert_eq!((half.len(), half.bytes()), (6, 12));
        let back = half.to_f32();
        let want = [f16::from_f32(0.1).to_f32(), -2.5, 1.0, 65504.0, 5.960_464_5e-8];
        assert_eq!(&back[..5], &want[..]);
        assert!(back[5].is_nan());
        let AvatarColors::F32(wide) = half.clone().into_f32() else { panic!("into_f32 gives f32") };
        assert_eq!(wide.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), back.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(half.clone().into_f16().to_f32()[..5], back[..5], "already f16: unchanged");
    }

    #[test]
    fn colours_beyond_the_f16_range_stay_f32_rather_than_turning_infinite() {
        let v = AvatarColors::from(vec![1.0f32, 70000.0]);
        assert_eq!(v.clone().into_f16(), v);
        assert_eq!(AvatarColors::from(vec![1.0f32, f32::INFINITY]).into_f16().bytes(), 4, "Inf stays Inf, in f16");
    }
}
