//! Accuracy of one model against another on the same avatar and driving frames: PSNR and SSIM of the
//! final RGB frames, and the error of each per-frame stage (posed FLAME vertices, splat, refiner RGB).
//!
//! Conventions (stated because published numbers differ on them):
//! - Images are `[3, H, W]` RGB in [0, 1] (the renderer's clamped output); the peak is 1.
//! - PSNR is over all channels at once: `10 log10(1 / MSE)` with the MSE over every value of the frame;
//!   identical frames give `f64::INFINITY`.
//! - SSIM is Wang et al. 2004 per channel, averaged over the three channels (not on luma): an 11x11
//!   Gaussian window with sigma 1.5, C1 = (0.01)^2, C2 = (0.03)^2, evaluated at every "valid" window
//!   position (no padding, as pytorch-msssim and the paper's MATLAB code), then averaged.

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::render::{FrameRenderer, RenderOptions};
use crate::types::{Avatar, DrivingFrame, Image};
use crate::weights::Weights;

/// Side of the SSIM window.
pub const SSIM_WINDOW: usize = 11;
/// Standard deviation of the SSIM window's Gaussian.
pub const SSIM_SIGMA: f64 = 1.5;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// PSNR in dB of `candidate` against `reference` (same length, values in [0, 1]); infinite when equal.
pub fn psnr(candidate: &[f32], reference: &[f32]) -> Result<f64> {
    same_len("PSNR", candidate.len(), reference.len())?;
    let sse: f64 = candidate.iter().zip(reference).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let mse = sse / candidate.len().max(1) as f64;
    Ok(if mse == 0.0 { f64::INFINITY } else { 10.0 * (1.0 / mse).log10() })
}

fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b || a == 0 {
        return Err(Error::Other(format!("{what}: candidate has {a} values, reference {b} (expected equal and non-zero)")));
    }
    Ok(())
}

/// The normalised 1-D Gaussian the 2-D window is the outer product of.
fn gaussian_1d() -> [f64; SSIM_WINDOW] {
    let mut g = [0.0; SSIM_WINDOW];
    let c = (SSIM_WINDOW / 2) as f64;
    for (i, v) in g.iter_mut().enumerate() {
        *v = (-((i as f64 - c).powi(2)) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let s: f64 = g.iter().sum();
    g.iter_mut().for_each(|v| *v /= s);
    g
}

/// Valid-mode separable filtering of one `h` x `w` plane: `[h - 10, w - 10]` output.
fn filter_valid(x: &[f64], h: usize, w: usize, g: &[f64; SSIM_WINDOW], tmp: &mut Vec<f64>, out: &mut Vec<f64>) {
    let (oh, ow) = (h + 1 - SSIM_WINDOW, w + 1 - SSIM_WINDOW);
    tmp.clear();
    for y in 0..h {
        let row = &x[y * w..(y + 1) * w];
        tmp.extend((0..ow).map(|i| g.iter().zip(&row[i..i + SSIM_WINDOW]).map(|(a, b)| a * b).sum::<f64>()));
    }
    out.clear();
    for y in 0..oh {
        out.extend((0..ow).map(|i| (0..SSIM_WINDOW).map(|k| g[k] * tmp[(y + k) * ow + i]).sum::<f64>()));
    }
}

/// Mean SSIM of `[channels, h, w]` images `candidate` and `reference`, averaged over channels; 1 when
/// equal. Needs `h, w >= 11`.
pub fn ssim(candidate: &[f32], reference: &[f32], channels: usize, h: usize, w: usize) -> Result<f64> {
    same_len("SSIM", candidate.len(), reference.len())?;
    if channels * h * w != candidate.len() || h < SSIM_WINDOW || w < SSIM_WINDOW {
        return Err(Error::Other(format!(
            "SSIM: expected [{channels}, {h}, {w}] images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, found {} values",
            candidate.len()
        )));
    }
    let g = gaussian_1d();
    let n = h * w;
    let (mut tmp, mut mx, mut my, mut sxx, mut syy, mut sxy) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut total = 0.0;
    for c in 0..channels {
        let x: Vec<f64> = candidate[c * n..(c + 1) * n].iter().map(|&v| v as f64).collect();
        let y: Vec<f64> = reference[c * n..(c + 1) * n].iter().map(|&v| v as f64).collect();
        let prod = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<f64>>();
        filter_valid(&x, h, w, &g, &mut tmp, &mut mx);
        filter_valid(&y, h, w, &g, &mut tmp, &mut my);
        filter_valid(&prod(&x, &x), h, w, &g, &mut tmp, &mut sxx);
        filter_valid(&prod(&y, &y), h, w, &g, &mut tmp, &mut syy);
        filter_valid(&prod(&x, &y), h, w, &g, &mut tmp, &mut sxy);
        let mut sum = 0.0;
        for i in 0..mx.len() {
            let (a, b) = (mx[i], my[i]);
            let (va, vb, cov) = (sxx[i] - a * a, syy[i] - b * b, sxy[i] - a * b);
            sum += ((2.0 * a * b + C1) * (2.0 * cov + C2)) / ((a * a + b * b + C1) * (va + vb + C2));
        }
        total += sum / mx.len() as f64;
    }
    Ok(total / channels as f64)
}

/// Error of one stage's tensor against the reference's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageError {
    /// Largest absolute element difference.
    pub max_abs: f64,
    /// `||candidate - reference||_2 / ||reference||_2` (0 when both are zero).
    pub rel_l2: f64,
}

impl StageError {
    /// Compares two tensors of equal length.
    pub fn of(candidate: &[f32], reference: &[f32]) -> Result<StageError> {
        same_len("stage error", candidate.len(), reference.len())?;
        let (mut max_abs, mut diff, mut norm) = (0f64, 0f64, 0f64);
        for (&a, &b) in candidate.iter().zip(reference) {
            let d = (a as f64 - b as f64).abs();
            max_abs = max_abs.max(d);
            diff += d * d;
            norm += (b as f64).powi(2);
        }
        let rel_l2 = if diff == 0.0 { 0.0 } else { (diff / norm).sqrt() };
        Ok(StageError { max_abs, rel_l2 })
    }

    /// The worse of two errors, field by field.
    pub fn worst(self, other: StageError) -> StageError {
        StageError { max_abs: self.max_abs.max(other.max_abs), rel_l2: self.rel_l2.max(other.rel_l2) }
    }
}

/// The per-frame stages compared, in pipeline order.
pub const STAGES: [&str; 3] = ["flame_vertices", "splat", "rgb"];

/// One frame's accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameEval {
    pub psnr: f64,
    pub ssim: f64,
    /// Errors of `STAGES`, in order.
    pub stages: [StageError; 3],
}

