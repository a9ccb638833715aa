//! Tests of `fused.rs` (and its AVX-512 bodies): same formulas in the same order as the plain passes,
//! so the tolerance is zero (exact equality).

use super::*;
use crate::act::leaky_relu;
use crate::testing::seeded;

#[test]
fn fused_style_epilogue_equals_the_plain_passes() {
    let (c, hw) = (3, 200 * 200 + 7); // + 7: a partial 16-lane tail per plane
    for with_sft in [false, true] {
        let x = seeded(1, c * hw);
        let noise = seeded(2, hw);
        let (scale, shift) = (seeded(3, c * hw), seeded(4, c * hw));
        let (f, bias) = ([0.5, -1.25, 2.0], [0.1, -0.3, 0.0]);
        let mut want = x.clone();
        for o in 0..c {
            want[o * hw..(o + 1) * hw].iter_mut().for_each(|v| *v *= f[o]);
        }
        for o in 0..c {
            for (v, nz) in want[o * hw..(o + 1) * hw].iter_mut().zip(&noise) {
                let y = *v + 0.7 * nz + bias[o];
                *v = if y < 0.0 { y * 0.2 } else { y };
            }
        }
        if with_sft {
            want.iter_mut().zip(&scale).zip(&shift).for_each(|((v, a), b)| *v = *v * a + b);
        }
        let mut got = x.clone();
        style_epilogue(&mut got, hw, &f, &noise, 0.7, &bias, 0.2, with_sft.then_some((&scale[..], &shift[..])));
        assert_eq!(got, want, "sft {with_sft}");
    }
}

#[test]
fn channel_scaling_and_adding_equal_the_plain_loops() {
    let (c, hw) = (4, 150 * 150);
    let x = seeded(5, c * hw);
    let s = [1.5, -0.5, 0.0, 3.0];
    let mut got = vec![0.0; c * hw];
    scale_channels(&x, &s, hw, &mut got);
    let want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * s[i / hw]).collect();
    assert_eq!(got, want);
    let mut in_place = x.clone();
    scale_channels_in_place(&mut in_place, &s, hw);
    assert_eq!(in_place, want);
    let mut sum = x.clone();
    add_assign(&mut sum, &want);
    let plain: Vec<f32> = x.iter().zip(&want).map(|(a, b)| a + b).collect();
    assert_eq!(sum, plain);
    // Above and below the parallel threshold (90,000 and 100 elements).
    for n in [c * hw, 100] {
        let mut prod = x[..n].to_vec();
        mul_assign(&mut prod, &want[..n]);
        let plain: Vec<f32> = x[..n].iter().zip(&want[..n]).map(|(a, b)| a * b).collect();
        assert_eq!(prod, plain);
    }
}

#[test]
fn scaled_bilinear_equals_bilinear_then_scaling() {
    let (c, h, w) = (3, 37, 20);
    let x = seeded(6, c * h * w);
    let s = [0.25, -2.0, 1.0];
    for (oh, ow) in [(74, 40), (16, 9), (37, 20), (37, 41)] {
        let mut plain = vec![0.0; c * oh * ow];
        crate::resize::bilinear(&x, c, h, w, oh, ow, false, &mut plain);
        let want: Vec<f32> = plain.iter().enumerate().map(|(i, v)| v * s[i / (oh * ow)]).collect();
        let mut got = vec![0.0; c * oh * ow];
        bilinear_scaled(&x, c, h, w, oh, ow, &s, &mut got);
        assert_eq!(got, want, "{oh}x{ow}");
    }
}

#[test]
fn x2_upsampling_equals_the_plain_resize_for_every_width_up_to_40() {
    // Widths 1..=40 reach every tail length of the 16-lane body (and the scalar path for w = 1).
    for w in 1..=40 {
        let (c, h) = (2, 3);
        let x = seeded(8 + w as u64, c * h * w);
        let mut want = vec![0.0; c * 2 * h * 2 * w];
        crate::resize::bilinear(&x, c, h, w, 2 * h, 2 * w, false, &mut want);
        let mut got = vec![0.0; want.len()];
        bilinear_scaled(&x, c, h, w, 2 * h, 2 * w, &[1.0, 1.0], &mut got);
        assert_eq!(got, want, "width {w}");
    }
}

#[test]
fn fast_bilinear_equals_the_plain_resize_for_x2_x05_and_other_sizes() {
    let (c, h, w) = (2, 18, 24);
    let x = seeded(7, c * h * w);
    for (oh, ow) in [(36, 48), (9, 12), (18, 24), (7, 30), (36, 2 * 24 + 1)] {
        let mut want = vec![0.0; c * oh * ow];
        crate::resize::bilinear(&x, c, h, w, oh, ow, false, &mut want);
        let mut got = vec![0.0; c * oh * ow];
        bilinear_fast(&x, c, h, w, oh, ow, &mut got);
        assert_eq!(got, want, "{oh}x{ow}");
    }
}

