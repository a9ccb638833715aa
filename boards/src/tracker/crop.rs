//! The fitting crop: the square the avatar's camera sees, resized to 512, in which the FLAME fit works.
//!
//! Like the official tracker (spec 2.1, 9.2): a square centred on the face box with side 1.65 x sqrt(w h).
//! The box here is the face mesh's bounding box (MediaPipe has no head box; the official one comes from
//! VGGHead), so the crop is tighter than the official one by the ratio of the two boxes; the fit's camera
//! absorbs the difference. For video the crop is smoothed like the official `smoothed.pkl` crops
//! (exponential, new = 0.03 x measured + 0.97 x previous), so head motion shows up in the fitted pose rather
//! than as a jittering crop. When the face box leaves the smoothed crop's middle (more than
//! [`RECENTRE_FRACTION`] of the side off-centre, or a size change beyond [`RESIZE_LIMIT`]) the crop jumps to
//! the measured one: a lagging crop must never cut the face off.

use gaga_runtime::image_io::CropBox;

use crate::landmarks::FaceLandmarks;

/// Crop side over sqrt(face box area).
pub const CROP_SCALE: f32 = 1.65;
/// Exponential smoothing weight of the newest measurement (the official tracker's 0.03).
pub const CROP_SMOOTHING: f32 = 0.03;
/// The crop re-centres at once when the face box centre is this fraction of the side off-centre.
pub const RECENTRE_FRACTION: f32 = 0.15;
/// ... or when the measured side differs from the smoothed one by more than this factor.
pub const RESIZE_LIMIT: f32 = 1.3;

/// A square in frame pixels (continuous coordinates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitCrop {
    pub cx: f32,
    pub cy: f32,
    pub size: f32,
}

impl FitCrop {
    /// The crop for a face box (x0, y0, x1, y1).
    pub fn for_box(b: [f32; 4]) -> FitCrop {
        let (w, h) = ((b[2] - b[0]).max(0.0), (b[3] - b[1]).max(0.0));
        FitCrop { cx: (b[0] + b[2]) * 0.5, cy: (b[1] + b[3]) * 0.5, size: CROP_SCALE * (w * h).sqrt() }
    }

    /// Whole-pixel version (what `gaga lift --crop` takes): the same centre to within half a pixel.
    pub fn rounded(&self) -> CropBox {
        let size = self.size.round().max(1.0);
        CropBox { x: (self.cx - size * 0.5).round() as i64, y: (self.cy - size * 0.5).round() as i64, size: size as usize }
    }

    /// The crop of a whole-pixel box.
    pub fn from_box(b: CropBox) -> FitCrop {
        let s = b.size as f32;
        FitCrop { cx: b.x as f32 + s * 0.5, cy: b.y as f32 + s * 0.5, size: s }
    }

    /// Frame points (continuous coordinates) to landmarks in an `out` x `out` picture of this crop
    /// (centre-at-integer pixels, as `FaceLandmarks` wants); z scales like x.
    pub fn landmarks(&self, points: &[[f32; 3]], presence: f32, out: u32) -> FaceLandmarks {
        let k = out as f32 / self.size.max(1e-6);
        let (x0, y0) = (self.cx - self.size * 0.5, self.cy - self.size * 0.5);
        let points = points.iter().map(|p| [(p[0] - x0) * k - 0.5, (p[1] - y0) * k - 0.5, p[2] * k]).collect();
        FaceLandmarks { points, width: out, height: out, presence }
    }
}

/// Smooths the fitting crop over a video.
#[derive(Clone, Debug, Default)]
pub struct CropSmoother {
    current: Option<FitCrop>,
}

impl CropSmoother {
    /// Feeds this frame's measured crop; returns the crop to use.
    pub fn update(&mut self, measured: FitCrop) -> FitCrop {
        let next = match self.current {
            Some(c) if !needs_jump(&c, &measured) => {
                let a = CROP_SMOOTHING;
                FitCrop {
                    cx: a * measured.cx + (1.0 - a) * c.cx,
                    cy: a * measured.cy + (1.0 - a) * c.cy,
                    size: a * measured.size + (1.0 - a) * c.size,
                }
            }
            _ => measured,
        };
        self.current = Some(next);
        next
    }

    /// Forgets the history (face lost, new clip).
    pub fn reset(&mut self) {
        self.current = None;
    }
}

fn needs_jump(c: &FitCrop, m: &FitCrop) -> bool {
    let off = (m.cx - c.cx).abs().max((m.cy - c.cy).abs());
    let ratio = m.size.max(1e-6) / c.size.max(1e-6);
    off > RECENTRE_FRACTION * c.size || !(1.0 / RESIZE_LIMIT..=RESIZE_LIMIT).contains(&ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_1_65_times_the_geometric_mean_side_centred_on_the_box() {
        let c = FitCrop::for_box([10.0, 20.0, 110.0, 70.0]);
        assert_eq!((c.cx, c.cy), (60.0, 45.0));
        // sqrt(100 * 50) = 70.71; x 1.65 = 116.67 (f32 rounding: 1e-3).
        assert!((c.size - 116.672_62).abs() < 1e-3, "{}", c.size);
        let r = c.rounded();
        // Halves round away from zero: 1.5 -> 2, -13.5 -> -14.
        assert_eq!((r.x, r.y, r.size), (2, -14, 117));
    }

    #[test]
    fn landmarks_land_in_crop_pixels_with_centres_at_integers() {
        let c = FitCrop { cx: 100.0, cy: 100.0, size: 64.0 };
        let lm = c.landmarks(&[[68.0, 68.0, 2.0], [100.0, 132.0, 0.0]], 0.9, 512);
        // The crop's top-left corner is continuous (0, 0) = centre convention (-0.5, -0.5); scale 8.
        assert_eq!(lm.points[0], [-0.5, -0.5, 16.0]);
        assert_eq!(lm.points[1], [255.5, 511.5, 0.0]);
        assert_eq!((lm.width, lm.height, lm.presence), (512, 512, 0.9));
    }

    #[test]
    fn small_moves_are_smoothed_and_large_ones_jump() {
        let mut s = CropSmoother::default();
        let a = FitCrop { cx: 100.0, cy: 100.0, size: 100.0 };
        assert_eq!(s.update(a), a);
        let b = s.update(FitCrop { cx: 110.0, ..a });
        // 0.03 x 110 + 0.97 x 100 = 100.3 (f32: 1e-4).
        assert!((b.cx - 100.3).abs() < 1e-4, "{b:?}");
        let far = FitCrop { cx: 200.0, ..a };
        assert_eq!(s.update(far), far);
        let big = FitCrop { size: 150.0, ..far };
        assert_eq!(s.update(big), big);
        s.reset();
        assert_eq!(s.update(a), a);
    }
}
