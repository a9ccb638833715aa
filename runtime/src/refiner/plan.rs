//! The refiner's schedule as buffers and steps, recorded in exactly the order `Refiner::run_inner` uses
//! them, and placed once in one arena (`arena.rs`). A step is one call that reads and writes several maps
//! at once (a ResBlock, a modulated conv); every buffer a step touches is alive for the whole step.

use super::arena::{BufId, Plan, Schedule};
use crate::config::RefinerConfig;
use crate::error::{Error, Result};

/// Side of level `k` (4, 8, ...).
pub fn side(k: usize) -> usize {
    4 << k
}

/// One down block's temporaries (its input is `first` or a skip, its output the next skip).
pub struct DownIds {
    pub t1: BufId,
    pub t2: BufId,
}

/// Rows per band of an SFT condition's second conv computed band by band ([`OnTheFly::cond_bands`]).
/// Each band is computed with a one-row halo on each side (dropped), so `(B + 2) / B` of the conv's work:
/// 16 rows cost 12.5 % more on those two convs for a band of 1.7 MiB at 512x512 instead of a 32 MiB map.
pub const COND_BAND_ROWS: usize = 16;

/// Output rows per band of a level's first StyleConv run band by band ([`OnTheFly::up_bands`]): one
/// band's output (plus a halo row each side) is 1.1 MiB at 512x512 and its int8 input map 0.6 MiB, instead
/// of the whole map's 16.1 MiB in the kernels' scratch.
pub const UP_BAND_ROWS: usize = 16;

/// Which of a decoder level's maps an int8 refiner never stores in f32 (each is computed while it is
/// quantised, or in place). Every path gives the same bits as storing the map; the default stores all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnTheFly {
    /// The up ResBlock's upsampled temporary `t2` (conv2's and the skip's inputs, quantised straight from
    /// the low-resolution maps with unit factors: `PackedConv::run_upsampled`).
    pub up_block: bool,
    /// The first StyleConv's upsampled, modulated input `din_up` (`PackedConv::run_upsampled`).
    pub up_input: bool,
    /// With `up_input`, that conv also runs in row bands of [`UP_BAND_ROWS`] (`PackedConv::
    /// run_upsampled_rows`), each band's output in the `up_band` buffer, so the kernels' scratch holds one
    /// band's quantised input instead of the whole map's.
    pub up_bands: bool,
    /// The SFT condition's output-size map `cond_x`: its second convs run in row bands of
    /// [`COND_BAND_ROWS`], so `cond_x` holds one band's input and output.
    pub cond_bands: bool,
    /// The second StyleConv's modulated input `din2` (`PackedConv::run_scaled`).
    pub mod_input: bool,
    /// ToRGB's modulated input `din3`: the level's decoder output is modulated in place (only when
    /// nothing reads it later, i.e. the last level).
    pub rgb_in_place: bool,
}

/// How many of an int8 refiner's maps are computed on the fly instead of stored as f32. Every choice
/// gives the same bits; they trade arena memory for time (official size, `docs/performance.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapMemory {
    /// Every map stored (the layout before on-the-fly quantisation; A/B and escape hatch).
    Stored,
    /// Only each level's upsampled, modulated StyleConv input (`up_input`): 32 MiB less arena at no
    /// measurable cost. The default.
    #[default]
    Upsampled,
    /// Every map that can be ([`OnTheFly`]): official arena 96.75 -> 66.44 MiB and kernel scratch
    /// 16.2 -> 8.3 MiB, for about 20 % more int8 refine time (inputs computed twice under dynamic
    /// scales, banded convs' halo rows). For boards whose memory budget needs it.
    Lean,
}

impl MapMemory {
    /// The environment's choice: `GAGA_INT8_MAPS=stored|upsampled|lean` (unset: [`MapMemory::Upsampled`]).
    pub fn from_env() -> Result<MapMemory> {
        match std::env::var("GAGA_INT8_MAPS") {
            Err(_) => Ok(MapMemory::default()),
            Ok(v) => [MapMemory::Stored, MapMemory::Upsampled, MapMemory::Lean]
                .into_iter()
                .find(|m| m.name() == v)
                .ok_or_else(|| Error::Other(format!("GAGA_INT8_MAPS={v}: expected stored, upsampled or lean"))),
        }
    }

