//! Twin of `splat_project.comp`: one Gaussian's preprocessing into its 12-word record, and its tile
//! counts. The covariance, conic, radius and rectangle arithmetic is the CPU splatter's own
//! (`crate::splat::project`), which the shader transcribes operation for operation; the one place the
//! shader must differ is `ndc2Pix`, which CUDA computes in double and the shader in fp32 ([`ndc2pix`]).

use crate::splat::project::{cov2d, cov3d, tile_rect, NEAR_Z};
use crate::splat::SplatCamera;

use super::splat::{SplatPush, ATTR_WORDS, REC_WORDS};

/// `(v + 1) * size - 1` in double, rounded to f32, halved: the CUDA `ndc2Pix`, as the shader computes it
/// without doubles. `size - 1 + hi*size + lo*size` (v split into 12-bit halves, so both products are
/// exact for `size <= 4096`) is summed with one rounding (TwoSum, then round-to-odd on the low parts:
/// Boldo and Melquiond's correctly rounded three-term sum). Equal to the double computation whenever
/// that is exact, which holds for every |v| >= 2^-29 (tested).
pub fn ndc2pix(v: f32, size: u32) -> f32 {
    let sf = size as f32;
    let c = sf - 1.0;
    if v.is_nan() || v.abs() >= 1.0e30 {
        return ((v + 1.0) * sf - 1.0) * 0.5;
    }
    let big = v * 4097.0;
    let hi = big - (big - v);
    let lo = v - hi;
    let (ph, pl) = (hi * sf, lo * sf);
    let uh = ph + pl;
    let ul = two_sum_err(ph, pl, uh);
    let th = c + uh;
    let tl = two_sum_err(c, uh, th);
    let mut w = tl + ul;
    let we = two_sum_err(tl, ul, w);
    if we != 0.0 && w.to_bits() & 1 == 0 {
        let away = (we > 0.0) == (w > 0.0);
        w = f32::from_bits(if away { w.to_bits() + 1 } else { w.to_bits() - 1 });
    }
    (th + w) * 0.5
}

/// The rounding error of `s = a + b` (Knuth's TwoSum): `a + b == s + err` exactly.
fn two_sum_err(a: f32, b: f32, s: f32) -> f32 {
    let bb = s - a;
    (a - (s - bb)) + (b - bb)
}

/// What invocation `i` writes: the record (all zero when culled) and whether it is visible. `pos` is
/// `[N*3]`, `attr` `[N*ATTR_WORDS]` (scale, quaternion, opacity), `cam` the camera buffer.
pub fn project(p: &SplatPush, i: usize, pos: &[f32], attr: &[f32], cam: &SplatCamera) -> Option<[u32; REC_WORDS]> {
    let mean = [pos[3 * i], pos[3 * i + 1], pos[3 * i + 2]];
    let a = &attr[ATTR_WORDS * i..ATTR_WORDS * (i + 1)];
    if !(mean.iter().chain(a).all(|v| v.is_finite())) {
        return None;
    }
    let t = cam.to_view(mean);
    if t[2].is_nan() || t[2] <= NEAR_Z {
        return None;
    }
    let hom = cam.to_clip(mean);
    let pw = 1.0 / (hom[3] + 0.000_000_1);
    let (px, py) = (ndc2pix(hom[0] * pw, p.width), ndc2pix(hom[1] * pw, p.height));
    let cov = cov2d(t, cam, &cov3d([a[0], a[1], a[2]], [a[3], a[4], a[5], a[6]]));
    let det = cov[0] * cov[2] - cov[1] * cov[1];
    if det == 0.0 {
        return None;
    }
    let det_inv = 1.0 / det;
    let conic = [cov[2] * det_inv, -cov[1] * det_inv, cov[0] * det_inv];
    let mid = 0.5 * (cov[0] + cov[2]);
    let l1 = mid + (mid * mid - det).max(0.1).sqrt();
    let l2 = mid - (mid * mid - det).max(0.1).sqrt();
    let radius = (3.0 * l1.max(l2).sqrt()).ceil();
    if !(conic.iter().all(|v| v.is_finite()) && radius.is_finite() && px.is_finite() && py.is_finite()) {
        return None;
    }
    let r = radius.min(2_147_483_648.0);
    let rect = tile_rect(px, py, r as i32, (p.grid_x as usize, p.grid_y as usize));
    if rect.count() == 0 {
        return None;
    }
    let f = f32::to_bits;
    let [x0, y0, x1, y1] = [rect.x0, rect.y0, rect.x1, rect.y1].map(u32::from);
    Some([f(px), f(py), f(conic[0]), f(conic[1]), f(conic[2]), f(a[7]), f(t[2]), r as u32, x0, y0, x1, y1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seeded;

    /// The CUDA source's `ndc2Pix` as the CPU splatter computes it, in f64.
    fn ndc2pix_f64(v: f32, s: u32) -> f32 {
        (((v as f64 + 1.0) * s as f64 - 1.0) * 0.5) as f32
    }

    #[test]
    fn fp32_ndc2pix_equals_the_double_computation_bit_for_bit() {
        // Random NDC values over many magnitudes (in and far outside the view), image sizes of the
        // configurations (512, 64) and awkward ones (odd, non power of two, the 4096 limit).
        let u = seeded(41, 20_000);
        let mut checked = 0;
        for (k, &x) in u.iter().enumerate() {
            let scale = 2f32.powi((k % 36) as i32 - 28);
            let v = x * scale;
            for s in [512u32, 64, 37, 300, 4095, 4096] {
                assert_eq!(ndc2pix(v, s).to_bits(), ndc2pix_f64(v, s).to_bits(), "v {v:e} ({:#x}) size {s}", v.to_bits());
                checked += 1;
            }
        }
        // Points exactly on pixel centres and tile edges, where a tie would show.
        for s in [512u32, 64] {
            for px in 0..=s {
                let v = (2.0 * px as f32 + 1.0) / s as f32 - 1.0;
                assert_eq!(ndc2pix(v, s).to_bits(), ndc2pix_f64(v, s).to_bits(), "pixel {px} of {s}");
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn non_finite_ndc_stays_non_finite() {
        assert!(ndc2pix(f32::NAN, 512).is_nan());
        assert!(!ndc2pix(f32::INFINITY, 512).is_finite());
        assert!(!ndc2pix(3.0e38, 512).is_finite());
    }
}
