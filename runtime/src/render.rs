//! The per-frame path on the CPU (spec §1.2): FLAME moves the vertex Gaussians -> the driver's camera ->
//! the 32-channel splat -> the StyleUNet refiner -> RGB clamped to [0, 1].
//!
//! [`FrameRenderer`] owns every per-frame buffer, including the posed FLAME vertices (the avatar itself is
//! never mutated). Once warmed up, FLAME, the splat and the refiner's own code allocate
//! nothing per frame; the `gemm` crate under the convolutions still allocates packing buffers per call
//! (`tests/tests/no_alloc_frame.rs` checks the first part and holds the ignored whole-frame test).
//!
//! Static Gaussians: a prepared avatar (`prepare_avatar`) holds their 3D covariances, computed once;
//! otherwise the splat scratch caches them (keyed bitwise on each Gaussian's scale and rotation). Their
//! positions are read from the avatar, the FLAME ones from the posed vertices (`GaussianSet::moving`). The
//! splat is written straight into the refiner's planned input region (`Refiner::input_mut`), and the
//! refiner's RGB straight into the output image, so the frame holds no copy of either.

use std::time::Instant;

use gaga_kernels::splat::{splat, SplatCamera, SplatScratch};

use crate::backend::StageTimes;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::flame::Flame;
use crate::refiner::{NoiseMode, Refiner};
use crate::types::{Avatar, DrivingFrame, Image};
use crate::weights::Weights;

/// Choices that change a frame's pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Where the StyleGAN2 noise comes from (stored buffers by default, so frames are reproducible).
    pub noise: NoiseMode,
}

/// Wall time of each stage of the last frame, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameTimes {
    pub flame: f64,
    pub splat: f64,
    pub refine: f64,
}

impl FrameTimes {
    /// Stage names used by benches and the CLI summary.
    pub const STAGES: [&'static str; 3] = ["flame", "splat", "refine"];

    pub fn as_array(&self) -> [f64; 3] {
        [self.flame, self.splat, self.refine]
    }

    pub fn stage_times(&self) -> StageTimes {
        Self::STAGES.iter().copied().zip(self.as_array()).collect()
    }
}

/// A frame's intermediates, for the golden parity test (names as `frame.*` in the golden file).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameTrace {
    /// `[V, 3]` posed FLAME vertices, already multiplied by the FLAME scale.
    pub flame_vertices: Vec<f32>,
    /// `[C, S, S]` rasterised feature image.
    pub splat: Vec<f32>,
    /// `[3, S, S]` refiner output after its sigmoid, before the clamp.
    pub rgb: Vec<f32>,
}

/// Renders frames of any avatar lifted with the same model.
pub struct FrameRenderer<'w> {
    size: usize,
    focal: f32,
    gaussians: usize,
    channels: usize,
    vertices: usize,
    flame: Flame<'w>,
    refiner: Refiner<'w>,
    positions: Vec<f32>,
    background: Vec<f32>,
    splat_scratch: SplatScratch,
    times: FrameTimes,
}

/// Checks that `out` is an `s` x `s` RGB image (every backend's `render` output).
pub(crate) fn check_output(out: &Image, s: usize) -> Result<()> {
    if out.width != s || out.height != s || out.data.len() != 3 * s * s {
        return Err(Error::Other(format!(
            "output image: expected {s}x{s} RGB, found {}x{} with {} values",
            out.width,
            out.height,
            out.data.len()
        )));
    }
    Ok(())
}

fn avatar_error(field: &str, what: String) -> Error {
    Error::Input { source_name: "avatar".into(), frame: "-".into(), field: field.into(), what }
}

impl<'w> FrameRenderer<'w> {
    /// Loads FLAME and the refiner from `w` and allocates the frame buffers for `cfg`.
    pub fn new(w: &'w dyn Weights, cfg: &ModelConfig, options: RenderOptions) -> Result<Self> {
        let s = cfg.image_size;
        if cfg.refiner.size != s || cfg.refiner.in_channels != cfg.gaussian_channels {
            return Err(Error::Config(format!(
                "refiner takes [{}, {}, {}] but the splat is [{}, {s}, {s}]",
                cfg.refiner.in_channels, cfg.refiner.size, cfg.refiner.size, cfg.gaussian_channels
            )));
        }
        let n = cfg.gaussians();
        let mut r = FrameRenderer {
            size: s,
            focal: cfg.focal,
            gaussians: n,
            channels: cfg.gaussian_channels,
            vertices: cfg.flame.vertices,
            flame: Flame::new(w, cfg)?,
            refiner: Refiner::new(w, cfg, options.noise)?,
            positions: vec![0.0; cfg.flame.vertices * 3],
            background: vec![0.0; cfg.gaussian_channels],
            splat_scratch: SplatScratch::new(),
            times: FrameTimes::default(),
        };
        // An int8 session's frames tolerate f16 FLAME expression directions as they do f16 colours.
        if r.tolerates_f16_colors() {
            r.flame.narrow_expression_directions();
        }
        Ok(r)
    }

