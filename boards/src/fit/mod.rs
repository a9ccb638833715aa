//! Fits FLAME driving parameters to MediaPipe face landmarks (issue 5; design in docs/boards.md "FLAME fit").
//!
//! Per frame: the 468 MediaPipe points become FLAME's 70 embedded landmarks ([`mapping`]); a regularised
//! Levenberg-Marquardt ([`solve`]) then moves the camera rotation and translation, the first
//! [`FitOptions::expressions`] expression coefficients, the jaw and the eyes, starting from the previous
//! frame's solution, so that the landmarks, posed by FLAME ([`landmark_model`]) and projected by the
//! renderer's camera, land on the targets. Root and neck pose stay zero: the head pose is the camera, as
//! the official tracker has it. [`FlameFitter::fit_source`] fits a portrait the same way, plus the 300
//! identity coefficients, from a neutral start and with more iterations.

mod geom;
pub mod landmark_model;
pub mod mapping;
pub mod solve;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use gaga_runtime::config::ModelConfig;
use gaga_runtime::{DrivingFrame, SourceParams, Transform, Weights};

use crate::error::{Error, Result};
use crate::landmarks::{FaceLandmarks, MESH_POINTS};
use landmark_model::LandmarkModel;
use mapping::FLAME_LANDMARKS;
use solve::{Camera, Problem, State};

/// The error of a fit: `frame` names the frame (or "model" / "source"), `field` the value.
pub(crate) fn fit_err(frame: &str, field: &str, what: impl Into<String>) -> Error {
    Error::Runtime(gaga_runtime::Error::Input {
        source_name: "FLAME fit".into(),
        frame: frame.into(),
        field: field.into(),
        what: what.into(),
    })
}

/// Priors, weights and budgets of the fit. Prior weights are in px^2 per unit^2 of the parameter, so a
/// prior of `p` on a coefficient costs as much as `sqrt(p)` pixels of error on one landmark.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    /// Expression coefficients fitted per frame (the first ones; the others stay 0).
    pub expressions: usize,
    pub expression_prior: f64,
    pub jaw_prior: f64,
    pub eye_prior: f64,
    pub shape_prior: f64,
    /// Per FLAME landmark (70) weight of its squared pixel error.
    pub weights: [f64; FLAME_LANDMARKS],
    pub frame_iterations: usize,
    /// No new iteration starts after this much time in `fit_frame`.
    pub frame_budget: Duration,
    pub source_iterations: usize,
    pub source_budget: Duration,
    /// A warm-started frame whose RMS error stays above this is fitted again from the neutral start.
    pub restart_rms_px: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            expressions: 20,
            expression_prior: 0.1,
            jaw_prior: 100.0,
            eye_prior: 10.0,
            shape_prior: 0.1,
            weights: mapping::default_weights(),
            frame_iterations: 10,
            frame_budget: Duration::from_millis(20),
            source_iterations: 50,
            source_budget: Duration::from_secs(2),
            restart_rms_px: 6.0,
        }
    }
}

/// One fitted frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FitResult {
    /// Passes `gaga_runtime::driving::validate_frame`; `shapecode` is the identity the fit used.
    pub frame: DrivingFrame,
    /// RMS reprojection error in pixels over the landmarks with a non-zero weight.
    pub rms_px: f32,
}

/// How the last fit went (for logs, tests and the overlay).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FitStats {
    /// Gauss-Newton linearisations, over both starts when the fit restarted.
    pub iterations: usize,
    pub warm_start: bool,
    pub restarted: bool,
    pub elapsed: Duration,
    /// Final cost: weighted squared pixel error plus priors.
    pub cost: f64,
}

/// Fits FLAME parameters to landmarks; keeps the previous frame's solution as the next start.
pub struct FlameFitter {
    model: LandmarkModel,
    focal_ndc: f64,
    options: FitOptions,
    /// Identity used by `fit_frame` (zeros until `set_identity`).
    identity: Vec<f64>,
    previous: Option<State>,
    frames: u64,
    stats: FitStats,
}

impl FlameFitter {
    /// Precomputes the landmark rows from the model's FLAME (`flame.*`, `flame.lmk.*`), default options.
    pub fn new(w: &dyn Weights, cfg: &ModelConfig) -> Result<FlameFitter> {
        Self::with_options(w, cfg, FitOptions::default())
    }

