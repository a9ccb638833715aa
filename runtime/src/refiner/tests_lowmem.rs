//! `lowmem.rs` against the plain layers it replaces, and the int8 refiner with every map computed on the
//! fly against the same refiner storing them. The claim is bit-identity (same values, same activation
//! scale, exact integer sums, same epilogue), so every comparison is exact: no tolerance.

use gaga_kernels::testing::seeded;
use gaga_kernels::winograd::Epilogue;

use half::f16;

use super::layers::{Condition, ResBlock};
use super::maps::{arena_len, MapMut, MapRef};
use super::plan::{OnTheFly, COND_BAND_ROWS};
use super::tests_quant::Quantised;
use super::*;
use crate::format::DType;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Each value rounded to the nearest half (what an f16 map stores).
fn halves(v: &[f32]) -> Vec<f16> {
    gaga_kernels::elem::narrow_all(v)
}

/// An arena buffer for an f16 map of `n` values, poisoned.
fn f16_buf(n: usize) -> Vec<f32> {
    vec![f32::NAN; arena_len(n, true)]
}

/// The first `n` halves of an f16 map's arena buffer.
fn stored_halves(buf: &[f32], n: usize) -> Vec<f16> {
    bytemuck::cast_slice::<f32, f16>(buf)[..n].to_vec()
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
        lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, None, MapMut::F32(&mut got)).expect("fused");
        assert!(bits(&want) == bits(&got), "level {k}: the fused up block changed a bit");
        // In row bands: t1 holds only conv1's output, one band of the output (1 to 4 bands here).
        let mut band = vec![f32::NAN; plan::block_band_len(&cfg.refiner, k)];
        let (mut t1, mut got) = (vec![f32::NAN; ci * h * h], vec![f32::NAN; co * h2 * h2]);
        lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, Some(&mut band), MapMut::F32(&mut got)).expect("banded");
        assert!(bits(&want) == bits(&got), "level {k}: the banded up block changed a bit");
        // An f16 output stores exactly the f32 values rounded once.
        let n = co * h2 * h2;
        let mut buf = f16_buf(n);
        let out = MapMut::of(&mut buf, n, true, "feature").expect("fits");
        lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, Some(&mut band), out).expect("banded f16");
        assert!(stored_halves(&buf, n) == halves(&want), "level {k}: the f16 up block is not the rounded f32 one");
        let short = lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, Some(&mut band[1..]), MapMut::F32(&mut got));
        assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
        let unbanded =
            lowmem::up_block(&b, &mut s, &x, h, &vec![1.0; ci], &mut t1, None, MapMut::of(&mut buf, n, true, "f").expect("fits"));
        assert!(unbanded.expect_err("f16 needs bands").to_string().contains("f16"));
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
            let (fm, t) = (MapRef::F32(&f), MapMut::F32(&mut tmp));
            lowmem::cond_banded(&cond, &mut s, fm, h, t, &mut band, MapMut::F32(&mut got), epi).expect("banded");
            assert!(bits(&want) == bits(&got), "{branch} at {h}x{h}: banding changed a bit");
            let short = lowmem::cond_banded(&cond, &mut s, fm, h, MapMut::F32(&mut tmp), &mut band[1..], MapMut::F32(&mut got), epi);
            assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
            f16_condition_matches_its_rounded_f32_steps(&cond, &f, &e0, h, epi, &format!("{branch} at {h}x{h}"));
        }
    }
}

