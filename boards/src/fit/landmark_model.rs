//! FLAME's 70 embedded landmarks as a function of the fitted parameters, with analytic derivatives.
//!
//! A landmark is a barycentric mix of three mesh vertices, and a posed vertex is
//! `sum_j w_j (R_j (v_posed - J_j) + J_j)` (spec section 4.1) with the root and neck rotations at zero, so
//! everything the fit needs folds, per landmark and per joint group g (0 = root + neck, whose transforms
//! are the identity; 2 = jaw; 3, 4 = eyes), into
//! `x = scale * sum_g [R_g B_g + omega_g (I - R_g) J_g]`, `B_g = T_g + D_g c + P_g p(R)`,
//! where `omega_g`, `T_g`, `D_g` (3 x 400 blendshape rows) and `P_g` (3 x 36 pose correctives) are the
//! barycentric-and-skinning-weighted sums over the three vertices, `c` = [shape, expression], `p` = the pose
//! feature (R_j - I of joints 1-4) and `J_g = Jt_g + Jd_g c` the joint regressed from the shaped mesh.
//! `new` precomputes these once (about 100 groups of 3 x 436 values); an evaluation is then ~0.1 M
//! multiply-adds instead of FLAME's ~7 M.

// Fixed-size 3x3 matrix code reads better with explicit indices.
#![allow(clippy::needless_range_loop)]

use gaga_runtime::config::ModelConfig;
use gaga_runtime::Weights;

use super::geom::{self, Mat3, Vec3, IDENTITY};
use super::mapping::FLAME_LANDMARKS;
use super::{fit_err, Result};

/// FLAME's joints: root, neck, jaw, eye (joint 3), eye (joint 4).
const JOINTS: usize = 5;
pub const JAW: usize = 2;
/// 9 pose-feature values per non-root joint.
const FEATURE: usize = 9;
/// Pose-corrective inputs: 4 non-root joints x 9.
const POSE_FEATURES: usize = (JOINTS - 1) * FEATURE;

/// One landmark's share of one joint group.
struct Group {
    joint: usize,
    omega: f64,
    template: Vec3,
    /// `[3][coeffs]`.
    dirs: Vec<f64>,
    /// `[3][POSE_FEATURES]`.
    posedirs: Vec<f64>,
}

/// The rotations of the jaw and the eyes (axis-angle) and their derivatives.
pub struct Pose {
    rot: [Mat3; JOINTS],
    drot: [[Mat3; 3]; JOINTS],
    feature: [f64; POSE_FEATURES],
}

impl Pose {
    /// `jaw` and the two eyes (FLAME joints 3 and 4), axis-angle in radians.
    pub fn new(jaw: Vec3, eyes: [Vec3; 2]) -> Pose {
        let mut rot = [IDENTITY; JOINTS];
        let mut drot = [[[[0.0; 3]; 3]; 3]; JOINTS];
        for (j, r) in [(JAW, jaw), (3, eyes[0]), (4, eyes[1])] {
            rot[j] = geom::rodrigues(r);
            drot[j] = geom::rodrigues_derivatives(r);
        }
        let mut feature = [0.0; POSE_FEATURES];
        for j in 1..JOINTS {
            for a in 0..3 {
                for b in 0..3 {
                    feature[(j - 1) * FEATURE + a * 3 + b] = rot[j][a][b] - IDENTITY[a][b];
                }
            }
        }
        Pose { rot, drot, feature }
    }
}

/// The precomputed landmark rows.
pub struct LandmarkModel {
    coeffs: usize,
    shape_n: usize,
    scale: f64,
    landmarks: Vec<Vec<Group>>,
    joint_template: [Vec3; JOINTS],
    /// `[JOINTS][3][coeffs]`; zero for the root and neck, which never rotate here.
    joint_dirs: Vec<f64>,
}

/// A tensor's values after checking that its element count is `n` (FLAME stores the landmark arrays as
/// `[70]` or `[1, 70]`, spec 8.2).
fn with_count(w: &dyn Weights, name: &str, n: usize) -> Result<Vec<f64>> {
    let shape = w.shape(name)?;
    let found: usize = shape.iter().product();
    if found != n {
        return Err(fit_err("model", name, format!("expected {n} values, found shape {shape:?}")));
    }
    Ok(w.f32(name)?.iter().map(|&x| x as f64).collect())
}

/// An integer-valued index below `limit`.
fn index(v: f64, limit: usize, name: &str, at: usize) -> Result<usize> {
    if v >= 0.0 && v.fract() == 0.0 && (v as usize) < limit {
        Ok(v as usize)
    } else {
        Err(fit_err("model", name, format!("entry {at}: expected an index in 0..{limit}, found {v}")))
    }
}

