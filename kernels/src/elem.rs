//! Storage element types of the maps and vectors kernels read: f32, or f16 widened as it is read.
//!
//! f16 -> f32 is exact, so a kernel reading an f16 map computes bit for bit what it computes on the same
//! values widened to f32 beforehand; only the narrowing (f32 -> f16, round to nearest, ties to even)
//! loses anything, and that happens once, where a map is stored. int8 sessions keep the avatar's colours
//! (`splat`) and the refiner's largest activation maps (`runtime::refiner::plan::OnTheFly::half`) in f16.

use half::f16;

use crate::qgemm::Range;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// Exponent bits of an IEEE half: all set means Inf or NaN.
const F16_EXP: u16 = 0x7C00;

/// An element type kernels are compiled for: f32 or f16 (sealed: `splat::raster_x86` reads values
/// through raw pointers according to `HALF`).
pub trait Elem: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// True for f16 (2 bytes, widened on load), false for f32.
    const HALF: bool;

    /// `src` as f32: itself for f32, widened into the front of `buf` (at least `src.len()` long) for f16.
    fn widen<'b>(src: &'b [Self], buf: &'b mut [f32]) -> &'b [f32];

    /// Whether every value is finite; without short-circuit, so it vectorises.
    fn all_finite(v: &[Self]) -> bool;

    /// The finite values' [`Range`] (taking in 0), exact; the fast form for long slices (several streams,
    /// the widest vector ISA the CPU has).
    fn range(x: &[Self]) -> Range;

    /// [`Elem::range`] as one plain vectorisable loop (for a row, inside code already compiled for a
    /// vector ISA).
    fn range_plain(x: &[Self]) -> Range;
}

impl Elem for f32 {
    const HALF: bool = false;

    #[inline(always)]
    fn widen<'b>(src: &'b [f32], _buf: &'b mut [f32]) -> &'b [f32] {
        src
    }

    #[inline(always)]
    fn all_finite(v: &[f32]) -> bool {
        v.iter().fold(true, |ok, x| ok & x.is_finite())
    }

    fn range(x: &[f32]) -> Range {
        crate::qgemm::range_f32(x)
    }

    #[inline(always)]
    fn range_plain(x: &[f32]) -> Range {
        crate::qgemm::range_plain(x)
    }
}

impl Elem for f16 {
    const HALF: bool = true;

    #[inline(always)]
    fn widen<'b>(src: &'b [f16], buf: &'b mut [f32]) -> &'b [f32] {
        let dst = &mut buf[..src.len()];
        crate::qgemm::widen_f16(src, dst);
        dst
    }

    /// On the bits directly (no widening): finite unless the exponent is all ones.
    #[inline(always)]
    fn all_finite(v: &[f16]) -> bool {
        v.iter().fold(true, |ok, x| ok & (x.to_bits() & F16_EXP != F16_EXP))
    }

    fn range(x: &[f16]) -> Range {
        f16_range(x)
    }

    #[inline(always)]
    fn range_plain(x: &[f16]) -> Range {
        f16_range(x)
    }
}

/// An f16's bits as an i16 that orders as its value (sign-magnitude to two's complement; -0 as 0), and
/// non-finite halves as 0: [`f16_range`]'s lanes are then integer minima and maxima, which vectorise.
#[inline(always)]
fn f16_key(bits: u16) -> i16 {
    let mag = (bits & 0x7fff) as i16;
    let mag = if mag < F16_EXP as i16 { mag } else { 0 };
    if bits & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

/// The value of an [`f16_key`], widened (exact).
fn f16_of_key(k: i16) -> f32 {
    let bits = if k < 0 { 0x8000 | k.unsigned_abs() } else { k as u16 };
    f16::from_bits(bits).to_f32()
}

/// [`Elem::range`] of f16 values on the bits ([`f16_key`]), the two ends widened once at the end.
#[inline(always)]
fn f16_range(x: &[f16]) -> Range {
    const L: usize = 32;
    let (mut lo, mut hi) = ([0i16; L], [0i16; L]);
    let lanes = |lo: &mut [i16; L], hi: &mut [i16; L], c: &[f16]| {
        for ((l, h), v) in lo.iter_mut().zip(hi.iter_mut()).zip(c) {
            let k = f16_key(v.to_bits());
            *l = (*l).min(k);
            *h = (*h).max(k);
        }
    };
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        lanes(&mut lo, &mut hi, c);
    }
    lanes(&mut lo, &mut hi, tail);
    let (l, h) = (lo.iter().copied().min().unwrap_or(0), hi.iter().copied().max().unwrap_or(0));
    Range { lo: f16_of_key(l), hi: f16_of_key(h) }
}

/// Every value widened to f32 (exact).
pub fn widen_all(v: &[f16]) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    crate::qgemm::widen_f16(v, &mut out);
    out
}

/// Every value rounded to the nearest f16 (ties to even; beyond +-65504 to infinity).
pub fn narrow_all(v: &[f32]) -> Vec<f16> {
    let mut out = vec![f16::ZERO; v.len()];
    narrow_into(v, &mut out);
    out
}

