//! Tests of `upsample_quant.rs` (bit-identity with the materialised path) and of `fconv.rs`'s in-place
//! 1x1 path, plus an ignored timing.

use super::{source_act_quant, Scaled, Source, Up};
use crate::fused::{bilinear_scaled, scale_channels};
use crate::qgemm::{act_quant_for, ActQuant, Kernel, PackedConv, QIsa};
use crate::scratch::Scratch;
use crate::testing::seeded;

/// (c_in, c_out, k, hl, wl): partial channel groups, 1x1 and 3x3, a 1-wide map (general taps),
/// odd sizes, several inner blocks (64 channels x 9 taps), and rows of more than one 16-pair block
/// (`sources.rs`; 17 = one block plus one pair, the last block moved back) with full and partial groups.
const SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (8, 16, 3, 5, 7),
    (6, 8, 1, 4, 4),
    (5, 9, 3, 1, 3),
    (3, 4, 3, 2, 1),
    (64, 16, 3, 8, 8),
    (4, 8, 3, 3, 140),
    (7, 8, 3, 3, 17),
    (6, 5, 1, 2, 35),
];

fn inputs(c: usize, hl: usize, wl: usize) -> (Vec<f32>, Vec<f32>) {
    let x: Vec<f32> = seeded(21, c * hl * wl).iter().map(|v| v * 2.5).collect();
    let s: Vec<f32> = seeded(22, c).iter().map(|v| 0.5 + v.abs()).collect();
    (x, s)
}

// The claim is bit-identity (same values, same quantisation, exact integer sums), so the tolerance is zero.
#[test]
fn quantising_the_upsampled_input_on_the_fly_gives_the_bits_of_the_materialised_map_on_every_kernel() {
    for &(c_in, c_out, k, hl, wl) in SHAPES {
        let (x, s) = inputs(c_in, hl, wl);
        let pc = PackedConv::from_f32_as_i8(&seeded(23, c_out * c_in * k * k), c_out, c_in, k).expect("pack");
        let bias = seeded(24, c_out);
        let (h, w) = (2 * hl, 2 * wl);
        let mut up = vec![0f32; c_in * h * w];
        bilinear_scaled(&x, c_in, hl, wl, h, w, &s, &mut up);
        for isa in QIsa::available() {
            for act in [None, Some(ActQuant::symmetric(0.02)), Some(ActQuant { scale: 0.02, zero: -90 })] {
                let (mut want, mut got) = (vec![f32::NAN; c_out * h * w], vec![0f32; c_out * h * w]);
                let kernel = Kernel::I8(isa);
                pc.run_on(kernel, &mut Scratch::new(), &up, h, w, act, Some(&bias), &mut want).expect("materialised");
                pc.run_upsampled_on(isa, &mut Scratch::new(), &x, hl, wl, &s, act, Some(&bias), &mut got).expect("fused");
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa:?} {act:?} shape {:?}: fused differs", (c_in, c_out, k, hl, wl));
            }
        }
    }
}

#[test]
fn the_dynamic_scale_of_the_upsampled_input_equals_the_materialised_maps_even_with_non_finite_values() {
    // Narrow rows (the scalar path) and wide ones (16-pair blocks), poison at a border column and inside.
    for (c, hl, wl, at) in [(5, 6, 9, 17), (3, 4, 37, 40), (3, 4, 37, 37 + 20)] {
        the_upsampled_scale_with_poison(c, hl, wl, at);
    }
}

fn the_upsampled_scale_with_poison(c: usize, hl: usize, wl: usize, at: usize) {
    let (mut x, s) = inputs(c, hl, wl);
    for poison in [None, Some(f32::NAN), Some(f32::INFINITY), Some(f32::MAX)] {
        if let Some(v) = poison {
            x[at] = v;
        }
        let mut up = vec![0f32; c * 4 * hl * wl];
        bilinear_scaled(&x, c, hl, wl, 2 * hl, 2 * wl, &s, &mut up);
        let got = source_act_quant(Up { x: &x, c, hl, wl, s: &s });
        assert_eq!(got, act_quant_for(&up), "{poison:?} at {at} of [{c}, {hl}, {wl}]");
    }
    let zeros = vec![0f32; c * hl * wl];
    assert_eq!(source_act_quant(Up { x: &zeros, c, hl, wl, s: &s }), ActQuant::symmetric(1.0), "all-zero input keeps scale 1");
}