#[test]
fn a_small_int8_refiner_computes_every_level_map_on_the_fly_and_fp32_none() {
    let cfg = ModelConfig::small();
    let levels = cfg.refiner.levels();
    let q = Quantised::new(&cfg, DType::I8);
    let r = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Lean).expect("loads");
    // Levels on maps of side FINE_MAX_SIDE and below run their int8 convs with fine activations, which
    // have no on-the-fly forms: those levels store every map.
    let fine = fine_level;
    assert!(fine(0) && !fine(levels - 1), "the small model has fine and on-the-fly levels");
    let all: Vec<OnTheFly> = (0..levels).map(|k| if fine(k) { OnTheFly::default() } else { OnTheFly::int8(k, levels) }).collect();
    let lean: Vec<OnTheFly> = all.iter().enumerate().map(|(k, &f)| MapMemory::Lean.restrict(f, k, levels)).collect();
    assert_eq!(r.fly, lean);
    assert!(lean.iter().all(|f| !f.half && !f.half_feat), "lean keeps f32 maps");
    assert!(!lean[levels - 2].mod_bands && lean[levels - 1].mod_bands, "lean bands the second StyleConv at the last level only");
    let default = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::default()).expect("loads");
    assert_eq!(default.fly, all, "the default (session 7): every map that can be on the fly, the last two levels' in f16");
    assert_eq!(all.iter().map(|f| (f.half, f.half_feat)).collect::<Vec<_>>()[levels - 3..], [(false, false), (true, false), (true, true)]);
    let up = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Upsampled).expect("loads");
    for (k, f) in up.fly.iter().enumerate() {
        assert_eq!(*f, OnTheFly { up_input: !fine(k), ..Default::default() }, "level {k}: upsampled inputs only");
    }
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
            sc.run_banded(&mut s, &lat, MapRef::F32(&x), h, up, &noise, &mut m, &mut band, MapMut::F32(&mut got)).expect("banded");
            assert!(bits(&want) == bits(&got), "conv {i} (up {up}) at {h}x{h}: banding changed a bit");
            // f16 in and out: reading the halves is reading them widened; storing rounds the f32 result once.
            let (xh, n) = (halves(&x), want.len());
            let mut whole = vec![0f32; n];
            let xw = gaga_kernels::elem::widen_all(&xh);
            sc.run(&mut s, &lat, &xw, h, up, &noise, None, &mut m, &mut [], &mut whole, &mut |_, _| {}).expect("whole, widened");
            let mut buf = f16_buf(n);
            let out = MapMut::of(&mut buf, n, true, "out").expect("fits");
            sc.run_banded(&mut s, &lat, MapRef::F16(&xh), h, up, &noise, &mut m, &mut band, out).expect("banded f16");
            assert!(stored_halves(&buf, n) == halves(&whole), "conv {i} (up {up}) at {h}x{h}: f16 maps are not the rounded f32 ones");
            let short = sc.run_banded(&mut s, &lat, MapRef::F32(&x), h, up, &noise, &mut m, &mut band[1..], MapMut::F32(&mut got));
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
    // The converter keeps ToRGB in fp16 (3 output rows): that form runs in bands too.
    let q16 = Quantised::new(&cfg, DType::F16);
    // Level 1 dynamic, level 2 calibrated; one band, a partial last band, several bands; int8 and fp16.
    for (k, h, w) in [(1, 9, &q), (1, 37, &q), (2, 54, &q), (1, 37, &q16), (2, 54, &q16)] {
        let rgb = modconv::ToRgb::load(w, &format!("upsampler.stylegan_decoder.to_rgbs.{k}"), d[k + 1], oc, sd).expect("loads");
        let x = seeded(81, d[k + 1] * h * h);
        let skip = seeded(82, oc * h * h);
        let mut m = ModBufs { s: vec![0.0; 64], f: vec![0.0; 64] };
        let mut s = Scratch::new();
        let (mut din, mut want) = (vec![0f32; x.len()], vec![0f32; oc * h * h]);
        rgb.run(&mut s, &lat, &x, h, Some(&skip), &mut m, &mut din, &mut want, &mut |_, _| {}).expect("whole");
        // `plan::rgb_band_len` at this size: an input band and an output band.
        let mut band = vec![f32::NAN; (d[k + 1] + oc) * plan::UP_BAND_ROWS.min(h) * h];
        let mut got = vec![f32::NAN; want.len()];
        rgb.run_banded(&mut s, &lat, MapRef::F32(&x), h, Some(&skip), &mut m, &mut band, &mut got).expect("banded");
        assert!(bits(&want) == bits(&got), "ToRGB {k} at {h}x{h} ({:?}): banding changed a bit", rgb.mc.fuses_upsample());
        // An f16 input gives the bits of its widened values.
        let xh = halves(&x);
        let wide = gaga_kernels::elem::widen_all(&xh);
        rgb.run(&mut s, &lat, &wide, h, Some(&skip), &mut m, &mut din, &mut want, &mut |_, _| {}).expect("whole, widened");
        rgb.run_banded(&mut s, &lat, MapRef::F16(&xh), h, Some(&skip), &mut m, &mut band, &mut got).expect("banded f16");
        assert!(bits(&want) == bits(&got), "ToRGB {k} at {h}x{h}: an f16 input differs from its widened values");
        // Short for either form (int8 needs one output band, float an input band as well).
        let short_len = oc * plan::UP_BAND_ROWS.min(h) * h - 1;
        let short = rgb.run_banded(&mut s, &lat, MapRef::F32(&x), h, Some(&skip), &mut m, &mut band[..short_len], &mut got);
        assert!(short.expect_err("short band").to_string().contains("band"), "the error names the buffer");
    }
}