/// `v` times a power of two `2^e` rounded to f16, with `2^-e` to multiply results by: `e` puts the largest
/// finite `|v|` in [2^14, 2^15), far from the f16 range's ends (scaling by a power of two is exact), so
/// every value keeps a half's relative precision down to 2^-29 of the largest. For tables whose values
/// sit far from 1 (square sums of small weights, FLAME's blendshape directions). `None` when `v` has no
/// finite non-zero value.
pub fn narrow_scaled(v: &[f32]) -> Option<(Vec<f16>, f32)> {
    let max = v.iter().map(|x| x.abs()).filter(|x| x.is_finite()).fold(0f32, f32::max);
    if max <= 0.0 {
        return None;
    }
    let e = 14 - max.log2().floor() as i32;
    let up = 2f32.powi(e);
    let scaled: Vec<f32> = v.iter().map(|x| x * up).collect();
    Some((narrow_all(&scaled), 2f32.powi(-e)))
}

/// `dst[i] = f16(src[i])` (round to nearest, ties to even; F16C or NEON, `qgemm::narrow_f16`). Equal
/// lengths.
pub fn narrow_into(src: &[f32], dst: &mut [f16]) {
    crate::qgemm::narrow_f16(src, dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_finite_half() -> Vec<f16> {
        (0..=u16::MAX).map(f16::from_bits).filter(|h| h.is_finite()).collect()
    }

    #[test]
    fn f16_finiteness_on_bits_agrees_with_the_widened_value_for_every_half() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            assert_eq!(<f16 as Elem>::all_finite(&[h]), h.to_f32().is_finite(), "half bits {bits:#06x}");
        }
    }

    #[test]
    fn widening_is_exact_and_narrowing_rounds_to_nearest() {
        let halves = every_finite_half();
        let wide = widen_all(&halves);
        // Exact: every finite half survives the round trip bit for bit (f32 holds every half).
        assert_eq!(narrow_all(&wide), halves);
        let mut buf = [0f32; 64];
        assert_eq!(<f16 as Elem>::widen(&halves[1000..1032], &mut buf), &wide[1000..1032]);
        assert_eq!(narrow_all(&[1.0 + 1.0 / 2048.0, 1e6, -3.0e-8]), [f16::ONE, f16::INFINITY, f16::from_bits(0x8001)]);
    }

    #[test]
    fn narrowing_rounds_like_the_scalar_conversion_on_every_kind_of_float() {
        // Every half, the midpoints between neighbours (ties), overflow and subnormal ranges, and seeded
        // bit patterns; lengths that leave vector tails.
        let mut v: Vec<f32> = every_finite_half().iter().map(|h| h.to_f32()).collect();
        let mids: Vec<f32> = v.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0).filter(|m| m.is_finite()).collect();
        v.extend(mids);
        v.extend([65504.0, 65519.99, 65520.0, 1e9, -1e9, 2.9e-8, 3.0e-8, -5.9e-8, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE]);
        let mut x = 0x1234_5678u32;
        v.extend((0..100_003).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f32::from_bits(x)
        }));
        let got = narrow_all(&v);
        for (i, (g, f)) in got.iter().zip(&v).enumerate() {
            let want = f16::from_f32(*f);
            assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "value {i}: {f:e} gave {g} not {want}");
        }
    }

    #[test]
    fn scaled_narrowing_keeps_a_halfs_precision_far_from_one() {
        for (lo, hi) in [(1e-9f32, 1e-5f32), (3.0, 9e6), (-2e-3, 5e-4)] {
            let v: Vec<f32> = (0..1000).map(|i| lo + (hi - lo) * (i as f32 / 999.0)).collect();
            let (h, unscale) = narrow_scaled(&v).expect("non-zero");
            let max = v.iter().map(|x| x.abs()).fold(0f32, f32::max);
            for (x, q) in v.iter().zip(&h) {
                let back = q.to_f32() * unscale;
                assert!((back - x).abs() <= x.abs() / 2048.0 + max * 2f32.powi(-38), "{x} came back as {back}");
            }
        }
        assert!(narrow_scaled(&[0.0, f32::NAN]).is_none());
    }

    #[test]
    fn f16_range_on_bits_is_the_range_of_the_widened_values() {
        // Every half (finite and not) as a single value, then mixed slices of several lengths.
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            assert_eq!(<f16 as Elem>::range(&[h]), f32::range(&[h.to_f32()]), "half bits {bits:#06x}");
        }
        let halves: Vec<f16> = (0..=u16::MAX).map(|i| f16::from_bits(i.wrapping_mul(40_503))).collect();
        for len in [0, 1, 31, 32, 33, 1000, halves.len()] {
            for start in [0, 7, 30_000] {
                let v = &halves[start.min(halves.len() - len)..][..len];
                assert_eq!(<f16 as Elem>::range(v), f32::range(&widen_all(v)), "len {len} at {start}");
            }
        }
    }
}