// Bit-identity again: `x * s` quantised on the fly against `scale_channels` then the plain conv.
#[test]
fn quantising_the_scaled_input_on_the_fly_gives_the_bits_of_the_materialised_map_on_every_kernel() {
    for &(c_in, c_out, k, h, w) in SHAPES {
        let (x, s) = inputs(c_in, h, w);
        let pc = PackedConv::from_f32_as_i8(&seeded(23, c_out * c_in * k * k), c_out, c_in, k).expect("pack");
        let bias = seeded(24, c_out);
        let mut scaled = vec![0f32; c_in * h * w];
        scale_channels(&x, &s, h * w, &mut scaled);
        for isa in QIsa::available() {
            for act in [None, Some(ActQuant::symmetric(0.02)), Some(ActQuant { scale: 0.02, zero: -90 })] {
                let (mut want, mut got) = (vec![f32::NAN; c_out * h * w], vec![0f32; c_out * h * w]);
                pc.run_on(Kernel::I8(isa), &mut Scratch::new(), &scaled, h, w, act, Some(&bias), &mut want).expect("materialised");
                pc.run_scaled_on(isa, &mut Scratch::new(), &x, h, w, &s, act, Some(&bias), &mut got).expect("fused");
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa:?} {act:?} shape {:?}: scaled on the fly differs", (c_in, c_out, k, h, w));
            }
        }
    }
}

#[test]
fn the_dynamic_scale_of_the_scaled_input_equals_the_materialised_maps_even_with_non_finite_values() {
    let (c, h, w) = (5, 6, 300);
    let (mut x, s) = inputs(c, h, w);
    for poison in [None, Some(f32::NAN), Some(f32::NEG_INFINITY)] {
        if let Some(v) = poison {
            x[1234] = v;
        }
        let mut scaled = vec![0f32; c * h * w];
        scale_channels(&x, &s, h * w, &mut scaled);
        let got = source_act_quant(Scaled { x: &x, c, h, w, s: Some(&s) });
        assert_eq!(got, act_quant_for(&scaled), "{poison:?}");
    }
}

// The pruned visit of `source_act_quant` (channels in decreasing order of `Up::plane_bound`) against the
// materialised map's scale, bitwise: channels of very different sizes (so most are skipped), the largest
// channel poisoned, channels below the bound's floor, and factors 0, inf and NaN.
#[test]
fn the_upsampled_scale_skipping_channels_by_their_bounds_equals_the_materialised_maps() {
    let (c, hl, wl) = (9, 5, 21);
    let (x0, _) = inputs(c, hl, wl);
    let sizes = [1.0, 30.0, 0.5, 1e-25, 29.9, 2.0, 1e-3, 31.0, 0.0];
    let mut x: Vec<f32> = x0.iter().enumerate().map(|(i, v)| v * sizes[i / (hl * wl)]).collect();
    let s = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0];
    let check = |x: &[f32], s: &[f32], what: &str| {
        let mut up = vec![0f32; c * 4 * hl * wl];
        bilinear_scaled(x, c, hl, wl, 2 * hl, 2 * wl, s, &mut up);
        let got = source_act_quant(Up { x, c, hl, wl, s });
        assert_eq!(got, act_quant_for(&up), "{what}");
    };
    check(&x, &s, "plain");
    for (v, what) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (1e38, "huge")] {
        let mut y = x.clone();
        y[7 * hl * wl + 3] = v;
        check(&y, &s, what);
    }
    for f in [0.0, f32::INFINITY, f32::NAN, 1e30] {
        let mut t = s;
        t[7] = f;
        check(&x, &t, &format!("factor {f}"));
    }
    x.iter_mut().for_each(|v| *v *= 1e-30);
    check(&x, &s, "everything below the bound's floor");
}

// The bound itself: no finite value of `up2(x) * s` exceeds `Up::plane_bound`, for inputs where rounding
// pushes hardest (every input the same full-mantissa value, alternating signs, values near the top of
// the range).
#[test]
fn no_upsampled_value_exceeds_its_channels_plane_bound() {
    let (hl, wl) = (6, 19);
    let m = f32::from_bits(0x3fff_ffff); // 1.99999988: every mantissa bit set
    let maps: Vec<Vec<f32>> = vec![
        vec![m; hl * wl],
        (0..hl * wl).map(|i| if i % 2 == 0 { m } else { -m }).collect(),
        inputs(1, hl, wl).0,
        vec![f32::MAX / 2.0; hl * wl],
        (0..hl * wl).map(|i| m * (1.0 + (i % 7) as f32 * 1e-7)).collect(),
    ];
    for (i, x) in maps.iter().enumerate() {
        for f in [1.0, 0.7, -1.3, 1.0 / 3.0, 1.5] {
            let src = Up { x, c: 1, hl, wl, s: &[f] };
            let mut up = vec![0f32; 4 * hl * wl];
            bilinear_scaled(x, 1, hl, wl, 2 * hl, 2 * wl, &[f], &mut up);
            let top = up.iter().filter(|v| v.is_finite()).fold(0f32, |a, v| a.max(v.abs()));
            match src.plane_bound(0) {
                Some(b) => assert!(top <= b, "map {i}, factor {f}: value {top} above the bound {b}"),
                None => assert!(!(x[0] * f * 2.0).is_finite(), "map {i}, factor {f}: no bound for finite values"),
            }
        }
    }
}

