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

/// Eight-lane dot product: `lanes[l] += a[8 i + l] * b[8 i + l]` over the whole 8-blocks (one vector
/// multiply and add, never fused), then the lanes summed in order, then the tail (the last `len % 8`
/// products, summed in order) added. Fed in pieces whose lengths are multiples of 8 (all but the last),
/// it gives the bits of one [`dot8`] over the whole vectors, so a row can be widened a piece at a time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dot8 {
    lanes: [f32; 8],
    tail: Option<f32>,
}

impl Dot8 {
    /// Adds `a . b` (equal lengths); only the last piece may have a length that is not a multiple of 8.
    #[inline(always)]
    pub fn feed(&mut self, a: &[f32], b: &[f32]) {
        debug_assert!(self.tail.is_none(), "Dot8: a piece after the tail");
        let mut lanes = self.lanes;
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                lanes[l] += x[l] * y[l];
            }
        }
        self.lanes = lanes;
        if !ra.is_empty() {
            self.tail = Some(ra.iter().zip(rb).map(|(x, y)| x * y).sum());
        }
    }

    /// The lanes' sum plus the tail's.
    pub fn sum(self) -> f32 {
        self.lanes.iter().sum::<f32>() + self.tail.unwrap_or_else(|| std::iter::empty::<f32>().sum())
    }
}

/// `a . b` by [`Dot8`]: vectorises, and its fixed order makes it deterministic.
pub fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut d = Dot8::default();
    d.feed(a, b);
    d.sum()
}

/// A row-major `[out_f, in_f]` weight in reduced precision, as a model file stores it.
#[derive(Clone, Copy, Debug)]
pub enum RowsRef<'a> {
    /// IEEE halves, little-endian bytes (any alignment).
    F16(&'a [u8]),
    /// Symmetric int8 with one scale per row: `w[o, i] = q[o, i] * scales[o]`.
    I8 { q: &'a [u8], scales: &'a [f32] },
}

/// Weights widened at a time per row (a multiple of 8: see [`Dot8`]).
const PIECE: usize = 256;
/// Output rows per task of the threaded [`linear_vec`].
const ROWS_PER_TASK: usize = 32;

/// `out[o] = bias[o] + dot8(x, w[o, ..])` for one vector `x` `[in_f]`, each row widened to f32 a piece
/// at a time (F16C / NEON for halves), so no f32 copy of the weight exists. Rows are split over the
/// thread pool above [`PARALLEL_MACS`]; a row is always one task's, so the result does not depend on
/// the thread count. Panics on inconsistent lengths (a caller's bug: `Linear::load` checks the file).
pub fn linear_vec(x: &[f32], w: RowsRef, bias: &[f32], out: &mut [f32]) {
    let (in_f, out_f) = (x.len(), out.len());
    let stored = match w {
        RowsRef::F16(b) => b.len() / 2,
        RowsRef::I8 { q, scales } => {
            assert_eq!(scales.len(), out_f, "linear_vec: int8 row scales");
            q.len()
        }
    };
    assert_eq!(stored, out_f * in_f, "linear_vec weight length");
    assert_eq!(bias.len(), out_f, "linear_vec bias length");
    let rows = |o0: usize, out: &mut [f32]| {
        let mut buf = [0f32; PIECE];
        for (i, y) in out.iter_mut().enumerate() {
            let o = o0 + i;
            let mut d = Dot8::default();
            for p0 in (0..in_f).step_by(PIECE) {
                let len = PIECE.min(in_f - p0);
                let piece = &mut buf[..len];
                let at = o * in_f + p0;
                match w {
                    RowsRef::F16(b) => widen_f16_bytes(&b[2 * at..2 * (at + len)], piece),
                    RowsRef::I8 { q, scales } => {
                        for (v, &q) in piece.iter_mut().zip(&q[at..at + len]) {
                            *v = q as i8 as f32 * scales[o];
                        }
                    }
                }
                d.feed(&x[p0..p0 + len], piece);
            }
            *y = bias[o] + d.sum();
        }
    };
    if in_f * out_f >= PARALLEL_MACS && threads() > 1 {
        use rayon::prelude::*;
        out.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, o)| rows(t * ROWS_PER_TASK, o));
    } else {
        rows(0, out);
    }
}

