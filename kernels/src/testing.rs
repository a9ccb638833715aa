//! Shared test harness: seeded inputs and named tolerances, used by every kernel's tests and by the
//! pipeline suites.

/// Deterministic pseudo-random values in `[-1, 1)` from a seed (SplitMix64), so tests need no RNG crate.
pub fn seeded(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// How close two results must be, by the precision they were computed at.
#[derive(Clone, Copy, Debug)]
pub enum Tolerance {
    /// fp32 with a different summation order: relative to the reference's largest magnitude.
    Fp32,
    /// Weights or activations stored in fp16 (11-bit mantissa), accumulated in fp32.
    Fp16Storage,
    /// Explicit bound: `|a - b| <= abs + rel * max|reference|`.
    Custom { abs: f32, rel: f32 },
}

impl Tolerance {
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Tolerance::Fp32 => (1e-6, 1e-5),
            Tolerance::Fp16Storage => (1e-4, 2e-3),
            Tolerance::Custom { abs, rel } => (abs, rel),
        }
    }
}

/// Largest absolute difference and the index where it occurs.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    a.iter().zip(b).enumerate().map(|(i, (x, y))| ((x - y).abs(), i)).fold((0.0, 0), |m, d| if d.0 > m.0 || d.0.is_nan() { d } else { m })
}

/// Panics with the worst element when `got` is not within `tol` of `want`; `what` names the case.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    let (abs, rel) = tol.bounds();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (diff, at) = max_abs_diff(got, want);
    let limit = abs + rel * scale;
    assert!(
        diff <= limit && got.iter().all(|v| v.is_finite()),
        "{what}: max |diff| {diff:e} at {at} (got {}, want {}) exceeds {limit:e} ({tol:?}, max|ref| {scale:e})",
        got[at],
        want[at]
    );
}
