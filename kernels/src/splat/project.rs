//! Per-Gaussian preprocessing, step for step as `preprocessCUDA` in the official `forward.cu`: near cull,
//! 3D covariance from the (unnormalised) quaternion, EWA projection to a 2D conic, screen radius, pixel
//! position and the tile rectangle of `getRect`. The reference runs this code and the fast splatter the same
//! operations 16 Gaussians at a time (`project_lanes`, bit for bit, `tests_lanes.rs`), so their comparison
//! tests the binning and blending; `tests_project.rs` checks this part against f64 maths.
//!
//! Matrices follow glm's column-major convention (`m[col][row]`) and every product sums in glm's order, so
//! each float operation is the one the CUDA source writes (the GPU may fuse some into FMAs; that is the
//! "to rounding" in "faithful to rounding").

use super::camera::SplatCamera;
use super::GaussianSet;

/// Tile edge in pixels (`BLOCK_X`, `BLOCK_Y`).
pub const BLOCK: usize = 16;
/// `in_frustum`: points at view z <= 0.2 are culled.
pub const NEAR_Z: f32 = 0.2;

/// What the blending stage needs of one Gaussian (`points_xy_image` and `conic_opacity`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Splat2d {
    /// Pixel position of the centre (pixel centres at integer coordinates).
    pub x: f32,
    pub y: f32,
    /// Inverse 2D covariance `(a, b, c)` for `[[a, b], [b, c]]`.
    pub conic: [f32; 3],
    pub opacity: f32,
}

/// Half-open range of tiles `[x0, x1) x [y0, y1)` a Gaussian is binned into. u16 (a grid of at most
/// [`MAX_TILES`] per side, over a million pixels): the rectangle rides in every `Projected` record and every
/// binning entry, and 8 bytes instead of 16 keep 4 MiB fewer in the splat scratch at official size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TileRect {
    pub x0: u16,
    pub y0: u16,
    pub x1: u16,
    pub y1: u16,
}

/// The most tiles per image side a `TileRect` can address (`splat` checks the camera against it).
pub const MAX_TILES: usize = u16::MAX as usize;

impl TileRect {
    /// Number of tiles covered (`tiles_touched`); 0 means the Gaussian is not rendered.
    pub fn count(&self) -> usize {
        (self.x1 - self.x0) as usize * (self.y1 - self.y0) as usize
    }

    pub fn contains(&self, tx: usize, ty: usize) -> bool {
        (self.x0 as usize..self.x1 as usize).contains(&tx) && (self.y0 as usize..self.y1 as usize).contains(&ty)
    }
}

/// A Gaussian that survived preprocessing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Projected {
    pub splat: Splat2d,
    /// View-space z, the sort key (always > 0.2, so its bit pattern orders like the value).
    pub depth: f32,
    pub rect: TileRect,
    /// Half-extents in pixels beyond which it is never blended (`footprint::reach`); only skips work.
    pub reach: [f32; 2],
}

/// glm `mat3`, column-major: `m[col][row]`.
type Mat3 = [[f32; 3]; 3];

/// glm's `operator*`: column c = a[0] b[c][0] + a[1] b[c][1] + a[2] b[c][2], summed left to right.
/// (Inlined always, as the helpers below, so the lane loops of `project_lanes` vectorise.)
#[inline(always)]
fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [[0f32; 3]; 3];
    for c in 0..3 {
        for r in 0..3 {
            out[c][r] = a[0][r] * b[c][0] + a[1][r] * b[c][1] + a[2][r] * b[c][2];
        }
    }
    out
}

#[inline(always)]
fn transpose(a: &Mat3) -> Mat3 {
    let mut out = [[0f32; 3]; 3];
    for c in 0..3 {
        for r in 0..3 {
            out[c][r] = a[r][c];
        }
    }
    out
}

