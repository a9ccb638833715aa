//! The Gaussians' feature vectors ("colours") in f32 or f16. An int8 session keeps them in f16 (half the
//! memory: 11 MiB of the official avatar's 22); the splat widens each value on load (f16 -> f32 is exact),
//! so splatting f16 colours is bitwise splatting the same colours widened to f32. The blend is
//! monomorphised per element type ([`Elem`]): no per-Gaussian branch on the storage.

use std::borrow::Cow;

use half::f16;

pub use crate::elem::{narrow_all, widen_all, Elem};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_colours_widen_exactly() {
        let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).filter(|h| h.is_finite()).collect();
        assert_eq!(Colors::F16(&halves).to_f32().as_ref(), &widen_all(&halves)[..]);
    }
}
