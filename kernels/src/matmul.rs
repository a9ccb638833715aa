//! Strided f32 matrix product on top of the `gemm` crate, with the bounds checks that make it safe,
//! plus the few threading helpers the kernels share.
//!
//! Every kernel here maps its work onto `dst = lhs * rhs` (optionally `dst += ...`) over strided views of
//! plain slices, so weights in PyTorch layout and `[C, H, W]` maps are used in place without transposes.

use gemm::Parallelism;

/// A read-only strided matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    pub fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        View { data, rs, cs }
    }
}

/// Index one past the last element a `rows x cols` view with strides `rs`, `cs` touches (0 when empty).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// How many threads a kernel may use: rayon's current pool (so `RAYON_NUM_THREADS` and `install` apply).
pub fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// `dst (m x n) = [dst +] scale * lhs (m x k) * rhs (k x n)`; `dst` is `data[r * rs + c * cs]`.
///
/// `threads > 1` lets the product split itself over rayon's pool; callers that already run in parallel
/// pass 1. The split is over output blocks only, never over `k`, so results do not depend on `threads`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    scale: f32,
    threads: usize,
) {
    assert!(extent(m, n, dst_rs, dst_cs) <= dst.len(), "sgemm destination view out of bounds");
    assert!(extent(m, k, lhs.rs, lhs.cs) <= lhs.data.len(), "sgemm lhs view out of bounds");
    assert!(extent(k, n, rhs.rs, rhs.cs) <= rhs.data.len(), "sgemm rhs view out of bounds");
    // SAFETY: the three views were checked to lie inside their slices; `dst` is exclusively borrowed.
    unsafe { sgemm_raw(m, n, k, dst.as_mut_ptr(), dst_rs, dst_cs, accumulate, lhs, rhs, scale, threads) }
}

/// As [`sgemm`], writing through a raw pointer so parallel callers can fill disjoint parts of one buffer.
///
/// # Safety
/// Every element `dst[r * dst_rs + c * dst_cs]` for `r < m`, `c < n` must be valid for writes and not
/// accessed by anyone else during the call; the `lhs`/`rhs` views must lie inside their slices.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    scale: f32,
    threads: usize,
) {
    debug_assert!(extent(m, k, lhs.rs, lhs.cs) <= lhs.data.len());
    debug_assert!(extent(k, n, rhs.rs, rhs.cs) <= rhs.data.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    // SAFETY: (r, c) is inside the destination view the caller vouched for.
                    unsafe { *dst.add(r * dst_rs + c * dst_cs) = 0.0 };
                }
            }
        }
        return;
    }
    if m == 1 || n == 1 {
        // Matrix-vector products (the refiner's per-frame modulation linears): direct dot products, because
        // the gemm crate allocates packing buffers on every call and these are too small to need them.
        for r in 0..m {
            for c in 0..n {
                // SAFETY: every index stays inside the views the caller vouched for.
                unsafe {
                    let acc = if lhs.cs == 1 && rhs.rs == 1 {
                        dot(&lhs.data[r * lhs.rs..][..k], &rhs.data[c * rhs.cs..][..k])
                    } else {
                        (0..k)
                            .map(|i| *lhs.data.get_unchecked(r * lhs.rs + i * lhs.cs) * *rhs.data.get_unchecked(i * rhs.rs + c * rhs.cs))
                            .sum()
                    };
                    let d = dst.add(r * dst_rs + c * dst_cs);
                    *d = if accumulate { *d + scale * acc } else { scale * acc };
                }
            }
        }
        return;
    }
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: forwarded from the caller; gemm reads dst only when `read_dst` (= accumulate) is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        )
    }
}

/// Dot product in 16 independent lanes (vectorises; fixed order, so deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// A raw output pointer that may cross threads: used where parallel tasks write provably disjoint parts
/// of one buffer (row bands of every channel plane), which safe slices cannot express.
#[derive(Clone, Copy)]
pub struct SyncPtr(pub *mut f32);

impl SyncPtr {
    /// The pointer. Closures must call this rather than read `.0`: edition-2021 closures would otherwise
    /// capture the bare (non-`Sync`) field.
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: users only write disjoint elements from different tasks (documented at each use).
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    fn naive(m: usize, n: usize, k: usize, a: View, b: View) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k).map(|i| a.data[r * a.rs + i * a.cs] * b.data[i * b.rs + c * b.cs]).sum();
            }
        }
        out
    }

    #[test]
    fn strided_products_match_a_naive_triple_loop() {
        // Fp32: only the summation order differs (k <= 300 terms of magnitude <= 1).
        for &(m, n, k) in &[(1, 1, 1), (13, 7, 5), (127, 33, 300), (5, 130, 17)] {
            let a = seeded(1, m * k);
            let b = seeded(2, k * n);
            let want = naive(m, n, k, View::new(&a, 1, m), View::new(&b, n, 1));
            for threads in [1, 2] {
                let mut got = vec![0f32; m * n];
                sgemm(m, n, k, &mut got, n, 1, false, View::new(&a, 1, m), View::new(&b, n, 1), 1.0, threads);
                assert_close(&format!("sgemm {m}x{n}x{k} t{threads}"), &got, &want, Tolerance::Fp32);
            }
        }
    }

    #[test]
    fn matrix_vector_products_match_a_naive_loop() {
        // The m == 1 / n == 1 path: same tolerance reasoning as above (k <= 515).
        for &(m, n, k) in &[(1, 37, 515), (29, 1, 130), (1, 1, 7)] {
            let a = seeded(5, m * k);
            let b = seeded(6, k * n);
            let want = naive(m, n, k, View::new(&a, k, 1), View::new(&b, 1, k));
            let mut got = vec![f32::NAN; m * n];
            sgemm(m, n, k, &mut got, n, 1, false, View::new(&a, k, 1), View::new(&b, 1, k), 1.0, 2);
            assert_close(&format!("gemv {m}x{n}x{k}"), &got, &want, Tolerance::Fp32);
        }
    }

    #[test]
    fn accumulate_adds_the_scaled_product_to_the_destination() {
        let (m, n, k) = (9, 11, 4);
        let a = seeded(3, m * k);
        let b = seeded(4, k * n);
        let prod = naive(m, n, k, View::new(&a, k, 1), View::new(&b, n, 1));
        let mut got = vec![1.0f32; m * n];
        sgemm(m, n, k, &mut got, n, 1, true, View::new(&a, k, 1), View::new(&b, n, 1), 0.5, 1);
        let want: Vec<f32> = prod.iter().map(|p| 1.0 + 0.5 * p).collect();
        assert_close("sgemm accumulate", &got, &want, Tolerance::Fp32);
    }

    #[test]
    fn empty_inner_dimension_clears_the_destination() {
        let mut got = vec![3.0f32; 6];
        sgemm(2, 3, 0, &mut got, 3, 1, false, View::new(&[], 0, 0), View::new(&[], 0, 0), 1.0, 1);
        assert_eq!(got, vec![0.0; 6]);
    }
}