/// The f16 SFT branch (`f`, hidden map and `e` in f16) against its steps done in f32 with the same
/// roundings: the hidden map is the f32 one rounded once (its LeakyReLU conv reads `f`'s halves widened),
/// the second conv reads those halves widened, and each `e` value is `f16(widened e (op) branch)`.
fn f16_condition_matches_its_rounded_f32_steps(cond: &Condition, f: &[f32], e0: &[f32], h: usize, epi: Epilogue, what: &str) {
    let [conv0, conv2] = cond.convs();
    let (c, co, hw) = (conv0.spec.c_in, conv2.spec.c_out, h * h);
    let (fh, eh) = (halves(f), halves(e0));
    let mut s = Scratch::new();
    let mut hidden = vec![0f32; c * hw];
    let fw = gaga_kernels::elem::widen_all(&fh);
    conv0.run_then(&mut s, &fw, h, h, &mut hidden, Epilogue::LeakyRelu(layers::SLOPE), &mut [], &mut |_, _| {}).expect("conv0");
    let hidden = gaga_kernels::elem::widen_all(&halves(&hidden));
    let mut branch = vec![0f32; co * hw];
    conv2.run(&mut s, &hidden, h, h, &mut branch, &mut |_, _| {}).expect("conv2");
    let want: Vec<f16> = eh
        .iter()
        .zip(&branch)
        .map(|(e, b)| f16::from_f32(if epi == Epilogue::MulInto { e.to_f32() * b } else { e.to_f32() + b }))
        .collect();
    let mut fbuf = f16_buf(c * hw);
    MapMut::of(&mut fbuf, c * hw, true, "f").expect("fits").put_rows((h, h), (0, h), &fw, Epilogue::Store);
    let mut tbuf = f16_buf(c * hw);
    let mut ebuf = f16_buf(co * hw);
    MapMut::of(&mut ebuf, co * hw, true, "e").expect("fits").put_rows((h, h), (0, h), &gaga_kernels::elem::widen_all(&eh), Epilogue::Store);
    let mut band = vec![f32::NAN; co * COND_BAND_ROWS.min(h) * h];
    let fm = MapRef::of(&fbuf, c * hw, true, "f").expect("fits");
    let (t, e) = (MapMut::of(&mut tbuf, c * hw, true, "t").expect("fits"), MapMut::of(&mut ebuf, co * hw, true, "e").expect("fits"));
    lowmem::cond_banded(cond, &mut s, fm, h, t, &mut band, e, epi).expect("f16 branch");
    assert!(stored_halves(&ebuf, co * hw) == want, "{what}: the f16 branch is not its rounded f32 steps");
}

