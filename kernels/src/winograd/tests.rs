//! Winograd F(4x4, 3x3) against `reference::conv2d` on refiner-like shapes.
//!
//! Tolerance: `3e-5 * max|ref|` (plus 1e-6 absolute). The direct path's error is a sum of `9 c_in`
//! roundings; Winograd adds the transforms' roundings, amplified by their largest entries (`B^T` up to 5,
//! `A^T` up to 8, `G` down to 1/24): each transformed product carries a relative error of a few ulps of
//! values up to ~10-25x the inputs, and the output transform sums 36 of them with weights up to 64. For
//! inputs and weights in [-1, 1) that is ~1e-6-1e-5 of max|ref|, growing slowly with `c_in` (the worst seen
//! is printed by `winograd_matches_the_direct_reference_on_refiner_shapes`; see docs/performance.md).

use super::*;
use crate::reference;
use crate::testing::{assert_close, max_abs_diff, seeded, Tolerance};

const TOL: Tolerance = Tolerance::Custom { abs: 1e-6, rel: 3e-5 };

fn spec(c_in: usize, c_out: usize) -> Conv2d {
    Conv2d { c_in, c_out, kernel: 3, stride: 1, pad: 1 }
}

/// Runs both paths; returns `(winograd, reference)`.
fn both(s: Conv2d, h: usize, w: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let x = seeded(seed, s.c_in * h * w);
    let g = seeded(seed + 1, s.c_out * s.c_in * 9);
    let b = seeded(seed + 2, s.c_out);
    let mut want = vec![0f32; s.c_out * h * w];
    reference::conv2d(&s, &x, h, w, &g, Some(&b), &mut want);
    let ww = WinogradWeights::new(&s, &g, Some(&b)).expect("valid weights");
    let mut got = vec![f32::NAN; want.len()];
    conv3x3(&mut Scratch::new(), &ww, &x, h, w, &mut got).expect("valid call");
    (got, want)
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    max_abs_diff(got, want).0 / scale
}

#[test]
fn winograd_matches_the_direct_reference_on_refiner_shapes() {
    // Channel counts of the refiner (3..512), sides 1..64 including non-multiples of 4 and 4x4 itself.
    let cases = [
        (spec(3, 16), 13, 11),
        (spec(16, 16), 4, 4),
        (spec(16, 32), 1, 1),
        (spec(7, 5), 2, 3),
        (spec(32, 64), 17, 9),
        (spec(64, 32), 33, 30),
        (spec(128, 24), 16, 16),
        (spec(256, 16), 8, 8),
        (spec(512, 8), 6, 10),
        (spec(5, 512), 5, 7),
        (spec(16, 3), 64, 64),
    ];
    let mut worst = 0f32;
    for (i, &(s, h, w)) in cases.iter().enumerate() {
        let (got, want) = both(s, h, w, 100 + 10 * i as u64);
        assert_close(&format!("Winograd {s:?} at {h}x{w}"), &got, &want, TOL);
        worst = worst.max(rel_err(&got, &want));
    }
    eprintln!("worst relative error (max |diff| / max |ref|): {worst:e}");
}

#[test]
fn a_map_of_many_blocks_matches_the_reference_and_does_not_depend_on_the_thread_count() {
    // 400 tiles in blocks of 96 (AVX-512) or fewer: several blocks per worker, a block starting mid-row.
    let (s, h, w) = (spec(32, 32), 80, 80);
    let (got, want) = both(s, h, w, 7);
    assert_close("Winograd 32->32 at 80x80", &got, &want, TOL);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let (single, _) = one.install(|| both(s, h, w, 7));
    assert!(single.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "1 thread and the default pool differ");
    // A few blocks only: each block's phases split over the pool instead.
    let (s, h, w) = (spec(64, 40), 24, 40);
    let (many, want) = both(s, h, w, 9);
    assert_close("Winograd 64->40 at 24x40", &many, &want, TOL);
    let (single, _) = one.install(|| both(s, h, w, 9));
    assert!(single.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()), "1 thread and the default pool differ (few blocks)");
}

