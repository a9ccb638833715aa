//! The Gaussians' feature vectors ("colours") in f32 or f16. An int8 session keeps them in f16 (half the
//! memory: 11 MiB of the official avatar's 22); the splat widens each value on load (f16 -> f32 is exact),
//! so splatting f16 colours is bitwise splatting the same colours widened to f32. The blend is
//! monomorphised per element type ([`Feature`]): no per-Gaussian branch on the storage.

use std::borrow::Cow;

use half::f16;

use super::raster::CH_BLOCK;

/// Borrowed `[N, channels]` colours in either storage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Colors<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl<'a> Colors<'a> {
    /// Number of values (`N * channels`).
    pub fn len(&self) -> usize {
        match self {
            Colors::F32(v) => v.len(),
            Colors::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32: borrowed when stored so, widened (exactly) into a new vector when f16.
    pub fn to_f32(&self) -> Cow<'a, [f32]> {
        match *self {
            Colors::F32(v) => Cow::Borrowed(v),
            Colors::F16(v) => Cow::Owned(widen_all(v)),
        }
    }
}

impl<'a> From<&'a [f32]> for Colors<'a> {
    fn from(v: &'a [f32]) -> Self {
        Colors::F32(v)
    }
}

impl<'a> From<&'a [f16]> for Colors<'a> {
    fn from(v: &'a [f16]) -> Self {
        Colors::F16(v)
    }
}

/// Every value widened to f32 (exact).
pub fn widen_all(v: &[f16]) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(v, &mut out);
    out
}

/// Every value rounded to the nearest f16 (ties to even; beyond +-65504 to infinity, which culls that
/// Gaussian as any non-finite colour does).
pub fn narrow_all(v: &[f32]) -> Vec<f16> {
    let mut out = vec![f16::ZERO; v.len()];
    half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut out[..], v);
    out
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// A colour element type the blend is compiled for: f32 or f16 (sealed: `raster_x86` reads the values
/// through raw pointers according to `HALF`).
pub trait Feature: sealed::Sealed + Copy + Send + Sync + 'static {
    /// True for f16 (2 bytes, widened on load), false for f32.
    const HALF: bool;

    /// `src` (at most `CH_BLOCK` values) as f32: itself for f32, widened into `buf` for f16.
    fn widen<'b>(src: &'b [Self], buf: &'b mut [f32; CH_BLOCK]) -> &'b [f32];

    /// Whether every value is finite; without short-circuit, so it vectorises.
    fn all_finite(v: &[Self]) -> bool;
}

impl Feature for f32 {
    const HALF: bool = false;

    #[inline(always)]
    fn widen<'b>(src: &'b [f32], _buf: &'b mut [f32; CH_BLOCK]) -> &'b [f32] {
        src
    }

    #[inline(always)]
    fn all_finite(v: &[f32]) -> bool {
        v.iter().fold(true, |ok, x| ok & x.is_finite())
    }
}

/// Exponent bits of an IEEE half: all set means Inf or NaN.
const F16_EXP: u16 = 0x7C00;

impl Feature for f16 {
    const HALF: bool = true;

    #[inline(always)]
    fn widen<'b>(src: &'b [f16], buf: &'b mut [f32; CH_BLOCK]) -> &'b [f32] {
        let dst = &mut buf[..src.len()];
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
        dst
    }

    /// On the bits directly (no widening): finite unless the exponent is all ones.
    #[inline(always)]
    fn all_finite(v: &[f16]) -> bool {
        v.iter().fold(true, |ok, x| ok & (x.to_bits() & F16_EXP != F16_EXP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_finiteness_on_bits_agrees_with_the_widened_value_for_every_half() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            assert_eq!(<f16 as Feature>::all_finite(&[h]), h.to_f32().is_finite(), "half bits {bits:#06x}");
        }
    }

    #[test]
    fn widening_is_exact_and_narrowing_rounds_to_nearest() {
        let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).filter(|h| h.is_finite()).collect();
        let wide = widen_all(&halves);
        // Exact: every finite half survives the round trip bit for bit (f32 holds every half).
        assert_eq!(narrow_all(&wide), halves);
        let mut buf = [0f32; CH_BLOCK];
        assert_eq!(<f16 as Feature>::widen(&halves[1000..1032], &mut buf), &wide[1000..1032]);
        assert_eq!(narrow_all(&[1.0 + 1.0 / 2048.0, 1e6, -3.0e-8]), [f16::ONE, f16::INFINITY, f16::from_bits(0x8001)]);
        assert_eq!(Colors::F16(&halves).to_f32().as_ref(), &wide[..]);
    }
}
