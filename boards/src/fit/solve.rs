//! The camera model and the regularised Levenberg-Marquardt solver of the fit.
//!
//! Projection is the renderer's (spec section 5, `gaga_kernels::splat::SplatCamera`): `y = x R + T` in
//! PyTorch3D's row-vector form (here `y = M x + T` with `M = R^T`), then `u = c - f y0 / y2`,
//! `v = c - f y1 / y2` (the negated columns 0 and 1), `f` = focal * width / 2 pixels, `c` = width / 2 - 0.5
//! (pixel centres at integers). The rotation is updated on the left, `M <- exp([w]x) M`, so its Jacobian is
//! `-[M x]x` and it stays a rotation; translation, blendshape coefficients, jaw and eyes are additive.

// Fixed-size 3x3 matrix code reads better with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::time::Instant;

use super::geom::{self, Mat3, Vec3};
use super::landmark_model::{LandmarkModel, Pose};
use super::mapping::FLAME_LANDMARKS;

/// The rasteriser's near cull (view z <= 0.2): a landmark there cannot be seen, so such a state is rejected.
pub const NEAR_Z: f64 = 0.2;

/// Pinhole camera in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Camera {
    pub focal_px: f64,
    pub centre: [f64; 2],
}

impl Camera {
    /// Pixel position of view-space `y`, or `None` behind the near plane.
    pub fn project(&self, y: Vec3) -> Option<[f64; 2]> {
        (y[2] > NEAR_Z).then(|| [self.centre[0] - self.focal_px * y[0] / y[2], self.centre[1] - self.focal_px * y[1] / y[2]])
    }
}

/// Everything that is fitted.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// World-to-view rotation in column form (`R^T` of the 3x4 transform).
    pub m: Mat3,
    pub t: Vec3,
    /// All blendshape coefficients (shape then expression); only `Problem::cols` change.
    pub coeffs: Vec<f64>,
    pub jaw: Vec3,
    pub eyes: [Vec3; 2],
}

impl State {
    pub fn is_finite(&self) -> bool {
        self.m.iter().flatten().chain(&self.t).chain(&self.coeffs).chain(&self.jaw).chain(self.eyes.iter().flatten()).all(|v| v.is_finite())
    }
}

/// One fitting problem: targets, weights, which parameters move and their priors.
pub struct Problem<'a> {
    pub model: &'a LandmarkModel,
    pub camera: Camera,
    pub targets: &'a [[f64; 2]; FLAME_LANDMARKS],
    pub weights: &'a [f64; FLAME_LANDMARKS],
    /// Fitted blendshape coefficients (indices into `State::coeffs`) and each one's prior weight.
    pub cols: &'a [usize],
    pub col_prior: &'a [f64],
    pub jaw_prior: f64,
    pub eye_prior: f64,
}

/// How a solve went.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Linearisations (Jacobian builds and normal-equation solves).
    pub iterations: usize,
    /// Weighted squared pixel error plus the priors.
    pub cost: f64,
    /// Unweighted RMS pixel error over the landmarks with a non-zero weight.
    pub rms_px: f64,
}

