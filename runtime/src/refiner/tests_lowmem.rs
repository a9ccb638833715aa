//! `lowmem.rs` against the plain layers it replaces, and the int8 refiner with every map computed on the
//! fly against the same refiner storing them. The claim is bit-identity (same values, same activation
//! scale, exact integer sums, same epilogue), so every comparison is exact: no tolerance.

use gaga_kernels::testing::seeded;
use gaga_kernels::winograd::Epilogue;

use super::layers::{Condition, ResBlock};
use super::plan::{OnTheFly, COND_BAND_ROWS};
use super::tests_quant::Quantised;
use super::*;
use crate::format::DType;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn an_int8_up_block_without_its_upsampled_temporary_gives_the_bits_of_the_plain_block() {
    let cfg = ModelConfig::small();
    let (u, levels) = (&cfg.refiner.unet_channels, cfg.refiner.levels());
    let mut q = Quantised::new(&cfg, DType::I8);
    // Level 2 with a calibrated scale on conv2 (the quantise pass alone), the skip dynamic.
    q.plain.insert("upsampler.conv_body_up.2.conv2.weight@act_scale".to_string(), vec![1], vec![0.05]);
    for k in [0, 2, levels - 1] {
        let b = ResBlock::load(&q, &format!("upsampler.conv_body_up.{k}"), u[k], u[k + 1], true).expect("loads");
        assert!(lowmem::up_block_fits(&b));
        let h = side(k);
        let (ci, co, h2) = (u[k], u[k + 1], 2 * h);
        let x = seeded(40 + k as u64, ci * h * h);
        let mut s = Scratch::new();
        let (mut t1, mut t2, mut want) = (vec![0f32; (ci * h * h).max(co * h2 * h2)], vec![0f32; ci * h2 * h2], vec![0f32; co * h2 * h2]);
        b.run(&mut s, &x, h, &mut t1, &mut t2, &mut want, &mut |_, _| {}, false).expect("plain");
        let (mut t1, mut got) = (vec![f32::NAN; t1.len()], vec![f32::NAN; co * h2 * h2]);
        lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, None, &mut got).expect("fused");
        assert!(bits(&want) == bits(&got), "level {k}: the fused up block changed a bit");
        // In row bands: t1 holds only conv1's output, one band of the output (1 to 4 bands here).
        let mut band = vec![f32::NAN; plan::block_band_len(&cfg.refiner, k)];
        let (mut t1, mut got) = (vec![f32::NAN; ci * h * h], vec![f32::NAN; co * h2 * h2]);
        lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, Some(&mut band), &mut got).expect("banded");
        assert!(bits(&want) == bits(&got), "level {k}: the banded up block changed a bit");
        let short = lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, Some(&mut band[1..]), &mut got);
        assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
    }
}

#[test]
fn an_int8_condition_run_in_row_bands_gives_the_bits_of_the_whole_map() {
    let cfg = ModelConfig::small();
    let (u, k) = (&cfg.refiner.unet_channels, 2);
    let mut q = Quantised::new(&cfg, DType::I8);
    q.plain.insert(format!("upsampler.condition_shift.{k}.2.weight@act_scale"), vec![1], vec![0.04]);
    let c = u[k + 1];
    // One band, a band plus a partial one, several bands with a partial last (the halo at each seam).
    for h in [5, COND_BAND_ROWS + 3, 3 * COND_BAND_ROWS + 7] {
        let f = seeded(60 + h as u64, c * h * h);
        let e0: Vec<f32> = seeded(61, 2 * c * h * h);
        for (branch, epi) in [("condition_scale", Epilogue::MulInto), ("condition_shift", Epilogue::AddInto)] {
            let cond = Condition::load(&q, &format!("upsampler.{branch}.{k}"), c).expect("loads");
            assert!(lowmem::cond_fits(&cond));
            let mut s = Scratch::new();
            let (mut tmp, mut cx, mut want) = (vec![0f32; c * h * h], vec![0f32; 2 * c * h * h], e0.clone());
            cond.apply(&mut s, &f, h, &mut tmp, &mut cx, &mut want, epi, &mut |_, _| {}).expect("whole map");
            // Exactly one output band (2c channels): the band needs no input copy and no halo rows.
            let rows = COND_BAND_ROWS.min(h);
            let (mut tmp, mut band, mut got) = (vec![f32::NAN; c * h * h], vec![f32::NAN; 2 * c * rows * h], e0.clone());
            lowmem::cond_banded(&cond, &mut s, &f, h, &mut tmp, &mut band, &mut got, epi).expect("banded");
            assert!(bits(&want) == bits(&got), "{branch} at {h}x{h}: banding changed a bit");
            let short = lowmem::cond_banded(&cond, &mut s, &f, h, &mut tmp, &mut band[1..], &mut got, epi);
            assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
        }
    }
}

