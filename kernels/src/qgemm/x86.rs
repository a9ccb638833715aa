//! x86_64 int8 micro-kernels (see `kernels::micro_i8` for the contract) and the F16C widening.

// Row loops index the accumulator array by row number next to pointer offsets; clearer than zips.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{KG, MR};

/// 8 x 32 tile with AVX-512 VNNI: `vpdpbusd(acc, x + 128 (u8), w (i8))`, exact i32 sums of 4 products.
///
/// # Safety
/// The CPU supports AVX-512F and AVX-512 VNNI; pointers as in `kernels::micro_i8` with `nr = 32`.
#[target_feature(enable = "avx512f,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn i8_8x32_vnni(groups: usize, a: *const i8, b: *const u8, offs: *const u32, c: *mut i32, ldc: usize, first: bool) {
    // SAFETY: every offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); 2]; MR];
        for g in 0..groups {
            let bp = b.add(*offs.add(g) as usize);
            let b0 = _mm512_loadu_si512(bp as *const __m512i);
            let b1 = _mm512_loadu_si512(bp.add(64) as *const __m512i);
            let ap = a.add(g * MR * KG) as *const i32;
            for r in 0..MR {
                let av = _mm512_set1_epi32(ap.add(r).read_unaligned());
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, av);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, av);
            }
        }
        for r in 0..MR {
            let row = c.add(r * ldc);
            for h in 0..2 {
                let p = row.add(16 * h) as *mut __m512i;
                let v = if first { acc[r][h] } else { _mm512_add_epi32(acc[r][h], _mm512_loadu_si512(p)) };
                _mm512_storeu_si512(p, v);
            }
        }
    }
}

/// 8 x 8 tile with AVX2: `vpmaddubsw(|x|, w * sign(x))` gives pair sums of at most `2 * 127 * 127 =
/// 32258` in magnitude (activations and weights lie in [-127, 127]), so it never saturates;
/// `vpmaddwd` by 1 then widens the pairs into exact i32 sums of 4.
///
/// # Safety
/// The CPU supports AVX2; pointers as in `kernels::micro_i8` with `nr = 8`.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn i8_8x8_avx2(groups: usize, a: *const i8, b: *const u8, offs: *const u32, c: *mut i32, ldc: usize, first: bool) {
    // SAFETY: every offset below stays within the ranges the caller vouched for.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); MR];
        for g in 0..groups {
            let bv = _mm256_loadu_si256(b.add(*offs.add(g) as usize) as *const __m256i);
            let babs = _mm256_abs_epi8(bv);
            let ap = a.add(g * MR * KG) as *const i32;
            for r in 0..MR {
                let av = _mm256_set1_epi32(ap.add(r).read_unaligned());
                let pairs = _mm256_maddubs_epi16(babs, _mm256_sign_epi8(av, bv));
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, ones));
            }
        }
        for r in 0..MR {
            let p = c.add(r * ldc) as *mut __m256i;
            let v = if first { acc[r] } else { _mm256_add_epi32(acc[r], _mm256_loadu_si256(p)) };
            _mm256_storeu_si256(p, v);
        }
    }
}

/// Widens `src` (IEEE half bits) into `dst` with F16C, 8 at a time; the tail in scalar F16C.
///
/// # Safety
/// The CPU supports F16C and AVX; `dst.len() >= src.len()`.
#[target_feature(enable = "avx,f16c")]
pub unsafe fn widen_f16c(src: &[u16], dst: &mut [f32]) {
    let n = src.len();
    assert!(dst.len() >= n, "widen_f16c: destination shorter than source");
    let full = n / 8 * 8;
    // SAFETY: indices below `full` (8 at a time) and below `n` are inside both slices.
    unsafe {
        for i in (0..full).step_by(8) {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        for i in full..n {
            let h = _mm_cvtsi32_si128(src[i] as i32);
            dst[i] = _mm_cvtss_f32(_mm_cvtph_ps(h));
        }
    }
}

/// Rounds `src` to the nearest half (ties to even) into `dst` (IEEE half bits) with F16C, 8 at a time;
/// the tail in scalar F16C.
///
/// # Safety
/// The CPU supports F16C and AVX; `dst.len() >= src.len()`.
#[target_feature(enable = "avx,f16c")]
pub unsafe fn narrow_f16c(src: &[f32], dst: &mut [u16]) {
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
    let n = src.len();
    assert!(dst.len() >= n, "narrow_f16c: destination shorter than source");
    let full = n / 8 * 8;
    // SAFETY: indices below `full` (8 at a time) and below `n` are inside both slices.
    unsafe {
        for i in (0..full).step_by(8) {
            let h = _mm256_cvtps_ph::<NEAREST>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
        }
        for i in full..n {
            let h = _mm_cvtps_ph::<NEAREST>(_mm_set_ss(src[i]));
            dst[i] = _mm_cvtsi128_si32(h) as u16;
        }
    }
}

/// Independent dependency chains in the peak loops (covers latency x ports on current cores).
const CHAINS: usize = 12;

/// `iters` rounds of `CHAINS` `vpdpbusd` (64 MACs each); returns a checksum that keeps the work alive.
///
/// # Safety
/// The CPU supports AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn peak_loop_vnni(iters: u64) -> i32 {
    let (a, b) = (_mm512_set1_epi32(std::hint::black_box(0x0101_0101)), _mm512_set1_epi32(std::hint::black_box(0x0102_0304)));
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, a, b);
        }
    }
    acc.iter().fold(0, |s, v| s.wrapping_add(_mm512_reduce_add_epi32(*v)))
}

/// `iters` rounds of `CHAINS` AVX2 kernel steps (sign, maddubs, madd, add: 32 MACs each).
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn peak_loop_avx2(iters: u64) -> i32 {
    let (a, b) = (_mm256_set1_epi32(std::hint::black_box(0x0101_0101)), _mm256_set1_epi32(std::hint::black_box(0x0102_0304)));
    let (ones, babs) = (_mm256_set1_epi16(1), _mm256_abs_epi8(b));
    let mut acc = [_mm256_setzero_si256(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            let pairs = _mm256_maddubs_epi16(babs, _mm256_sign_epi8(a, b));
            *v = _mm256_add_epi32(*v, _mm256_madd_epi16(pairs, ones));
        }
    }
    let mut lanes = [0i32; 8];
    for v in acc {
        // SAFETY: `lanes` holds 8 i32; storeu has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(
                lanes.as_mut_ptr() as *mut __m256i,
                _mm256_add_epi32(v, _mm256_loadu_si256(lanes.as_ptr() as *const __m256i)),
            )
        };
    }
    lanes.iter().fold(0, |s, v| s.wrapping_add(*v))
}
