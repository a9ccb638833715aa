//! FLAME evaluation for the per-frame path (spec §4.1; `FLAME.py` + `lbs.py` of the official code).
//!
//! Per source, `set_identity` precomputes `v_template + shapedirs[.., ..S] . shape` once; the shape
//! directions (23 MiB of the 25 MiB of FLAME at official size) are read only then, and their pages are
//! released from the resident set right after (`Weights::release_tensor`), while a frame reads a compact
//! copy of the expression directions (6 MiB). Per frame, `pose`
//! adds the expression blendshapes, regresses the joints from the full shaped mesh (so they follow the
//! expression, as `lbs.py` does), builds the five joint rotations (Rodrigues), the pose correctives, the
//! rigid chain and the linear blend skinning, and scales by `cfg.flame.scale`. Every buffer is allocated
//! in `new`; `pose` allocates nothing.

// Fixed-size 3x3 matrix code reads better with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::borrow::Cow;

use gaga_kernels::linear::{dot8, Dot8};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

/// Joints with a pose feature: every joint but the root (4 in FLAME), 9 values each.
const POSE_FEATURE_PER_JOINT: usize = 9;

/// A 3x3 rotation and a translation: the rigid transforms of the kinematic chain.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rigid {
    r: [[f32; 3]; 3],
    t: [f32; 3],
}

impl Rigid {
    fn compose(&self, o: &Rigid) -> Rigid {
        let mut r = [[0f32; 3]; 3];
        let mut t = self.t;
        for i in 0..3 {
            for j in 0..3 {
                r[i][j] = (0..3).map(|k| self.r[i][k] * o.r[k][j]).sum();
                t[i] += self.r[i][j] * o.t[j];
            }
        }
        Rigid { r, t }
    }
}

/// `batch_rodrigues` of `lbs.py`: angle = |r + 1e-8| (1e-8 added to each component), so a zero vector
/// gives the identity exactly.
pub fn rodrigues(r: [f32; 3]) -> [[f32; 3]; 3] {
    let p = [r[0] + 1e-8, r[1] + 1e-8, r[2] + 1e-8];
    let angle = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
    let (x, y, z) = (r[0] / angle, r[1] / angle, r[2] / angle);
    let (s, c) = angle.sin_cos();
    let k = [[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]];
    let mut out = [[0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let kk: f32 = (0..3).map(|m| k[i][m] * k[m][j]).sum();
            out[i][j] = if i == j { 1.0 } else { 0.0 } + s * k[i][j] + (1.0 - c) * kk;
        }
    }
    out
}

/// The parent of every joint from `flame.kintree_table` `[2, joints]` (joint 0 is the root). Parents must
/// come first so the chain can be built in index order (FLAME: [-1, 0, 1, 1, 1]).
pub fn read_parents(w: &dyn Weights, joints: usize) -> Result<Vec<usize>> {
    let kintree = w.f32_shaped("flame.kintree_table", &[2, joints])?;
    let mut parents = vec![0usize; joints];
    for (i, p) in parents.iter_mut().enumerate().skip(1) {
        let raw = kintree[i];
        if !(raw >= 0.0 && (raw as usize) < i && raw.fract() == 0.0) {
            return Err(Error::Input {
                source_name: "flame.kintree_table".into(),
                frame: "-".into(),
                field: format!("parent of joint {i}"),
                what: format!("expected an earlier joint index in 0..{i}, found {raw}"),
            });
        }
        *p = raw as usize;
    }
    Ok(parents)
}

/// The expression directions as a renderer keeps them: f32 (bit-exact FLAME), or for an int8 session i16
/// with one scale per row (one vertex coordinate's directions; about half the memory: 2.9 MiB saved at
/// official size). Each value is within 2^-16 of its row's largest. f16 directions (2^-11 of each value,
/// until session 9) moved posed vertices by up to 1.5e-4 on a real tracked clip and its splat by up to
/// 0.70; i16 rows: 1.4e-5 and 0.14 (`docs/performance.md`, session 9).
enum ExprDirs {
    F32(Vec<f32>),
    I16 { dirs: Vec<i16>, scales: Vec<f32> },
}