    /// The mode's `GAGA_INT8_MAPS` value.
    pub fn name(self) -> &'static str {
        match self {
            MapMemory::Stored => "stored",
            MapMemory::Upsampled => "upsampled",
            MapMemory::Lean => "lean",
        }
    }

    /// `fly` (everything a level could compute on the fly) cut down to what this mode allows.
    pub fn restrict(self, fly: OnTheFly) -> OnTheFly {
        match self {
            MapMemory::Stored => OnTheFly::default(),
            MapMemory::Upsampled => OnTheFly { up_input: fly.up_input, ..OnTheFly::default() },
            MapMemory::Lean => fly,
        }
    }
}

impl OnTheFly {
    /// Every map of an all-int8 level computed on the fly; `last` = the last level (ToRGB in place).
    /// Banding the first StyleConv pays only where its quantised input is the largest scratch: the last level.
    pub fn int8(last: bool) -> OnTheFly {
        OnTheFly { up_block: true, up_input: true, up_bands: last, cond_bands: true, mod_input: true, rgb_in_place: last }
    }
}

/// Floats of [`LevelIds::cond_x`] for a banded level `k`: one band's input (`u[k + 1]` channels) and
/// output (`d[k + 1]`), with the halo rows.
pub fn cond_band_len(r: &RefinerConfig, k: usize) -> usize {
    let h = side(k + 1);
    (r.unet_channels[k + 1] + r.decoder_channels[k + 1]) * (COND_BAND_ROWS + 2).min(h) * h
}

/// Floats of [`LevelIds::up_band`] for a banded level `k`: one band of the first StyleConv's output
/// (`d[k + 1]` channels) with its halo rows.
pub fn up_band_len(r: &RefinerConfig, k: usize) -> usize {
    let h = side(k + 1);
    r.decoder_channels[k + 1] * (UP_BAND_ROWS + 2).min(h) * h
}

/// One decoder level `k` (side(k) -> side(k + 1)), in run order. A map the level computes on the fly
/// ([`OnTheFly`]) has an empty buffer.
pub struct LevelIds {
    /// Up block: temporaries and the UNet feature at side(k + 1).
    pub t1: BufId,
    pub t2: BufId,
    pub feat: BufId,
    /// First StyleConv: its modulated, upsampled input (None when an int8 conv quantises it straight
    /// from the previous level's map, see [`schedule`]) and its output (SFT applied later in place).
    pub din_up: Option<BufId>,
    /// One output band of that conv when it runs in bands (else empty).
    pub up_band: BufId,
    pub e: BufId,
    /// SFT condition: the hidden map and the scale, then the shift, map.
    pub cond_t: BufId,
    pub cond_x: BufId,
    /// Second StyleConv: modulated input and the level's decoder output.
    pub din2: BufId,
    pub dec: BufId,
    /// ToRGB: the upsampled previous RGB, the modulated input, the level's RGB.
    pub rgb_up: BufId,
    pub din3: BufId,
    pub rgb: BufId,
}

/// Every buffer of a run.
pub struct Ids {
    /// The splat `[in_channels, size, size]` for `Refiner::run_input` (dead after the first conv).
    pub input: BufId,
    pub first: BufId,
    pub down: Vec<DownIds>,
    /// `skips[k]` at side(k): the down blocks' outputs, read again by up level k.
    pub skips: Vec<BufId>,
    /// `final_conv` output at 4x4 (also the UNet feature entering level 0).
    pub head: BufId,
    pub din0: BufId,
    pub dec0: BufId,
    pub din_rgb0: BufId,
    pub rgb0: BufId,
    pub levels: Vec<LevelIds>,
}

/// Checks what the schedule and the layers rely on: levels 4x4 .. size, one UNet and one decoder width
/// per level, and decoder width = 2 x UNet width from level 1 on (the SFT maps).
pub fn validate(r: &RefinerConfig) -> Result<()> {
    // Not `r.levels()`: that underflows on an empty list.
    let (u, d) = (&r.unet_channels, &r.decoder_channels);
    let levels = u.len().saturating_sub(1);
    if levels == 0 || d.len() != levels + 1 || u.len() != levels + 1 || side(levels) != r.size {
        return Err(Error::Config(format!(
            "refiner: size {} needs {} UNet and decoder channel entries (4x4 .. size), found {} and {}",
            r.size,
            (r.size.max(4) / 4).trailing_zeros() + 1,
            u.len(),
            d.len()
        )));
    }
    if let Some(k) = (1..=levels).find(|&k| d[k] != 2 * u[k]) {
        return Err(Error::Config(format!(
            "refiner level {k}: SFT needs decoder channels = 2 x UNet channels, found {} and {}",
            d[k], u[k]
        )));
    }
    Ok(())
}