#[test]
fn a_convolution_without_bias_adds_nothing() {
    let s = spec(4, 6);
    let (h, w) = (9, 7);
    let x = seeded(1, s.c_in * h * w);
    let g = seeded(2, s.c_out * s.c_in * 9);
    let mut want = vec![0f32; s.c_out * h * w];
    reference::conv2d(&s, &x, h, w, &g, None, &mut want);
    let ww = WinogradWeights::new(&s, &g, None).expect("valid weights");
    let mut got = vec![0f32; want.len()];
    conv3x3(&mut Scratch::new(), &ww, &x, h, w, &mut got).expect("valid call");
    assert_close("Winograd without bias", &got, &want, TOL);
}

#[test]
fn wrong_shapes_are_errors_that_name_the_sizes() {
    let s = spec(2, 3);
    let e = WinogradWeights::new(&s, &[0.0; 10], None).expect_err("short weight");
    assert!(e.contains("54") && e.contains("10"), "{e}");
    let e = WinogradWeights::new(&s, &[0.0; 54], Some(&[0.0; 2])).expect_err("short bias");
    assert!(e.contains("bias"), "{e}");
    let e = WinogradWeights::new(&Conv2d { kernel: 1, pad: 0, ..s }, &[0.0; 6], None).expect_err("1x1");
    assert!(e.contains("3x3"), "{e}");
    let ww = WinogradWeights::new(&s, &[0.0; 54], None).expect("valid");
    let e = conv3x3(&mut Scratch::new(), &ww, &[0.0; 7], 2, 2, &mut [0.0; 12]).expect_err("short input");
    assert!(e.contains("2x2") && e.contains("8"), "{e}");
}

#[test]
fn the_selection_rule_keeps_small_maps_and_other_kernels_direct() {
    assert!(!pays(&spec(512, 512), 8, 8));
    assert!(!pays(&Conv2d { kernel: 1, pad: 0, ..spec(64, 64) }, 256, 256));
    assert!(!pays(&Conv2d { stride: 2, ..spec(64, 64) }, 256, 256));
    assert_eq!(pays(&spec(64, 64), 256, 256), enabled());
}

#[test]
fn transformed_weights_are_four_times_the_three_by_three_weights() {
    let s = spec(16, 24);
    let ww = WinogradWeights::new(&s, &seeded(3, 16 * 24 * 9), None).expect("valid");
    assert_eq!(ww.bytes(), 4 * (36 * 16 * 24 + 24));
}

#[test]
fn the_kernel_weights_come_back_from_the_transformed_ones() {
    let s = spec(5, 11);
    let g = seeded(4, 11 * 5 * 9);
    let ww = WinogradWeights::new(&s, &g, None).expect("valid");
    // f32 rounding of U (1 ulp), amplified by H's entries (at most 6 + 4 + 1): ~1e-6 of max |g| = 1.
    assert_close("recovered 3x3 weights", &ww.kernel_weights(), &g, Tolerance::Custom { abs: 2e-6, rel: 0.0 });
}

/// The AVX-512 transforms repeat the generic lane loops' operations in the same order, so they must give
/// the same bits (borders, partial lane groups and blocks starting mid-row included).
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx512_transforms_give_the_generic_transforms_bits() {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        eprintln!("skipped: this CPU has no AVX-512F");
        return;
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    // 9x200: full interior groups (plain loads) in tile rows that reach above and below the map.
    let cases: [(usize, usize, usize, usize); 6] =
        [(13, 11, 0, 12), (64, 64, 5, 200), (30, 70, 3, 40), (4, 4, 0, 1), (512, 512, 200, 300), (9, 200, 0, 150)];
    for (i, &(h, w, t0, n)) in cases.iter().enumerate() {
        let tw = w.div_ceil(4);
        let plane = seeded(20 + i as u64, h * w);
        let (mut a, mut b) = (vec![f32::NAN; XI * n], vec![f32::NAN; XI * n]);
        fn rows(v: &mut [f32], n: usize) -> [&mut [f32]; XI] {
            let mut it = v.chunks_exact_mut(n);
            std::array::from_fn(|_| it.next().expect("XI rows"))
        }
        channel::input_channel(&plane, h, w, tw, t0, n, rows(&mut a, n));
        // SAFETY: AVX-512F was detected; the plane and rows have the sizes the function needs.
        unsafe { avx512::input_channel(&plane, h, w, tw, t0, n, b.as_mut_ptr(), n, 0) };
        assert_eq!(bits(&a), bits(&b), "input transform, {h}x{w} tiles {t0}..{}", t0 + n);
        let m = seeded(40 + i as u64, XI * n);
        let mrows: [&[f32]; XI] = std::array::from_fn(|xi| &m[xi * n..(xi + 1) * n]);
        for epi in [Epilogue::Store, Epilogue::LeakyRelu(0.2), Epilogue::MulInto, Epilogue::AddInto] {
            let start = seeded(60 + i as u64, h * w);
            let (mut pa, mut pb) = (start.clone(), start);
            channel::output_channel(mrows, 0.25, h, w, tw, t0, n, &mut pa, epi);
            // SAFETY: as above.
            unsafe { avx512::output_channel(m.as_ptr(), n, 0.25, h, w, tw, t0, n, &mut pb, epi) };
            assert_eq!(bits(&pa), bits(&pb), "output transform {epi:?}, {h}x{w} tiles {t0}..{}", t0 + n);
        }
    }
}

