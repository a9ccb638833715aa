//! 3D covariances kept across frames. `cov3d` depends only on a Gaussian's scale and rotation, which a
//! lifted avatar never changes (FLAME moves only the positions of its 5,023 vertex Gaussians), so each
//! frame recomputes it only where those inputs differ bitwise from the ones cached. The check is per
//! Gaussian and exact, so the cache needs no invalidation by the caller: a new avatar, or an edited
//! Gaussian, simply misses. Same inputs, same pure function: the output is bitwise the uncached one.

use super::project::cov3d;

/// One Gaussian's cached covariance and the exact inputs (bit patterns) it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct CovEntry {
    scale: [u32; 3],
    rotation: [u32; 4],
    pub(super) cov: [f32; 6],
}

impl Default for CovEntry {
    /// A NaN key: it can only match a NaN input, and Gaussians with NaN attributes are culled before
    /// their covariance is asked for, so an empty entry never hits.
    fn default() -> Self {
        let nan = f32::NAN.to_bits();
        CovEntry { scale: [nan; 3], rotation: [nan; 4], cov: [0.0; 6] }
    }
}

impl CovEntry {
    /// `cov3d(scale, rotation)`, from the cache when the inputs are the cached ones (bitwise).
    #[inline]
    pub(super) fn get(&mut self, scale: [f32; 3], rotation: [f32; 4]) -> [f32; 6] {
        let (s, r) = (scale.map(f32::to_bits), rotation.map(f32::to_bits));
        if s != self.scale || r != self.rotation {
            *self = CovEntry { scale: s, rotation: r, cov: cov3d(scale, rotation) };
        }
        self.cov
    }
}