/// The encoder's banded forms against the plain layers, bitwise, for each weight precision the first conv
/// and first down block can have (f32, fp16, int8; the banded down block needs an int8 conv1).
#[test]
fn the_encoders_in_place_first_conv_and_banded_down_block_give_the_bits_of_the_plain_layers() {
    let cfg = ModelConfig::small();
    let (u, levels, ci) = (&cfg.refiner.unet_channels, cfg.refiner.levels(), cfg.refiner.in_channels);
    let h = cfg.refiner.size;
    let q8 = Quantised::new(&cfg, DType::I8);
    let q16 = Quantised::new(&cfg, DType::F16);
    let splat = seeded(90, ci * h * h);
    for (what, w) in [("f32", &q8.plain as &dyn Weights), ("fp16", &q16), ("int8", &q8)] {
        let first = layers::Conv::load(w, "upsampler.conv_body_first", ci, u[levels], 1, true).expect("loads");
        let mut s = Scratch::new();
        let mut want = vec![0f32; u[levels] * h * h];
        first.run(&mut s, &splat, h, h, &mut want, &mut |_, _| {}).expect("plain");
        let mut band = vec![f32::NAN; plan::enc_band_len(&cfg.refiner)];
        // In place over the input, and from a separate splat into the input region.
        let mut input = splat.clone();
        lowmem::first_in_place(&first, &mut s, None, &mut input, h, &mut band).expect("in place");
        assert!(bits(&input[..want.len()]) == bits(&want), "{what}: the in-place first conv changed a bit");
        let mut region = vec![f32::NAN; ci * h * h];
        lowmem::first_in_place(&first, &mut s, Some(&splat), &mut region, h, &mut band).expect("from a splat");
        assert!(bits(&region[..want.len()]) == bits(&want), "{what}: the first conv from a splat changed a bit");
        let short = lowmem::first_in_place(&first, &mut s, None, &mut input, h, &mut band[1..]);
        assert!(short.expect_err("short band").to_string().contains("band"));

        let block = ResBlock::load(w, "upsampler.conv_body_down.0", u[levels], u[levels - 1], false).expect("loads");
        if !lowmem::down_fits(&block) {
            assert!(what != "int8", "an int8 down block fits");
            continue;
        }
        let (c, co, h2) = (u[levels], u[levels - 1], h / 2);
        let x = seeded(91, c * h * h);
        let (mut t1, mut t2, mut want) = (vec![0f32; c * h * h], vec![0f32; c * h2 * h2], vec![0f32; co * h2 * h2]);
        block.run(&mut s, &x, h, &mut t1, &mut t2, &mut want, &mut |_, _| {}, false).expect("plain");
        let (mut t2, mut got) = (vec![f32::NAN; c * h2 * h2], vec![f32::NAN; co * h2 * h2]);
        lowmem::down_block_banded(&block, &mut s, &x, h, &mut band, &mut t2, &mut got).expect("banded");
        assert!(bits(&got) == bits(&want), "{what}: the banded down block changed a bit");
    }
}

/// A whole refiner with the encoder's savings forced on (the small model's arena would not shrink, so
/// `place_best` leaves them off) gives the same frames bit for bit, from a splat and from its input.
#[test]
fn a_refiner_with_the_encoders_savings_gives_the_same_frames() {
    let cfg = ModelConfig::small();
    let q = Quantised::new(&cfg, DType::I8);
    let s = cfg.refiner.size;
    let mut plain = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Half).expect("loads");
    let mut forced = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Half).expect("loads");
    assert_eq!(plain.enc, plan::Encoder::default(), "the small model's encoder does not repay its bands");
    let enc = plan::Encoder::for_mode(MapMemory::Half);
    let (sched, ids) = plan::schedule(&cfg.refiner, enc, &forced.fly);
    forced.plan = arena::Plan::place(sched, true);
    forced.plan.check().expect("valid plan");
    (forced.ids, forced.enc, forced.arena) = (ids, enc, vec![f32::NAN; forced.plan.len()]);
    for seed in [92u64, 93] {
        let x = seeded(seed, cfg.refiner.in_channels * s * s);
        let (mut a, mut b, mut c) = (vec![0f32; 3 * s * s], vec![0f32; 3 * s * s], vec![0f32; 3 * s * s]);
        plain.run(&x, &mut a).expect("plain encoder");
        forced.run(&x, &mut b).expect("encoder savings");
        forced.input_mut().copy_from_slice(&x);
        forced.run_input(&mut c).expect("encoder savings, arena input");
        assert!(bits(&a) == bits(&b) && bits(&a) == bits(&c), "seed {seed}: the encoder's savings changed a bit");
    }
    let e = forced.run_observed(&seeded(92, cfg.refiner.in_channels * s * s), &mut vec![0f32; 3 * s * s], &mut |_, _| {});
    assert!(e.is_err(), "observing needs the plain encoder");
}