/// `d` (rows of `n`) as i16 rows scaled to their largest magnitude, or `None` if a value is not finite.
fn narrow_rows(d: &[f32], n: usize) -> Option<ExprDirs> {
    if n == 0 || d.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut dirs = Vec::with_capacity(d.len());
    let mut scales = Vec::with_capacity(d.len() / n);
    for row in d.chunks(n) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = max / i16::MAX as f32;
        scales.push(scale);
        // |v / scale| <= 32767 up to rounding: the clamp only guards that last ulp.
        dirs.extend(row.iter().map(|&v| if scale > 0.0 { (v / scale).round().clamp(-32767.0, 32767.0) as i16 } else { 0 }));
    }
    Some(ExprDirs::I16 { dirs, scales })
}

/// The FLAME model with its per-source and per-frame working buffers. Reads `flame.*` tensors.
pub struct Flame<'w> {
    vertices: usize,
    shape_n: usize,
    expr_n: usize,
    joints: usize,
    scale: f32,
    /// The source of `flame.shapedirs`, to release its pages after each identity (when it can be kept:
    /// the renderer must stay `Send`).
    weights: Option<&'w (dyn Weights + Sync)>,
    v_template: Cow<'w, [f32]>,
    /// `[V, 3, shape_n + expr_n]`, as stored; read by `set_identity` only.
    shapedirs: Cow<'w, [f32]>,
    /// `[V, 3, expr_n]`: the expression columns of `shapedirs`, the part a frame reads.
    exprdirs: ExprDirs,
    /// `[V, 3, (J - 1) * 9]`, as stored; `lbs.py`'s reshape to `[36, V*3]` is the transpose of this.
    posedirs: Cow<'w, [f32]>,
    j_regressor: Cow<'w, [f32]>,
    lbs_weights: Cow<'w, [f32]>,
    parents: Vec<usize>,
    /// The identity currently baked into `v_identity` (None before the first `set_identity`).
    identity: Option<Vec<f32>>,
    v_identity: Vec<f32>,
    v_shaped: Vec<f32>,
    joints_xyz: Vec<[f32; 3]>,
    rel: Vec<Rigid>,
    pose_feature: Vec<f32>,
}

fn check_len(field: &str, found: usize, expected: usize, frame: &str) -> Result<()> {
    if found != expected {
        return Err(Error::Input {
            source_name: "FLAME input".into(),
            frame: frame.into(),
            field: field.into(),
            what: format!("expected {expected} values, found {found}"),
        });
    }
    Ok(())
}

impl<'w> Flame<'w> {
    /// Loads and validates the FLAME arrays (`flame.v_template`, `flame.shapedirs`, `flame.posedirs`,
    /// `flame.J_regressor`, `flame.weights`, `flame.kintree_table`) for `cfg.flame`.
    pub fn new(w: &'w dyn Weights, cfg: &ModelConfig) -> Result<Self> {
        let f = &cfg.flame;
        let (v, j) = (f.vertices, f.joints);
        if j < 1 {
            return Err(Error::Config(format!("FLAME needs at least one joint, found {j}")));
        }
        let pose_dim = (j - 1) * POSE_FEATURE_PER_JOINT;
        let parents = read_parents(w, j)?;
        let (shape_n, expr_n) = (f.shape_params, f.expr_params);
        let shapedirs = w.f32_shaped("flame.shapedirs", &[v, 3, shape_n + expr_n])?;
        let exprdirs: Vec<f32> = shapedirs.chunks_exact(shape_n + expr_n).flat_map(|row| &row[shape_n..]).copied().collect();
        w.release_tensor("flame.shapedirs")?;
        Ok(Flame {
            vertices: v,
            shape_n: f.shape_params,
            expr_n: f.expr_params,
            joints: j,
            scale: f.scale,
            weights: w.as_sync(),
            v_template: w.f32_shaped("flame.v_template", &[v, 3])?,
            shapedirs,
            exprdirs: ExprDirs::F32(exprdirs),
            posedirs: w.f32_shaped("flame.posedirs", &[v, 3, pose_dim])?,
            j_regressor: w.f32_shaped("flame.J_regressor", &[j, v])?,
            lbs_weights: w.f32_shaped("flame.weights", &[v, j])?,
            parents,
            identity: None,
            v_identity: vec![0.0; v * 3],
            v_shaped: vec![0.0; v * 3],
            joints_xyz: vec![[0.0; 3]; j],
            rel: vec![Rigid { r: [[0.0; 3]; 3], t: [0.0; 3] }; j],
            pose_feature: vec![0.0; pose_dim],
        })
    }