    /// Checks that `avatar` was lifted by a model of this configuration.
    pub fn check_avatar(&self, avatar: &Avatar) -> Result<()> {
        if avatar.count != self.gaussians {
            return Err(avatar_error("count", format!("the model renders {} Gaussians, the avatar has {}", self.gaussians, avatar.count)));
        }
        if avatar.channels != self.channels {
            return Err(avatar_error(
                "channels",
                format!("the model uses {} feature channels, the avatar has {}", self.channels, avatar.channels),
            ));
        }
        if avatar.positions.len() != 3 * avatar.count {
            return Err(avatar_error("positions", format!("expected {} values, found {}", 3 * avatar.count, avatar.positions.len())));
        }
        Ok(())
    }

    /// Whether this renderer's frames tolerate the avatar's colours in f16: true when the refiner has int8
    /// convolutions, whose activation quantisation already adds more noise than the rounding (measured:
    /// PSNR against fp32 35.05 dB min with f16 colours, 34.83 dB with f32 ones; docs/performance.md). The
    /// fp32 and fp16 refiners keep f32 colours, so their frames stay bitwise the PyTorch-checked path.
    pub fn tolerates_f16_colors(&self) -> bool {
        self.int8_convs() > 0
    }

    /// How many of the refiner's convolutions run on int8 weights and activations.
    pub fn int8_convs(&self) -> usize {
        self.refiner.conv_precisions().iter().filter(|(_, p)| *p == crate::refiner::packed::Precision::Int8).count()
    }

    /// `avatar` in the storage this renderer wants: its 3D covariances computed once in place of its
    /// scales and rotations (which only they come from; the same frames bit for bit, and no per-frame
    /// covariance cache: 9 MiB less at official size), and colours narrowed to f16 when
    /// [`FrameRenderer::tolerates_f16_colors`] (the f32 array is dropped). An avatar whose scale or
    /// rotation count is wrong is left as it is, so `render` names the field.
    pub fn prepare_avatar(&self, mut avatar: Avatar) -> Avatar {
        if self.tolerates_f16_colors() {
            avatar.colors = avatar.colors.into_f16();
        }
        let n = avatar.count;
        if avatar.covariances.is_empty() && avatar.scales.len() == 3 * n && avatar.rotations.len() == 4 * n {
            avatar.covariances = gaga_kernels::splat::covariances(&avatar.scales, &avatar.rotations);
            avatar.scales = Vec::new();
            avatar.rotations = Vec::new();
        }
        avatar
    }

    /// Renders `frame` of `avatar` into `out` (`size` x `size`, RGB in [0, 1]).
    pub fn render(&mut self, avatar: &Avatar, frame: &DrivingFrame, out: &mut Image) -> Result<()> {
        self.render_inner(avatar, frame, out, None)
    }

    /// `render`; with `splat_copy`, the splatted feature image is copied there before the refiner reuses
    /// its memory (the splat is written straight into the refiner's input region: no image of its own).
    fn render_inner(&mut self, avatar: &Avatar, frame: &DrivingFrame, out: &mut Image, splat_copy: Option<&mut Vec<f32>>) -> Result<()> {
        let s = self.size;
        check_output(out, s)?;
        self.check_avatar(avatar)?;

        let t0 = Instant::now();
        let nv = 3 * self.vertices;
        self.flame.set_identity(&avatar.shapecode).map_err(|e| match e {
            Error::Input { what, .. } => avatar_error("shapecode", what),
            other => other,
        })?;
        self.flame.pose(&frame.expcode, &frame.posecode, &frame.eyecode, &frame.key, &mut self.positions[..nv])?;

        let t1 = Instant::now();
        let set = avatar
            .gaussians(&self.positions[..nv])
            .map_err(|e| avatar_error(e.field, format!("expected {} values, found {}", e.expected, e.found)))?;
        let camera = SplatCamera::from_transform(&frame.transform, self.focal, s, s);
        splat(&set, &camera, &self.background, self.refiner.input_mut(), &mut self.splat_scratch);
        if let Some(copy) = splat_copy {
            copy.clear();
            copy.extend_from_slice(self.refiner.input_mut());
        }

        let t2 = Instant::now();
        self.refiner.run_input(&mut out.data)?;
        out.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        let t3 = Instant::now();
        self.times = FrameTimes { flame: (t1 - t0).as_secs_f64(), splat: (t2 - t1).as_secs_f64(), refine: (t3 - t2).as_secs_f64() };
        Ok(())
    }

    /// `render` that also returns the frame's intermediates (allocates copies of them).
    pub fn render_traced(&mut self, avatar: &Avatar, frame: &DrivingFrame, out: &mut Image) -> Result<FrameTrace> {
        let mut splat = Vec::new();
        self.render_inner(avatar, frame, out, Some(&mut splat))?;
        // The refiner's RGB is the clamped image's: a sigmoid's values are already in [0, 1].
        Ok(FrameTrace { flame_vertices: self.positions[..3 * self.vertices].to_vec(), splat, rgb: out.data.clone() })
    }

    /// Per-stage wall times of the last `render`.
    pub fn times(&self) -> FrameTimes {
        self.times
    }
}

pub mod testing;
#[cfg(test)]
mod tests;