// `Scaled` takes a channel's maximum as `fl(max|x| * |s|)` when that is finite (see `sources.rs`), else
// scans the products: bitwise the materialised map's scale for every kind of factor and value.
#[test]
fn the_scaled_inputs_maximum_shortcut_gives_the_materialised_maps_scale_for_any_factor() {
    let (c, h, w) = (4, 3, 50);
    let (x0, _) = inputs(c, h, w);
    let factors = [0.0, -0.0, -1.5, 3.0e-39, 1.0e30, f32::MAX, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    let values = [None, Some(f32::NAN), Some(f32::INFINITY), Some(-f32::MAX), Some(1.0e-40), Some(-0.0)];
    for &f in &factors {
        for &v in &values {
            let mut x = x0.clone();
            if let Some(v) = v {
                x[w + 7] = v;
            }
            // Channel 1 gets the factor under test; the others small ones (so channel 1 can be the maximum).
            let s = [1.0e-3, f, 2.0e-3, 1.0e-3];
            let mut scaled = vec![0f32; c * h * w];
            scale_channels(&x, &s, h * w, &mut scaled);
            let got = source_act_quant(Scaled { x: &x, c, h, w, s: Some(&s) });
            assert_eq!(got, act_quant_for(&scaled), "factor {f:e}, value {v:?}");
            assert_eq!(source_act_quant(Scaled { x: &x, c, h, w, s: None }), act_quant_for(&x), "{v:?}");
        }
    }
}

// Bitwise: `run_rows` bands (reading their halo rows from the map) against the whole map's rows, for the
// map itself and for the map times per-channel factors (whole: `run_scaled` with its dynamic scale).
#[test]
fn a_conv_run_in_row_bands_reading_its_halo_rows_gives_the_bits_of_the_whole_map() {
    for &(c_in, c_out, k, h, w) in SHAPES {
        let (x, f) = inputs(c_in, h, w);
        let pc = PackedConv::from_f32_as_i8(&seeded(23, c_out * c_in * k * k), c_out, c_in, k).expect("pack");
        let bias = seeded(24, c_out);
        for factors in [None, Some(&f[..])] {
            let mut whole = vec![0f32; c_out * h * w];
            let scale = match factors {
                None => {
                    pc.run(&mut Scratch::new(), &x, h, w, None, Some(&bias), &mut whole).expect("whole");
                    act_quant_for(&x)
                }
                Some(f) => {
                    pc.run_scaled(&mut Scratch::new(), &x, h, w, f, None, Some(&bias), &mut whole).expect("whole");
                    pc.scaled_act_quant(&x, h, w, f).expect("scale")
                }
            };
            for band in [1, 2, h] {
                let mut got = vec![f32::NAN; c_out * h * w];
                for y0 in (0..h).step_by(band) {
                    let rows = band.min(h - y0);
                    let mut part = vec![0f32; c_out * rows * w];
                    pc.run_rows(&mut Scratch::new(), &x, (h, w), factors, scale, (y0, rows), Some(&bias), &mut part).expect("band");
                    for o in 0..c_out {
                        got[(o * h + y0) * w..(o * h + y0 + rows) * w].copy_from_slice(&part[o * rows * w..(o + 1) * rows * w]);
                    }
                }
                let shape = (c_in, c_out, k, h, w);
                assert!(bits_eq(&whole, &got), "shape {shape:?}, factors {}, bands of {band}: rows differ", factors.is_some());
            }
        }
        let mut out = vec![0f32; c_out * 2 * w];
        let e = pc
            .run_rows(&mut Scratch::new(), &x, (h, w), None, ActQuant::symmetric(0.1), (h - 1, 2), None, &mut out)
            .expect_err("past the end");
        assert!(e.0.contains("band: rows"), "{e}");
        let e = pc
            .run_rows(&mut Scratch::new(), &x[1..], (h, w), None, ActQuant::symmetric(0.1), (0, 1), None, &mut out[..c_out * w])
            .expect_err("short");
        assert!(e.0.contains("band input"), "{e}");
        let e = pc
            .run_rows(&mut Scratch::new(), &x, (h, w), Some(&f[1..]), ActQuant::symmetric(0.1), (0, 1), None, &mut out[..c_out * w])
            .expect_err("factors");
        assert!(e.0.contains("channel factors"), "{e}");
    }
}

#[test]
fn mismatched_scaled_inputs_and_float_weights_are_errors_that_name_the_argument() {
    let pc = PackedConv::from_f32_as_i8(&seeded(1, 4 * 4 * 9), 4, 4, 3).expect("pack");
    let (x, s) = inputs(4, 3, 3);
    let mut out = vec![0f32; 4 * 9];
    let run = |pc: &PackedConv, x: &[f32], s: &[f32], out: &mut [f32]| {
        pc.run_scaled(&mut Scratch::new(), x, 3, 3, s, None, None, out).expect_err("bad call").0
    };
    assert!(run(&pc, &x[1..], &s, &mut out).contains("input: 35 values"));
    assert!(run(&pc, &x, &s[1..], &mut out).contains("channel factors: 3 values"));
    assert!(run(&pc, &x, &s, &mut out[1..]).contains("output"));
    let f = PackedConv::from_f32(&seeded(1, 4 * 4 * 9), 4, 4, 3).expect("pack");
    assert!(run(&f, &x, &s, &mut out).contains("not I8"));
}

// Bitwise: output rows of bands (with and without extra rows each side, dropped) against the whole
// map's rows.
#[test]
fn an_upsampling_conv_run_in_row_bands_gives_the_bits_of_the_whole_map() {
    for &(c_in, c_out, k, hl, wl) in SHAPES {
        let (x, s) = inputs(c_in, hl, wl);
        let pc = PackedConv::from_f32_as_i8(&seeded(23, c_out * c_in * k * k), c_out, c_in, k).expect("pack");
        let bias = seeded(24, c_out);
        let (h, w) = (2 * hl, 2 * wl);
        let mut whole = vec![0f32; c_out * h * w];
        let scale = pc.upsampled_act_quant(&x, hl, wl, &s).expect("scale");
        pc.run_upsampled(&mut Scratch::new(), &x, hl, wl, &s, None, Some(&bias), &mut whole).expect("whole");
        for (band, extra) in [(1, 0), (3, 0), (h, 0), (1, k / 2), (3, k / 2), (5, 1)] {
            let mut got = vec![f32::NAN; c_out * h * w];
            for y0 in (0..h).step_by(band) {
                let y1 = (y0 + band).min(h);
                let (a, b) = (y0.saturating_sub(extra), (y1 + extra).min(h));
                let mut part = vec![0f32; c_out * (b - a) * w];
                pc.run_upsampled_rows(&mut Scratch::new(), &x, hl, wl, &s, scale, (a, b - a), Some(&bias), &mut part).expect("band");
                for o in 0..c_out {
                    let src = &part[(o * (b - a) + y0 - a) * w..(o * (b - a) + y1 - a) * w];
                    got[(o * h + y0) * w..(o * h + y1) * w].copy_from_slice(src);
                }
            }
            let shape = (c_in, c_out, k, hl, wl);
            assert!(bits_eq(&whole, &got), "shape {shape:?}, bands of {band} (+{extra} rows): banded rows differ");
        }
        let mut out = vec![0f32; c_out * 2 * w];
        let e = pc.run_upsampled_rows(&mut Scratch::new(), &x, hl, wl, &s, scale, (h - 1, 2), None, &mut out).expect_err("past the end");
        assert!(e.0.contains("band"), "{e}");
    }
}

fn bits_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn mismatched_inputs_and_float_weights_are_errors_that_name_the_argument() {
    let pc = PackedConv::from_f32_as_i8(&seeded(1, 4 * 4 * 9), 4, 4, 3).expect("pack");
    let (x, s) = inputs(4, 3, 3);
    let mut out = vec![0f32; 4 * 36];
    let run = |pc: &PackedConv, x: &[f32], s: &[f32], out: &mut [f32]| {
        pc.run_upsampled(&mut Scratch::new(), x, 3, 3, s, None, None, out).expect_err("bad call").0
    };
    assert!(run(&pc, &x[1..], &s, &mut out).contains("input: 35 values"));
    assert!(run(&pc, &x, &s[1..], &mut out).contains("channel factors: 3 values"));
    assert!(run(&pc, &x, &s, &mut out[1..]).contains("output"));
    let f = PackedConv::from_f32(&seeded(1, 4 * 4 * 9), 4, 4, 3).expect("pack");
    assert!(run(&f, &x, &s, &mut out).contains("not I8"));
}

/// The in-place 1x1 float path of `fconv.rs` (the scratch-sizing change made with this file): a 1x1 conv
/// whose columns fill whole strips reads its input without the bordered copy. Per-pixel sums do not
/// depend on the column, so it must equal, bit for bit, the copying path on the same pixels of a map
/// whose width forces the copy (7 x 9: 63 columns, no whole strips for any kernel).
mod in_place_1x1 {
    use crate::qgemm::{Kernel, PackedConv};
    use crate::scratch::Scratch;
    use crate::sgemm::Isa;
    use crate::testing::seeded;

    #[test]
    fn a_1x1_float_conv_read_in_place_gives_the_bits_of_the_copying_path() {
        let (c_in, c_out) = (6, 5);
        let x = seeded(31, c_in * 8 * 8);
        // Rows 0..7 of x with a 9th column appended.
        let mut wide = vec![0.5f32; c_in * 7 * 9];
        for c in 0..c_in {
            for y in 0..7 {
                wide[(c * 7 + y) * 9..][..8].copy_from_slice(&x[(c * 8 + y) * 8..][..8]);
            }
        }
        let wt = seeded(32, c_out * c_in);
        let bias = seeded(33, c_out);
        let isas = Isa::available();
        let halves: Vec<half::f16> = wt.iter().map(|&v| half::f16::from_f32(v)).collect();
        for pc in [PackedConv::from_f32(&wt, c_out, c_in, 1).expect("f32"), PackedConv::from_f16(&halves, c_out, c_in, 1).expect("f16")] {
            for &isa in &isas {
                let (mut a, mut b) = (vec![f32::NAN; c_out * 64], vec![f32::NAN; c_out * 63]);
                pc.run_on(Kernel::Float(isa), &mut Scratch::new(), &x, 8, 8, None, Some(&bias), &mut a).expect("in place");
                pc.run_on(Kernel::Float(isa), &mut Scratch::new(), &wide, 7, 9, None, Some(&bias), &mut b).expect("copied");
                for o in 0..c_out {
                    for y in 0..7 {
                        for xx in 0..8 {
                            let (p, q) = (a[(o * 8 + y) * 8 + xx], b[(o * 7 + y) * 9 + xx]);
                            assert_eq!(p.to_bits(), q.to_bits(), "{isa:?} {:?} out {o} pixel ({y}, {xx})", pc.format());
                        }
                    }
                }
            }
        }
    }
}

/// Time of the last level's first StyleConv input path at official size (64 channels, 256 -> 512,
/// 3x3 to 32 channels), materialised (`bilinear_scaled` + `run`) against fused, alternating, 5 rounds:
/// `cargo test --release -p gaga-kernels upsample_quant::tests::timing -- --ignored --nocapture`
mod timing {
    use crate::fused::bilinear_scaled;
    use crate::qgemm::PackedConv;
    use crate::scratch::Scratch;
    use crate::testing::seeded;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn timing_official_last_level_first_styleconv() {
        let (c_in, c_out, hl) = (64, 32, 256);
        let h = 2 * hl;
        let x = seeded(1, c_in * hl * hl);
        let s: Vec<f32> = seeded(2, c_in).iter().map(|v| 0.5 + v.abs()).collect();
        let pc = PackedConv::from_f32_as_i8(&seeded(3, c_out * c_in * 9), c_out, c_in, 3).expect("pack");
        let (mut up, mut out) = (vec![0f32; c_in * h * h], vec![0f32; c_out * h * h]);
        let (mut sa, mut sb) = (Scratch::new(), Scratch::new());
        for act in [None, Some(crate::qgemm::ActQuant::symmetric(0.02))] {
            let (mut ta, mut tb) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                let t = Instant::now();
                bilinear_scaled(&x, c_in, hl, hl, h, h, &s, &mut up);
                pc.run(&mut sa, &up, h, h, act, None, &mut out).expect("run");
                ta.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                pc.run_upsampled(&mut sb, &x, hl, hl, &s, act, None, &mut out).expect("run");
                tb.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ta.sort_by(f64::total_cmp);
            tb.sort_by(f64::total_cmp);
            eprintln!("act {act:?}: materialised {:.1} ms, fused {:.1} ms (medians of 5: {ta:.1?} / {tb:.1?})", ta[2], tb[2]);
        }
    }
}