/// `computeCov3D` with scale modifier 1: upper triangle of `M^T M`, `M = S R(q)`, q = (w, x, y, z) used
/// as given (the official kernel has the normalisation commented out; GAGAvatar's vertex Gaussians rely on it).
pub fn cov3d(scale: [f32; 3], q: [f32; 4]) -> [f32; 6] {
    let [r, x, y, z] = q;
    let rot: Mat3 = [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - r * z), 2.0 * (x * z + r * y)],
        [2.0 * (x * y + r * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - r * x)],
        [2.0 * (x * z - r * y), 2.0 * (y * z + r * x), 1.0 - 2.0 * (x * x + y * y)],
    ];
    let s: Mat3 = [[scale[0], 0.0, 0.0], [0.0, scale[1], 0.0], [0.0, 0.0, scale[2]]];
    let m = mul(&s, &rot);
    let sigma = mul(&transpose(&m), &m);
    [sigma[0][0], sigma[0][1], sigma[0][2], sigma[1][1], sigma[1][2], sigma[2][2]]
}

/// `computeCov2D`: EWA projection of a 3D covariance at view-space position `t`, with the Jacobian's
/// x/z and y/z clamped to +-1.3 tanfov and 0.3 added to the diagonal. Returns `(xx, xy, yy)`.
#[inline(always)]
pub fn cov2d(t: [f32; 3], cam: &SplatCamera, cov: &[f32; 6]) -> [f32; 3] {
    let [fx, fy] = cam.focal_px;
    let limx = 1.3 * cam.tan_fov[0];
    let limy = 1.3 * cam.tan_fov[1];
    let tz = t[2];
    let tx = (t[0] / tz).max(-limx).min(limx) * tz;
    let ty = (t[1] / tz).max(-limy).min(limy) * tz;
    let j: Mat3 = [[fx / tz, 0.0, -(fx * tx) / (tz * tz)], [0.0, fy / tz, -(fy * ty) / (tz * tz)], [0.0, 0.0, 0.0]];
    let v = &cam.view;
    let w: Mat3 = [[v[0][0], v[1][0], v[2][0]], [v[0][1], v[1][1], v[2][1]], [v[0][2], v[1][2], v[2][2]]];
    let tm = mul(&w, &j);
    let vrk: Mat3 = [[cov[0], cov[1], cov[2]], [cov[1], cov[3], cov[4]], [cov[2], cov[4], cov[5]]];
    let out = mul(&mul(&transpose(&tm), &transpose(&vrk)), &tm);
    [out[0][0] + 0.3, out[0][1], out[1][1] + 0.3]
}

/// `ndc2Pix` for the projected clip position; the CUDA source computes it in double (`1.0` literals).
#[inline(always)]
pub fn clip_to_pixel(p_hom: [f32; 4], width: usize, height: usize) -> [f32; 2] {
    let p_w = 1.0 / (p_hom[3] + 0.000_000_1);
    let ndc2pix = |v: f32, s: usize| (((v as f64 + 1.0) * s as f64 - 1.0) * 0.5) as f32;
    [ndc2pix(p_hom[0] * p_w, width), ndc2pix(p_hom[1] * p_w, height)]
}

/// `getRect`: tiles within `radius` of the centre, each bound truncated toward zero then clamped to the grid.
/// Float-to-int conversions saturate (NaN -> 0), as CUDA's `cvt.rzi` does. A grid side beyond [`MAX_TILES`]
/// is clamped to it (the splat refuses such cameras before projecting).
#[inline(always)]
pub fn tile_rect(x: f32, y: f32, radius: i32, grid: (usize, usize)) -> TileRect {
    let r = radius as f32;
    let b = BLOCK as f32;
    let clamp = |v: f32, n: usize| (v as i32).max(0).min(n.min(MAX_TILES) as i32) as u16;
    TileRect {
        x0: clamp((x - r) / b, grid.0),
        y0: clamp((y - r) / b, grid.1),
        x1: clamp((x + r + b - 1.0) / b, grid.0),
        y1: clamp((y + r + b - 1.0) / b, grid.1),
    }
}

