//! The projection 16 Gaussians at a time, bit for bit `project::project_with`: the per-Gaussian code is
//! written as loops over 16 lanes of structure-of-arrays values, each loop body the scalar code's own
//! (inlined) float operations, so the compiler vectorises across Gaussians (AVX-512 in the `avx512` build,
//! SSE2 otherwise) without changing a rounding: same operations in the same order, no FMA contraction
//! (Rust never contracts), IEEE division and square root, and `ceil`, `min`, `max` and saturating float-to-int
//! casts, which are exact in vectors too. Branches become masks: every lane computes everything, and a lane
//! the scalar code would have culled is written as the default record. Three parts stay per lane, as loops
//! the compiler leaves scalar: the attribute and colour finiteness checks (gathers from the caller's
//! layout), the covariance cache, and `footprint::log_term` (a libm `ln`).

use super::cache::CovEntry;
use super::camera::SplatCamera;
use super::footprint::{log_term, reach_from};
use super::project::{all_finite, clip_to_pixel, cov2d, cov3d, tile_rect, Projected, Splat2d, TileRect, NEAR_Z};
use super::GaussianSet;

/// Gaussians per block.
pub(super) const LANES: usize = 16;

/// Projects Gaussians `start..start + out.len()` (at most [`LANES`]) into `out`, with 3D covariances from
/// `covs` (one entry per Gaussian, refreshed as `CovEntry::get` does) or, when `covs` is empty, from `cov3d`.
/// The result is `project_with(...).unwrap_or_default()` for each Gaussian, bit for bit.
pub(super) fn project_block(gs: &GaussianSet, start: usize, cam: &SplatCamera, covs: &mut [CovEntry], out: &mut [Projected]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the CPU has the features the function is compiled for (checked just above).
            return unsafe { project_block_avx512(gs, start, cam, covs, out) };
        }
    }
    project_block_generic(gs, start, cam, covs, out)
}

/// The lane code compiled for AVX-512 (16 f32 or 8 f64 lanes per register).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn project_block_avx512(gs: &GaussianSet, start: usize, cam: &SplatCamera, covs: &mut [CovEntry], out: &mut [Projected]) {
    project_block_generic(gs, start, cam, covs, out)
}

/// The lane code for any CPU ([`project_block`] without the dispatch; tests call it directly).
#[inline(always)]
pub(super) fn project_block_generic(gs: &GaussianSet, start: usize, cam: &SplatCamera, covs: &mut [CovEntry], out: &mut [Projected]) {
    let n = out.len().min(LANES);
    // Gather: positions, opacities, and which lanes have finite attributes (unused lanes: zeros, not finite).
    let (mut mx, mut my, mut mz, mut op) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let mut finite = [false; LANES];
    for l in 0..n {
        let i = start + l;
        let (mean, opacity) = (gs.mean(i), gs.opacity(i));
        (mx[l], my[l], mz[l], op[l]) = (mean[0], mean[1], mean[2], opacity);
        finite[l] = all_finite(&mean) & gs.shape_finite(i) & opacity.is_finite() && gs.color_finite(i);
    }
    // View and pixel positions of every lane.
    let (mut vx, mut vy, mut vz, mut px, mut py) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    for l in 0..LANES {
        let mean = [mx[l], my[l], mz[l]];
        [vx[l], vy[l], vz[l]] = cam.to_view(mean);
        [px[l], py[l]] = clip_to_pixel(cam.to_clip(mean), cam.width, cam.height);
    }
    // 3D covariances of the lanes in front of the near plane (the scalar code asks for no others).
    let mut cov = [[0f32; LANES]; 6];
    let mut alive = [false; LANES];
    for l in 0..n {
        alive[l] = finite[l] && !(vz[l].is_nan() || vz[l] <= NEAR_Z);
        if alive[l] {
            let i = start + l;
            let c = match (gs.covariance(i), covs.get_mut(l)) {
                (Some(c), _) => c,
                (None, Some(entry)) => entry.get(gs.scale(i), gs.rotation(i)),
                (None, None) => cov3d(gs.scale(i), gs.rotation(i)),
            };
            for (k, v) in c.into_iter().enumerate() {
                cov[k][l] = v;
            }
        }
    }
    // EWA conic, radius and tile rectangle of every lane.
    let grid = cam.tile_grid();
    let (mut ca, mut cb, mut cc) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let mut rects = [TileRect::default(); LANES];
    let mut kept = [false; LANES];
    for l in 0..LANES {
        let c3 = [cov[0][l], cov[1][l], cov[2][l], cov[3][l], cov[4][l], cov[5][l]];
        let c = cov2d([vx[l], vy[l], vz[l]], cam, &c3);
        let det = c[0] * c[2] - c[1] * c[1];
        let det_inv = 1.0 / det;
        let conic = [c[2] * det_inv, -c[1] * det_inv, c[0] * det_inv];
        let mid = 0.5 * (c[0] + c[2]);
        let lambda1 = mid + (mid * mid - det).max(0.1).sqrt();
        let lambda2 = mid - (mid * mid - det).max(0.1).sqrt();
        let radius = (3.0 * lambda1.max(lambda2).sqrt()).ceil();
        let ok = (det != 0.0) & conic.iter().fold(true, |ok, v| ok & v.is_finite()) & radius.is_finite();
        let ok = ok & px[l].is_finite() & py[l].is_finite();
        let r = tile_rect(px[l], py[l], radius as i32, grid);
        // Equal to `count() > 0`: with radius >= 0 the upper bounds are never below the lower ones.
        kept[l] = ok & (r.x1 > r.x0) & (r.y1 > r.y0);
        [ca[l], cb[l], cc[l]] = conic;
        rects[l] = r;
    }
    let mut logs = [0f64; LANES];
    for l in 0..n {
        if alive[l] & kept[l] {
            logs[l] = log_term(op[l]);
        }
    }
    let mut reach = [[0f32; 2]; LANES];
    for l in 0..LANES {
        let s = Splat2d { x: px[l], y: py[l], conic: [ca[l], cb[l], cc[l]], opacity: op[l] };
        reach[l] = reach_from(&s, logs[l]);
    }
    for (l, o) in out.iter_mut().enumerate().take(n) {
        *o = if alive[l] & kept[l] {
            let splat = Splat2d { x: px[l], y: py[l], conic: [ca[l], cb[l], cc[l]], opacity: op[l] };
            Projected { splat, depth: vz[l], rect: rects[l], reach: reach[l] }
        } else {
            Projected::default()
        };
    }
}