    /// Keeps the expression directions as scaled i16 rows from now on (see `ExprDirs`; for int8 sessions).
    pub fn narrow_expression_directions(&mut self) {
        if let ExprDirs::F32(d) = &self.exprdirs {
            if let Some(narrow) = narrow_rows(d, self.expr_n) {
                self.exprdirs = narrow;
            }
        }
    }

    /// Bytes of the expression directions kept for frames.
    pub fn expression_direction_bytes(&self) -> usize {
        match &self.exprdirs {
            ExprDirs::F32(d) => 4 * d.len(),
            ExprDirs::I16 { dirs, scales } => 2 * dirs.len() + 4 * scales.len(),
        }
    }

    /// Number of vertices of the output (`[vertices, 3]`).
    pub fn vertices(&self) -> usize {
        self.vertices
    }

    /// Bakes the source identity (`shapecode`, `shape_params` values) into the shaped template. A call with
    /// the identity already baked in does nothing and allocates nothing.
    pub fn set_identity(&mut self, shapecode: &[f32]) -> Result<()> {
        check_len("shapecode", shapecode.len(), self.shape_n, "source")?;
        if self.identity.as_deref() == Some(shapecode) {
            return Ok(());
        }
        let d = self.shape_n + self.expr_n;
        for (i, out) in self.v_identity.iter_mut().enumerate() {
            let dirs = &self.shapedirs[i * d..i * d + self.shape_n];
            *out = self.v_template[i] + dot8(dirs, shapecode);
        }
        match &mut self.identity {
            Some(v) => v.copy_from_slice(shapecode),
            None => self.identity = Some(shapecode.to_vec()),
        }
        // Frames never read the shape directions: their pages come back only for the next identity.
        if let Some(w) = self.weights {
            w.release_tensor("flame.shapedirs")?;
        }
        Ok(())
    }

