//! The lift: one source photo -> the avatar's Gaussians (run once per person), on the CPU.
//!
//! preprocess (resize to the DINO input, ImageNet normalisation) -> `dino` (DINOv2 token maps and the global
//! feature) -> `dpt` (`f_feature0`) -> `generators` (vertex Gaussians from the global feature; two lifting
//! planes from `f_feature0`), with the plane geometry and direction code from `crate::camera`.
//! Order in the `Avatar`: vertex Gaussians (positions zero), plane 0, plane 1.

pub mod dino;
pub mod dpt;
pub mod generators;
pub mod testing;

use std::time::Instant;

use gaga_kernels::resize::bilinear_antialias;

use crate::backend::StageTimes;
use crate::camera::{harmonic_encoding, lifting_plane};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::types::{Avatar, AvatarColors, Image, SourceParams};
use crate::weights::Weights;

use generators::Gaussians;

/// ImageNet channel means used by the official `DINOBase` normalisation.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations, same source.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Wall time of each lift stage, in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiftTimes {
    pub preprocess: f64,
    pub dino: f64,
    pub dpt: f64,
    pub vertex_generator: f64,
    pub plane_generators: f64,
    pub total: f64,
}

impl LiftTimes {
    /// The same numbers in the backends' `StageTimes` form, for `gaga bench`.
    pub fn stage_times(&self) -> StageTimes {
        vec![
            ("lift.preprocess", self.preprocess),
            ("lift.dino", self.dino),
            ("lift.dpt", self.dpt),
            ("lift.vertex_generator", self.vertex_generator),
            ("lift.plane_generators", self.plane_generators),
            ("lift.total", self.total),
        ]
    }
}

/// Every intermediate the golden parity test compares (names as in the golden file, `lift.*`). Only
/// `lift_traced` fills `dino_input`, `dino_layers` and `feature_map`; the other entry points release them early.
#[derive(Clone, Debug, PartialEq)]
pub struct LiftTrace {
    /// `[3, Din, Din]`, resized and normalised.
    pub dino_input: Vec<f32>,
    /// One `[G*G, dim]` matrix per used block.
    pub dino_layers: Vec<Vec<f32>>,
    /// `[dim]`, the first patch token of the last used block.
    pub global_feature: Vec<f32>,
    /// `f_feature0`, `[feature_dim, P, P]`.
    pub feature_map: Vec<f32>,
    /// `[P*P, 3]`.
    pub plane_points: Vec<f32>,
    pub plane_dirs: [f32; 3],
    /// `[3 * (2 * freqs + 1)]`.
    pub direnc: Vec<f32>,
    pub times: LiftTimes,
}