impl LandmarkModel {
    /// Reads `flame.*` and `flame.lmk.full_lmk_*_with_eye` and folds them into landmark rows.
    pub fn new(w: &dyn Weights, cfg: &ModelConfig) -> Result<LandmarkModel> {
        let f = &cfg.flame;
        let (nv, d) = (f.vertices, f.shape_params + f.expr_params);
        if f.joints != JOINTS {
            return Err(fit_err("model", "flame.joints", format!("expected FLAME's {JOINTS} joints, found {}", f.joints)));
        }
        let kintree = w.f32_shaped("flame.kintree_table", &[2, JOINTS])?;
        // The folding above assumes FLAME's chain: neck under the root, jaw and eyes under the neck.
        if kintree[1] != 0.0 || kintree[2..JOINTS].iter().any(|&p| p != 1.0) {
            let found: Vec<f32> = kintree[1..JOINTS].to_vec();
            return Err(fit_err("model", "flame.kintree_table", format!("expected parents [0, 1, 1, 1] for joints 1-4, found {found:?}")));
        }
        let template = w.f32_shaped("flame.v_template", &[nv, 3])?;
        let shapedirs = w.f32_shaped("flame.shapedirs", &[nv, 3, d])?;
        let posedirs = w.f32_shaped("flame.posedirs", &[nv, 3, POSE_FEATURES])?;
        let regressor = w.f32_shaped("flame.J_regressor", &[JOINTS, nv])?;
        let skin = w.f32_shaped("flame.weights", &[nv, JOINTS])?;
        let faces = w.f32_shaped("flame.faces", &[f.faces, 3])?;
        let lmk_faces = with_count(w, "flame.lmk.full_lmk_faces_idx_with_eye", FLAME_LANDMARKS)?;
        let lmk_bary = with_count(w, "flame.lmk.full_lmk_bary_coords_with_eye", FLAME_LANDMARKS * 3)?;
        if let Some(i) = lmk_bary.iter().position(|b| !b.is_finite()) {
            return Err(fit_err("model", "flame.lmk.full_lmk_bary_coords_with_eye", format!("entry {i} is {}", lmk_bary[i])));
        }

        let mut landmarks = Vec::with_capacity(FLAME_LANDMARKS);
        for l in 0..FLAME_LANDMARKS {
            let face = index(lmk_faces[l], f.faces, "flame.lmk.full_lmk_faces_idx_with_eye", l)?;
            let mut groups: Vec<Group> = Vec::new();
            for k in 0..3 {
                let v = index(faces[face * 3 + k] as f64, nv, "flame.faces", face * 3 + k)?;
                let b = lmk_bary[l * 3 + k];
                for j in 0..JOINTS {
                    let wt = b * skin[v * JOINTS + j] as f64;
                    if wt == 0.0 {
                        continue;
                    }
                    let joint = if j < JAW { 0 } else { j }; // root and neck share group 0
                    let pos = match groups.iter().position(|x| x.joint == joint) {
                        Some(p) => p,
                        None => {
                            groups.push(Group {
                                joint,
                                omega: 0.0,
                                template: [0.0; 3],
                                dirs: vec![0.0; 3 * d],
                                posedirs: vec![0.0; 3 * POSE_FEATURES],
                            });
                            groups.len() - 1
                        }
                    };
                    let grp = &mut groups[pos];
                    grp.omega += wt;
                    for c in 0..3 {
                        grp.template[c] += wt * template[v * 3 + c] as f64;
                        let row = &shapedirs[(v * 3 + c) * d..(v * 3 + c + 1) * d];
                        for (o, &s) in grp.dirs[c * d..(c + 1) * d].iter_mut().zip(row) {
                            *o += wt * s as f64;
                        }
                        let prow = &posedirs[(v * 3 + c) * POSE_FEATURES..(v * 3 + c + 1) * POSE_FEATURES];
                        for (o, &s) in grp.posedirs[c * POSE_FEATURES..(c + 1) * POSE_FEATURES].iter_mut().zip(prow) {
                            *o += wt * s as f64;
                        }
                    }
                }
            }
            landmarks.push(groups);
        }

        // Joints regressed from the shaped mesh, for the three that rotate.
        let mut joint_template = [[0.0; 3]; JOINTS];
        let mut joint_dirs = vec![0.0; JOINTS * 3 * d];
        for j in JAW..JOINTS {
            for v in 0..nv {
                let r = regressor[j * nv + v] as f64;
                if r == 0.0 {
                    continue;
                }
                for c in 0..3 {
                    joint_template[j][c] += r * template[v * 3 + c] as f64;
                    let row = &shapedirs[(v * 3 + c) * d..(v * 3 + c + 1) * d];
                    for (o, &s) in joint_dirs[(j * 3 + c) * d..(j * 3 + c + 1) * d].iter_mut().zip(row) {
                        *o += r * s as f64;
                    }
                }
            }
        }
        Ok(LandmarkModel { coeffs: d, shape_n: f.shape_params, scale: f.scale as f64, landmarks, joint_template, joint_dirs })
    }