#[test]
fn a_small_int8_refiner_computes_every_level_map_on_the_fly_and_fp32_none() {
    let cfg = ModelConfig::small();
    let levels = cfg.refiner.levels();
    let q = Quantised::new(&cfg, DType::I8);
    let r = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Lean).expect("loads");
    let want: Vec<OnTheFly> = (0..levels).map(|k| OnTheFly::int8(k, levels)).collect();
    assert_eq!(r.fly, want);
    let default = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::default()).expect("loads");
    assert_eq!(default.fly, want, "the default (session 6): every map that can be on the fly");
    let up = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Upsampled).expect("loads");
    assert!(up.fly.iter().all(|f| *f == OnTheFly { up_input: true, ..Default::default() }), "upsampled inputs only");
    let off = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Stored).expect("loads");
    assert!(off.fly.iter().all(|f| *f == OnTheFly::default()));
    let fp32 = Refiner::new(&q.plain, &cfg, NoiseMode::Stored).expect("loads");
    assert!(fp32.fly.iter().all(|f| *f == OnTheFly::default()), "fp32 plans every map");
    assert_eq!(fp32.arena_bytes(), plan::report(&cfg.refiner).expect("valid").planned_bytes);
}

#[test]
fn an_int8_refiner_observed_for_calibration_sees_every_conv_input_and_gives_the_same_frame() {
    let cfg = ModelConfig::small();
    let q = Quantised::new(&cfg, DType::I8);
    let s = cfg.refiner.size;
    let x = seeded(9, cfg.refiner.in_channels * s * s);
    let (mut on, mut off) = (
        Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Lean).expect("loads"),
        Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Stored).expect("loads"),
    );
    let observe = |r: &mut Refiner| {
        let mut seen: Vec<(String, Vec<u32>)> = Vec::new();
        let mut rgb = vec![0f32; 3 * s * s];
        r.run_observed(&x, &mut rgb, &mut |name, act| seen.push((name.to_string(), bits(act)))).expect("runs");
        (seen, bits(&rgb))
    };
    let ((seen_on, rgb_on), (seen_off, rgb_off)) = (observe(&mut on), observe(&mut off));
    assert!(rgb_on == rgb_off, "observing the on-the-fly plan changed the frame");
    assert_eq!(seen_on.len(), seen_off.len());
    assert!(seen_on == seen_off, "calibration saw different activations");
    let mut plain = vec![0f32; 3 * s * s];
    on.run(&x, &mut plain).expect("runs");
    assert!(bits(&plain) == rgb_on, "observing changed the frame");
}

