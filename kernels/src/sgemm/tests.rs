//! Our SGEMM against a naive triple loop on awkward sizes, on every micro-kernel this CPU can run.
//!
//! Tolerance: `Fp32`. The kernels sum the same products in a different order (and with fused
//! multiply-adds); with operands in [-1, 1) and k <= 600 terms the difference stays far below 1e-5 of the
//! largest output.

use super::*;
use crate::testing::{assert_close, seeded, Tolerance};

fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ldb: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for r in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|q| a[r * k + q] as f64 * b[q * ldb + j] as f64).sum();
            out[r * n + j] = dot as f32 + bias.map_or(0.0, |b| b[r]);
        }
    }
    out
}

fn run(isa: Isa, m: usize, n: usize, k: usize, ldb: usize, with_bias: bool, threads: usize) -> (Vec<f32>, Vec<f32>) {
    let a = seeded(1, m * k);
    let b = seeded(2, k * ldb);
    let bias = seeded(3, m);
    let bias = with_bias.then_some(&bias[..]);
    let mut packed = vec![f32::NAN; packed_a_len(m, k)];
    pack_a(m, k, &a, &mut packed);
    let mut pb = vec![f32::NAN; bias_len(m)];
    pack_bias(m, bias, &mut pb);
    let mut tail = vec![f32::NAN; tail_len(isa, k)];
    let mut got = vec![f32::NAN; m * n];
    // SAFETY: `got` is m x n with stride n and exclusively ours.
    unsafe { gemm(isa, m, n, k, &packed, &pb, &b, ldb, &mut tail, got.as_mut_ptr(), n, threads) };
    (got, naive(m, n, k, &a, &b, ldb, bias))
}

#[test]
fn every_kernel_matches_a_naive_product_on_awkward_sizes() {
    for isa in Isa::available() {
        for &(m, n, k) in &[(1, 1, 1), (5, 13, 1), (13, 127, 5), (8, 32, 256), (16, 64, 257), (127, 5, 600), (9, 33, 513)] {
            for with_bias in [false, true] {
                let (got, want) = run(isa, m, n, k, n + 3, with_bias, 1);
                assert_close(&format!("{isa:?} {m}x{n}x{k} bias={with_bias}"), &got, &want, Tolerance::Fp32);
            }
        }
    }
}

#[test]
fn threaded_products_are_bitwise_equal_to_single_threaded_ones() {
    for isa in Isa::available() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let (one, _) = run(isa, 37, 45, 300, 45, true, 1);
        let (two, _) = pool.install(|| run(isa, 37, 45, 300, 45, true, 2));
        assert_eq!(one, two, "{isa:?}: 1 vs 2 threads");
    }
}

#[test]
fn empty_inner_dimension_gives_the_bias() {
    for isa in Isa::available() {
        let (got, want) = run(isa, 3, 5, 0, 5, true, 1);
        assert_eq!(got, want, "{isa:?}");
    }
}

#[test]
fn unpacking_panels_gives_back_the_row_major_matrix() {
    for &(m, k) in &[(1, 1), (13, 7), (16, 9), (3, 0)] {
        let a = seeded(4, m * k);
        let mut packed = vec![f32::NAN; packed_a_len(m, k)];
        pack_a(m, k, &a, &mut packed);
        let mut back = vec![f32::NAN; m * k];
        unpack_a(m, k, &packed, &mut back);
        assert_eq!(back, a, "{m}x{k}");
    }
}

#[test]
fn the_narrow_strip_gives_the_bits_of_the_wide_one_on_its_sixteen_columns() {
    // Three panels (one pair, one single), k = 300 in two KC blocks (the second accumulates onto the first).
    let (m, k, ldb) = (24, 300, 37);
    let (a, b, bias) = (seeded(5, m * k), seeded(6, k * ldb), seeded(7, m));
    let mut packed = vec![f32::NAN; packed_a_len(m, k)];
    pack_a(m, k, &a, &mut packed);
    let kc = kc_step(k);
    for isa in Isa::available() {
        let (mut wide, mut narrow) = (vec![f32::NAN; m * 32], vec![f32::NAN; m * 16]);
        if isa != Isa::Avx512 {
            // SAFETY: a kernel-less ISA touches neither B nor C.
            let ran = unsafe { tile_narrow(isa, k, &packed, k, 0, 1, &bias, 0, b.as_ptr(), ldb, narrow.as_mut_ptr(), 16, true) };
            assert!(!ran, "{isa:?} has no narrow kernel");
            continue;
        }
        for q0 in (0..k).step_by(kc) {
            let kcb = kc.min(k - q0);
            for p in 0..m / MR {
                let panel = &packed[p * MR * k..(p + 1) * MR * k];
                // SAFETY: B rows q0.. have 32 columns inside `b` (ldb = 37); C rows p*MR.. of 32 floats.
                unsafe {
                    tile_split(
                        isa,
                        kcb,
                        panel,
                        &bias[p * MR..],
                        q0,
                        b[q0 * ldb..].as_ptr(),
                        ldb,
                        wide.as_mut_ptr().add(p * MR * 32),
                        32,
                        MR,
                        32,
                        q0 == 0,
                    )
                };
            }
            for (p, np) in [(0, 2), (2, 1)] {
                // SAFETY: as above, 16 columns; C rows p*MR..(p + np)*MR of 16 floats.
                let ran = unsafe {
                    tile_narrow(
                        isa,
                        kcb,
                        &packed,
                        k,
                        p,
                        np,
                        &bias[p * MR..],
                        q0,
                        b[q0 * ldb..].as_ptr(),
                        ldb,
                        narrow.as_mut_ptr().add(p * MR * 16),
                        16,
                        q0 == 0,
                    )
                };
                assert!(ran, "AVX-512 has a narrow kernel");
            }
        }
        for r in 0..m {
            for j in 0..16 {
                assert_eq!(narrow[r * 16 + j].to_bits(), wide[r * 32 + j].to_bits(), "row {r} column {j}");
            }
        }
    }
}
