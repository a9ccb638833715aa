//! Tests of `plan.rs`: the schedule's buffers and steps, and the official plans' MiB per step in every
//! `MapMemory` mode.

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
        let (sched, _) = schedule(&cfg.refiner, Encoder::default(), &[]);
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
    let p = Plan::place(schedule(&r, Encoder::default(), fly).0, true);
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
    assert_eq!((live, arena), (vec![88.75, 128.75, 96.75, 96.75, 70.75], 128.75));
    assert_eq!(report(&r).expect("valid").planned_bytes, 128 << 20 | 3 << 18, "fp32 plan changed");
    assert_eq!(report_int8(&r, &[false; 8], MapMemory::Lean).expect("valid").planned_bytes, 128 << 20 | 3 << 18);
    let all = vec![true; levels];
    assert_eq!(report_int8(&r, &all, MapMemory::Stored).expect("valid").planned_bytes, 128 << 20 | 3 << 18);
    // `upsampled` (session 4's default): the upsampled StyleConv input on the fly; three steps tie at 96.75.
    let (live, arena) = with(&|f| f.up_input = true);
    assert_eq!((live, arena), (vec![88.75, 64.75, 96.75, 96.75, 70.75], 96.75));
    assert_eq!(report_int8(&r, &all, MapMemory::Upsampled).expect("valid").planned_bytes as f64, 96.75 * 1048576.0);
    // Each further map removes its 32 MiB (the SFT map leaves one 1 MiB output band) from its own step.
    let (live, _) = with(&|f| *f = OnTheFly { up_block: true, up_input: true, ..Default::default() });
    assert_eq!(live[0], 56.75);
    let (live, _) = with(&|f| *f = OnTheFly { cond_bands: true, up_input: true, ..Default::default() });
    assert_eq!(live[2], 64.75 + 1.0);
    let (live, _) = with(&|f| *f = OnTheFly { mod_input: true, up_input: true, ..Default::default() });
    assert_eq!(live[3], 64.75);
    // All of them: the SFT step (UNet feature 16, StyleConv output 32, hidden map 16, one 1 MiB band,
    // RGB 0.75) and both banded StyleConvs (64.75 + one 1 MiB output band) tie at the peak; the banded
    // up block needs 57.25 (its `t1` holds conv1's 8 MiB output only, plus a 0.5 MiB band), banded
    // ToRGB 38.75 + a 96 KiB band (was 70.75). (Session 5's bands with halo rows of their own: SFT 66.4375, first
    // StyleConv 65.875; unbanded up block and second StyleConv 64.75.)
    // Session 7: the banded up block holds two bands (conv2's and the skip's, summed before storing): +0.5;
    // ToRGB's band holds an input band too (for a float ToRGB): +1.
    let mode = |m: MapMemory| settle_half((0..levels).map(|k| m.restrict(OnTheFly::int8(k, levels), k, levels)).collect());
    let (live, arena) = last_level(&mode(MapMemory::Lean));
    assert_eq!((live, arena), (vec![49.75, 65.75, 65.75, 65.75, 39.84375], 65.75));
    let int8 = report_int8(&r, &all, MapMemory::Lean).expect("valid");
    assert_eq!(int8.planned_bytes, int8.peak_live_bytes, "the placement reaches the busiest step");
    assert_eq!(int8.planned_bytes as f64, 65.75 * 1048576.0);
    let (sched, ids) = schedule(&r, Encoder::default(), &mode(MapMemory::Lean));
    assert!(ids.levels.iter().all(|l| l.din_up.is_none()));
    Plan::place(sched, true).check().expect("no live buffers overlap");
    // `half`: the StyleConv outputs, SFT hidden map and (last level) UNet feature of the last two levels
    // in f16. Up block: skip 8 + previous feature 8 + conv1 output 8 + f16 feature 8 + two bands 1 + f16
    // decoder input 8 + RGB 0.75; StyleConv and SFT steps: halves of the f32 ones' 32/16 MiB maps (the
    // SFT's first conv runs its bands through the second's band buffer).
    let (live, _) = last_level(&mode(MapMemory::Half));
    assert_eq!(live, vec![33.75, 33.75, 33.75, 33.75, 23.84375]);
    // With the encoder as before, the busiest step would be its first conv (splat input 32 + output 16)
    // and then its first down block (16 + conv1's full-size output 16 + 4 + 8) ...
    let enc_live = |enc: Encoder| {
        let p = Plan::place(schedule(&r, enc, &mode(MapMemory::Half)).0, true);
        p.check().expect("no live buffers overlap");
        let live = p.live_per_step();
        (live[..2].iter().map(|&f| (4 * f) as f64 / 1048576.0).collect::<Vec<_>>(), (4 * p.len()) as f64 / 1048576.0)
    };
    assert_eq!(enc_live(Encoder::default()).0, vec![48.0, 44.0]);
    // ... so `half` runs the first conv in place over the input's first planes (32 + a 1.5 MiB band) and
    // the down block's conv1 and skip in bands (16 + 4 + 8 + the band). Every step then needs at most
    // 33.75 MiB (the last level's four), and the placement reaches that bound (from the largest-area-first
    // order; largest first, with its hill climb, left 36.19 MiB: the long-lived skips fragment the space).
    let (live, arena) = enc_live(Encoder::for_mode(MapMemory::Half));
    assert_eq!((live, arena), (vec![33.5, 29.5], 33.75));
    let half = report_int8(&r, &all, MapMemory::Half).expect("valid");
    assert_eq!((half.planned_bytes, half.peak_live_bytes), (135 << 18, 135 << 18), "33.75 / 33.75 MiB");
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
