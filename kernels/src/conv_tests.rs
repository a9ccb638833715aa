//! Fast convolutions against `reference.rs` on awkward shapes, on both GEMM engines.
//!
//! Tolerance: `Fp32`. The fast path sums the same products in a different order (GEMM blocking); with
//! inputs and weights in [-1, 1) and at most a few thousand terms the rounding difference stays far
//! below 1e-5 of the largest output.

use super::*;
use crate::reference;
use crate::testing::{assert_close, seeded, Tolerance};

fn check(spec: Conv2d, h: usize, w: usize, with_bias: bool) {
    let (oh, ow) = spec.out_size(h, w);
    let input = seeded(11, spec.c_in * h * w);
    let weight = seeded(12, spec.c_out * spec.c_in * spec.kernel * spec.kernel);
    let bias = seeded(13, spec.c_out);
    let bias = with_bias.then_some(&bias[..]);
    let mut want = vec![0f32; spec.c_out * oh * ow];
    reference::conv2d(&spec, &input, h, w, &weight, bias, &mut want);
    for path in [GemmPath::Packed, GemmPath::GemmCrate] {
        let mut got = vec![f32::NAN; want.len()];
        conv2d_with_path(path, &mut Scratch::new(), &spec, &input, h, w, &weight, bias, &mut got);
        assert_close(&format!("{spec:?} at {h}x{w} on {path:?}"), &got, &want, Tolerance::Fp32);
    }
}

fn spec(c_in: usize, c_out: usize, kernel: usize, stride: usize, pad: usize) -> Conv2d {
    Conv2d { c_in, c_out, kernel, stride, pad }
}

#[test]
fn three_by_three_convolutions_match_the_reference_on_odd_sizes() {
    for &(h, w) in &[(1, 1), (5, 7), (37, 37), (2, 9)] {
        check(spec(13, 7, 3, 1, 1), h, w, true);
    }
    check(spec(3, 127, 3, 1, 1), 9, 11, false);
    check(spec(13, 5, 3, 1, 0), 5, 7, true);
}

#[test]
fn strided_convolutions_match_the_reference() {
    // DPT resize_layers.3 is 3x3 stride 2 pad 1 (37 -> 19); odd and even sizes, padding 0 and 1.
    for &(h, w) in &[(37, 37), (5, 7), (1, 1), (6, 4)] {
        check(spec(13, 9, 3, 2, 1), h, w, true);
        if h >= 3 && w >= 3 {
            check(spec(13, 9, 3, 2, 0), h, w, false);
        }
    }
}

#[test]
fn pointwise_convolutions_match_the_reference() {
    check(spec(127, 13, 1, 1, 0), 5, 7, true);
    check(spec(13, 41, 1, 1, 0), 67, 71, true); // more pixels than one 1x1 band
    check(spec(7, 3, 1, 1, 0), 1, 1, false);
    check(spec(5, 3, 1, 2, 0), 7, 9, true); // strided 1x1 takes the im2col path
}

#[test]
fn patch_embedding_and_four_by_four_kernels_match_the_reference() {
    // DINOv2's patch embedding is 14x14 stride 14 on the image; a 4x4 stride 4 case for good measure.
    check(spec(3, 17, 14, 14, 0), 28, 42, true);
    check(spec(5, 6, 4, 4, 0), 13, 9, true);
}

#[test]
fn large_maps_split_into_several_bands_and_still_match() {
    // 3 * 9 * 300 columns per row: TILE_FLOATS forces bands of 16 rows, 26 bands per map.
    check(spec(3, 4, 3, 1, 1), 401, 300, true);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let s = spec(16, 8, 3, 1, 1);
    let (h, w) = (130, 257);
    let input = seeded(21, s.c_in * h * w);
    let weight = seeded(22, s.c_out * s.c_in * 9);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        let mut out = vec![0f32; s.c_out * h * w];
        pool.install(|| conv2d(&s, &input, h, w, &weight, None, &mut out));
        let mut packed = vec![0f32; s.c_out * h * w];
        pool.install(|| conv2d_with(&mut Scratch::new(), &s, &input, h, w, &weight, None, &mut packed));
        (out, packed)
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.0, two.0, "conv2d (gemm crate) differs between 1 and 2 threads");
    assert_eq!(one.1, two.1, "conv2d_with (packed) differs between 1 and 2 threads");
}

#[test]
fn explicit_scratch_is_reused_across_calls() {
    let s = spec(8, 8, 3, 1, 1);
    let input = seeded(31, 8 * 20 * 20);
    let weight = seeded(32, 8 * 8 * 9);
    let mut out = vec![0f32; 8 * 20 * 20];
    let mut scratch = Scratch::new();
    conv2d_with(&mut scratch, &s, &input, 20, 20, &weight, None, &mut out);
    let grown = scratch.capacity();
    conv2d_with(&mut scratch, &s, &input, 20, 20, &weight, None, &mut out);
    assert_eq!(scratch.capacity(), grown);
}

