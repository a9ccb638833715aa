//! x86_64 micro-kernels: `MR = 8` rows of broadcast `A` values times one strip of `B` vectors, with all
//! accumulators in registers (AVX-512: 16 of 32 zmm; AVX2: 8 of 16 ymm, leaving room for loads).

// Row loops index the accumulator array by row number next to `bias`/`c` offsets; clearer than zips.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::MR;

/// 8x32 tile with AVX-512F. See `super::micro` for the contract.
///
/// # Safety
/// The CPU supports AVX-512F; pointers as in `super::micro` with `nr = 32`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel_8x32_avx512(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    first: bool,
    bias: *const f32,
) {
    // SAFETY: every pointer offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for r in 0..MR {
            if first {
                let v = _mm512_set1_ps(*bias.add(r));
                acc[r] = [v, v];
            } else {
                let row = c.add(r * ldc);
                acc[r] = [_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16))];
            }
        }
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for r in 0..MR {
                let av = _mm512_set1_ps(*ap.add(r));
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            }
            ap = ap.add(MR);
            bp = bp.add(ldb);
        }
        for r in 0..MR {
            let row = c.add(r * ldc);
            _mm512_storeu_ps(row, acc[r][0]);
            _mm512_storeu_ps(row.add(16), acc[r][1]);
        }
    }
}

/// 8x8 tile with AVX2+FMA. See `super::micro` for the contract.
///
/// # Safety
/// The CPU supports AVX2 and FMA; pointers as in `super::micro` with `nr = 8`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel_8x8_avx2(kc: usize, a: *const f32, b: *const f32, ldb: usize, c: *mut f32, ldc: usize, first: bool, bias: *const f32) {
    // SAFETY: every pointer offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); MR];
        for (r, v) in acc.iter_mut().enumerate() {
            *v = if first { _mm256_set1_ps(*bias.add(r)) } else { _mm256_loadu_ps(c.add(r * ldc)) };
        }
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            let bv = _mm256_loadu_ps(bp);
            for (r, v) in acc.iter_mut().enumerate() {
                *v = _mm256_fmadd_ps(_mm256_set1_ps(*ap.add(r)), bv, *v);
            }
            ap = ap.add(MR);
            bp = bp.add(ldb);
        }
        for (r, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), *v);
        }
    }
}

/// [`kernel_8x32_avx512`] with `B` row `q` at `b + offs[q]` (rows read straight from a feature map by
/// the implicit-GEMM convolution, no packing).
///
/// # Safety
/// The CPU supports AVX-512F; `offs` holds `kc` entries and every `b + offs[q]` has 32 readable floats;
/// `a`, `c`, `bias` as in [`kernel_8x32_avx512`].
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel_8x32_avx512_offs(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    c: *mut f32,
    ldc: usize,
    first: bool,
    bias: *const f32,
) {
    // SAFETY: every pointer offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for r in 0..MR {
            if first {
                let v = _mm512_set1_ps(*bias.add(r));
                acc[r] = [v, v];
            } else {
                let row = c.add(r * ldc);
                acc[r] = [_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16))];
            }
        }
        let mut ap = a;
        for q in 0..kc {
            let bp = b.add(*offs.add(q) as usize);
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for r in 0..MR {
                let av = _mm512_set1_ps(*ap.add(r));
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            }
            ap = ap.add(MR);
        }
        for r in 0..MR {
            let row = c.add(r * ldc);
            _mm512_storeu_ps(row, acc[r][0]);
            _mm512_storeu_ps(row.add(16), acc[r][1]);
        }
    }
}

/// `P` micro-panels (`8 P` rows) x 16 columns with AVX-512F: the narrow strip for products whose column
/// count leaves half of a 32-wide strip empty (the Winograd products of 16x16 maps: 16 tiles). Each
/// output value gets exactly the FMAs of [`kernel_8x32_avx512`] in the same order (bias or `c`, then
/// `q = 0..kc`), so the two kernels agree bit for bit on the columns they share. Two panels give 16
/// independent accumulator chains (one panel's 8 would just cover the FMA latency of two ports).
///
/// # Safety
/// The CPU supports AVX-512F; each `a[i]` holds `kc * MR` floats (a panel of `super::pack_a` from its
/// inner row `q0`), `bias` `8 P`, `b` `kc` rows of 16 readable floats at stride `ldb`, `c` `8 P` rows of 16
/// writable floats at stride `ldc`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel_16cols_avx512<const P: usize>(
    kc: usize,
    a: [*const f32; P],
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    first: bool,
    bias: *const f32,
) {
    // SAFETY: every pointer offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); MR]; P];
        for p in 0..P {
            for r in 0..MR {
                let row = p * MR + r;
                acc[p][r] = if first { _mm512_set1_ps(*bias.add(row)) } else { _mm512_loadu_ps(c.add(row * ldc)) };
            }
        }
        let mut bp = b;
        for q in 0..kc {
            let bv = _mm512_loadu_ps(bp);
            for p in 0..P {
                let ap = a[p].add(q * MR);
                for r in 0..MR {
                    acc[p][r] = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(r)), bv, acc[p][r]);
                }
            }
            bp = bp.add(ldb);
        }
        for p in 0..P {
            for r in 0..MR {
                _mm512_storeu_ps(c.add((p * MR + r) * ldc), acc[p][r]);
            }
        }
    }
}
