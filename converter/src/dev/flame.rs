//! A seeded, structurally valid FLAME asset with `FLAME_with_eye.pt`'s keys, shapes and dtypes
//! (spec section 8.2): the head mesh and rig of `flame_mesh`, plus smooth seeded shape and expression
//! bases, small pose correctives and landmark embeddings on facial features.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use gaga_runtime::{Error, Result, WeightMap};

use super::flame_mesh::{self as mesh, smoothstep, HeadMesh, CENTRE, HEAD_FACES, HEAD_VERTICES, JOINTS, VERTICES};
use super::pickle::Py;
use super::rng::TensorRng;
use super::torch_zip::{tensor_ref, write_torch_archive, DType};

pub const SHAPE_PARAMS: usize = 300;
pub const EXPR_PARAMS: usize = 100;
/// Pose-corrective inputs: (R - I) of the four non-root joints.
pub const POSE_FEATURES: usize = 9 * (JOINTS - 1);

/// One array of the asset: `flame_model.*` or `lmk_embeddings.*` name, shape, values.
#[derive(Clone, Debug, PartialEq)]
pub enum FlameData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// The asset's arrays in file order.
pub struct FlameAsset {
    pub arrays: Vec<(String, Vec<usize>, FlameData)>,
}

/// A smooth scalar field over the head: `sin(w . p + phase)` with a seeded direction and frequency.
struct Wave {
    w: [f32; 3],
    phase: f32,
}

impl Wave {
    fn new(rng: &mut TensorRng, min_freq: f32, max_freq: f32) -> Wave {
        let mut d = [rng.normal(0.0, 1.0), rng.normal(0.0, 1.0), rng.normal(0.0, 1.0)];
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-6);
        let f = min_freq + (max_freq - min_freq) * rng.unit();
        d.iter_mut().for_each(|c| *c *= f / n);
        Wave { w: d, phase: 2.0 * std::f32::consts::PI * rng.unit() }
    }
    fn at(&self, p: [f32; 3]) -> f32 {
        (self.w[0] * p[0] + self.w[1] * p[1] + self.w[2] * p[2] + self.phase).sin()
    }
}

fn vertex(v: &[f32], i: usize) -> [f32; 3] {
    [v[3 * i], v[3 * i + 1], v[3 * i + 2]]
}

/// Outward direction from the skull centre.
fn radial(p: [f32; 3]) -> [f32; 3] {
    let d = [p[0] - CENTRE[0], p[1] - CENTRE[1], p[2] - CENTRE[2]];
    let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-6);
    [d[0] / n, d[1] / n, d[2] / n]
}

/// Where an eyeball vertex reads the deformation fields: its eye's centre, so the eyes move rigidly.
fn anchor(v: &[f32], i: usize) -> [f32; 3] {
    if i < HEAD_VERTICES {
        vertex(v, i)
    } else {
        mesh::eye_centre(if i < HEAD_VERTICES + mesh::EYE_VERTICES { 1.0 } else { -1.0 })
    }
}

/// `[VERTICES, 3, 400]`: 300 identity then 100 expression bases. Each basis moves vertices along the
/// outward direction (plus 30 % along a seeded direction) by `amplitude * wave(p)`.
/// - identity: long waves (10-60 rad/m), 3 mm per unit coefficient falling as 1/sqrt(1 + k/4), so all
///   300 at +-2 reshape the head by 2-4 cm; eyeballs follow the field at their centre rigidly;
/// - expression: shorter waves (20-80 rad/m) confined to the face front, 5 mm per unit falling as
///   1/sqrt(1 + k/2): one coefficient of 2 moves the face by up to 1 cm, all hundred at +-2 by up to
///   ~3.5 cm; eyeballs ignore expressions.
fn shapedirs(v: &[f32], seed: u64) -> Vec<f32> {
    let total = SHAPE_PARAMS + EXPR_PARAMS;
    let mut dirs = vec![0f32; VERTICES * 3 * total];
    let mut rng = TensorRng::new(seed, "flame_model.shapedirs");
    for k in 0..total {
        let expr = k >= SHAPE_PARAMS;
        let (amp, lo, hi) = if expr {
            (0.005 / (1.0 + (k - SHAPE_PARAMS) as f32 / 2.0).sqrt(), 20.0, 80.0)
        } else {
            (0.003 / (1.0 + k as f32 / 4.0).sqrt(), 10.0, 60.0)
        };
        let (normal_wave, side_wave) = (Wave::new(&mut rng, lo, hi), Wave::new(&mut rng, lo, hi));
        let side = radial([rng.normal(0.0, 1.0), rng.normal(0.0, 1.0) + CENTRE[1], rng.normal(0.0, 1.0)]);
        for i in 0..VERTICES {
            if expr && i >= HEAD_VERTICES {
                continue;
            }
            let p = anchor(v, i);
            let mask = if expr { smoothstep(0.0, 0.05, p[2]) * smoothstep(-0.09, -0.07, p[1]) } else { 1.0 };
            let (a, b) = (amp * mask * normal_wave.at(p), 0.3 * amp * mask * side_wave.at(p));
            let n = radial(p);
            for c in 0..3 {
                dirs[(i * 3 + c) * total + k] = a * n[c] + b * side[c];
            }
        }
    }
    dirs
}