/// Records the run of a refiner with config `r` (checked by [`validate`]). `fly[k]` says which of level
/// k's maps are computed on the fly (missing entries: none), and those buffers are empty. One schedule
/// serves every precision: only those buffers' sizes differ.
pub fn schedule(r: &RefinerConfig, fly: &[OnTheFly]) -> (Schedule, Ids) {
    let (u, d, oc, levels) = (&r.unet_channels, &r.decoder_channels, r.out_channels, r.levels());
    let area = |k: usize| side(k) * side(k);
    let mut s = Schedule::default();
    let input = s.buf(r.in_channels * area(levels));
    let first = s.buf(u[levels] * area(levels));
    let mut skips = vec![0; levels];
    let mut down = Vec::with_capacity(levels);
    for i in 0..levels {
        let lo = levels - 1 - i;
        let (ci, co) = (u[lo + 1], u[lo]);
        s.step();
        s.touch(if i == 0 { first } else { skips[lo + 1] });
        let t1 = s.buf((ci * area(lo + 1)).max(co * area(lo)));
        let t2 = s.buf(ci * area(lo));
        skips[lo] = s.buf(co * area(lo));
        down.push(DownIds { t1, t2 });
    }
    s.step();
    s.touch(skips[0]);
    let head = s.buf(u[0] * 16);
    s.step();
    let (din0, dec0) = (s.buf(d[0] * 16), s.buf(d[0] * 16));
    s.step();
    s.touch(dec0);
    let (din_rgb0, rgb0) = (s.buf(d[0] * 16), s.buf(oc * 16));
    let (mut feat, mut dec, mut rgb) = (head, dec0, rgb0);
    let mut lv = Vec::with_capacity(levels);
    for k in 0..levels {
        let a2 = area(k + 1);
        s.step();
        s.touch(feat);
        s.touch(skips[k]);
        let fk = fly.get(k).copied().unwrap_or_default();
        let unless = |on: bool, len: usize| if on { 0 } else { len };
        let t1 = s.buf((u[k] * area(k)).max(u[k + 1] * a2));
        let t2 = s.buf(unless(fk.up_block, u[k] * a2));
        let f = s.buf(u[k + 1] * a2);
        s.step();
        s.touch(dec);
        let din_up = (!fk.up_input).then(|| s.buf(d[k] * a2));
        let up_band = s.buf(if fk.up_input && fk.up_bands { up_band_len(r, k) } else { 0 });
        let e = s.buf(d[k + 1] * a2);
        s.step();
        s.touch(f);
        s.touch(e);
        let cond_t = s.buf(u[k + 1] * a2);
        let cond_x = s.buf(if fk.cond_bands { cond_band_len(r, k) } else { d[k + 1] * a2 });
        s.step();
        s.touch(e);
        let din2 = s.buf(unless(fk.mod_input, d[k + 1] * a2));
        let dk = s.buf(d[k + 1] * a2);
        s.step();
        s.touch(rgb);
        s.touch(dk);
        let rgb_up = s.buf(oc * a2);
        let din3 = s.buf(unless(fk.rgb_in_place, d[k + 1] * a2));
        let rk = s.buf(oc * a2);
        lv.push(LevelIds { t1, t2, feat: f, din_up, up_band, e, cond_t, cond_x, din2, dec: dk, rgb_up, din3, rgb: rk });
        (feat, dec, rgb) = (f, dk, rk);
    }
    s.step();
    s.touch(rgb);
    (s, Ids { input, first, down, skips, head, din0, dec0, din_rgb0, rgb0, levels: lv })
}

/// The planned arena of a refiner with config `r`, and the same buffers without sharing.
pub struct ArenaReport {
    /// Bytes of the planned arena.
    pub planned_bytes: usize,
    /// Bytes alive together at the busiest step (a lower bound for any placement).
    pub peak_live_bytes: usize,
    /// Bytes with one region per buffer (no reuse at all).
    pub unshared_bytes: usize,
}

/// Plans the arena for `r` with every map in f32 (fp32 and fp16 layers), without loading weights (for
/// `gaga bench` and memory budgets).
pub fn report(r: &RefinerConfig) -> Result<ArenaReport> {
    report_levels(r, &[])
}

/// [`report`] for a refiner whose levels `k` with `int8[k]` are all-int8 and compute on the fly what
/// `mode` allows of [`OnTheFly::int8`] (an all-int8 refiner: `vec![true; r.levels()]`), as `Refiner::new`
/// plans them.
pub fn report_int8(r: &RefinerConfig, int8: &[bool], mode: MapMemory) -> Result<ArenaReport> {
    let levels = r.unet_channels.len().saturating_sub(1);
    let fly: Vec<OnTheFly> = int8
        .iter()
        .enumerate()
        .map(|(k, &on)| if on { mode.restrict(OnTheFly::int8(k + 1 == levels)) } else { OnTheFly::default() })
        .collect();
    report_levels(r, &fly)
}

