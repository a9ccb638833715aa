//! Our SGEMM against a naive triple loop on awkward sizes, on every micro-kernel this CPU can run.
//!
//! Tolerance: `Fp32`. The kernels sum the same products in a different order (and with fused
//! multiply-adds); with operands in [-1, 1) and k <= 600 terms the difference stays far below 1e-5 of the
//! largest output.

use super::*;
use crate::testing::{assert_close, seeded, Tolerance};

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            v.push(Isa::Avx2);
        }
        if std::is_x86_feature_detected!("avx512f") {
            v.push(Isa::Avx512);
        }
    }
    v
}

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
    for isa in isas() {
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
    for isa in isas() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let (one, _) = run(isa, 37, 45, 300, 45, true, 1);
        let (two, _) = pool.install(|| run(isa, 37, 45, 300, 45, true, 2));
        assert_eq!(one, two, "{isa:?}: 1 vs 2 threads");
    }
}

#[test]
fn empty_inner_dimension_gives_the_bias() {
    for isa in isas() {
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