/// Accuracy over a sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalReport {
    pub frames: Vec<FrameEval>,
}

impl EvalReport {
    /// Smallest PSNR over the frames (infinite when every frame is identical or there are none).
    pub fn psnr_min(&self) -> f64 {
        self.frames.iter().map(|f| f.psnr).fold(f64::INFINITY, f64::min)
    }
    /// Median PSNR (infinite when there are no frames).
    pub fn psnr_median(&self) -> f64 {
        median(self.frames.iter().map(|f| f.psnr).collect())
    }
    pub fn ssim_min(&self) -> f64 {
        self.frames.iter().map(|f| f.ssim).fold(1.0, f64::min)
    }
    /// The worst error of each stage over the frames.
    pub fn stage_worst(&self) -> [StageError; 3] {
        let mut w = [StageError::default(); 3];
        for f in &self.frames {
            for (a, b) in w.iter_mut().zip(f.stages) {
                *a = a.worst(b);
            }
        }
        w
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::INFINITY,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Renders `frames` of `avatar` with `reference` and `candidate` (two models of the same configuration),
/// each from the avatar as its sessions prepare it (`FrameRenderer::prepare_avatar`), and compares them
/// frame by frame. `each` is told every finished frame (progress).
pub fn evaluate(
    reference: &dyn Weights,
    candidate: &dyn Weights,
    cfg: &ModelConfig,
    avatar: &Avatar,
    frames: &[DrivingFrame],
    options: RenderOptions,
    each: &mut dyn FnMut(usize, &FrameEval),
) -> Result<EvalReport> {
    let mut r = FrameRenderer::new(reference, cfg, options)?;
    let mut c = FrameRenderer::new(candidate, cfg, options)?;
    // Each model renders the avatar as its sessions store it (an int8 candidate: f16 colours), so the
    // report measures what a session of that model shows.
    let (r_avatar, c_avatar) = (r.prepare_avatar(avatar.clone()), c.prepare_avatar(avatar.clone()));
    let s = cfg.image_size;
    let (mut ri, mut ci) = (Image::new(s, s), Image::new(s, s));
    let mut report = EvalReport::default();
    for (i, frame) in frames.iter().enumerate() {
        let rt = r.render_traced(&r_avatar, frame, &mut ri)?;
        let ct = c.render_traced(&c_avatar, frame, &mut ci)?;
        let e = FrameEval {
            psnr: psnr(&ci.data, &ri.data)?,
            ssim: ssim(&ci.data, &ri.data, 3, s, s)?,
            stages: [
                StageError::of(&ct.flame_vertices, &rt.flame_vertices)?,
                StageError::of(&ct.splat, &rt.splat)?,
                StageError::of(&ct.rgb, &rt.rgb)?,
            ],
        };
        each(i, &e);
        report.frames.push(e);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic ramp-plus-texture image in [0, 1], built from exactly rounded f32 operations so a
    /// NumPy float32 copy of it is bit-identical.
    fn image(c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let k = ((x * 7 + y * 13 + ch * 5) % 17) as f32;
                    v.push((k + x as f32 * 0.25 + y as f32 * 0.125) / 27.0);
                }
            }
        }
        v
    }