    /// Number of blendshape coefficients (shape then expression).
    pub fn coeffs(&self) -> usize {
        self.coeffs
    }

    /// Number of identity coefficients (the first `shape_n` of the blendshapes).
    pub fn shape_n(&self) -> usize {
        self.shape_n
    }

    fn joint(&self, j: usize, c: &[f64]) -> Vec3 {
        let d = self.coeffs;
        let mut out = self.joint_template[j];
        for (a, o) in out.iter_mut().enumerate() {
            *o += dot(&self.joint_dirs[(j * 3 + a) * d..(j * 3 + a + 1) * d], c);
        }
        out
    }

    /// World positions of the 70 landmarks for blendshape coefficients `c` (shape then expression) and
    /// `pose`. With `jac = Some((cols, out))` also their derivatives: `out` is `[70][3][cols.len() + 9]`,
    /// columns = the coefficients listed in `cols`, then jaw (3), eye 3 (3), eye 4 (3).
    pub fn eval(&self, c: &[f64], pose: &Pose, pos: &mut [Vec3; FLAME_LANDMARKS], mut jac: Option<(&[usize], &mut [f64])>) {
        let d = self.coeffs;
        let joints: [Vec3; JOINTS] = std::array::from_fn(|j| if j >= JAW { self.joint(j, c) } else { [0.0; 3] });
        let n = jac.as_ref().map_or(0, |(cols, _)| cols.len() + 9);
        for (l, groups) in self.landmarks.iter().enumerate() {
            let mut x = [0.0; 3];
            if let Some((_, out)) = jac.as_mut() {
                out[l * 3 * n..(l + 1) * 3 * n].iter_mut().for_each(|v| *v = 0.0);
            }
            for g in groups {
                let rot = &pose.rot[g.joint];
                let mut b = g.template;
                for a in 0..3 {
                    b[a] +=
                        dot(&g.dirs[a * d..(a + 1) * d], c) + dot(&g.posedirs[a * POSE_FEATURES..(a + 1) * POSE_FEATURES], &pose.feature);
                }
                let rb = geom::mul_vec(rot, b);
                let jg = joints[g.joint];
                let rj = geom::mul_vec(rot, jg);
                for a in 0..3 {
                    x[a] += rb[a] + g.omega * (jg[a] - rj[a]);
                }
                let Some((cols, out)) = jac.as_mut() else { continue };
                let out = &mut out[l * 3 * n..(l + 1) * 3 * n];
                // Blendshape columns: R D_k + omega (I - R) Jd_k.
                for (i, &k) in cols.iter().enumerate() {
                    let dk = [g.dirs[k], g.dirs[d + k], g.dirs[2 * d + k]];
                    let mut col = geom::mul_vec(rot, dk);
                    if g.joint >= JAW {
                        let jd = [
                            self.joint_dirs[g.joint * 3 * d + k],
                            self.joint_dirs[(g.joint * 3 + 1) * d + k],
                            self.joint_dirs[(g.joint * 3 + 2) * d + k],
                        ];
                        let rjd = geom::mul_vec(rot, jd);
                        for a in 0..3 {
                            col[a] += g.omega * (jd[a] - rjd[a]);
                        }
                    }
                    for a in 0..3 {
                        out[a * n + i] += col[a];
                    }
                }
                // Rotation columns: the pose correctives of every group, and the group's own rotation.
                for (slot, j) in (JAW..JOINTS).enumerate() {
                    for t in 0..3 {
                        let dr = &pose.drot[j][t];
                        let mut dp = [0.0; 3];
                        for a in 0..3 {
                            let pd = &g.posedirs[a * POSE_FEATURES + (j - 1) * FEATURE..a * POSE_FEATURES + j * FEATURE];
                            dp[a] = (0..FEATURE).map(|f| pd[f] * dr[f / 3][f % 3]).sum();
                        }
                        let mut col = geom::mul_vec(rot, dp);
                        if g.joint == j {
                            let arm = [b[0] - g.omega * jg[0], b[1] - g.omega * jg[1], b[2] - g.omega * jg[2]];
                            let da = geom::mul_vec(dr, arm);
                            for a in 0..3 {
                                col[a] += da[a];
                            }
                        }
                        for a in 0..3 {
                            out[a * n + cols.len() + slot * 3 + t] += col[a];
                        }
                    }
                }
            }
            pos[l] = [x[0] * self.scale, x[1] * self.scale, x[2] * self.scale];
            if let Some((_, out)) = jac.as_mut() {
                out[l * 3 * n..(l + 1) * 3 * n].iter_mut().for_each(|v| *v *= self.scale);
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