#[test]
fn int8_style_convs_run_in_row_bands_give_the_bits_of_the_whole_map() {
    let cfg = ModelConfig::small();
    let (d, sd) = (&cfg.refiner.decoder_channels, cfg.refiner.style_dim);
    let mut q = Quantised::new(&cfg, DType::I8);
    q.plain.insert("upsampler.stylegan_decoder.style_convs.2.modulated_conv.weight@act_scale".to_string(), vec![1], vec![0.03]);
    q.plain.insert("upsampler.stylegan_decoder.style_convs.5.modulated_conv.weight@act_scale".to_string(), vec![1], vec![0.02]);
    let lat = seeded(70, sd);
    // A level's first (upsampling) conv and its second one; level 1 dynamic, level 2 calibrated; maps of
    // one band, a partial last band, several bands.
    for up in [true, false] {
        for (k, hl) in [(1, 5), (1, 19), (2, 27)] {
            let (i, ci) = if up { (2 * k, d[k]) } else { (2 * k + 1, d[k + 1]) };
            let sc = modconv::StyleConv::load(&q, &format!("upsampler.stylegan_decoder.style_convs.{i}"), ci, d[k + 1], sd).expect("loads");
            let h = 2 * hl;
            let hx = if up { hl } else { h };
            let x = seeded(71, ci * hx * hx);
            let noise = seeded(72, h * h);
            let mut m = ModBufs { s: vec![0.0; 64], f: vec![0.0; 64] };
            let mut s = Scratch::new();
            let mut want = vec![0f32; d[k + 1] * h * h];
            sc.run(&mut s, &lat, &x, h, up, &noise, None, &mut m, &mut [], &mut want, &mut |_, _| {}).expect("whole");
            let mut band = vec![f32::NAN; d[k + 1] * plan::UP_BAND_ROWS.min(h) * h];
            let mut got = vec![f32::NAN; want.len()];
            sc.run_banded(&mut s, &lat, &x, h, up, &noise, &mut m, &mut band, &mut got).expect("banded");
            assert!(bits(&want) == bits(&got), "conv {i} (up {up}) at {h}x{h}: banding changed a bit");
            let short = sc.run_banded(&mut s, &lat, &x, h, up, &noise, &mut m, &mut band[1..], &mut got);
            assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
        }
    }
}

#[test]
fn an_int8_to_rgb_run_in_row_bands_gives_the_bits_of_the_whole_map() {
    let cfg = ModelConfig::small();
    let (d, sd, oc) = (&cfg.refiner.decoder_channels, cfg.refiner.style_dim, cfg.refiner.out_channels);
    let mut q = Quantised::new(&cfg, DType::I8);
    q.plain.insert("upsampler.stylegan_decoder.to_rgbs.2.modulated_conv.weight@act_scale".to_string(), vec![1], vec![0.05]);
    let lat = seeded(80, sd);
    // Level 1 dynamic, level 2 calibrated; one band, a partial last band, several bands.
    for (k, h) in [(1, 9), (1, 37), (2, 54)] {
        let rgb = modconv::ToRgb::load(&q, &format!("upsampler.stylegan_decoder.to_rgbs.{k}"), d[k + 1], oc, sd).expect("loads");
        let x = seeded(81, d[k + 1] * h * h);
        let skip = seeded(82, oc * h * h);
        let mut m = ModBufs { s: vec![0.0; 64], f: vec![0.0; 64] };
        let mut s = Scratch::new();
        let (mut din, mut want) = (vec![0f32; x.len()], vec![0f32; oc * h * h]);
        rgb.run(&mut s, &lat, &x, h, Some(&skip), &mut m, &mut din, &mut want, &mut |_, _| {}).expect("whole");
        let mut band = vec![f32::NAN; oc * plan::UP_BAND_ROWS.min(h) * h];
        let mut got = vec![f32::NAN; want.len()];
        rgb.run_banded(&mut s, &lat, &x, h, Some(&skip), &mut m, &mut band, &mut got).expect("banded");
        assert!(bits(&want) == bits(&got), "ToRGB {k} at {h}x{h}: banding changed a bit");
        let short = rgb.run_banded(&mut s, &lat, &x, h, Some(&skip), &mut m, &mut band[1..], &mut got);
        assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
    }
}
