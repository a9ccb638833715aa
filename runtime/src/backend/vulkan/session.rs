//! The Vulkan session: every device allocation planned against the budget before the first one is
//! made, the whole frame (FLAME -> splat -> StyleUNet) recorded once and replayed, per-stage GPU
//! timestamps.
//!
//! Per frame the host writes only small things: FLAME's joint transforms and expression (`params`),
//! the camera, and, when the avatar changes (an xxh3 fingerprint of its Gaussians), the avatar. One
//! replay runs `flame` (rows `0..V` of the splat's positions), the five `splat.*` passes and the
//! refiner; then the splat's overflow flag is checked and the `[3, S, S]` RGB is read back.
//!
//! The lift runs on the GPU (`GpuLift`), built when `lift` is called and dropped after it, so its weights
//! and activations (large at official size) hold device memory only while it runs. The plan at load
//! counts the frame and the lift together, the session's peak, so neither can run out of memory later.
//!
//! The self-reference (a `Recorded` borrows the buffers and pipelines it replays) is held by
//! `self_cell`: `FrameCell` owns the stages and the recording that borrows them, drops the recording
//! first, and hands out the stages only by shared reference (per-frame values go in through
//! `Buffer::write(&self)`).

use std::time::Instant;

use gaga_kernels::splat::SplatCamera;

use super::command::Recorded;
use super::flame::{FlameHost, GpuFlame};
use super::lift::GpuLift;
use super::memory::{check_budget, Buffer, MemoryLocation, MemoryReport};
use super::refiner::GpuRefiner;
use super::splat::GpuSplat;
use super::weights::planned_bytes;
use super::{ContextOptions, Gpu};
use crate::backend::{Budget, Session, StageTimes};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::refiner::NoiseMode;
use crate::types::{Avatar, AvatarColors, DrivingFrame, Image, SourceParams};
use crate::weights::Weights;

/// What the recorded frame replays: the stages and the buffers between them.
pub struct Stages<'w> {
    flame: GpuFlame<'w>,
    splat: GpuSplat,
    refiner: GpuRefiner,
    /// `[C, S, S]` f32 feature image: splat output, refiner input.
    image: Buffer,
    /// `[3, S, S]` f32 RGB in [0, 1], read back after each replay.
    rgb: Buffer,
}

self_cell::self_cell!(
    /// The stages and the command buffer recorded over them, dropped in that order (recording first).
    struct FrameCell<'w> {
        owner: Stages<'w>,
        #[covariant]
        dependent: Recorded,
    }
);

/// Every allocation a session will make, by name, before any is made (sizes rounded up to 256 bytes,
/// the most any listed device aligns a storage buffer to).
pub fn plan(w: &dyn Weights, cfg: &ModelConfig, import_align: Option<u64>) -> Result<Vec<(String, u64)>> {
    let s = cfg.image_size as u64;
    let mut items = GpuFlame::plan(cfg, import_align);
    let shared = [
        ("splat image".to_string(), 4 * cfg.gaussian_channels as u64 * s * s),
        ("refiner RGB".to_string(), 4 * cfg.refiner.out_channels as u64 * s * s),
    ];
    for (name, bytes) in GpuSplat::plan(cfg).into_iter().chain(GpuRefiner::plan(w, cfg)?).chain(shared) {
        items.push((name, planned_bytes(bytes, None)));
    }
    Ok(items)
}