/// Little-endian half bytes widened into `dst` (F16C / NEON when the bytes are 2-byte aligned).
fn widen_f16_bytes(src: &[u8], dst: &mut [f32]) {
    match bytemuck::try_cast_slice::<u8, half::f16>(src) {
        Ok(h) => crate::qgemm::widen_f16(h, dst),
        Err(_) => {
            for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
    }
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

    /// A weight by (row, column), widened.
    type WeightAt<'a> = dyn Fn(usize, usize) -> f32 + 'a;

    /// The plain scalar formula `linear_vec` must reproduce bit for bit: eight lanes over whole blocks,
    /// lanes summed in order, tail summed in order, bias added last.
    fn plain_vec(x: &[f32], w: impl Fn(usize, usize) -> f32, bias: &[f32]) -> Vec<f32> {
        let body = x.len() / 8 * 8;
        (0..bias.len())
            .map(|o| {
                let mut lanes = [0f32; 8];
                for i in (0..body).step_by(8) {
                    for (l, a) in lanes.iter_mut().enumerate() {
                        *a += x[i + l] * w(o, i + l);
                    }
                }
                let tail: f32 = (body..x.len()).map(|i| x[i] * w(o, i)).sum();
                bias[o] + (lanes.iter().sum::<f32>() + tail)
            })
            .collect()
    }

    #[test]
    fn reduced_precision_rows_match_the_plain_formula_bit_for_bit_and_f64_closely() {
        // in_f below, at and across the widening piece, with and without a tail; enough rows to thread.
        for (in_f, out_f) in [(1, 3), (13, 5), (256, 40), (517, 33), (4096, 9), (512, 600)] {
            let x = seeded(6, in_f);
            let bias = seeded(7, out_f);
            let wf = seeded(8, out_f * in_f);
            let halves: Vec<half::f16> = wf.iter().map(|&v| half::f16::from_f32(v)).collect();
            let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
            let q: Vec<u8> = wf.iter().map(|&v| ((v * 127.0).round() as i8) as u8).collect();
            let scales: Vec<f32> = (0..out_f).map(|o| 0.01 + o as f32 * 1e-3).collect();
            let f16_at = |o: usize, i: usize| halves[o * in_f + i].to_f32();
            let i8_at = |o: usize, i: usize| q[o * in_f + i] as i8 as f32 * scales[o];
            // The same bytes one byte off their alignment take the scalar widening.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let cases: [(&str, RowsRef, &WeightAt); 3] = [
                ("f16", RowsRef::F16(&bytes), &f16_at),
                ("f16 unaligned", RowsRef::F16(&shifted[1..]), &f16_at),
                ("i8", RowsRef::I8 { q: &q, scales: &scales }, &i8_at),
            ];
            for (what, rows, at) in cases {
                let mut got = vec![f32::NAN; out_f];
                linear_vec(&x, rows, &bias, &mut got);
                let want = plain_vec(&x, at, &bias);
                let (gb, wb): (Vec<u32>, Vec<u32>) =
                    (got.iter().map(|v| v.to_bits()).collect(), want.iter().map(|v| v.to_bits()).collect());
                assert_eq!(gb, wb, "{what} {in_f}->{out_f}: not the plain formula's bits");
                for o in 0..out_f {
                    let exact: f64 = bias[o] as f64 + (0..in_f).map(|i| x[i] as f64 * at(o, i) as f64).sum::<f64>();
                    let bound = 1e-6 * (1.0 + (0..in_f).map(|i| (x[i] * at(o, i)).abs() as f64).sum::<f64>());
                    assert!((got[o] as f64 - exact).abs() <= bound, "{what} {in_f}->{out_f} row {o}: {} vs {exact}", got[o]);
                }
                let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
                let mut serial = vec![f32::NAN; out_f];
                one.install(|| linear_vec(&x, rows, &bias, &mut serial));
                assert_eq!(serial.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), gb, "{what}: thread count changed bits");
            }
        }
    }

    #[test]
    fn dot8_in_pieces_equals_dot8_whole() {
        let (a, b) = (seeded(9, 1037), seeded(10, 1037));
        let mut d = Dot8::default();
        for (pa, pb) in a.chunks(256).zip(b.chunks(256)) {
            d.feed(pa, pb);
        }
        assert_eq!(d.sum().to_bits(), dot8(&a, &b).to_bits());
        // Eight zero lanes then an empty tail: +0, as the plain formula gives.
        assert_eq!(dot8(&[], &[]).to_bits(), 0f32.to_bits());
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