/// `[VERTICES, 3, 36]`: small correctives where the neck bends (joint 1) and around the jaw hinge
/// (joint 2), zero for the eyes: 1 cm per unit of (R - I) at most, so a 0.3 rad jaw moves skin ~1-3 mm.
fn posedirs(m: &HeadMesh, seed: u64) -> Vec<f32> {
    let mut dirs = vec![0f32; VERTICES * 3 * POSE_FEATURES];
    let mut rng = TensorRng::new(seed, "flame_model.posedirs");
    for joint in 1..3 {
        for f in 0..9 {
            let feature = (joint - 1) * 9 + f;
            let waves = [Wave::new(&mut rng, 10.0, 40.0), Wave::new(&mut rng, 10.0, 40.0), Wave::new(&mut rng, 10.0, 40.0)];
            for i in 0..HEAD_VERTICES {
                let w = m.weights[i * JOINTS + joint];
                let band = 4.0 * w * (1.0 - w); // strongest where the joint's influence blends out
                let p = vertex(&m.vertices, i);
                for c in 0..3 {
                    dirs[(i * 3 + c) * POSE_FEATURES + feature] = 0.01 * band * waves[c].at(p);
                }
            }
        }
    }
    dirs
}

/// The 68 facial landmarks of the usual layout plus the two pupils, as (x, y) on the face front.
fn landmark_targets() -> Vec<[f32; 2]> {
    let pi = std::f32::consts::PI;
    let mut t = Vec::with_capacity(70);
    for k in 0..17 {
        let a = pi * (1.0 + k as f32 / 16.0);
        t.push([0.068 * a.cos(), 0.065 * a.sin()]); // jaw line, subject's right to left
    }
    for start in [-0.055f32, 0.012] {
        for k in 0..5 {
            t.push([start + 0.043 * k as f32 / 4.0, 0.048 + 0.004 * (pi * k as f32 / 4.0).sin()]);
            // brows
        }
    }
    for k in 0..4 {
        t.push([0.0, 0.03 - 0.035 * k as f32 / 3.0]); // nose bridge
    }
    for k in 0..5 {
        t.push([-0.012 + 0.006 * k as f32, -0.012]); // nostrils
    }
    for side in [-1.0f32, 1.0] {
        for k in 0..6 {
            let a = pi * k as f32 / 3.0;
            t.push([side * 0.031 - 0.012 * a.cos(), 0.03 + 0.005 * a.sin()]); // eye contours
        }
    }
    for (rx, ry, n) in [(0.025f32, 0.012f32, 12usize), (0.015, 0.004, 8)] {
        for k in 0..n {
            let a = pi + 2.0 * pi * k as f32 / n as f32;
            t.push([rx * a.cos(), -0.035 - ry * a.sin()]);
        }
    }
    t.push([-0.031, 0.03]);
    t.push([0.031, 0.03]);
    t
}

/// The front-facing face (centroid z > 0) in `range` whose centroid is nearest to `xy`.
fn nearest_face(m: &HeadMesh, xy: [f32; 2], range: std::ops::Range<usize>) -> i64 {
    let mut best = (f32::MAX, range.start);
    for f in range {
        let c = (0..3).fold([0f32; 3], |acc, k| {
            let p = vertex(&m.vertices, m.faces[3 * f + k] as usize);
            [acc[0] + p[0] / 3.0, acc[1] + p[1] / 3.0, acc[2] + p[2] / 3.0]
        });
        let d = (c[0] - xy[0]).powi(2) + (c[1] - xy[1]).powi(2);
        if c[2] > 0.0 && d < best.0 {
            best = (d, f);
        }
    }
    best.1 as i64
}

fn bary(rng: &mut TensorRng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * n);
    for _ in 0..n {
        let w = [0.2 + rng.unit(), 0.2 + rng.unit(), 0.2 + rng.unit()];
        let s = w[0] + w[1] + w[2];
        out.extend(w.iter().map(|x| x / s));
    }
    out
}