/// The S x S source in [0, 1] -> `[3, Din, Din]`: torchvision's antialiased bilinear resize (plain
/// bilinear when upsampling), then ImageNet normalisation. The image must hold `3 * width * height` values
/// (`check_image` says so as an error).
pub fn preprocess(cfg: &ModelConfig, image: &Image) -> Vec<f32> {
    let d = cfg.dino.input_size;
    let mut out = vec![0.0; 3 * d * d];
    bilinear_antialias(&image.data, 3, image.height, image.width, d, d, &mut out);
    for (c, plane) in out.chunks_exact_mut(d * d).enumerate() {
        plane.iter_mut().for_each(|v| *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
    }
    out
}

/// Checks that a source image is `image_size` squared and holds as many values as it claims.
pub fn check_image(cfg: &ModelConfig, image: &Image) -> Result<()> {
    let s = cfg.image_size;
    let bad = |what: String| Error::Input { source_name: "source image".into(), frame: "-".into(), field: "image".into(), what };
    if image.width != s || image.height != s {
        return Err(bad(format!("expected {s}x{s} pixels, found {}x{}", image.width, image.height)));
    }
    if image.data.len() != 3 * s * s {
        return Err(bad(format!("expected {} values (3 x {s} x {s}), found {}", 3 * s * s, image.data.len())));
    }
    Ok(())
}

/// Checks that the source parameters hold the configuration's number of shape coefficients.
pub fn check_source(cfg: &ModelConfig, source: &SourceParams) -> Result<()> {
    if source.shapecode.len() != cfg.flame.shape_params {
        return Err(Error::Input {
            source_name: "source params".into(),
            frame: "-".into(),
            field: "shapecode".into(),
            what: format!("expected {} values, found {}", cfg.flame.shape_params, source.shapecode.len()),
        });
    }
    Ok(())
}

/// Checks the relations between configuration sizes the lift relies on.
pub fn check_config(cfg: &ModelConfig) -> Result<()> {
    let d = &cfg.dino;
    let fail = |what: String| Err(Error::Config(what));
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace supports 1.85
    if d.patch_size == 0 || d.input_size % d.patch_size != 0 {
        return fail(format!("dino.input_size {} is not a multiple of dino.patch_size {}", d.input_size, d.patch_size));
    }
    if d.out_layers.len() != 4 || d.out_layers.iter().any(|&l| l >= d.depth) {
        return fail(format!("dino.out_layers must name 4 of the {} blocks, found {:?}", d.depth, d.out_layers));
    }
    if 8 * d.grid() != cfg.plane_size {
        return fail(format!("plane_size {} must be 8 x the patch grid {}", cfg.plane_size, d.grid()));
    }
    if cfg.gaussian_channels < 3 {
        return fail(format!("gaussian_channels {} leaves no room for RGB", cfg.gaussian_channels));
    }
    Ok(())
}

/// Lifts a source photo into an avatar.
pub fn lift(w: &dyn Weights, cfg: &ModelConfig, image: &Image, source: &SourceParams) -> Result<Avatar> {
    run(w, cfg, image, source, false).map(|(avatar, _)| avatar)
}

/// `lift` plus its per-stage wall times (no extra memory).
pub fn lift_timed(w: &dyn Weights, cfg: &ModelConfig, image: &Image, source: &SourceParams) -> Result<(Avatar, LiftTimes)> {
    run(w, cfg, image, source, false).map(|(avatar, trace)| (avatar, trace.times))
}

/// `lift` that also returns every intermediate (costs one copy of `f_feature0` and of the token maps).
pub fn lift_traced(w: &dyn Weights, cfg: &ModelConfig, image: &Image, source: &SourceParams) -> Result<(Avatar, LiftTrace)> {
    run(w, cfg, image, source, true)
}

/// The lift; without `traced` the big intermediates (`dino_input`, `dino_layers`, `feature_map`) are
/// released as soon as they are used and come back empty.
fn run(w: &dyn Weights, cfg: &ModelConfig, image: &Image, source: &SourceParams, traced: bool) -> Result<(Avatar, LiftTrace)> {
    check_config(cfg)?;
    check_image(cfg, image)?;
    check_source(cfg, source)?;
    let start = Instant::now();
    let mut times = LiftTimes::default();
    let mut clock = Instant::now();
    let mut lap = |slot: &mut f64, stage: &str| {
        *slot = clock.elapsed().as_secs_f64();
        log::info!("lift: {stage} {:.1} ms", *slot * 1e3);
        clock = Instant::now();
    };

    let dino_input = preprocess(cfg, image);
    let (plane_points, plane_dirs) = lifting_plane(cfg, &source.transform);
    let direnc = harmonic_encoding(&plane_dirs, cfg.harmonic_frequencies);
    lap(&mut times.preprocess, "preprocess");

    let dino::DinoOutput { layers, global } = dino::run(w, cfg, &dino_input)?;
    lap(&mut times.dino, "dino");

    // f_feature0 is written into the first channels of the generators' shared input buffer.
    let pp = cfg.plane_size * cfg.plane_size;
    let mut gen_input = vec![0.0; (cfg.feature_dim + cfg.direnc_dim()) * pp];
    dpt::run(w, cfg, &dino_input, &layers, &mut gen_input[..cfg.feature_dim * pp])?;
    lap(&mut times.dpt, "dpt");
    // Shadowing alone would keep them alive to the end: drop them explicitly when not traced.
    let (dino_input, layers) = if traced {
        (dino_input, layers)
    } else {
        drop((dino_input, layers));
        (Vec::new(), Vec::new())
    };

    let vertex = generators::vertex_gaussians(w, cfg, &global, &direnc)?;
    lap(&mut times.vertex_generator, "vertex generator");

    generators::fill_direnc_channels(cfg, &mut gen_input, &direnc);
    let plane0 = generators::plane_gaussians(w, cfg, 0, &gen_input, &plane_points, &plane_dirs)?;
    let plane1 = generators::plane_gaussians(w, cfg, 1, &gen_input, &plane_points, &plane_dirs)?;
    let feature_map = if traced { gen_input[..cfg.feature_dim * pp].to_vec() } else { Vec::new() };
    drop(gen_input);
    lap(&mut times.plane_generators, "plane generators");

    let avatar = assemble(cfg, [vertex, plane0, plane1], &source.shapecode);
    times.total = start.elapsed().as_secs_f64();
    log::info!("lift: total {:.1} ms, {} Gaussians", times.total * 1e3, avatar.count);
    let trace = LiftTrace { dino_input, dino_layers: layers, global_feature: global, feature_map, plane_points, plane_dirs, direnc, times };
    Ok((avatar, trace))
}

/// Concatenates the vertex, plane 0 and plane 1 Gaussians in the official order (CPU and GPU lifts).
pub(crate) fn assemble(cfg: &ModelConfig, parts: impl IntoIterator<Item = Gaussians>, shapecode: &[f32]) -> Avatar {
    let parts: Vec<Gaussians> = parts.into_iter().collect();
    let count: usize = parts.iter().map(|g| g.count).sum();
    let mut colors = Vec::with_capacity(cfg.gaussian_channels * count);
    let mut a = Avatar {
        count,
        channels: cfg.gaussian_channels,
        positions: Vec::with_capacity(3 * count),
        colors: AvatarColors::F32(Vec::new()),
        opacities: Vec::with_capacity(count),
        scales: Vec::with_capacity(3 * count),
        rotations: Vec::with_capacity(4 * count),
        covariances: Vec::new(),
        shapecode: shapecode.to_vec(),
    };
    for g in parts {
        a.positions.extend_from_slice(&g.positions);
        colors.extend_from_slice(&g.colors);
        a.opacities.extend_from_slice(&g.opacities);
        a.scales.extend_from_slice(&g.scales);
        a.rotations.extend_from_slice(&g.rotations);
    }
    a.colors = AvatarColors::F32(colors);
    a
}

#[cfg(test)]
mod tests;
