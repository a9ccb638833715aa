//! AVX-512F bodies of `fused.rs`'s compute-bound passes (the profile of an official refine found the x2
//! bilinear upsample at 2.7-3.3 GB/s and the StyleConv epilogue at 5.5 GB/s, against 20-40 GB/s for the
//! plain channel passes: their scalar per-pixel closures did not vectorise on the SSE2 baseline).
//! Same operations in the same order as the scalar code (`mul` then `add`, never FMA), so the results are
//! bit-identical; `fused.rs`'s tests compare the two with exact equality.

use std::arch::x86_64::*;

/// The per-lane leaky ReLU `v < 0 ? v * slope : v` (identity without `slope`), as `act::leaky_relu`
/// computes it: one multiply on the lanes that compare below zero (NaN and -0.0 pass unchanged). A macro,
/// so the closure is made inside the `avx512f` function and its intrinsics inline there.
macro_rules! activation {
    ($slope:expr) => {{
        let slope: Option<f32> = $slope;
        move |v: __m512| match slope {
            Some(sl) => _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps()), v, _mm512_set1_ps(sl)),
            None => v,
        }
    }};
}

/// Lane mask of the first `n` (<= 16) lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

/// The interior of one exact-x2 output row: for `j = 1..w`, `row[2j - 1]` and `row[2j]` blend input
/// columns `j - 1` and `j` at (0.75, 0.25) and (0.25, 0.75) horizontally, rows `r0`, `r1` at `(wy0, wy1)`
/// vertically, then scale by `sc`: `(wy0 * (wx0 r0[x0] + wx1 r0[x1]) + wy1 * (wx0 r1[x0] + wx1 r1[x1])) * sc`.
/// `row[0]` and `row[2w - 1]` (the clamped borders) are left to the caller. With `slope`, every input
/// value `v` is first replaced by `v < 0 ? v * slope : v` (leaky ReLU on read).
///
/// # Safety
/// The CPU has AVX-512F; `r0.len() == r1.len() == w`, `row.len() == 2 w`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn up2_row(r0: &[f32], r1: &[f32], wy0: f32, wy1: f32, sc: f32, slope: Option<f32>, row: &mut [f32]) {
    let w = r0.len();
    debug_assert!(r1.len() == w && row.len() == 2 * w);
    let (q1, q3) = (_mm512_set1_ps(0.25), _mm512_set1_ps(0.75));
    let (vy0, vy1, vs) = (_mm512_set1_ps(wy0), _mm512_set1_ps(wy1), _mm512_set1_ps(sc));
    let act = activation!(slope);
    let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let mut j = 1;
    while j < w {
        let m = (w - j).min(16);
        let mask = lanes(m);
        // SAFETY: lanes k < m read columns j - 1 + k and j + k, both < w.
        let (a0, b0, a1, b1) = unsafe {
            (
                _mm512_maskz_loadu_ps(mask, r0.as_ptr().add(j - 1)),
                _mm512_maskz_loadu_ps(mask, r0.as_ptr().add(j)),
                _mm512_maskz_loadu_ps(mask, r1.as_ptr().add(j - 1)),
                _mm512_maskz_loadu_ps(mask, r1.as_ptr().add(j)),
            )
        };
        let (a0, b0, a1, b1) = (act(a0), act(b0), act(a1), act(b1));
        let blend = |a: __m512, b: __m512, wa: __m512, wb: __m512| _mm512_add_ps(_mm512_mul_ps(wa, a), _mm512_mul_ps(wb, b));
        let vert = |h0: __m512, h1: __m512| _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(vy0, h0), _mm512_mul_ps(vy1, h1)), vs);
        let odd = vert(blend(a0, b0, q3, q1), blend(a1, b1, q3, q1));
        let even = vert(blend(a0, b0, q1, q3), blend(a1, b1, q1, q3));
        let (lo, hi) = (_mm512_permutex2var_ps(odd, lo_idx, even), _mm512_permutex2var_ps(odd, hi_idx, even));
        // SAFETY: outputs 2j - 1 .. 2j - 1 + 2m lie below 2w - 1.
        unsafe {
            let p = row.as_mut_ptr().add(2 * j - 1);
            _mm512_mask_storeu_ps(p, lanes(2 * m), lo);
            if m > 8 {
                _mm512_mask_storeu_ps(p.add(16), lanes(2 * m - 16), hi);
            }
        }
        j += m;
    }
}

