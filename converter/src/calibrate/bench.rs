//! The calibration frames, and the measurements calibration makes on them: the refiner of a candidate
//! int8 file scored against the fp32 frames, and each conv's activation range per held-out group.

use std::collections::{BTreeMap, HashMap};

use gaga_kernels::qgemm::{ActQuant, Range};
use gaga_runtime::eval::psnr;
use gaga_runtime::refiner::{NoiseMode, Refiner};
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{lift, Image, ModelConfig, Result, Weights};

use super::{Inputs, Simulated};
use crate::policy::Precision;

/// One calibration sample: a fp32 splat, the fp32 frame it became, and its held-out group.
pub(super) struct Sample {
    splat: Vec<f32>,
    rgb: Vec<f32>,
    group: usize,
}

/// A refiner measured on samples.
pub(super) struct Scored {
    /// Smallest PSNR against the fp32 frames.
    pub psnr: f64,
    /// Bytes of its activation arena and kernel scratch.
    pub working: u64,
}

/// Per refiner conv (by weight name), the robust range of its fp32 input in each group.
pub(super) type Ranges = BTreeMap<String, Vec<Range>>;

/// The calibration frames and what measures the refiner on them.
pub(super) struct Bench<'a> {
    pub fp32: &'a dyn Weights,
    cfg: ModelConfig,
    pub samples: Vec<Sample>,
    /// Held-out groups: the portraits when there are two or more, else the even and odd frames.
    pub groups: usize,
    /// Whether the groups are portraits (two or more).
    pub by_portrait: bool,
}

impl<'a> Bench<'a> {
    /// Lifts every portrait with `fp32` and renders `per_portrait` driving frames of each, evenly spaced
    /// and offset per portrait so that a held-out group differs from the others in person and expression.
    pub fn new(fp32: &'a dyn Weights, cfg: &ModelConfig, inputs: &Inputs, per_portrait: usize) -> Result<Self> {
        let n = inputs.frames.len();
        let (per, portraits) = (per_portrait.clamp(1, n), inputs.portraits.len());
        let by_portrait = portraits >= 2;
        let mut samples = Vec::new();
        let mut image = Image::new(cfg.image_size, cfg.image_size);
        for (pi, p) in inputs.portraits.iter().enumerate() {
            let avatar = lift::lift(fp32, cfg, &p.image, &p.params)?;
            let mut r = FrameRenderer::new(fp32, cfg, RenderOptions::default())?;
            for k in 0..per {
                let i = (k * portraits + pi) * n / (per * portraits) % n;
                let t = r.render_traced(&avatar, &inputs.frames[i], &mut image)?;
                samples.push(Sample { splat: t.splat, rgb: image.data.clone(), group: if by_portrait { pi } else { k % 2 } });
            }
        }
        let groups = if by_portrait { portraits } else { per.min(2) };
        Ok(Bench { fp32, cfg: cfg.clone(), samples, groups, by_portrait })
    }

    /// The refiner of the int8 file `precision` and `scales` describe, run on the samples of `group`
    /// (all for `None`).
    pub fn score(
        &self,
        precision: &HashMap<String, Precision>,
        scales: &BTreeMap<String, ActQuant>,
        group: Option<usize>,
    ) -> Result<Scored> {
        let w = Simulated { base: self.fp32, precision: precision.clone(), act_scales: scales };
        let mut r = Refiner::new(&w, &self.cfg, NoiseMode::Stored)?;
        let mut out = vec![0.0; self.cfg.refiner.out_channels * self.cfg.image_size * self.cfg.image_size];
        let mut worst = f64::INFINITY;
        for s in self.samples.iter().filter(|s| group.is_none_or(|g| s.group == g)) {
            r.run(&s.splat, &mut out)?;
            out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            worst = worst.min(psnr(&out, &s.rgb)?);
        }
        Ok(Scored { psnr: worst, working: (r.arena_bytes() + r.scratch_bytes()) as u64 })
    }

    /// Each conv's input range per group, from the fp32 refiner.
    pub fn ranges(&self) -> Result<Ranges> {
        let mut r = Refiner::new(self.fp32, &self.cfg, NoiseMode::Stored)?;
        let mut out = vec![0.0; self.cfg.refiner.out_channels * self.cfg.image_size * self.cfg.image_size];
        let mut ranges = Ranges::new();
        let mut buf: Vec<f32> = Vec::new();
        for s in &self.samples {
            r.run_observed(&s.splat, &mut out, &mut |name, x| {
                let r = robust_range(x, &mut buf);
                let e = ranges.entry(name.to_string()).or_insert_with(|| vec![Range::default(); self.groups]);
                e[s.group] = e[s.group].merge(r);
            })?;
        }
        Ok(ranges)
    }

    /// Static scales for `statics` checked two ways, the smaller PSNR counting: each group scored with
    /// scales fitted on the other groups (unseen inputs), and every sample with the scales the file
    /// would hold (fitted on all groups: a wider scale can lose more to resolution than the held-out
    /// one to clipping).
    pub fn static_psnr(&self, precision: &HashMap<String, Precision>, ranges: &Ranges, statics: &[&str]) -> Result<f64> {
        let mut worst = f64::INFINITY;
        for held_out in (0..self.groups).map(Some).chain([None]) {
            let scales = statics.iter().map(|&n| (n.to_string(), fitted_quant(&ranges[n], held_out))).collect();
            worst = worst.min(self.score(precision, &scales, held_out)?.psnr);
        }
        Ok(worst)
    }
}

/// The 0.01th and 99.99th percentiles of `x`'s finite values (taking in 0), the activation range an int8
/// quantiser must cover: the extremes are set by a handful of outliers (splat edges, a few hot channels),
/// and clipping those 0.01% at each end costs less than the resolution the full range would lose on
/// every other value.
pub fn robust_range(x: &[f32], buf: &mut Vec<f32>) -> Range {
    buf.clear();
    buf.extend(x.iter().copied().filter(|v| v.is_finite()));
    if buf.is_empty() {
        return Range::default();
    }
    let top = buf.len() - 1;
    let (lo, hi) = (((top as f64) * 0.0001).round() as usize, ((top as f64) * 0.9999).round() as usize);
    let lo = *buf.select_nth_unstable_by(lo, f32::total_cmp).1;
    let hi = *buf.select_nth_unstable_by(hi, f32::total_cmp).1;
    Range::default().with(lo).with(hi)
}

/// The range seen by every group but `held_out` (all groups for `None`).
fn fitted_range(range: &[Range], held_out: Option<usize>) -> Range {
    range.iter().enumerate().filter(|&(g, _)| Some(g) != held_out).fold(Range::default(), |r, (_, &m)| r.merge(m))
}

/// The static (affine) quantiser fitted on every group but `held_out` (all groups for `None`). No
/// headroom: on the seeded models a wider range's lost resolution cost more than clipping the rare
/// larger activation.
pub(super) fn fitted_quant(range: &[Range], held_out: Option<usize>) -> ActQuant {
    ActQuant::for_range(fitted_range(range, held_out))
}

/// How far a layer's range fitted on the other groups misses each group's own, at worst (as a log
/// ratio of the spans, which set the step: clipping and wasted resolution alike). `None` without two
/// groups or with an empty range.
pub(super) fn transfer_error(range: &[Range]) -> Option<f64> {
    let span = |r: Range| (r.hi - r.lo) as f64;
    if range.len() < 2 || range.iter().any(|&r| span(r) <= 0.0) {
        return None;
    }
    (0..range.len()).map(|g| (span(fitted_range(range, Some(g))) / span(range[g])).ln().abs()).reduce(f64::max)
}