    /// As `new`, with explicit options.
    pub fn with_options(w: &dyn Weights, cfg: &ModelConfig, options: FitOptions) -> Result<FlameFitter> {
        let model = LandmarkModel::new(w, cfg)?;
        let expr_n = model.coeffs() - model.shape_n();
        if options.expressions > expr_n {
            return Err(fit_err("options", "expressions", format!("expected at most {expr_n}, found {}", options.expressions)));
        }
        let priors = [options.expression_prior, options.jaw_prior, options.eye_prior, options.shape_prior];
        if priors.iter().chain(&options.weights).any(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(fit_err("options", "priors/weights", "expected finite, non-negative values"));
        }
        if options.weights.iter().filter(|&&w| w > 0.0).count() < 8 {
            return Err(fit_err("options", "weights", "expected at least 8 landmarks with a positive weight"));
        }
        let identity = vec![0.0; model.shape_n()];
        Ok(FlameFitter { model, focal_ndc: cfg.focal as f64, options, identity, previous: None, frames: 0, stats: FitStats::default() })
    }

    /// Forgets the previous frame: the next `fit_frame` starts from the neutral pose.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// The identity (shape coefficients) `fit_frame` poses FLAME with; zeros until set.
    pub fn set_identity(&mut self, shapecode: &[f32]) -> Result<()> {
        if shapecode.len() != self.identity.len() || shapecode.iter().any(|v| !v.is_finite()) {
            return Err(fit_err(
                "-",
                "shapecode",
                format!("expected {} finite values, found {} values", self.identity.len(), shapecode.len()),
            ));
        }
        self.identity = shapecode.iter().map(|&v| v as f64).collect();
        if let Some(prev) = &mut self.previous {
            prev.coeffs[..self.identity.len()].copy_from_slice(&self.identity);
        }
        Ok(())
    }

    /// The options this fitter was made with.
    pub fn options(&self) -> &FitOptions {
        &self.options
    }

    /// Statistics of the last `fit_*` call.
    pub fn last_stats(&self) -> FitStats {
        self.stats
    }

    /// Fits one frame's landmarks, warm-started from the previous frame's solution.
    pub fn fit_frame(&mut self, lm: &FaceLandmarks) -> Result<FitResult> {
        let key = self.frames.to_string();
        let targets = checked_targets(lm, &key)?;
        self.fit_points(&targets, lm.width, &key)
    }

    /// Fits FLAME's 70 landmark positions directly (pixels of a `size` x `size` image); `fit_frame` after
    /// the MediaPipe mapping. `key` names the frame in errors and in the result.
    pub fn fit_points(&mut self, targets: &[[f64; 2]; FLAME_LANDMARKS], size: u32, key: &str) -> Result<FitResult> {
        let start = Instant::now();
        self.frames += 1;
        check_spread(targets, &self.options.weights, size, key)?;
        let camera = self.camera(size);
        let expr: Vec<usize> = (self.model.shape_n()..self.model.shape_n() + self.options.expressions).collect();
        let col_prior = vec![self.options.expression_prior; expr.len()];
        let problem = self.problem(camera, targets, &expr, &col_prior);
        let deadline = start + self.options.frame_budget;
        let warm = self.previous.clone();
        let warm_start = warm.is_some();
        let mut best = None;
        if let Some(mut s) = warm {
            if let Some(o) = problem.solve(&mut s, self.options.frame_iterations, deadline) {
                best = Some((s, o));
            }
        }
        let mut iterations = best.as_ref().map_or(0, |b| b.1.iterations);
        let mut restarted = false;
        if best.as_ref().is_none_or(|b| b.1.rms_px > self.options.restart_rms_px) && (!warm_start || Instant::now() < deadline) {
            restarted = warm_start;
            let mut s = self.neutral(&problem, self.identity.clone());
            if let Some(o) = problem.solve(&mut s, self.options.frame_iterations, deadline) {
                iterations += o.iterations;
                if best.as_ref().is_none_or(|b| o.cost < b.1.cost) {
                    best = Some((s, o));
                }
            }
        }
        let Some((state, outcome)) = best.filter(|b| b.0.is_finite() && b.1.cost.is_finite()) else {
            self.previous = None;
            return Err(fit_err(key, "landmarks", "the fit found no finite solution in front of the camera"));
        };
        self.stats = FitStats { iterations, warm_start, restarted, elapsed: start.elapsed(), cost: outcome.cost };
        let frame = DrivingFrame {
            key: key.to_string(),
            expcode: state.coeffs[self.model.shape_n()..].iter().map(|&v| v as f32).collect(),
            posecode: [0.0, 0.0, 0.0, state.jaw[0] as f32, state.jaw[1] as f32, state.jaw[2] as f32],
            eyecode: std::array::from_fn(|i| state.eyes[i / 3][i % 3] as f32),
            transform: transform_of(&state),
            shapecode: Some(self.identity.iter().map(|&v| v as f32).collect()),
            face: true,
        };
        gaga_runtime::driving::validate_frame(&frame, "FLAME fit")?;
        self.previous = Some(state);
        Ok(FitResult { frame, rms_px: outcome.rms_px as f32 })
    }

