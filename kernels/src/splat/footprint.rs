//! Where a Gaussian can be blended at all: a conservative half-extent (in pixels, around its centre) outside
//! which the official rules always skip it (`alpha < 1/255`). Used only to skip work; it never changes a
//! result, which the bit-exact comparison with the reference and `reach_is_conservative` check.
//!
//! Alpha reaches 1/255 only where `opacity exp(-q/2) >= 1/255`, i.e. `q <= k^2 = 2 ln(255 opacity)`, with
//! `q = d^T A d` for the conic A. That ellipse spans `+-sqrt(k^2 Sigma_xx)` in x and `+-sqrt(k^2 Sigma_yy)` in y,
//! `Sigma = A^-1`. Margins cover the f32 evaluation of q (relative error below `3e-7 F` with
//! `F = (|a| + |c| + 2|b|) lambda_max(Sigma)`, the conditioning) and the 2-ulp `exp`.

use super::project::Splat2d;
use super::raster::MIN_ALPHA;

/// No bound: the Gaussian is tested at every pixel of its tiles.
const UNBOUNDED: [f32; 2] = [f32::INFINITY, f32::INFINITY];

/// Half-extents `[rx, ry]` in pixels; 0 x 0 with a negative sentinel when the Gaussian can never reach
/// 1/255 (opacity below it), `UNBOUNDED` when the margins cannot be trusted (extremely thin ellipses).
pub fn reach(s: &Splat2d) -> [f32; 2] {
    reach_from(s, log_term(s.opacity))
}

/// `ln(255 opacity 1.001)`: the part of [`reach`] that is a libm call, so lane loops compute it apart.
#[inline]
pub fn log_term(opacity: f32) -> f64 {
    (255.0 * opacity as f64 * 1.001).ln()
}

/// [`reach`] given [`log_term`] of the opacity. Every value is computed and the cases are selects, not
/// early returns, so a loop over Gaussians vectorises; the selected value is the same float operations.
#[inline(always)]
pub fn reach_from(s: &Splat2d, log_term: f64) -> [f32; 2] {
    let opacity = s.opacity as f64;
    let k2 = 2.0 * log_term;
    let [a, b, c] = s.conic.map(|v| v as f64);
    let det = a * c - b * b;
    let (sxx, syy) = (c / det, a / det);
    let f = (a.abs() + c.abs() + 2.0 * b.abs()) * (sxx + syy);
    let k2 = k2 * (1.0 + 1e-5 * f) + 1e-3;
    // 0.01 px more for the rounding of d = centre - pixel.
    let bounded = [((k2 * sxx).sqrt() + 0.01) as f32, ((k2 * syy).sqrt() + 0.01) as f32];
    let trusted = (det > 0.0) & (a > 0.0) & (c > 0.0) & !f.is_nan() & (f < 1e6);
    let out = if trusted { bounded } else { UNBOUNDED };
    // exp(power) <= 1, so a lower opacity (with 0.1 % to spare for rounding) is never blended.
    if opacity * 1.001 < MIN_ALPHA as f64 {
        [-1.0, -1.0]
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splat::project::exp;
    use crate::testing::seeded;

    /// The official alpha at offset (dx, dy) from the centre, in f32 as the blend loop computes it.
    fn alpha(s: &Splat2d, dx: f32, dy: f32) -> f32 {
        let [ca, cb, cc] = s.conic;
        let power = -0.5 * (ca * dx * dx + cc * dy * dy) - cb * dx * dy;
        if power > 0.0 {
            return 0.0;
        }
        (s.opacity * exp(power)).min(0.99)
    }

    #[test]
    fn reach_is_conservative() {
        // Random ellipses, from round to 1:130 in variance, any opacity; every pixel-centre offset outside the
        // reach (and just inside its border) must give alpha below 1/255.
        let u = seeded(17, 4 * 600);
        for g in u.chunks(4) {
            let (s1, s2) = (0.3 + 40.0 * g[0].abs(), 0.3 + 0.3 * g[1].abs());
            let th = g[2] * 3.2;
            let (co, si) = (th.cos(), th.sin());
            let (sxx, sxy, syy) = (s1 * co * co + s2 * si * si, (s1 - s2) * co * si, s1 * si * si + s2 * co * co);
            let det = sxx * syy - sxy * sxy;
            let splat = Splat2d { x: 0.3, y: -0.2, conic: [syy / det, -sxy / det, sxx / det], opacity: g[3].abs() };
            let [rx, ry] = reach(&splat);
            for j in -45..=45 {
                for i in -45..=45 {
                    let (dx, dy) = (splat.x - i as f32, splat.y - j as f32);
                    if dx.abs() > rx || dy.abs() > ry {
                        assert!(alpha(&splat, dx, dy) < MIN_ALPHA, "{splat:?} reach {rx},{ry} at ({dx}, {dy})");
                    }
                }
            }
            // Not uselessly loose: the bound is within a few percent of the exact ellipse for usual shapes.
            if splat.opacity > 0.1 {
                let exact = (2.0 * (255.0 * splat.opacity as f64).ln() * sxx as f64).sqrt();
                assert!((rx as f64) < exact * 1.05 + 0.05, "rx {rx} vs exact {exact}");
            }
        }
    }
}