/// One exact-x0.5 output row: `row[x]` blends input columns `2x` and `2x + 1` at (0.5, 0.5) in rows `r0`,
/// `r1` at `(wy0, wy1)`, then scales by `sc`, in the scalar order
/// `(wy0 * (0.5 r0[2x] + 0.5 r0[2x+1]) + wy1 * (0.5 r1[2x] + 0.5 r1[2x+1])) * sc`; `slope` as in [`up2_row`].
///
/// # Safety
/// The CPU has AVX-512F; `r0.len() == r1.len() == 2 * row.len()`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn down2_row(r0: &[f32], r1: &[f32], wy0: f32, wy1: f32, sc: f32, slope: Option<f32>, row: &mut [f32]) {
    let ow = row.len();
    debug_assert!(r0.len() == 2 * ow && r1.len() == 2 * ow);
    let (half, vy0, vy1, vs) = (_mm512_set1_ps(0.5), _mm512_set1_ps(wy0), _mm512_set1_ps(wy1), _mm512_set1_ps(sc));
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let act = activation!(slope);
    // Columns 2x and 2x + 1 of 16 outputs: 32 inputs, split into even and odd lanes.
    let pair = |r: &[f32], x: usize, m: usize| {
        // SAFETY: lanes below 2m read columns 2x .. 2x + 2m <= 2 ow = r.len(); the rest are masked off.
        let (lo, hi) = unsafe {
            let p = r.as_ptr().add(2 * x);
            (_mm512_maskz_loadu_ps(lanes(2 * m), p), _mm512_maskz_loadu_ps(lanes((2 * m).saturating_sub(16)), p.add(16)))
        };
        let (lo, hi) = (act(lo), act(hi));
        let (e, o) = (_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi));
        _mm512_add_ps(_mm512_mul_ps(half, e), _mm512_mul_ps(half, o))
    };
    let mut x = 0;
    while x < ow {
        let m = (ow - x).min(16);
        let (h0, h1) = (pair(r0, x, m), pair(r1, x, m));
        let v = _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(vy0, h0), _mm512_mul_ps(vy1, h1)), vs);
        // SAFETY: outputs x .. x + m lie inside the row.
        unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr().add(x), lanes(m), v) };
        x += m;
    }
}

/// `style_epilogue` on one channel plane: `y = lrelu(v * fc + strength * noise + b, slope)`, then
/// `y * scale + shift` with `sft`.
///
/// # Safety
/// The CPU has AVX-512F; `noise` (and each `sft` plane) has at least `plane.len()` floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn style_plane(plane: &mut [f32], noise: &[f32], fc: f32, strength: f32, b: f32, slope: f32, sft: Option<(&[f32], &[f32])>) {
    let n = plane.len();
    debug_assert!(noise.len() >= n && sft.is_none_or(|(a, s)| a.len() >= n && s.len() >= n));
    let (vf, vst, vb, vsl, zero) =
        (_mm512_set1_ps(fc), _mm512_set1_ps(strength), _mm512_set1_ps(b), _mm512_set1_ps(slope), _mm512_setzero_ps());
    let p = plane.as_mut_ptr();
    let mut i = 0;
    while i < n {
        let mask = lanes(n - i);
        // SAFETY: lanes below n - i of every plane are inside it; the others are masked off.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, p.add(i));
            let nz = _mm512_maskz_loadu_ps(mask, noise.as_ptr().add(i));
            let y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(v, vf), _mm512_mul_ps(vst, nz)), vb);
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, zero);
            let mut y = _mm512_mask_mul_ps(y, neg, y, vsl);
            if let Some((a, s)) = sft {
                let (a, s) = (_mm512_maskz_loadu_ps(mask, a.as_ptr().add(i)), _mm512_maskz_loadu_ps(mask, s.as_ptr().add(i)));
                y = _mm512_add_ps(_mm512_mul_ps(y, a), s);
            }
            _mm512_mask_storeu_ps(p.add(i), mask, y);
        }
        i += 16;
    }
}