/// Each epilogue claims the convolution followed by the plain element-wise pass, with the same rounding:
/// exact equality (sides that are not multiples of 4 clip partial tiles; 20x20 has several blocks).
#[test]
fn every_epilogue_gives_the_bits_of_the_convolution_then_the_plain_pass() {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (ci, co, h, w) in [(5, 9, 17, 18), (16, 32, 20, 20), (3, 8, 4, 7)] {
        let s = spec(ci, co);
        let x = seeded(70, ci * h * w);
        let ww = WinogradWeights::new(&s, &seeded(71, co * ci * 9), Some(&seeded(72, co))).expect("valid weights");
        let mut y = vec![0f32; co * h * w];
        conv3x3(&mut Scratch::new(), &ww, &x, h, w, &mut y).expect("valid call");
        let d = seeded(73, co * h * w);
        let plain: [(Epilogue, Vec<f32>); 4] = [
            (Epilogue::Store, y.clone()),
            (Epilogue::LeakyRelu(0.2), y.iter().map(|&v| if v < 0.0 { v * 0.2 } else { v }).collect()),
            (Epilogue::MulInto, d.iter().zip(&y).map(|(d, v)| d * v).collect()),
            (Epilogue::AddInto, d.iter().zip(&y).map(|(d, v)| d + v).collect()),
        ];
        for (epi, want) in plain {
            let mut got = d.clone();
            conv3x3_with(&mut Scratch::new(), &ww, &x, h, w, &mut got, epi).expect("valid call");
            assert_eq!(bits(&got), bits(&want), "{epi:?}, {ci}->{co} on {h}x{w}");
        }
    }
}

#[test]
fn the_narrow_last_strip_gives_the_same_bits_as_the_wide_one() {
    // Tile counts 1, 4, 15, 16 (one narrow strip), 36 (a wide strip then 4 tiles), 25 (a 25-tile last
    // strip stays wide), 80 in several blocks; c_out 5 / 24 / 40 (one, three, five panels: odd pairs), KC
    // split at c_in 300; every epilogue (Mul/AddInto start from the same map).
    let cases = [
        (spec(3, 5), 4, 4),
        (spec(8, 24), 8, 8),
        (spec(16, 40), 12, 20),
        (spec(300, 24), 16, 16),
        (spec(32, 16), 24, 24),
        (spec(7, 9), 20, 20),
        (spec(64, 40), 40, 32),
    ];
    let epis = [Epilogue::Store, Epilogue::LeakyRelu(0.2), Epilogue::MulInto, Epilogue::AddInto];
    for (i, &(s, h, w)) in cases.iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        let x = seeded(seed, s.c_in * h * w);
        let ww =
            WinogradWeights::new(&s, &seeded(seed + 1, s.c_out * s.c_in * 9), Some(&seeded(seed + 2, s.c_out))).expect("valid weights");
        for epi in epis {
            let start = seeded(seed + 3, s.c_out * h * w);
            let (mut wide, mut narrow) = (start.clone(), start);
            conv3x3_strips(&mut Scratch::new(), &ww, &x, h, w, &mut wide, epi, false).expect("valid call");
            conv3x3_strips(&mut Scratch::new(), &ww, &x, h, w, &mut narrow, epi, true).expect("valid call");
            let same = wide.iter().zip(&narrow).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{s:?} at {h}x{w}, {epi:?}: narrow and wide strips differ");
        }
    }
}
