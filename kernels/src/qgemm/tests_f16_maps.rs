//! f16 input maps: every on-the-fly int8 conv widens an f16 map exactly as it reads it, so each result
//! (output bits, dynamic scale) must equal, bit for bit, the same call on the map widened to f32
//! beforehand. No tolerance.

use half::f16;

use super::{source_act_quant, Scaled, Up};
use crate::elem::{narrow_all, widen_all};
use crate::qgemm::{act_quant_for, ActQuant, PackedConv, QIsa, MAX_F16_UP_WIDTH};
use crate::scratch::Scratch;
use crate::testing::seeded;

/// (c_in, c_out, k, h, w): partial channel groups, 1x1 and 3x3, rows crossing the 256-column widening
/// chunk (300) and 16-pair blocks (140), a 1-wide map.
const SHAPES: &[(usize, usize, usize, usize, usize)] = &[(8, 16, 3, 5, 7), (6, 5, 1, 4, 300), (5, 9, 3, 3, 140), (3, 4, 3, 2, 1)];

/// A seeded map rounded to f16 (with an infinity and a NaN), and the same halves widened to f32.
fn halves(n: usize) -> (Vec<f16>, Vec<f32>) {
    let mut h = narrow_all(&seeded(31, n).iter().map(|v| v * 3.0).collect::<Vec<_>>());
    if n > 20 {
        h[7] = f16::INFINITY;
        h[n - 3] = f16::NAN;
    }
    let w = widen_all(&h);
    (h, w)
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn f16_maps_give_the_bits_of_the_widened_maps_in_every_on_the_fly_conv() {
    for &(c_in, c_out, k, h, w) in SHAPES {
        let pc = PackedConv::from_f32_as_i8(&seeded(23, c_out * c_in * k * k), c_out, c_in, k).expect("pack");
        let (bias, s) = (seeded(24, c_out), seeded(22, c_in).iter().map(|v| 0.5 + v.abs()).collect::<Vec<_>>());
        let (xh, xw) = halves(c_in * h * w);
        let shape = (c_in, c_out, k, h, w);
        // x * s and x itself, whole map and a band with halo rows; dynamic and calibrated scales.
        for isa in QIsa::available() {
            for act in [None, Some(ActQuant::symmetric(0.02)), Some(ActQuant { scale: 0.02, zero: -90 })] {
                let (mut want, mut got) = (vec![0f32; c_out * h * w], vec![1f32; c_out * h * w]);
                pc.run_scaled_on(isa, &mut Scratch::new(), &xw, h, w, &s, act, Some(&bias), &mut want).expect("f32");
                pc.run_scaled_on(isa, &mut Scratch::new(), &xh, h, w, &s, act, Some(&bias), &mut got).expect("f16");
                assert!(same(&want, &got), "{isa:?} {act:?} {shape:?}: scaled f16 map differs");
            }
        }
        let scale = pc.scaled_act_quant(&xw, h, w, &s).expect("f32 scale");
        assert_eq!(scale, pc.scaled_act_quant(&xh, h, w, &s).expect("f16 scale"), "{shape:?}");
        assert_eq!(act_quant_for(&xw), act_quant_for(&xh), "{shape:?}: plain map scale");
        let rows = (h / 2, h - h / 2);
        for factors in [None, Some(&s[..])] {
            let (mut want, mut got) = (vec![0f32; c_out * rows.1 * w], vec![1f32; c_out * rows.1 * w]);
            pc.run_rows(&mut Scratch::new(), &xw, (h, w), factors, scale, rows, Some(&bias), &mut want).expect("f32 band");
            pc.run_rows(&mut Scratch::new(), &xh, (h, w), factors, scale, rows, Some(&bias), &mut got).expect("f16 band");
            assert!(same(&want, &got), "{shape:?} factors {}: f16 band differs", factors.is_some());
        }
        // up2(x) * s from the low-resolution map, whole and banded.
        let (hl, wl) = (h, w.min(MAX_F16_UP_WIDTH));
        let (xh, xw) = halves(c_in * hl * wl);
        let (mut want, mut got) = (vec![0f32; c_out * 4 * hl * wl], vec![1f32; c_out * 4 * hl * wl]);
        pc.run_upsampled(&mut Scratch::new(), &xw, hl, wl, &s, None, Some(&bias), &mut want).expect("f32 up");
        pc.run_upsampled(&mut Scratch::new(), &xh, hl, wl, &s, None, Some(&bias), &mut got).expect("f16 up");
        assert!(same(&want, &got), "{shape:?}: upsampled f16 map differs");
        let scale = pc.upsampled_act_quant(&xw, hl, wl, &s).expect("f32 scale");
        assert_eq!(scale, pc.upsampled_act_quant(&xh, hl, wl, &s).expect("f16 scale"), "{shape:?}");
        let rows = (hl, hl);
        let (mut want, mut got) = (vec![0f32; c_out * hl * 2 * wl], vec![1f32; c_out * hl * 2 * wl]);
        pc.run_upsampled_rows(&mut Scratch::new(), &xw, hl, wl, &s, scale, rows, Some(&bias), &mut want).expect("f32");
        pc.run_upsampled_rows(&mut Scratch::new(), &xh, hl, wl, &s, scale, rows, Some(&bias), &mut got).expect("f16");
        assert!(same(&want, &got), "{shape:?}: upsampled f16 band differs");
    }
}

#[test]
fn the_sources_scales_on_f16_maps_equal_the_widened_ones() {
    let (c, h, w) = (5, 6, 300);
    let (xh, xw) = halves(c * h * w);
    let s: Vec<f32> = seeded(22, c).iter().map(|v| 0.5 + v.abs()).collect();
    let f16_scaled = source_act_quant(Scaled { x: &xh, c, h, w, s: Some(&s) });
    assert_eq!(f16_scaled, source_act_quant(Scaled { x: &xw, c, h, w, s: Some(&s) }));
    let wl = 100;
    let (xh, xw) = halves(c * h * wl);
    let up = source_act_quant(Up { x: &xh, c, hl: h, wl, s: &s });
    assert_eq!(up, source_act_quant(Up { x: &xw, c, hl: h, wl, s: &s }));
}

#[test]
fn an_f16_upsampling_input_wider_than_the_stack_rows_is_an_error() {
    let (c, wl) = (4, MAX_F16_UP_WIDTH + 1);
    let pc = PackedConv::from_f32_as_i8(&seeded(23, 4 * c * 9), 4, c, 3).expect("pack");
    let x = vec![f16::ZERO; c * 2 * wl];
    let e = pc.upsampled_act_quant(&x, 2, wl, &[1.0; 4]).expect_err("too wide");
    assert!(e.0.contains("f16 input") && e.0.contains(&wl.to_string()), "{}", e.0);
}