    /// Fits a source portrait: identity (all shape coefficients, with `shape_prior`) and camera, with the
    /// expression, jaw and eyes fitted alongside (and dropped). Always starts from neutral; leaves the
    /// frame state (`reset`, `set_identity`) untouched.
    pub fn fit_source(&mut self, lm: &FaceLandmarks) -> Result<SourceParams> {
        let targets = checked_targets(lm, "source")?;
        self.fit_source_points(&targets, lm.width)
    }

    /// `fit_source` on FLAME's 70 landmark positions.
    pub fn fit_source_points(&mut self, targets: &[[f64; 2]; FLAME_LANDMARKS], size: u32) -> Result<SourceParams> {
        let start = Instant::now();
        check_spread(targets, &self.options.weights, size, "source")?;
        let shape_n = self.model.shape_n();
        let cols: Vec<usize> = (0..shape_n + self.options.expressions).collect();
        let col_prior: Vec<f64> =
            cols.iter().map(|&c| if c < shape_n { self.options.shape_prior } else { self.options.expression_prior }).collect();
        let problem = self.problem(self.camera(size), targets, &cols, &col_prior);
        let mut s = self.neutral(&problem, vec![0.0; shape_n]);
        let outcome = problem
            .solve(&mut s, self.options.source_iterations, start + self.options.source_budget)
            .filter(|_| s.is_finite())
            .ok_or_else(|| fit_err("source", "landmarks", "the fit found no finite solution in front of the camera"))?;
        self.stats =
            FitStats { iterations: outcome.iterations, warm_start: false, restarted: false, elapsed: start.elapsed(), cost: outcome.cost };
        let params = SourceParams { shapecode: s.coeffs[..shape_n].iter().map(|&v| v as f32).collect(), transform: transform_of(&s) };
        gaga_runtime::driving::check_rotation(&params.transform).map_err(|what| fit_err("source", "transform", what))?;
        Ok(params)
    }

    fn camera(&self, size: u32) -> Camera {
        let w = size as f64;
        Camera { focal_px: self.focal_ndc * w / 2.0, centre: [w / 2.0 - 0.5, w / 2.0 - 0.5] }
    }

    fn problem<'a>(
        &'a self,
        camera: Camera,
        targets: &'a [[f64; 2]; FLAME_LANDMARKS],
        cols: &'a [usize],
        col_prior: &'a [f64],
    ) -> Problem<'a> {
        Problem {
            model: &self.model,
            camera,
            targets,
            weights: &self.options.weights,
            cols,
            col_prior,
            jaw_prior: self.options.jaw_prior,
            eye_prior: self.options.eye_prior,
        }
    }

    /// The neutral start: frontal camera (`R = diag(-1, 1, -1)`), neutral face, depth from the ratio of the
    /// model's to the targets' spread and translation from their centroids (weak perspective).
    fn neutral(&self, p: &Problem<'_>, shape: Vec<f64>) -> State {
        let mut coeffs = shape;
        coeffs.resize(self.model.coeffs(), 0.0);
        let mut pos = [[0.0; 3]; FLAME_LANDMARKS];
        self.model.eval(&coeffs, &landmark_model::Pose::new([0.0; 3], [[0.0; 3]; 2]), &mut pos, None);
        let (model_c, model_s) = spread(&pos.map(|q| [q[0], q[1]]), p.weights);
        let (target_c, target_s) = spread(p.targets, p.weights);
        let depth = p.camera.focal_px * model_s / target_s.max(1e-9);
        let mean_z = pos.iter().zip(p.weights).filter(|(_, &w)| w > 0.0).map(|(q, _)| q[2]).sum::<f64>()
            / p.weights.iter().filter(|&&w| w > 0.0).count().max(1) as f64;
        // Frontal: y = (-x0 + t0, x1 + t1, -x2 + t2); u = c - f y0 / y2, v = c - f y1 / y2.
        let t = [
            model_c[0] - (target_c[0] - p.camera.centre[0]) * depth / p.camera.focal_px,
            -(target_c[1] - p.camera.centre[1]) * depth / p.camera.focal_px - model_c[1],
            depth + mean_z,
        ];
        State { m: [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]], t, coeffs, jaw: [0.0; 3], eyes: [[0.0; 3]; 2] }
    }
}