/// The lift's allocations, or an empty list when the weights hold no lift (a frame-only model in tests;
/// `lift` then fails naming the missing tensor).
pub fn plan_lift(w: &dyn Weights, cfg: &ModelConfig, import_align: Option<u64>) -> Result<Vec<(String, u64)>> {
    match GpuLift::plan(w, cfg, import_align) {
        Ok(items) => Ok(items.into_iter().map(|(n, b)| (n, planned_bytes(b, None))).collect()),
        Err(Error::MissingTensor { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `Err(OverBudget)` naming the plan's total, the budget and the three largest items when they do not fit.
pub fn check_plan(items: &[(String, u64)], budget: Budget) -> Result<()> {
    let total = items.iter().map(|i| i.1).fold(0u64, u64::saturating_add);
    check_budget("the Vulkan session's planned allocations", total, 0, budget, items)
}

/// Stage of a dispatch label: `flame`, `splat` (`splat.*`) or `refine` (the rest).
fn stage_of(label: &str) -> &'static str {
    if label == "flame" {
        "flame"
    } else if label.starts_with("splat") {
        "splat"
    } else {
        "refine"
    }
}

/// Bytes of one task of [`fingerprint`].
const PRINT_PIECE: usize = 1 << 20;

/// The avatar's fingerprint, so an avatar is uploaded only when it changes: every attribute's bytes (colours
/// as stored, f32 or f16, plus the kind) in 1 MiB pieces, each hashed (xxh3) with a seed naming its attribute
/// and place, hashed in parallel and summed. At official size the avatar is 31 MiB, several ms of one core
/// per frame when hashed serially. Allocates nothing.
fn fingerprint(a: &Avatar) -> u64 {
    use rayon::prelude::*;
    let colors: &[u8] = match &a.colors {
        AvatarColors::F32(v) => bytemuck::cast_slice(v),
        AvatarColors::F16(v) => bytemuck::cast_slice(v),
    };
    let kind = [u8::from(a.colors.is_f16())];
    let parts: [&[u8]; 6] = [
        &kind,
        colors,
        bytemuck::cast_slice(&a.positions),
        bytemuck::cast_slice(&a.opacities),
        bytemuck::cast_slice(&a.scales),
        bytemuck::cast_slice(&a.rotations),
    ];
    let mut print = 0u64;
    for (p, part) in parts.into_iter().enumerate() {
        // The length too, so bytes moved from one attribute to the next change the print.
        print = print.wrapping_add(xxhash_rust::xxh3::xxh3_64_with_seed(&(part.len() as u64).to_le_bytes(), p as u64));
        let seed = |i: usize| ((p as u64) << 40) ^ (i as u64 + 1);
        let pieces = part.par_chunks(PRINT_PIECE).enumerate().map(|(i, c)| xxhash_rust::xxh3::xxh3_64_with_seed(c, seed(i)));
        print = print.wrapping_add(pieces.reduce(|| 0, u64::wrapping_add));
    }
    print
}

/// A model on an open device, ready to render frames.
pub struct VulkanSession<'w> {
    // Field order is drop order: the frame (recording, then stages) before the device it lives on.
    frame: FrameCell<'w>,
    host: FlameHost<'w>,
    avatar: Option<u64>,
    weights: &'w dyn Weights,
    config: ModelConfig,
    last: StageTimes,
    last_gpu: Vec<(String, f64)>,
    planned: u64,
    gpu: Gpu,
}

fn avatar_error(field: &str, what: String) -> Error {
    Error::Input { source_name: "avatar".into(), frame: "-".into(), field: field.into(), what }
}

impl<'w> VulkanSession<'w> {
    /// Opens the device, plans every allocation against `budget` (failing before the first one when the
    /// model does not fit), uploads the weights (imported from the mapped file when `import` and the
    /// device allows) and records the frame.
    pub fn new(
        options: &ContextOptions,
        cache_dir: Option<&std::path::Path>,
        w: &'w dyn Weights,
        cfg: &ModelConfig,
        budget: Budget,
        import: bool,
    ) -> Result<Self> {
        let s = cfg.image_size;
        if cfg.refiner.size != s || cfg.refiner.in_channels != cfg.gaussian_channels {
            return Err(Error::Config(format!(
                "refiner takes [{}, {}, {}] but the splat is [{}, {s}, {s}]",
                cfg.refiner.in_channels, cfg.refiner.size, cfg.refiner.size, cfg.gaussian_channels
            )));
        }
        let gpu = Gpu::open(options, budget, cache_dir)?;
        let align = if import { gpu.ctx.probe().external_memory_host } else { None };
        let mut items = plan(w, cfg, align)?;
        items.extend(plan_lift(w, cfg, align)?);
        check_plan(&items, budget)?;
        let planned = items.iter().map(|i| i.1).sum();

        let host = FlameHost::new(w, cfg)?;
        let flame = GpuFlame::new(&gpu, w, cfg, import)?;
        let splat = GpuSplat::new(&gpu, cfg)?;
        let refiner = GpuRefiner::new(&gpu, w, cfg, NoiseMode::Stored)?;
        let image = gpu.memory.buffer("splat image", splat.output_bytes(), MemoryLocation::GpuOnly)?;
        let rgb = gpu.memory.buffer("refiner RGB", refiner.output_bytes(), MemoryLocation::GpuToCpu)?;
        refiner.check_buffers(&image, &rgb)?;
        let frame = FrameCell::try_new(Stages { flame, splat, refiner, image, rgb }, |st| {
            let mut dispatches = vec![st.flame.dispatch(st.splat.positions())?];
            dispatches.extend(st.splat.dispatches(&st.image));
            dispatches.extend(st.refiner.dispatches(&st.image, &st.rgb));
            Recorded::record(&gpu.ctx, &dispatches)
        })?;
        Ok(VulkanSession {
            frame,
            host,
            avatar: None,
            weights: w,
            config: cfg.clone(),
            last: Vec::new(),
            last_gpu: Vec::new(),
            planned,
            gpu,
        })
    }

    /// The device, its memory and validation counters.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// What the session holds on the device, by name.
    pub fn memory_report(&self) -> MemoryReport {
        self.gpu.memory.report()
    }

    /// Bytes the plan reserved against the budget at load.
    pub fn planned_bytes(&self) -> u64 {
        self.planned
    }

    /// Whether FLAME's weights were imported from host memory (no copy).
    pub fn weights_imported(&self) -> bool {
        self.frame.borrow_owner().flame.imported()
    }

    /// GPU milliseconds of each dispatch of the last frame, by label.
    pub fn gpu_timings(&self) -> &[(String, f64)] {
        &self.last_gpu
    }

    fn check_avatar(&self, avatar: &Avatar) -> Result<()> {
        let (n, c) = (self.config.gaussians(), self.config.gaussian_channels);
        if avatar.count != n {
            return Err(avatar_error("count", format!("the model renders {n} Gaussians, the avatar has {}", avatar.count)));
        }
        if avatar.channels != c {
            return Err(avatar_error("channels", format!("the model uses {c} feature channels, the avatar has {}", avatar.channels)));
        }
        if avatar.positions.len() != 3 * n {
            return Err(avatar_error("positions", format!("expected {} values, found {}", 3 * n, avatar.positions.len())));
        }
        Ok(())
    }
}

impl Session for VulkanSession<'_> {
    fn lift(&mut self, image: &Image, source: &SourceParams) -> Result<Avatar> {
        let (avatar, times) = GpuLift::new(&self.gpu, self.weights, &self.config)?.run(image, source)?;
        self.last = times;
        Ok(avatar)
    }

    fn render(&mut self, avatar: &Avatar, frame: &DrivingFrame, out: &mut Image) -> Result<()> {
        let s = self.config.image_size;
        crate::render::check_output(out, s)?;
        self.check_avatar(avatar)?;
        let t0 = Instant::now();
        let stages = self.frame.borrow_owner();
        stages.flame.set_identity(&mut self.host, &avatar.shapecode).map_err(|e| match e {
            Error::Input { what, .. } => avatar_error("shapecode", what),
            other => other,
        })?;
        let print = fingerprint(avatar);
        if self.avatar != Some(print) {
            self.avatar = None;
            stages.splat.upload_avatar(avatar)?;
            self.avatar = Some(print);
        }
        stages.flame.write_frame(&mut self.host, frame)?;
        stages.splat.set_camera(&SplatCamera::from_transform(&frame.transform, self.config.focal, s, s))?;
        stages.refiner.before_frame()?;
        let recorded = self.frame.borrow_dependent();
        recorded.run()?;
        stages.splat.check_overflow().map_err(|e| Error::Vulkan(format!("frame {}: {e}", frame.key)))?;
        stages.rgb.read(&mut out.data)?;
        let wall = t0.elapsed().as_secs_f64();
        self.last_gpu = recorded.timings()?;
        self.last = if self.last_gpu.is_empty() {
            vec![("frame (wall, no GPU timestamps)", wall)]
        } else {
            let sum = |stage: &str| self.last_gpu.iter().filter(|t| stage_of(&t.0) == stage).map(|t| t.1 / 1e3).sum::<f64>();
            vec![("flame", sum("flame")), ("splat", sum("splat")), ("refine", sum("refine")), ("frame (wall)", wall)]
        };
        Ok(())
    }

    fn stage_times(&self) -> StageTimes {
        self.last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_over_budget_names_the_total_the_budget_and_the_largest_items() {
        let cfg = ModelConfig::small();
        let w = crate::render::testing::seeded_frame_weights(&cfg, 1);
        let items = plan(&w, &cfg, None).expect("plan");
        for name in ["flame.shapedirs", "splat positions", "splat image", "refiner RGB"] {
            assert!(items.iter().any(|i| i.0 == name), "{name} planned");
        }
        let total: u64 = items.iter().map(|i| i.1).sum();
        let err = check_plan(&items, Budget { bytes: 1 << 10 }).expect_err("over").to_string();
        assert!(err.contains(&total.to_string()) && err.contains("1024-byte budget"), "{err}");
        assert!(err.contains("largest"), "{err}");
        assert!(check_plan(&items, Budget { bytes: total }).is_ok());
    }

    #[test]
    fn the_fingerprint_changes_with_any_byte_of_any_attribute_and_only_then() {
        // Two pieces of colours (f32 and f16), so a change in the second piece is seen too.
        let n = PRINT_PIECE / (32 * 4) + 7;
        let seeded = |seed: u64, len: usize| gaga_kernels::testing::seeded(seed, len);
        let avatar = Avatar {
            count: n,
            channels: 32,
            positions: seeded(1, 3 * n),
            colors: AvatarColors::F32(seeded(2, 32 * n)),
            opacities: seeded(3, n),
            scales: seeded(4, 3 * n),
            rotations: seeded(5, 4 * n),
            covariances: Vec::new(),
            shapecode: vec![0.0; 4],
        };
        let base = fingerprint(&avatar);
        assert_eq!(fingerprint(&avatar.clone()), base, "same avatar, same print");
        let nudge = |v: &mut Vec<f32>, i: usize| v[i] = f32::from_bits(v[i].to_bits() ^ 1);
        let mut changed = Vec::new();
        for field in 0..5 {
            for at in [0usize, 1, 2] {
                let mut a = avatar.clone();
                let v = match field {
                    0 => &mut a.positions,
                    1 => match &mut a.colors {
                        AvatarColors::F32(v) => v,
                        AvatarColors::F16(_) => unreachable!(),
                    },
                    2 => &mut a.opacities,
                    3 => &mut a.scales,
                    _ => &mut a.rotations,
                };
                let i = [0, v.len() / 2, v.len() - 1][at];
                nudge(v, i);
                changed.push((field, i, fingerprint(&a)));
            }
        }
        for (field, i, print) in &changed {
            assert_ne!(*print, base, "attribute {field}, value {i}: one bit changed, same print");
        }
        let mut half = avatar.clone();
        half.colors = half.colors.into_f16();
        assert!(half.colors.is_f16());
        assert_ne!(fingerprint(&half), base, "f16 colours are another avatar");
        // Moving a value from the end of one attribute to the start of the next changes the print.
        let mut moved = avatar.clone();
        let last = moved.opacities.pop().expect("value");
        moved.scales.insert(0, last);
        assert_ne!(fingerprint(&moved), base);
    }

    #[test]
    fn dispatch_labels_map_to_the_three_frame_stages() {
        assert_eq!(stage_of("flame"), "flame");
        assert_eq!(stage_of("splat.raster"), "splat");
        assert_eq!(stage_of("decoder.conv1"), "refine");
    }
}