    /// Posed vertices `[V, 3]` (already multiplied by the FLAME scale) into `out`, for the identity set by
    /// `set_identity`, the driver's expression (`expr_params`), pose (global 3 + jaw 3) and eye pose
    /// (joints 3 and 4); the neck stays at rest. `frame` names the frame in errors.
    pub fn pose(&mut self, expcode: &[f32], posecode: &[f32; 6], eyecode: &[f32; 6], frame: &str, out: &mut [f32]) -> Result<()> {
        check_len("expcode", expcode.len(), self.expr_n, frame)?;
        if self.identity.is_none() {
            return Err(Error::Other("FLAME: pose called before set_identity".into()));
        }
        let (v, j) = (self.vertices, self.joints);
        assert_eq!(out.len(), v * 3, "FLAME output length");
        let e = self.expr_n;

        // 1. Expression blendshapes on top of the baked identity.
        match &self.exprdirs {
            ExprDirs::F32(d) => {
                for (i, vs) in self.v_shaped.iter_mut().enumerate() {
                    *vs = self.v_identity[i] + dot8(&d[i * e..(i + 1) * e], expcode);
                }
            }
            ExprDirs::I16 { dirs, scales } => {
                // Each row widened a piece at a time (exact: i16 fits f32) into one `Dot8` (the bits of
                // `dot8` on the widened row), the dot product scaled once.
                const PIECE: usize = 256;
                let mut buf = [0f32; PIECE];
                for (i, vs) in self.v_shaped.iter_mut().enumerate() {
                    let mut d = Dot8::default();
                    for (dc, xc) in dirs[i * e..(i + 1) * e].chunks(PIECE).zip(expcode.chunks(PIECE)) {
                        let w = &mut buf[..dc.len()];
                        w.iter_mut().zip(dc).for_each(|(w, &q)| *w = q as f32);
                        d.feed(w, xc);
                    }
                    *vs = self.v_identity[i] + d.sum() * scales[i];
                }
            }
        }
        // 2. Joints from the full shaped mesh.
        for (jj, joint) in self.joints_xyz.iter_mut().enumerate() {
            let reg = &self.j_regressor[jj * v..(jj + 1) * v];
            *joint = [0.0; 3];
            for (vi, r) in reg.iter().enumerate() {
                for k in 0..3 {
                    joint[k] += r * self.v_shaped[vi * 3 + k];
                }
            }
        }
        // 3. Joint rotations: FLAME's full pose is [global, neck (zero), jaw, eye 3, eye 4].
        let axis = |jj: usize| -> [f32; 3] {
            match jj {
                0 => [posecode[0], posecode[1], posecode[2]],
                2 => [posecode[3], posecode[4], posecode[5]],
                3 => [eyecode[0], eyecode[1], eyecode[2]],
                4 => [eyecode[3], eyecode[4], eyecode[5]],
                _ => [0.0; 3],
            }
        };
        // 4. Pose feature (R_i - I for the non-root joints) and the rigid chain.
        for jj in 0..j {
            let r = rodrigues(axis(jj));
            if jj > 0 {
                for a in 0..3 {
                    for b in 0..3 {
                        self.pose_feature[(jj - 1) * 9 + a * 3 + b] = r[a][b] - if a == b { 1.0 } else { 0.0 };
                    }
                }
            }
            let jt = self.joints_xyz[jj];
            let local = if jj == 0 {
                Rigid { r, t: jt }
            } else {
                let jp = self.joints_xyz[self.parents[jj]];
                Rigid { r, t: [jt[0] - jp[0], jt[1] - jp[1], jt[2] - jp[2]] }
            };
            self.rel[jj] = if jj == 0 { local } else { self.rel[self.parents[jj]].compose(&local) };
        }
        // Make each chain transform relative to its joint's rest position: t -= R_global . J.
        for jj in 0..j {
            let g = &mut self.rel[jj];
            let jt = self.joints_xyz[jj];
            for a in 0..3 {
                g.t[a] -= g.r[a][0] * jt[0] + g.r[a][1] * jt[1] + g.r[a][2] * jt[2];
            }
        }
        // 5-6. Pose correctives, then linear blend skinning, then the world scale.
        let pd = self.pose_feature.len();
        for vi in 0..v {
            let mut p = [0f32; 3];
            for (k, pk) in p.iter_mut().enumerate() {
                let dirs = &self.posedirs[(vi * 3 + k) * pd..(vi * 3 + k + 1) * pd];
                *pk = self.v_shaped[vi * 3 + k] + dot8(dirs, &self.pose_feature);
            }
            let wts = &self.lbs_weights[vi * j..(vi + 1) * j];
            let mut t = Rigid { r: [[0.0; 3]; 3], t: [0.0; 3] };
            for (g, &wt) in self.rel.iter().zip(wts) {
                for a in 0..3 {
                    for b in 0..3 {
                        t.r[a][b] += wt * g.r[a][b];
                    }
                    t.t[a] += wt * g.t[a];
                }
            }
            for a in 0..3 {
                let x = t.r[a][0] * p[0] + t.r[a][1] * p[1] + t.r[a][2] * p[2] + t.t[a];
                out[vi * 3 + a] = x * self.scale;
            }
        }
        Ok(())
    }
}

pub mod testing;
#[cfg(test)]
mod tests;
