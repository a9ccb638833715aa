//! Fully connected layers on row-major token matrices: one GEMM reading the PyTorch `[out, in]` weight in
//! place (as a column-major `[in, out]` operand), threaded by the GEMM over output blocks.

use crate::matmul::{sgemm, threads, View};

/// Below this many multiply-adds a single thread is faster than waking the pool.
const PARALLEL_MACS: usize = 1 << 18;

/// `out[n, o] = sum_i x[n, i] * weight[o, i] + bias[o]`; x `[n, in_f]`, weight `[out_f, in_f]`, out `[n, out_f]`.
/// Does not allocate (beyond the GEMM library's packing buffers). Results do not depend on the thread count:
/// the product is split over output blocks only.
pub fn linear(x: &[f32], n: usize, in_f: usize, weight: &[f32], bias: Option<&[f32]>, out_f: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n * in_f, "linear input length");
    assert_eq!(weight.len(), out_f * in_f, "linear weight length");
    if let Some(b) = bias {
        assert_eq!(b.len(), out_f, "linear bias length");
    }
    assert_eq!(out.len(), n * out_f, "linear output length");
    if out.is_empty() {
        return;
    }
    // Start from the bias so the GEMM can accumulate onto it: no second pass over the output.
    match bias {
        Some(b) => out.chunks_exact_mut(out_f).for_each(|row| row.copy_from_slice(b)),
        None => out.fill(0.0),
    }
    let t = if n * in_f * out_f >= PARALLEL_MACS { threads() } else { 1 };
    let lhs = View::new(x, in_f, 1);
    let rhs = View::new(weight, 1, in_f);
    sgemm(n, out_f, in_f, out, out_f, 1, true, lhs, rhs, 1.0, t);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::testing::{assert_close, seeded, Tolerance};

    fn check(n: usize, in_f: usize, out_f: usize, with_bias: bool) {
        let x = seeded(1, n * in_f);
        let w = seeded(2, out_f * in_f);
        let b = seeded(3, out_f);
        let b = with_bias.then_some(&b[..]);
        let mut want = vec![0f32; n * out_f];
        reference::linear(&x, n, in_f, &w, b, out_f, &mut want);
        let mut got = vec![f32::NAN; n * out_f];
        linear(&x, n, in_f, &w, b, out_f, &mut got);
        // Fp32: same products, different summation order; in_f <= 768 terms of magnitude < 1.
        assert_close(&format!("linear {n}x{in_f}->{out_f}"), &got, &want, Tolerance::Fp32);
    }

    #[test]
    fn linear_layers_match_the_reference_on_odd_sizes() {
        check(1, 1, 1, true);
        check(13, 127, 5, true);
        check(37, 64, 129, false);
        check(1, 4096, 7, true); // final_linear's shape, narrowed
        check(131, 768, 67, true); // enough work for the threaded path
    }

    #[test]
    fn linear_results_do_not_depend_on_the_thread_count() {
        let (n, in_f, out_f) = (97, 300, 211);
        let x = seeded(4, n * in_f);
        let w = seeded(5, out_f * in_f);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
            let mut out = vec![0f32; n * out_f];
            pool.install(|| linear(&x, n, in_f, &w, None, out_f, &mut out));
            out
        };
        assert_eq!(run(1), run(2), "linear differs between 1 and 2 threads");
    }
}