/// Landmark embeddings: static (points 17-67), dynamic contours (the jaw line shifted sideways for 79
/// yaw angles) and the full 70 (68 + pupils, the pupils on the eyeballs' front faces).
fn landmarks(m: &HeadMesh, seed: u64) -> Vec<(String, Vec<usize>, FlameData)> {
    let targets = landmark_targets();
    let head = 0..HEAD_FACES;
    let full: Vec<i64> = targets
        .iter()
        .enumerate()
        .map(|(i, &xy)| nearest_face(m, xy, if i < 68 { head.clone() } else { HEAD_FACES..mesh::FACES }))
        .collect();
    let mut dynamic = Vec::with_capacity(79 * 17);
    for a in 0..79 {
        let yaw = (a as f32 - 39.0).to_radians();
        for xy in &targets[..17] {
            dynamic.push(nearest_face(m, [xy[0] + 0.05 * yaw.sin(), xy[1]], head.clone()));
        }
    }
    let mut rng = TensorRng::new(seed, "lmk_embeddings");
    let lmk = |k: &str| format!("lmk_embeddings.{k}");
    vec![
        (lmk("static_lmk_faces_idx"), vec![51], FlameData::I64(full[17..68].to_vec())),
        (lmk("static_lmk_bary_coords"), vec![51, 3], FlameData::F32(bary(&mut rng, 51))),
        (lmk("dynamic_lmk_faces_idx"), vec![79, 17], FlameData::I64(dynamic)),
        (lmk("dynamic_lmk_bary_coords"), vec![79, 17, 3], FlameData::F32(bary(&mut rng, 79 * 17))),
        (lmk("full_lmk_faces_idx_with_eye"), vec![1, 70], FlameData::I64(full)),
        (lmk("full_lmk_bary_coords_with_eye"), vec![1, 70, 3], FlameData::F32(bary(&mut rng, 70))),
    ]
}

/// Builds the seeded asset.
pub fn build(seed: u64) -> FlameAsset {
    let m = mesh::build();
    let mut kintree = mesh::PARENTS.to_vec();
    kintree.extend(0..JOINTS as i64);
    let fm = |k: &str| format!("flame_model.{k}");
    let mut arrays = vec![
        (fm("v_template"), vec![VERTICES, 3], FlameData::F32(m.vertices.clone())),
        (fm("f"), vec![mesh::FACES, 3], FlameData::I64(m.faces.clone())),
        (fm("shapedirs"), vec![VERTICES, 3, SHAPE_PARAMS + EXPR_PARAMS], FlameData::F32(shapedirs(&m.vertices, seed))),
        (fm("posedirs"), vec![VERTICES, 3, POSE_FEATURES], FlameData::F32(posedirs(&m, seed))),
        (fm("J_regressor"), vec![JOINTS, VERTICES], FlameData::F32(m.j_regressor.clone())),
        (fm("kintree_table"), vec![2, JOINTS], FlameData::I64(kintree)),
        (fm("weights"), vec![VERTICES, JOINTS], FlameData::F32(m.weights.clone())),
    ];
    arrays.extend(landmarks(&m, seed));
    FlameAsset { arrays }
}

impl FlameAsset {
    /// The runtime's names: `flame.v_template`, ..., `flame.faces`, `flame.lmk.<key>`; integers as f32.
    pub fn to_weight_map(&self) -> WeightMap {
        let mut map = WeightMap::default();
        for (name, shape, data) in &self.arrays {
            let runtime_name = match name.strip_prefix("flame_model.") {
                Some("f") => "flame.faces".to_string(),
                Some(rest) => format!("flame.{rest}"),
                None => format!("flame.lmk.{}", name.trim_start_matches("lmk_embeddings.")),
            };
            let values = match data {
                FlameData::F32(v) => v.clone(),
                FlameData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            };
            map.insert(runtime_name, shape.clone(), values);
        }
        map
    }

    /// Writes `FLAME_with_eye.pt`'s container: a plain dict of tensors (f32, indices int64).
    pub fn write<W: Write>(&self, out: W) -> io::Result<W> {
        let items = self
            .arrays
            .iter()
            .enumerate()
            .map(|(n, (name, shape, data))| {
                let dtype = if matches!(data, FlameData::F32(_)) { DType::F32 } else { DType::I64 };
                (Py::str(name), tensor_ref(n, dtype, shape))
            })
            .collect();
        write_torch_archive(out, &Py::Dict(items), self.arrays.len(), |n, w| match &self.arrays[n].2 {
            FlameData::F32(v) => w.write_all(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()),
            FlameData::I64(v) => w.write_all(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()),
        })
    }

    /// Writes the asset to `path`.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let io_err = |source| Error::Io { path: path.to_path_buf(), source };
        let file = File::create(path).map_err(io_err)?;
        let out = self.write(BufWriter::with_capacity(1 << 20, file)).map_err(io_err)?;
        out.into_inner().map_err(|e| io_err(e.into_error()))?.sync_all().map_err(io_err)
    }
}

#[cfg(test)]
mod tests;