fn check_transpose(c_in: usize, c_out: usize, k: usize, h: usize, w: usize, with_bias: bool) {
    let input = seeded(41, c_in * h * w);
    let weight = seeded(42, c_in * c_out * k * k);
    let bias = seeded(43, c_out);
    let bias = with_bias.then_some(&bias[..]);
    let mut want = vec![0f32; c_out * h * k * w * k];
    reference::conv_transpose2d_patch(c_in, c_out, k, &input, h, w, &weight, bias, &mut want);
    let mut got = vec![f32::NAN; want.len()];
    conv_transpose2d_patch(c_in, c_out, k, &input, h, w, &weight, bias, &mut got);
    assert_close(&format!("transpose {c_in}->{c_out} k{k} at {h}x{w}"), &got, &want, Tolerance::Fp32);
}

#[test]
fn patch_transposed_convolutions_match_the_reference() {
    // DPT: 256->256 k4s4 and 512->512 k2s2 at 37x37; scaled down, odd sizes.
    check_transpose(13, 7, 4, 5, 7, true);
    check_transpose(127, 5, 2, 37, 37, false);
    check_transpose(3, 2, 2, 1, 1, true);
}

#[test]
fn interior_strips_read_in_place_match_the_reference() {
    // c_out a multiple of 8 and rows wider than 32 pixels: AVX-512 hosts read interior strips straight
    // from the input; border strips, a 5x5 kernel, a deep layer (two KC blocks) and an odd width.
    check(spec(16, 24, 3, 1, 1), 40, 75, true);
    check(spec(6, 8, 5, 1, 2), 37, 70, true);
    check(spec(40, 16, 3, 1, 1), 12, 99, false);
    check(spec(8, 16, 3, 1, 0), 9, 35, true);
}

#[test]
fn both_gemm_engines_agree() {
    // The benches compare the packed SGEMM with the gemm crate; both must compute the same convolution.
    for (s, h, w) in [(spec(13, 9, 3, 1, 1), 21, 40), (spec(32, 16, 1, 1, 0), 17, 19), (spec(8, 8, 3, 2, 1), 15, 33)] {
        let (oh, ow) = s.out_size(h, w);
        let input = seeded(51, s.c_in * h * w);
        let weight = seeded(52, s.c_out * s.c_in * s.kernel * s.kernel);
        let bias = seeded(53, s.c_out);
        let mut outs = [GemmPath::Packed, GemmPath::GemmCrate].map(|path| {
            let mut out = vec![f32::NAN; s.c_out * oh * ow];
            conv2d_with_path(path, &mut Scratch::new(), &s, &input, h, w, &weight, Some(&bias), &mut out);
            out
        });
        let crate_out = std::mem::take(&mut outs[1]);
        assert_close(&format!("{s:?} packed vs gemm crate"), &outs[0], &crate_out, Tolerance::Fp32);
    }
}

#[test]
fn prepacked_weights_give_the_same_bits_as_packing_per_call() {
    // 13 outputs: a partial last panel; 3x3 over 40 channels and a 1x1; maps with edge strips.
    for (s, h, w) in [(spec(40, 13, 3, 1, 1), 37, 45), (spec(9, 16, 1, 1, 0), 8, 70)] {
        let input = seeded(51, s.c_in * h * w);
        let weight = seeded(52, s.c_out * s.c_in * s.kernel * s.kernel);
        let bias = seeded(53, s.c_out);
        let mut want = vec![0f32; s.c_out * h * w];
        conv2d_with(&mut Scratch::new(), &s, &input, h, w, &weight, Some(&bias), &mut want);
        let packed = PackedWeights::pack(&s, &weight, Some(&bias));
        let mut got = vec![f32::NAN; want.len()];
        conv2d_prepacked(&mut Scratch::new(), &packed, &input, h, w, &mut got);
        assert_eq!(got, want, "{s:?}: pre-packed differs from per-call packing");
        // Adopting the same panels (as a file would store them) changes nothing either.
        let adopted = PackedWeights::from_panels(&s, std::borrow::Cow::Borrowed(packed.panels()), Some(&bias)).expect("right length");
        assert!(adopted.is_borrowed());
        conv2d_prepacked(&mut Scratch::new(), &adopted, &input, h, w, &mut got);
        assert_eq!(got, want, "{s:?}: adopted panels differ");
    }
}

#[test]
fn panels_of_the_wrong_length_are_refused_with_both_lengths() {
    let s = spec(4, 9, 3, 1, 1);
    let err = PackedWeights::from_panels(&s, vec![0f32; 10].into(), None).expect_err("wrong length");
    assert!(err.contains("expected 576") && err.contains("found 10"), "{err}");
}