    #[test]
    fn identical_images_give_infinite_psnr_and_ssim_one() {
        let a = image(3, 16, 20);
        assert_eq!(psnr(&a, &a).expect("psnr"), f64::INFINITY);
        // Every window term is exactly (2ab + C1)(2v + C2) / ((a^2 + b^2 + C1)(2v + C2)) = 1 up to rounding.
        assert!((ssim(&a, &a, 3, 16, 20).expect("ssim") - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_constant_offset_has_the_closed_form_psnr() {
        // MSE = d^2, so PSNR = -20 log10(d): d = 0.01 gives exactly 40 dB.
        let a = image(3, 12, 12).iter().map(|v| v * 0.9).collect::<Vec<_>>();
        let b: Vec<f32> = a.iter().map(|v| v + 0.01).collect();
        let p = psnr(&b, &a).expect("psnr");
        // f32 storage of a + 0.01 perturbs d by ~1e-8, which moves 40 dB by < 1e-4 dB.
        assert!((p - 40.0).abs() < 1e-3, "{p}");
    }

    #[test]
    fn a_constant_offset_lowers_ssim_only_through_the_luminance_term() {
        // With equal variances and covariance, SSIM per window = (2ab + C1) / (a^2 + b^2 + C1).
        let a = vec![0.25f32; 11 * 11];
        let b = vec![0.5f32; 11 * 11];
        let want = (2.0 * 0.25 * 0.5 + C1) / (0.25f64.powi(2) + 0.25 + C1);
        let got = ssim(&b, &a, 1, 11, 11).expect("ssim");
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn ssim_matches_a_value_computed_once_with_numpy() {
        // Recorded from an independent NumPy implementation (scipy-free: explicit 11x11 Gaussian, valid
        // positions, per-channel mean) on the same `image(3, 24, 24)` and its 0.8-scaled + 0.1 copy, see
        // docs/performance.md "Precision". 1e-9: both sides compute in f64 from the same f32 inputs.
        let a = image(3, 24, 24);
        let b: Vec<f32> = a.iter().map(|v| v * 0.8 + 0.1).collect();
        let got = ssim(&b, &a, 3, 24, 24).expect("ssim");
        assert!((got - NUMPY_SSIM).abs() < 1e-9, "{got:.12}");
    }
    const NUMPY_SSIM: f64 = 0.975595600795787;

    #[test]
    fn mismatched_inputs_are_errors_not_panics() {
        assert!(psnr(&[0.0; 3], &[0.0; 4]).is_err());
        assert!(ssim(&[0.0; 27], &[0.0; 27], 3, 3, 3).is_err());
        assert!(StageError::of(&[], &[]).is_err());
    }

    #[test]
    fn stage_error_is_the_max_and_the_relative_l2() {
        let e = StageError::of(&[1.0, 2.0, 3.0], &[1.0, 2.0, 1.0]).expect("equal lengths");
        assert_eq!(e.max_abs, 2.0);
        // ||(0, 0, 2)|| / ||(1, 2, 1)|| = 2 / sqrt(6).
        assert!((e.rel_l2 - 2.0 / 6f64.sqrt()).abs() < 1e-12);
    }
}
