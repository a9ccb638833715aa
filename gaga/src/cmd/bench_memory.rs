//! The memory part of `gaga bench`: resident memory (anonymous and file-backed, from /proc/self/status)
//! after load and after the timed frames, next to what the configuration plans: the refiner's activation
//! arena (`gaga_runtime::refiner::plan`; the CPU splat is written into its input region), the avatar and the
//! per-frame weights as stored.

use gaga_runtime::format::Stage;
use gaga_runtime::model::{Model, Resident};
use gaga_runtime::refiner::plan;
use gaga_runtime::{Avatar, ModelConfig};
use serde_json::{json, Value};

/// Sizes the session plans, in bytes (0 where the configuration is not a valid refiner).
pub struct Planned {
    pub refiner_arena: usize,
    pub refiner_arena_unshared: usize,
    pub avatar: usize,
    pub frame_weights_stored: u64,
    pub flame_stored: u64,
}

impl Planned {
    pub fn new(model: &Model, cfg: &ModelConfig, avatar: &Avatar) -> Planned {
        let arena = plan::report(&cfg.refiner).ok();
        let floats = [&avatar.positions, &avatar.colors, &avatar.opacities, &avatar.scales, &avatar.rotations, &avatar.shapecode];
        Planned {
            refiner_arena: arena.as_ref().map_or(0, |a| a.planned_bytes),
            refiner_arena_unshared: arena.as_ref().map_or(0, |a| a.unshared_bytes),
            avatar: 4 * floats.iter().map(|v| v.len()).sum::<usize>(),
            frame_weights_stored: model.stage_bytes(Stage::Frame),
            flame_stored: model.stage_bytes(Stage::Flame),
        }
    }
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
        "planned: refiner arena {:.1} MiB (unshared {:.1}, splat image inside), avatar {:.1}, weights stored {:.1} frame + {:.1} FLAME",
        mib(p.refiner_arena as u64),
        mib(p.refiner_arena_unshared as u64),
        mib(p.avatar as u64),
        mib(p.frame_weights_stored),
        mib(p.flame_stored)
    );
}
