//! Tests of `upsample_quant.rs` (bit-identity with the materialised path) and of `fconv.rs`'s in-place
//! 1x1 path, plus an ignored timing.

use super::{source_act_scale, Scaled, Up};
use crate::fused::{bilinear_scaled, scale_channels};
use crate::qgemm::{act_scale_for, Kernel, PackedConv, QIsa};
use crate::scratch::Scratch;
use crate::testing::seeded;

/// (c_in, c_out, k, hl, wl): partial channel groups, 1x1 and 3x3, a 1-wide map (general taps),
/// odd sizes, rows wider than one 256-column chunk, several inner blocks (64 channels x 9 taps).
const SHAPES: &[(usize, usize, usize, usize, usize)] =
    &[(8, 16, 3, 5, 7), (6, 8, 1, 4, 4), (5, 9, 3, 1, 3), (3, 4, 3, 2, 1), (64, 16, 3, 8, 8), (4, 8, 3, 3, 140)];

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
            for act in [None, Some(0.02)] {
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
    let (c, hl, wl) = (5, 6, 9);
    let (mut x, s) = inputs(c, hl, wl);
    for poison in [None, Some(f32::NAN), Some(f32::INFINITY)] {
        if let Some(v) = poison {
            x[17] = v;
        }
        let mut up = vec![0f32; c * 4 * hl * wl];
        bilinear_scaled(&x, c, hl, wl, 2 * hl, 2 * wl, &s, &mut up);
        let got = source_act_scale(Up { x: &x, c, hl, wl, s: &s });
        assert_eq!(got.to_bits(), act_scale_for(&up).to_bits(), "{poison:?}");
    }
    let zeros = vec![0f32; c * hl * wl];
    assert_eq!(source_act_scale(Up { x: &zeros, c, hl, wl, s: &s }), 1.0, "all-zero input keeps scale 1");
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
            for act in [None, Some(0.02)] {
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
        let got = source_act_scale(Scaled { x: &x, c, h, w, s: &s });
        assert_eq!(got.to_bits(), act_scale_for(&scaled).to_bits(), "{poison:?}");
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
    assert!(run(&pc, &x[1..], &s, &mut out).contains("input: 35 floats"));
    assert!(run(&pc, &x, &s[1..], &mut out).contains("channel factors: 3 values"));
    assert!(run(&pc, &x, &s, &mut out[1..]).contains("output"));
    let f = PackedConv::from_f32(&seeded(1, 4 * 4 * 9), 4, 4, 3).expect("pack");
    assert!(run(&f, &x, &s, &mut out).contains("not I8"));
}

// Bitwise: output rows of bands (with a halo row each side, dropped) against the whole map's rows.
#[test]
fn an_upsampling_conv_run_in_row_bands_gives_the_bits_of_the_whole_map() {
    for &(c_in, c_out, k, hl, wl) in SHAPES {
        let (x, s) = inputs(c_in, hl, wl);
        let pc = PackedConv::from_f32_as_i8(&seeded(23, c_out * c_in * k * k), c_out, c_in, k).expect("pack");
        let bias = seeded(24, c_out);
        let (h, w) = (2 * hl, 2 * wl);
        let mut whole = vec![0f32; c_out * h * w];
        let scale = pc.upsampled_act_scale(&x, hl, wl, &s).expect("scale");
        pc.run_upsampled(&mut Scratch::new(), &x, hl, wl, &s, None, Some(&bias), &mut whole).expect("whole");
        let halo = k / 2;
        for band in [1, 3, h] {
            let mut got = vec![f32::NAN; c_out * h * w];
            for y0 in (0..h).step_by(band) {
                let y1 = (y0 + band).min(h);
                let (a, b) = (y0.saturating_sub(halo), (y1 + halo).min(h));
                let mut part = vec![0f32; c_out * (b - a) * w];
                pc.run_upsampled_rows(&mut Scratch::new(), &x, hl, wl, &s, scale, (a, b - a), Some(&bias), &mut part).expect("band");
                for o in 0..c_out {
                    let src = &part[(o * (b - a) + y0 - a) * w..(o * (b - a) + y1 - a) * w];
                    got[(o * h + y0) * w..(o * h + y1) * w].copy_from_slice(src);
                }
            }
            assert!(bits_eq(&whole, &got), "shape {:?}, bands of {band}: banded rows differ", (c_in, c_out, k, hl, wl));
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
    assert!(run(&pc, &x[1..], &s, &mut out).contains("input: 35 floats"));
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
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                isas.push(Isa::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                isas.push(Isa::Avx512);
            }
        }
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
        for act in [None, Some(0.02)] {
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
