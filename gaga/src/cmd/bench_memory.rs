//! The memory part of `gaga bench`: resident memory (anonymous and file-backed, from /proc/self/status)
//! after load and after the timed frames, next to what the configuration plans: the refiner's activation
//! arena (`gaga_runtime::refiner::plan`; the CPU splat is written into its input region), the avatar and the
//! per-frame weights as stored. The arena is the one the session plans for this file: levels whose first
//! StyleConv is stored as int8 compute the maps `GAGA_INT8_MAPS` allows on the fly and need no f32 map
//! for them (`plan::report_int8`, `MapMemory`), as `Refiner::new` does.

use gaga_runtime::format::{DType, Stage};
use gaga_runtime::model::{Model, Resident};
use gaga_runtime::refiner::{fine_level, plan, MapMemory};
use gaga_runtime::{Avatar, ModelConfig};
use serde_json::{json, Value};

/// Sizes the session plans, in bytes (0 where the configuration is not a valid refiner).
pub struct Planned {
    /// Decoder levels whose upsampled input is quantised on the fly (no f32 map in the arena).
    pub fused_levels: usize,
    /// Which int8 maps are computed on the fly (`GAGA_INT8_MAPS`).
    pub int8_maps: MapMemory,
    pub refiner_arena: usize,
    pub refiner_arena_unshared: usize,
    pub avatar: usize,
    pub frame_weights_stored: u64,
    pub flame_stored: u64,
}

impl Planned {
    pub fn new(model: &Model, cfg: &ModelConfig, avatar: &Avatar) -> Planned {
        let int8_maps = MapMemory::from_env().unwrap_or_default();
        let int8 = int8_levels(model, cfg);
        let arena = plan::report_int8(&cfg.refiner, &int8, int8_maps).ok();
        let floats = [&avatar.positions, &avatar.opacities, &avatar.scales, &avatar.rotations, &avatar.shapecode];
        Planned {
            fused_levels: if int8_maps == MapMemory::Stored { 0 } else { int8.iter().filter(|&&f| f).count() },
            int8_maps,
            refiner_arena: arena.as_ref().map_or(0, |a| a.planned_bytes),
            refiner_arena_unshared: arena.as_ref().map_or(0, |a| a.unshared_bytes),
            // Colours as the session keeps them (f16 in an int8 CPU session, `Session::prepare_avatar`).
            avatar: 4 * floats.iter().map(|v| v.len()).sum::<usize>() + avatar.colors.bytes(),
            frame_weights_stored: model.stage_bytes(Stage::Frame),
            flame_stored: model.stage_bytes(Stage::Flame),
        }
    }
}

/// Per decoder level, whether the refiner loaded from `model` plans it as an int8 level: the level's first
/// StyleConv weight is stored as int8 (row-major or packed; the refiner's `ModConv::fuses_upsample`) and
/// it is not a fine-activation level (`refiner::fine_level`), which stores its maps.
pub fn int8_levels(model: &Model, cfg: &ModelConfig) -> Vec<bool> {
    (0..cfg.refiner.levels())
        .map(|k| {
            let name = format!("upsampler.stylegan_decoder.style_convs.{}.modulated_conv.weight", 2 * k);
            let int8 = model.header().entry(&name).is_some_and(|e| e.dtype == DType::I8);
            int8 && !fine_level(k)
        })
        .collect()
}

fn rss(r: Option<Resident>) -> Value {
    r.map_or(Value::Null, |r| json!({"resident_bytes": r.now, "anonymous_bytes": r.anonymous, "file_bytes": r.file}))
}

/// The `memory` object of `gaga bench --json`.
pub fn json(p: &Planned, after_load: Option<Resident>, after_frames: Option<Resident>) -> Value {
    json!({
        "after_load": rss(after_load),
        "after_frames": rss(after_frames),
        "peak_resident_bytes": after_frames.map(|r| r.peak),
        "refiner_arena_bytes": p.refiner_arena,
        "refiner_fused_levels": p.fused_levels,
        "int8_maps": p.int8_maps.name(),
        "refiner_arena_unshared_bytes": p.refiner_arena_unshared,
        "avatar_bytes": p.avatar,
        "frame_weights_stored_bytes": p.frame_weights_stored,
        "flame_stored_bytes": p.flame_stored,
    })
}

/// The table's memory lines.
pub fn print(p: &Planned, after_load: Option<Resident>, after_frames: Option<Resident>) {
    let mib = |b: u64| b as f64 / 1048576.0;
    for (when, r) in [("after load", after_load), ("after frames", after_frames)] {
        if let Some(r) = r {
            println!(
                "resident {when}: {:.1} MiB ({:.1} anonymous, {:.1} file-backed), peak {:.1} MiB (VmHWM)",
                mib(r.now),
                mib(r.anonymous),
                mib(r.file),
                mib(r.peak)
            );
        }
    }
    println!(
        "planned: refiner arena {:.1} MiB (unshared {:.1}, splat image inside, {} int8 levels compute {} maps on the fly), avatar {:.1}, weights stored {:.1} frame + {:.1} FLAME",
        mib(p.refiner_arena as u64),
        mib(p.refiner_arena_unshared as u64),
        p.fused_levels,
        p.int8_maps.name(),
        mib(p.avatar as u64),
        mib(p.frame_weights_stored),
        mib(p.flame_stored)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaga_converter::dev::convert_seeded_small;
    use gaga_converter::Precision;
    use gaga_runtime::refiner::Refiner;
    use gaga_runtime::render::testing::synthetic_avatar;

    /// Planned and loaded arena sizes of a converted seeded `small` model at `precision`.
    fn planned_and_loaded(tag: &str, precision: Precision) -> (Planned, usize) {
        let dir = tempfile::Builder::new().prefix(&format!("gaga-bench-memory-{tag}-")).tempdir().expect("temp dir");
        let output = convert_seeded_small(dir.path(), 9, precision, "bench_memory").expect("seeded small model converts");
        let m = Model::open(&output).expect("open");
        let cfg = m.config().clone();
        let planned = Planned::new(&m, &cfg, &synthetic_avatar(&cfg, 1));
        let loaded = Refiner::new(&m, &cfg, Default::default()).expect("refiner").arena_bytes();
        (planned, loaded)
    }

    #[test]
    fn the_reported_arena_is_the_one_an_int8_or_fp32_refiner_allocates() {
        let env_off = MapMemory::from_env().unwrap_or_default() == MapMemory::Stored;
        let levels = ModelConfig::small().refiner.levels();
        let (int8, loaded8) = planned_and_loaded("int8", Precision::Int8);
        assert_eq!(int8.refiner_arena, loaded8, "int8: reported vs allocated arena bytes");
        // Fine-activation levels store their maps.
        let coarse = (0..levels).filter(|&k| !fine_level(k)).count();
        assert!(coarse > 0 && coarse < levels, "the small model has both kinds of level");
        assert_eq!(int8.fused_levels, if env_off { 0 } else { coarse }, "int8: levels upsampled on the fly");
        let (fp32, loaded32) = planned_and_loaded("fp32", Precision::Fp32);
        assert_eq!(fp32.refiner_arena, loaded32, "fp32: reported vs allocated arena bytes");
        assert_eq!(fp32.fused_levels, 0, "fp32 levels keep their upsampled maps");
        // At this size the busiest step is the first conv either way (equal arenas); at the official
        // size fusing saves the 64 MiB map (tests/memory.rs checks the plans there).
        assert!(int8.refiner_arena <= fp32.refiner_arena, "int8 {} vs fp32 {} bytes", int8.refiner_arena, fp32.refiner_arena);
    }
}
