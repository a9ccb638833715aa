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

/// One decoder level `k` (side(k) -> side(k + 1)), in run order.
pub struct LevelIds {
    /// Up block: temporaries and the UNet feature at side(k + 1).
    pub t1: BufId,
    pub t2: BufId,
    pub feat: BufId,
    /// First StyleConv: its modulated, upsampled input (None when an int8 conv quantises it straight
    /// from the previous level's map, see [`schedule`]) and its output (SFT applied later in place).
    pub din_up: Option<BufId>,
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

/// Records the run of a refiner with config `r` (checked by [`validate`]). `fused_up[k]` says that
/// level k's first StyleConv quantises its upsampled, modulated input on the fly (an int8 conv:
/// `PackedConv::run_upsampled`), so that map gets no buffer; missing entries are false. One schedule
/// serves every precision: only that buffer's existence differs.
pub fn schedule(r: &RefinerConfig, fused_up: &[bool]) -> (Schedule, Ids) {
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
        let t1 = s.buf((u[k] * area(k)).max(u[k + 1] * a2));
        let t2 = s.buf(u[k] * a2);
        let f = s.buf(u[k + 1] * a2);
        s.step();
        s.touch(dec);
        let din_up = (!fused_up.get(k).copied().unwrap_or(false)).then(|| s.buf(d[k] * a2));
        let e = s.buf(d[k + 1] * a2);
        s.step();
        s.touch(f);
        s.touch(e);
        let cond_t = s.buf(u[k + 1] * a2);
        let cond_x = s.buf(d[k + 1] * a2);
        s.step();
        s.touch(e);
        let din2 = s.buf(d[k + 1] * a2);
        let dk = s.buf(d[k + 1] * a2);
        s.step();
        s.touch(rgb);
        s.touch(dk);
        let rgb_up = s.buf(oc * a2);
        let din3 = s.buf(d[k + 1] * a2);
        let rk = s.buf(oc * a2);
        lv.push(LevelIds { t1, t2, feat: f, din_up, e, cond_t, cond_x, din2, dec: dk, rgb_up, din3, rgb: rk });
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
    report_fused(r, &[])
}

/// [`report`] for a refiner whose levels `k` with `fused_up[k]` quantise their first StyleConv's
/// upsampled input on the fly (every level of an all-int8 refiner: `vec![true; r.levels()]`).
pub fn report_fused(r: &RefinerConfig, fused_up: &[bool]) -> Result<ArenaReport> {
    validate(r)?;
    let planned = Plan::place(schedule(r, fused_up).0, true);
    let unshared = Plan::place(schedule(r, fused_up).0, false);
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

    #[test]
    fn int8_levels_without_the_upsampled_input_shrink_the_official_arena_and_fp32_keeps_its_plan() {
        let r = ModelConfig::official().refiner;
        let all = vec![true; r.levels()];
        let (sched, ids) = schedule(&r, &all);
        assert!(ids.levels.iter().all(|l| l.din_up.is_none()));
        let p = Plan::place(sched, true);
        p.check().expect("no live buffers overlap");
        let (int8, fp32) = (report_fused(&r, &all).expect("valid"), report(&r).expect("valid"));
        assert_eq!(fp32.planned_bytes, report_fused(&r, &[false; 8]).expect("valid").planned_bytes, "fp32 plan changed");
        assert!(int8.planned_bytes <= int8.peak_live_bytes + 64 * 64, "{} vs {}", int8.planned_bytes, int8.peak_live_bytes);
        // 128.75 -> 96.75 MiB. The busiest steps are now the last level's SFT condition (UNet feature
        // 16 MiB, StyleConv output 32, hidden map 16, scale / shift map 32, RGB 0.75) and its second
        // StyleConv (input 32, modulated input 32, output 32, RGB 0.75).
        assert_eq!(int8.peak_live_bytes, 96 << 20 | 3 << 18);
        assert_eq!(fp32.planned_bytes, 128 << 20 | 3 << 18);
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