/// One output row of `fused::resize_conv1x1_lrelu_add`: for each output channel `o` and pixel `x < ow`,
/// `acc = bias[o]`, then `acc = fma(w[o, i], rows[i * ow + x], acc)` for `i = 0..ci` (the SGEMM
/// kernel's order), then `out[o * plane + x] = lrelu(out[o * plane + x], slope) + acc`. Eight output
/// channels (one `sgemm` panel) by 32 pixels at a time, as the SGEMM micro-kernel.
///
/// # Safety
/// The CPU has AVX-512F; `panels` holds `ceil(co / 8)` panels of `8 * ci` floats (`sgemm::pack_a`),
/// `bias` at least as many rows; `rows` is `ci * ow` floats; `out + o * plane` has `ow` writable floats
/// for every `o < co`, touched by no one else meanwhile.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv1x1_lrelu_add(panels: &[f32], bias: &[f32], ci: usize, co: usize, rows: &[f32], out: *mut f32, plane: usize, slope: f32) {
    const MR: usize = crate::sgemm::MR;
    let ow = rows.len() / ci.max(1);
    debug_assert!(panels.len() >= co.div_ceil(MR) * MR * ci && bias.len() >= co.div_ceil(MR) * MR);
    let act = activation!(Some(slope));
    for p in 0..co.div_ceil(MR) {
        let panel = &panels[p * MR * ci..(p + 1) * MR * ci];
        let n = MR.min(co - p * MR);
        let mut x0 = 0;
        while x0 < ow {
            let m = (ow - x0).min(32);
            let (m0, m1) = (lanes(m), lanes(m.saturating_sub(16)));
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            for (r, a) in acc.iter_mut().enumerate() {
                *a = [_mm512_set1_ps(bias[p * MR + r]); 2];
            }
            for (i, wi) in panel.chunks_exact(MR).enumerate() {
                // SAFETY: lanes below m read pixels x0 .. x0 + m < ow of row i; the rest are masked off.
                let (b0, b1) = unsafe {
                    let q = rows.as_ptr().add(i * ow + x0);
                    (_mm512_maskz_loadu_ps(m0, q), _mm512_maskz_loadu_ps(m1, q.wrapping_add(16)))
                };
                for (a, &wv) in acc.iter_mut().zip(wi) {
                    let av = _mm512_set1_ps(wv);
                    *a = [_mm512_fmadd_ps(av, b0, a[0]), _mm512_fmadd_ps(av, b1, a[1])];
                }
            }
            for (r, a) in acc.iter().enumerate().take(n) {
                // SAFETY: as vouched by the caller: pixels x0 .. x0 + m of output row p * MR + r.
                unsafe {
                    let q = out.add((p * MR + r) * plane + x0);
                    let (v0, v1) = (_mm512_maskz_loadu_ps(m0, q), _mm512_maskz_loadu_ps(m1, q.wrapping_add(16)));
                    _mm512_mask_storeu_ps(q, m0, _mm512_add_ps(act(v0), a[0]));
                    // wrapping: with m <= 16 the upper half is fully masked and may point past the row.
                    _mm512_mask_storeu_ps(q.wrapping_add(16), m1, _mm512_add_ps(act(v1), a[1]));
                }
            }
            x0 += m;
        }
    }
}