/// [`report`] with level k's maps computed on the fly as `fly[k]` says.
pub fn report_levels(r: &RefinerConfig, fly: &[OnTheFly]) -> Result<ArenaReport> {
    validate(r)?;
    let planned = Plan::place(schedule(r, fly).0, true);
    let unshared = Plan::place(schedule(r, fly).0, false);
    Ok(ArenaReport { planned_bytes: 4 * planned.len(), peak_live_bytes: 4 * planned.peak_live(), unshared_bytes: 4 * unshared.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::refiner::testing::insert_seeded_refiner;
    use crate::refiner::{NoiseMode, Refiner};
    use crate::weights::WeightMap;
    use gaga_kernels::testing::seeded;

    fn frames(w: &WeightMap, cfg: &ModelConfig, shared: bool, noise: NoiseMode) -> Vec<u32> {
        let s = cfg.refiner.size;
        let mut r = Refiner::with_arena(w, cfg, noise, shared).expect("loads");
        let mut bits = Vec::new();
        for seed in [7u64, 8] {
            let x = seeded(seed, cfg.refiner.in_channels * s * s);
            let mut out = vec![0f32; cfg.refiner.out_channels * s * s];
            r.run(&x, &mut out).expect("runs");
            bits.extend(out.iter().map(|v| v.to_bits()));
        }
        bits
    }

    #[test]
    fn the_planned_arena_gives_bit_identical_frames_to_one_buffer_per_map() {
        // Sharing space changes only where maps live: any live map overwritten by another would change bits.
        let cfg = ModelConfig::small();
        let mut w = WeightMap::default();
        insert_seeded_refiner(&mut w, &cfg, 5);
        for noise in [NoiseMode::Stored, NoiseMode::Random { seed: 3 }] {
            assert!(frames(&w, &cfg, true, noise) == frames(&w, &cfg, false, noise), "{noise:?}: planned arena changed a bit");
        }
    }

    #[test]
    fn splatting_into_the_arena_input_gives_the_same_frame_as_a_separate_splat_image() {
        let cfg = ModelConfig::small();
        let mut w = WeightMap::default();
        insert_seeded_refiner(&mut w, &cfg, 5);
        let s = cfg.refiner.size;
        let mut r = Refiner::new(&w, &cfg, NoiseMode::Stored).expect("loads");
        let (mut a, mut b) = (vec![0f32; 3 * s * s], vec![0f32; 3 * s * s]);
        for seed in [7u64, 8] {
            let x = seeded(seed, cfg.refiner.in_channels * s * s);
            r.run(&x, &mut a).expect("runs");
            r.input_mut().copy_from_slice(&x);
            r.run_input(&mut b).expect("runs on the arena input");
            assert!(a == b, "seed {seed}: the arena input changed a bit");
        }
        assert_eq!(r.input_mut().len(), x_len(&cfg));
    }

    fn x_len(cfg: &ModelConfig) -> usize {
        cfg.refiner.in_channels * cfg.refiner.size * cfg.refiner.size
    }

    #[test]
    fn the_official_plan_is_valid_and_needs_no_more_than_the_busiest_step() {
        for cfg in [ModelConfig::official(), ModelConfig::small()] {
            let (sched, _) = schedule(&cfg.refiner, &[]);
            let p = Plan::place(sched, true);
            p.check().expect("no live buffers overlap");
            let r = report(&cfg.refiner).expect("valid config");
            // Greedy placement is not optimal in general; on this schedule it reaches the lower bound
            // up to alignment (16 floats per buffer).
            assert!(r.planned_bytes <= r.peak_live_bytes + 64 * 64, "{} vs {}", r.planned_bytes, r.peak_live_bytes);
            assert!(r.planned_bytes * 4 < r.unshared_bytes, "{} vs unshared {}", r.planned_bytes, r.unshared_bytes);
        }
        // Official: the busiest step is the last level's first StyleConv (decoder input 16 MiB, its
        // 64-channel upsampled modulated input 64 MiB, output 32 MiB, UNet feature 16 MiB, RGB 0.75 MiB).
        let official = report(&ModelConfig::official().refiner).expect("valid");
        assert_eq!(official.peak_live_bytes, (16 + 64 + 32 + 16) << 20 | 3 << 18);
    }

    /// MiB alive at each of the last level's steps (up block, first StyleConv, SFT, second StyleConv,
    /// ToRGB) with level maps computed on the fly as `fly` says, and the planned arena in MiB.
    fn last_level(fly: &[OnTheFly]) -> (Vec<f64>, f64) {
        let r = ModelConfig::official().refiner;
        let p = Plan::place(schedule(&r, fly).0, true);
        p.check().expect("no live buffers overlap");
        let live = p.live_per_step();
        let mib = |f: usize| (4 * f) as f64 / 1048576.0;
        (live[live.len() - 6..live.len() - 1].iter().map(|&f| mib(f)).collect(), mib(p.len()))
    }

    #[test]
    fn each_int8_map_computed_on_the_fly_shrinks_its_step_of_the_official_plan_and_fp32_keeps_its_plan() {
        let r = ModelConfig::official().refiner;
        let levels = r.levels();
        let with = |f: &dyn Fn(&mut OnTheFly)| {
            let mut v = vec![OnTheFly::default(); levels];
            v.iter_mut().for_each(f);
            last_level(&v)
        };
        // fp32 / fp16: the busiest step is the first StyleConv (128.75 MiB), unchanged.
        let (live, arena) = with(&|_| {});
        assert_eq!((live, arena), (vec![96.75, 128.75, 96.75, 96.75, 70.75], 128.75));
        assert_eq!(report(&r).expect("valid").planned_bytes, 128 << 20 | 3 << 18, "fp32 plan changed");
        assert_eq!(report_int8(&r, &[false; 8], MapMemory::Lean).expect("valid").planned_bytes, 128 << 20 | 3 << 18);
        let all = vec![true; levels];
        assert_eq!(report_int8(&r, &all, MapMemory::Stored).expect("valid").planned_bytes, 128 << 20 | 3 << 18);
        // Session 4 and the default mode: the upsampled StyleConv input on the fly; three steps tie at 96.75.
        let (live, arena) = with(&|f| f.up_input = true);
        assert_eq!((live, arena), (vec![96.75, 64.75, 96.75, 96.75, 70.75], 96.75));
        assert_eq!(report_int8(&r, &all, MapMemory::Upsampled).expect("valid").planned_bytes as f64, 96.75 * 1048576.0);
        // Each further map removes its 32 MiB (the SFT map leaves one 1.69 MiB band) from its own step.
        let (live, _) = with(&|f| *f = OnTheFly { up_block: true, up_input: true, ..Default::default() });
        assert_eq!(live[0], 64.75);
        let (live, _) = with(&|f| *f = OnTheFly { cond_bands: true, up_input: true, ..Default::default() });
        assert_eq!(live[2], 64.75 + 1.6875);
        let (live, _) = with(&|f| *f = OnTheFly { mod_input: true, up_input: true, ..Default::default() });
        assert_eq!(live[3], 64.75);
        // All of them: the SFT step (UNet feature 16, StyleConv output 32, hidden map 16, one band 1.69,
        // RGB 0.75) is the peak; the up block and the second StyleConv need 64.75, the banded first
        // StyleConv 64.75 + one 1.125 MiB output band, ToRGB in place 38.75 (was 70.75).
        let (live, arena) = last_level(&(0..levels).map(|k| OnTheFly::int8(k + 1 == levels)).collect::<Vec<_>>());
        assert_eq!((live, arena), (vec![64.75, 65.875, 66.4375, 64.75, 38.75], 66.4375));
        let int8 = report_int8(&r, &all, MapMemory::Lean).expect("valid");
        assert_eq!(int8.planned_bytes, int8.peak_live_bytes, "the placement reaches the busiest step");
        assert_eq!(int8.planned_bytes as f64, 66.4375 * 1048576.0);
        let (sched, ids) = schedule(&r, &(0..levels).map(|k| OnTheFly::int8(k + 1 == levels)).collect::<Vec<_>>());
        assert!(ids.levels.iter().all(|l| l.din_up.is_none()));
        Plan::place(sched, true).check().expect("no live buffers overlap");
    }

    #[test]
    fn an_invalid_refiner_config_is_an_error_not_a_panic() {
        let mut r = ModelConfig::small().refiner;
        r.unet_channels.clear();
        assert!(report(&r).is_err());
        let mut r = ModelConfig::small().refiner;
        r.decoder_channels[2] += 1;
        assert!(report(&r).err().expect("SFT widths").to_string().contains("level 2"));
    }
}