impl Problem<'_> {
    /// Unknowns: rotation (3), translation (3), the fitted coefficients, jaw (3), eyes (6).
    pub fn unknowns(&self) -> usize {
        6 + self.cols.len() + 9
    }

    fn prior(&self, s: &State) -> f64 {
        let c: f64 = self.cols.iter().zip(self.col_prior).map(|(&k, &l)| l * s.coeffs[k] * s.coeffs[k]).sum();
        let sq = |v: &Vec3| v.iter().map(|x| x * x).sum::<f64>();
        c + self.jaw_prior * sq(&s.jaw) + self.eye_prior * (sq(&s.eyes[0]) + sq(&s.eyes[1]))
    }

    /// (cost, rms px), or `None` when a used landmark falls behind the near plane or anything is not finite.
    pub fn cost(&self, s: &State) -> Option<(f64, f64)> {
        let mut pos = [[0.0; 3]; FLAME_LANDMARKS];
        self.model.eval(&s.coeffs, &Pose::new(s.jaw, s.eyes), &mut pos, None);
        let (mut cost, mut sq, mut n) = (self.prior(s), 0.0, 0usize);
        for l in 0..FLAME_LANDMARKS {
            if self.weights[l] <= 0.0 {
                continue;
            }
            let y = add(geom::mul_vec(&s.m, pos[l]), s.t);
            let p = self.camera.project(y)?;
            let e2 = (p[0] - self.targets[l][0]).powi(2) + (p[1] - self.targets[l][1]).powi(2);
            cost += self.weights[l] * e2;
            sq += e2;
            n += 1;
        }
        let rms = (sq / n.max(1) as f64).sqrt();
        (cost.is_finite() && rms.is_finite()).then_some((cost, rms))
    }

    /// Weighted residual rows `[rows][n]` and residuals, as `sqrt(w) * (projection - target)`.
    fn linearise(&self, s: &State, rows: &mut Vec<f64>, res: &mut Vec<f64>) -> Option<()> {
        let n = self.unknowns();
        let k = self.cols.len();
        let nl = k + 9;
        let mut pos = [[0.0; 3]; FLAME_LANDMARKS];
        let mut jac = vec![0.0; FLAME_LANDMARKS * 3 * nl];
        self.model.eval(&s.coeffs, &Pose::new(s.jaw, s.eyes), &mut pos, Some((self.cols, &mut jac)));
        rows.clear();
        res.clear();
        let f = self.camera.focal_px;
        for l in 0..FLAME_LANDMARKS {
            let w = self.weights[l];
            if w <= 0.0 {
                continue;
            }
            let mx = geom::mul_vec(&s.m, pos[l]);
            let y = add(mx, s.t);
            let p = self.camera.project(y)?;
            let sw = w.sqrt();
            let dx = &jac[l * 3 * nl..(l + 1) * 3 * nl];
            for (axis, target) in [(0usize, self.targets[l][0]), (1, self.targets[l][1])] {
                // d(pixel)/dy, scaled by sqrt(w).
                let mut g = [0.0; 3];
                g[axis] = -f / y[2] * sw;
                g[2] = f * y[axis] / (y[2] * y[2]) * sw;
                res.push(sw * (p[axis] - target));
                let start = rows.len();
                rows.resize(start + n, 0.0);
                let row = &mut rows[start..];
                // Rotation: dy/dw = -[M x]x, so g . dy/dw_i = (M x  x  g)_i.
                let rw = geom::cross(mx, g);
                row[..3].copy_from_slice(&rw);
                row[3..6].copy_from_slice(&g);
                // Model columns: (M^T g) . dx/dq.
                let mtg = geom::mul_vec(&geom::transpose(&s.m), g);
                for q in 0..nl {
                    row[6 + q] = mtg[0] * dx[q] + mtg[1] * dx[nl + q] + mtg[2] * dx[2 * nl + q];
                }
            }
        }
        Some(())
    }

    fn apply(&self, s: &State, delta: &[f64]) -> State {
        let k = self.cols.len();
        let mut out = s.clone();
        out.m = geom::orthonormalize(&geom::mul(&geom::rodrigues([delta[0], delta[1], delta[2]]), &s.m));
        for a in 0..3 {
            out.t[a] += delta[3 + a];
            out.jaw[a] += delta[6 + k + a];
            out.eyes[0][a] += delta[9 + k + a];
            out.eyes[1][a] += delta[12 + k + a];
        }
        for (i, &c) in self.cols.iter().enumerate() {
            out.coeffs[c] += delta[6 + i];
        }
        out
    }

    /// Prior weight of unknown `i` (none on the camera).
    fn prior_weight(&self, i: usize) -> f64 {
        let k = self.cols.len();
        match i {
            0..=5 => 0.0,
            i if i < 6 + k => self.col_prior[i - 6],
            i if i < 9 + k => self.jaw_prior,
            _ => self.eye_prior,
        }
    }

    /// Levenberg-Marquardt from `s` (updated in place) for at most `max_iterations` linearisations, never
    /// starting one after `deadline`. Returns `None` when `s` itself cannot be evaluated.
    pub fn solve(&self, s: &mut State, max_iterations: usize, deadline: Instant) -> Option<Outcome> {
        let n = self.unknowns();
        let (mut cost, mut rms) = self.cost(s)?;
        let (mut rows, mut res) = (Vec::new(), Vec::new());
        let mut h = vec![0.0; n * n];
        let mut grad = vec![0.0; n];
        let mut lambda = 1e-4;
        let mut iterations = 0;
        while iterations < max_iterations && (iterations == 0 || Instant::now() < deadline) {
            self.linearise(s, &mut rows, &mut res)?;
            iterations += 1;
            normal_equations(&rows, &res, n, &mut h, &mut grad);
            for i in 0..n {
                let p = self.prior_weight(i);
                h[i * n + i] += p;
                grad[i] += p * self.param(s, i);
            }
            let mut accepted = None;
            for _ in 0..10 {
                let mut a = h.clone();
                for i in 0..n {
                    a[i * n + i] += lambda * h[i * n + i] + 1e-12;
                }
                let step = cholesky_solve(&mut a, &grad, n).map(|d| d.into_iter().map(|x| -x).collect::<Vec<_>>());
                let candidate = step.map(|d| self.apply(s, &d));
                match candidate.as_ref().and_then(|c| self.cost(c).map(|v| (c, v))) {
                    Some((c, (c_cost, c_rms))) if c_cost < cost => {
                        accepted = Some((c.clone(), c_cost, c_rms));
                        lambda = (lambda / 3.0).max(1e-12);
                        break;
                    }
                    _ => lambda *= 8.0,
                }
            }
            let Some((next, next_cost, next_rms)) = accepted else { break };
            let gain = cost - next_cost;
            *s = next;
            (cost, rms) = (next_cost, next_rms);
            if gain <= 1e-10 * cost {
                break;
            }
        }
        Some(Outcome { iterations, cost, rms_px: rms })
    }

    /// Current value of unknown `i` (the rotation increment is always 0 at the linearisation point).
    fn param(&self, s: &State, i: usize) -> f64 {
        let k = self.cols.len();
        match i {
            0..=2 => 0.0,
            3..=5 => s.t[i - 3],
            i if i < 6 + k => s.coeffs[self.cols[i - 6]],
            i if i < 9 + k => s.jaw[i - 6 - k],
            i if i < 12 + k => s.eyes[0][i - 9 - k],
            i => s.eyes[1][i - 12 - k],
        }
    }
}

fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `h = J^T J` (full symmetric) and `g = J^T r` for row-major `rows` `[m][n]`.
fn normal_equations(rows: &[f64], res: &[f64], n: usize, h: &mut [f64], g: &mut [f64]) {
    h.iter_mut().for_each(|x| *x = 0.0);
    g.iter_mut().for_each(|x| *x = 0.0);
    for (row, &r) in rows.chunks_exact(n).zip(res) {
        for i in 0..n {
            let ri = row[i];
            if ri == 0.0 {
                continue;
            }
            g[i] += ri * r;
            let hi = &mut h[i * n..(i + 1) * n];
            for j in i..n {
                hi[j] += ri * row[j];
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            h[i * n + j] = h[j * n + i];
        }
    }
}

/// Solves `a x = b` for symmetric positive definite `a` (`[n][n]`, overwritten by its Cholesky factor);
/// `None` when `a` is not positive definite.
pub fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut x = b.to_vec();
    for i in 0..n {
        let mut s = x[i];
        for k in 0..i {
            s -= a[i * n + k] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = x[i];
        for k in i + 1..n {
            s -= a[k * n + i] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    Some(x)
}