#[test]
fn lrelu_then_add_in_one_sweep_equals_the_two_passes() {
    // Both sizes: the serial path and the parallel chunks (with a partial last chunk).
    for n in [1000, 3 * SERIAL_BELOW + 17] {
        let (x, s) = (seeded(20, n), seeded(21, n));
        let mut want = x.clone();
        leaky_relu(&mut want, 0.2);
        add_assign(&mut want, &s);
        let mut got = x.clone();
        lrelu_add(&mut got, &s, 0.2);
        assert_eq!(got, want, "{n} elements");
    }
}

#[test]
fn bilinear_with_lrelu_on_read_equals_lrelu_then_bilinear_for_every_width_up_to_40() {
    // x2 and x0.5 at every width 1..=40 reach each tail length of the 16-lane bodies and the scalar
    // borders; (5, 7) and (9, 9) take the general path. Half the seeded values are negative.
    for w in 1..=40 {
        let (c, h) = (2, 4);
        let x = seeded(30 + w as u64, c * h * w);
        let mut act = x.clone();
        leaky_relu(&mut act, 0.2);
        let mut sizes = vec![(2 * h, 2 * w), (5, 7), (9, 9)];
        if w % 2 == 0 {
            sizes.push((h / 2, w / 2));
        }
        for (oh, ow) in sizes {
            let mut want = vec![0.0; c * oh * ow];
            crate::resize::bilinear(&act, c, h, w, oh, ow, false, &mut want);
            let mut got = vec![0.0; want.len()];
            bilinear_lrelu(&x, c, h, w, oh, ow, 0.2, &mut got);
            assert_eq!(got, want, "width {w} to {oh}x{ow}");
        }
    }
}

#[test]
fn x05_downsampling_equals_the_plain_resize_for_every_output_width_up_to_40() {
    for ow in 1..=40 {
        let (c, h, w) = (2, 6, 2 * ow);
        let x = seeded(80 + ow as u64, c * h * w);
        let mut want = vec![0.0; c * 3 * ow];
        crate::resize::bilinear(&x, c, h, w, 3, ow, false, &mut want);
        let mut got = vec![0.0; want.len()];
        bilinear_fast(&x, c, h, w, 3, ow, &mut got);
        assert_eq!(got, want, "output width {ow}");
    }
}

#[test]
fn fused_resize_skip_conv_and_sum_equals_resize_then_conv_then_lrelu_add() {
    use crate::conv::{conv2d_prepacked, Conv2d, PackedWeights, Scratch};
    // (c_in, c_out, h, w, oh, ow, bias): x2 and x0.5 resizes; c_out 11 leaves a partial 8-row panel,
    // widths 18, 40, 7 and 35 leave partial 32- and 16-lane pixel blocks; c_in 300 > 256 makes the SGEMM
    // split its inner dimension (the reference sums the same products in the same order).
    let cases = [
        (5, 11, 9, 9, 18, 18, true),
        (40, 16, 20, 20, 40, 40, false),
        (16, 8, 14, 14, 7, 7, false),
        (300, 24, 5, 35, 10, 70, true),
        (3, 8, 6, 70, 3, 35, true),
    ];
    for (ci, co, h, w, oh, ow, with_bias) in cases {
        let spec = Conv2d { c_in: ci, c_out: co, kernel: 1, stride: 1, pad: 0 };
        let (x, wt, b) = (seeded(40, ci * h * w), seeded(41, co * ci), seeded(42, co));
        let pw = PackedWeights::pack(&spec, &wt, with_bias.then_some(&b[..]));
        let prev = seeded(43, co * oh * ow);
        let mut s = Scratch::new();
        let mut up = vec![0.0; ci * oh * ow];
        bilinear_fast(&x, ci, h, w, oh, ow, &mut up);
        let mut skip = vec![0.0; co * oh * ow];
        conv2d_prepacked(&mut s, &pw, &up, oh, ow, &mut skip);
        let mut want = prev.clone();
        lrelu_add(&mut want, &skip, 0.2);
        let mut got = prev.clone();
        if resize_conv1x1_lrelu_add(&mut s, &pw, &x, h, w, oh, ow, 0.2, &mut got) {
            assert_eq!(got, want, "{ci}->{co} {h}x{w} -> {oh}x{ow}");
        } else {
            assert!(!avx512(), "the fused path declines only without AVX-512F");
            assert_eq!(got, prev, "declining leaves the output alone");
        }
    }
}

#[test]
fn fused_resize_skip_conv_declines_a_3x3_convolution() {
    use crate::conv::{Conv2d, PackedWeights, Scratch};
    let spec = Conv2d { c_in: 2, c_out: 8, kernel: 3, stride: 1, pad: 1 };
    let pw = PackedWeights::pack(&spec, &seeded(44, 8 * 2 * 9), None);
    let mut out = vec![1.0; 8 * 16];
    assert!(!resize_conv1x1_lrelu_add(&mut Scratch::new(), &pw, &seeded(45, 2 * 4 * 4), 2, 2, 4, 4, 0.2, &mut out));
    assert!(out.iter().all(|&v| v == 1.0));
}