/// The 3x4 `[R | T]` (row-vector form, `R = M^T`) of a state, in f32.
fn transform_of(s: &State) -> Transform {
    std::array::from_fn(|i| [s.m[0][i] as f32, s.m[1][i] as f32, s.m[2][i] as f32, s.t[i] as f32])
}

/// Weighted centroid and RMS distance from it of the points with a positive weight.
fn spread(points: &[[f64; 2]; FLAME_LANDMARKS], weights: &[f64; FLAME_LANDMARKS]) -> ([f64; 2], f64) {
    let used = || points.iter().zip(weights).filter(|(_, &w)| w > 0.0).map(|(p, _)| p);
    let n = used().count().max(1) as f64;
    let c = used().fold([0.0; 2], |a, p| [a[0] + p[0] / n, a[1] + p[1] / n]);
    let s = (used().map(|p| (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2)).sum::<f64>() / n).sqrt();
    (c, s)
}

/// Below this RMS spread (pixels) the targets carry no usable shape: all points (nearly) equal.
const MIN_SPREAD_PX: f64 = 1.0;

fn check_spread(targets: &[[f64; 2]; FLAME_LANDMARKS], weights: &[f64; FLAME_LANDMARKS], size: u32, key: &str) -> Result<()> {
    if size == 0 {
        return Err(fit_err(key, "size", "expected a crop of at least 1 pixel, found 0"));
    }
    if let Some(i) = targets.iter().position(|p| !(p[0].is_finite() && p[1].is_finite())) {
        return Err(fit_err(key, &format!("landmark {i}"), format!("expected finite pixel coordinates, found {:?}", targets[i])));
    }
    let (_, s) = spread(targets, weights);
    if s < MIN_SPREAD_PX {
        return Err(fit_err(
            key,
            "landmarks",
            format!("degenerate: the points spread over {s:.3} px RMS, expected at least {MIN_SPREAD_PX}"),
        ));
    }
    Ok(())
}

/// Checks the MediaPipe landmarks (count, square image, finite values) and maps them to FLAME's 70.
fn checked_targets(lm: &FaceLandmarks, key: &str) -> Result<[[f64; 2]; FLAME_LANDMARKS]> {
    if lm.width == 0 || lm.width != lm.height {
        return Err(fit_err(key, "width/height", format!("expected a square crop, found {}x{}", lm.width, lm.height)));
    }
    if let Some(i) = lm.points.iter().position(|p| p.iter().any(|v| !v.is_finite())) {
        return Err(fit_err(key, &format!("points[{i}]"), format!("expected finite values, found {:?}", lm.points[i])));
    }
    mapping::flame_points(lm)
        .ok_or_else(|| fit_err(key, "points", format!("expected {MESH_POINTS} MediaPipe points, found {}", lm.points.len())))
}

/// The tracker's view of a fit (`tracker::fit::LandmarkFit`): the same calls, the RMS beside the frame.
impl crate::tracker::fit::LandmarkFit for FlameFitter {
    fn fit_frame(&mut self, lm: &FaceLandmarks) -> Result<(DrivingFrame, f32)> {
        FlameFitter::fit_frame(self, lm).map(|r| (r.frame, r.rms_px))
    }
    fn fit_source(&mut self, lm: &FaceLandmarks) -> Result<SourceParams> {
        FlameFitter::fit_source(self, lm)
    }
    fn reset(&mut self) {
        FlameFitter::reset(self)
    }
    fn set_identity(&mut self, shapecode: &[f32]) -> Result<()> {
        FlameFitter::set_identity(self, shapecode)
    }
    fn name(&self) -> &str {
        "FLAME landmark fit"
    }
}
