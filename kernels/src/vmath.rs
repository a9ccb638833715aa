//! Vectorised transcendental functions over slices (exp, sigmoid, GELU), AVX2+FMA when the CPU has it,
//! with a scalar fallback that computes the same formulas.
//!
//! Accuracy (measured against f64 in the tests): `exp` within 2 ulp over the range softmax and sigmoid
//! use; GELU's erf uses Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7 in erf), so
//! `|gelu - exact| <= 1e-7 * |x| + 1 ulp`.

/// Cephes' split of ln 2 (exact high part + correction) and its minimax polynomial for e^r, |r| <= ln2/2.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
/// Inputs are clamped here so 2^n stays a normal float.
const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.0;

/// Abramowitz & Stegun 7.1.26 coefficients.
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];

/// e^x by the same steps as the vector path.
#[inline]
pub fn exp_scalar(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = EXP_P[0];
    for c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Exact-erf GELU through A&S 7.1.26, written so negative inputs need no cancellation:
/// `gelu(x) = x * (1 - q/2)` for x >= 0 and `x * q/2` for x < 0, with `q = erfc(|x|/sqrt 2)`.
#[inline]
pub fn gelu_scalar(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + ERF_P * z);
    let poly = t * (ERF_A[0] + t * (ERF_A[1] + t * (ERF_A[2] + t * (ERF_A[3] + t * ERF_A[4]))));
    let q = poly * exp_scalar(-z * z);
    if x >= 0.0 {
        x * (1.0 - 0.5 * q)
    } else {
        x * 0.5 * q
    }
}

/// Largest element (`-inf` for an empty slice); 8 running maxima so it vectorises. NaNs are skipped.
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    chunks.remainder().iter().chain(&acc).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `x[i] = exp(x[i] - shift)`; returns the sum of the new values (softmax's denominator).
pub fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::exp_shifted_sum(x, shift) };
    }
    x.iter_mut().fold(0.0, |s, v| {
        *v = exp_scalar(*v - shift);
        s + *v
    })
}

/// `x[i] = 1 / (1 + exp(-x[i]))`.
pub fn sigmoid_slice(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::sigmoid(x) };
    }
    x.iter_mut().for_each(|v| *v = 1.0 / (1.0 + exp_scalar(-*v)));
}

/// `x[i] = gelu(x[i])` (exact-erf form).
pub fn gelu_slice(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::gelu(x) };
    }
    x.iter_mut().for_each(|v| *v = gelu_scalar(*v));
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_MIN)), _mm256_set1_ps(EXP_MAX));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(EXP_P[0]);
        for c in &EXP_P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(y, _mm256_castsi256_ps(bits))
    }

    /// Applies `f` to full 8-lane chunks and `tail` to the rest.
    #[target_feature(enable = "avx2,fma")]
    fn map8(x: &mut [f32], f: impl Fn(__m256) -> __m256, tail: impl Fn(f32) -> f32) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: the chunk holds exactly 8 floats; unaligned loads/stores.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), f(_mm256_loadu_ps(c.as_ptr()))) };
        }
        chunks.into_remainder().iter_mut().for_each(|v| *v = tail(*v));
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
        let s = _mm256_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: 8 floats per chunk.
            let e = exp8(_mm256_sub_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, s));
            acc = _mm256_add_ps(acc, e);
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), e) };
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f32 = lanes.iter().sum();
        for v in chunks.into_remainder() {
            *v = exp_scalar(*v - shift);
            sum += *v;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sigmoid(x: &mut [f32]) {
        let one = _mm256_set1_ps(1.0);
        map8(x, |v| _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v)))), |v| 1.0 / (1.0 + exp_scalar(-v)));
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu(x: &mut [f32]) {
        let sign = _mm256_set1_ps(-0.0);
        let one = _mm256_set1_ps(1.0);
        let half = _mm256_set1_ps(0.5);
        map8(
            x,
            |v| {
                let z = _mm256_mul_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
                let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), z, one));
                let mut p = _mm256_set1_ps(ERF_A[4]);
                for c in ERF_A[..4].iter().rev() {
                    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(*c));
                }
                let q = _mm256_mul_ps(_mm256_mul_ps(p, t), exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z))));
                let hq = _mm256_mul_ps(half, q);
                // x >= 0: x * (1 - q/2); x < 0: x * q/2.
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
                _mm256_mul_ps(v, _mm256_blendv_ps(_mm256_sub_ps(one, hq), hq, neg))
            },
            gelu_scalar,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        ((a as f64 - b) / (b.abs() * f32::EPSILON as f64).max(f32::MIN_POSITIVE as f64)).abs()
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut xs: Vec<f32> = (0..20001).map(|i| -86.0 + i as f32 * 0.0087).collect();
        let want: Vec<f64> = xs.iter().map(|&v| (v as f64).exp()).collect();
        let sum = exp_shifted_sum(&mut xs, 0.0);
        let worst = xs.iter().zip(&want).map(|(&a, &b)| ulps(a, b)).fold(0.0, f64::max);
        assert!(worst <= 2.0, "exp worst error {worst} ulp");
        assert!(sum.is_infinite(), "the sum of e^x up to e^88 overflows f32");
        // Softmax's case: shifted inputs <= 0, the sum must match f64's to fp32 rounding.
        let mut ys: Vec<f32> = (0..1371).map(|i| -(i as f32) * 0.013).collect();
        let total: f64 = ys.iter().map(|&v| (v as f64 - 0.5).exp()).sum();
        let sum = exp_shifted_sum(&mut ys, 0.5);
        assert!(((sum as f64 - total) / total).abs() < 1e-6, "exp sum {sum} vs {total}");
    }

    #[test]
    fn sigmoid_and_gelu_match_the_scalar_definitions() {
        // Tolerance: 2e-7 absolute for sigmoid (values in [0,1], a few ulp); GELU per the module bound.
        let xs: Vec<f32> = (0..4003).map(|i| -20.0 + i as f32 * 0.01).collect();
        let mut s = xs.clone();
        sigmoid_slice(&mut s);
        let mut g = xs.clone();
        gelu_slice(&mut g);
        for (i, &x) in xs.iter().enumerate() {
            let sig = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((s[i] as f64 - sig).abs() <= 2e-7, "sigmoid({x}) = {} want {sig}", s[i]);
            let want = crate::act::gelu_scalar(x) as f64;
            let bound = 2e-7 * (x.abs() as f64) + 1e-7 + want.abs() * f32::EPSILON as f64;
            assert!((g[i] as f64 - want).abs() <= bound, "gelu({x}) = {} want {want}", g[i]);
        }
    }

    #[test]
    fn max_finds_the_largest_element_anywhere() {
        let mut x: Vec<f32> = (0..37).map(|i| -(i as f32)).collect();
        assert_eq!(max(&x), 0.0);
        x[36] = 5.0; // in the remainder
        assert_eq!(max(&x), 5.0);
        x[9] = 7.0; // in a chunk
        assert_eq!(max(&x), 7.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn extreme_inputs_stay_finite() {
        let mut xs = vec![-1e30, -200.0, 0.0, 200.0, 1e30, f32::MIN, f32::MAX, -0.0, 1e-30];
        let mut g = xs.clone();
        sigmoid_slice(&mut xs);
        gelu_slice(&mut g);
        assert!(xs.iter().chain(&g).all(|v| v.is_finite()), "{xs:?} {g:?}");
    }
}