/// Without short-circuit, so the 32-channel colour check vectorises (it was a fifth of the projection time).
#[inline(always)]
pub(super) fn all_finite(v: &[f32]) -> bool {
    v.iter().fold(true, |ok, x| ok & x.is_finite())
}

/// Preprocess Gaussian `i`, or `None` when the official kernel would not render it (behind the near plane,
/// singular 2D covariance, zero tiles touched). Beyond the official kernel, a Gaussian with any non-finite
/// attribute (position, scale, rotation, opacity, colour) or non-finite projected values is also dropped, so
/// NaN or Inf inputs never reach the image (CUDA would smear NaN over the footprint or mis-bin it).
pub fn project(gs: &GaussianSet, i: usize, cam: &SplatCamera) -> Option<Projected> {
    project_with(gs, i, cam, cov3d)
}

/// [`project`] with the 3D covariance supplied by `cov` (given the Gaussian's scale and rotation, called
/// only once the attributes are known finite and when the set holds no precomputed covariance), so a
/// cache of `cov3d` results can stand in for the maths.
#[inline]
pub fn project_with(gs: &GaussianSet, i: usize, cam: &SplatCamera, cov: impl FnOnce([f32; 3], [f32; 4]) -> [f32; 6]) -> Option<Projected> {
    let (mean, opacity) = (gs.mean(i), gs.opacity(i));
    let finite = all_finite(&mean) && gs.shape_finite(i) && opacity.is_finite();
    if !finite || !gs.color_finite(i) {
        return None;
    }
    let p_view = cam.to_view(mean);
    if p_view[2].is_nan() || p_view[2] <= NEAR_Z {
        return None;
    }
    let [px, py] = clip_to_pixel(cam.to_clip(mean), cam.width, cam.height);

    let c3 = gs.covariance(i).unwrap_or_else(|| cov(gs.scale(i), gs.rotation(i)));
    let cov = cov2d(p_view, cam, &c3);
    let det = cov[0] * cov[2] - cov[1] * cov[1];
    if det == 0.0 {
        return None;
    }
    let det_inv = 1.0 / det;
    let conic = [cov[2] * det_inv, -cov[1] * det_inv, cov[0] * det_inv];

    let mid = 0.5 * (cov[0] + cov[2]);
    let lambda1 = mid + (mid * mid - det).max(0.1).sqrt();
    let lambda2 = mid - (mid * mid - det).max(0.1).sqrt();
    let radius = (3.0 * lambda1.max(lambda2).sqrt()).ceil();
    if !(all_finite(&conic) && radius.is_finite() && px.is_finite() && py.is_finite()) {
        return None;
    }
    // `radii[idx]`, ceil(3 sqrt(largest eigenvalue)) in pixels; only the tile rectangle keeps it.
    let rect = tile_rect(px, py, radius as i32, cam.tile_grid());
    if rect.count() == 0 {
        return None;
    }
    let splat = Splat2d { x: px, y: py, conic, opacity };
    let reach = super::footprint::reach(&splat);
    Some(Projected { splat, depth: p_view[2], rect, reach })
}

/// `exp` for the blending weights: Cephes-style range reduction and minimax polynomial, branch-free so
/// the 8-pixel loop vectorises; within 2 ulp of the true value like CUDA's `expf` (tested), exactly 1 at 0,
/// and 0 below about -104. Both the fast path and the reference use it, so they agree bit for bit.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so `n * LN2_HI` is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    // max/min rather than clamp: a NaN argument becomes -110 (weight 0) instead of propagating.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-110.0).min(88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let r2 = r * r;
    let p =
        (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5) * r2 + r + 1.0;
    // 2^n as two factors so results in the subnormal range are rounded once, not flushed. The integer n
    // is read from the mantissa of `shifted` (1.5 * 2^23 + n): `n as i32` would not vectorise.
    let n = shifted.to_bits() as i32 - 0x4B40_0000;
    let n1 = n >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    p * pow2(n1) * pow2(n - n1)
}
