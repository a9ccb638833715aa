//! The three Gaussian generators of the official model, with both quirks replicated:
//! - `gs_generator_g` (`LinearGSGenerator`): one Gaussian per FLAME vertex from `[head_base[v], global]`;
//!   quirk 2: its quaternions are normalised per component across the vertices, not per Gaussian.
//! - `gs_generator_l0` / `gs_generator_l1` (`ConvGSGenerator`): one Gaussian per plane pixel from
//!   `[f_feature0; direnc]`; quirk 1: the colour sigmoid lands on all 32 channels of grid columns 0-2 only.

use gaga_kernels::act::{relu, sigmoid, sigmoid_scalar};
use gaga_kernels::conv::{conv2d, Conv2d};
use gaga_kernels::linear::linear;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

/// `F.normalize`'s default epsilon.
const NORM_EPS: f32 = 1e-12;
/// Upper bound of every scale: `sigmoid * 0.05` world units.
pub const SCALE_MAX: f32 = 0.05;

/// Attributes of a run of Gaussians, laid out as in `Avatar`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussians {
    pub count: usize,
    /// `[count, 3]`.
    pub positions: Vec<f32>,
    /// `[count, channels]`.
    pub colors: Vec<f32>,
    pub opacities: Vec<f32>,
    /// `[count, 3]`.
    pub scales: Vec<f32>,
    /// `[count, 4]` (w, x, y, z).
    pub rotations: Vec<f32>,
}

/// Linear layer over `[n, in]` rows reading `{prefix}.weight` `[out, in]` and `{prefix}.bias`.
fn dense(w: &dyn Weights, prefix: &str, x: &[f32], n: usize, inp: usize, out: usize) -> Result<Vec<f32>> {
    let wt = w.f32_shaped(&format!("{prefix}.weight"), &[out, inp])?;
    let b = w.f32_shaped(&format!("{prefix}.bias"), &[out])?;
    let mut y = vec![0.0; n * out];
    linear(x, n, inp, &wt, Some(&b), out, &mut y);
    Ok(y)
}

/// `gs_generator_g`: vertex Gaussians (positions zero; each frame sets them from FLAME).
pub fn vertex_gaussians(w: &dyn Weights, cfg: &ModelConfig, global: &[f32], direnc: &[f32]) -> Result<Gaussians> {
    let g = "gs_generator_g";
    let (v, hb, dim, trunk) = (cfg.flame.vertices, cfg.head_base_dim, cfg.dino.dim, cfg.vertex_trunk_dim);
    let de = cfg.direnc_dim();
    if global.len() != dim || direnc.len() != de {
        return Err(Error::Config(format!(
            "vertex generator: expected a {dim}-d global feature and a {de}-d direction code, found {} and {}",
            global.len(),
            direnc.len()
        )));
    }
    let head_base = w.f32_shaped("head_base", &[v, hb])?;
    let mut x = Vec::with_capacity(v * (hb + dim));
    for row in head_base.chunks_exact(hb) {
        x.extend_from_slice(row);
        x.extend_from_slice(global);
    }
    let mut inp = hb + dim;
    for (i, layer) in [0, 2, 4, 6].into_iter().enumerate() {
        x = dense(w, &format!("{g}.feature_layers.{layer}"), &x, v, inp, trunk)?;
        if i < 3 {
            relu(&mut x);
        }
        inp = trunk;
    }
    let mut h = Vec::with_capacity(v * (trunk + de));
    for row in x.chunks_exact(trunk) {
        h.extend_from_slice(row);
        h.extend_from_slice(direnc);
    }
    drop(x);
    let head = |name: &str, out: usize| -> Result<Vec<f32>> {
        let mut hidden = dense(w, &format!("{g}.{name}_layers.0"), &h, v, trunk + de, cfg.vertex_head_hidden)?;
        relu(&mut hidden);
        dense(w, &format!("{g}.{name}_layers.2"), &hidden, v, cfg.vertex_head_hidden, out)
    };
    let ch = cfg.gaussian_channels;
    let mut colors = head("color", ch)?;
    // Here `colors[..., :3]` indexes the channel axis: RGB gets the sigmoid, the other features stay raw.
    colors.chunks_exact_mut(ch).for_each(|c| sigmoid(&mut c[..3.min(ch)]));
    let mut opacities = head("opacity", 1)?;
    sigmoid(&mut opacities);
    let mut scales = head("scale", 3)?;
    scales.iter_mut().for_each(|s| *s = sigmoid_scalar(*s) * SCALE_MAX);
    let mut rotations = head("rotation", 4)?;
    normalize_across_rows(&mut rotations, 4);
    Ok(Gaussians { count: v, positions: vec![0.0; v * 3], colors, opacities, scales, rotations })
}

/// Quirk 2: `F.normalize(r, dim=1)` on `[1, V, 4]` divides each column by its norm over all rows.
pub fn normalize_across_rows(x: &mut [f32], cols: usize) {
    for c in 0..cols {
        let norm = x.iter().skip(c).step_by(cols).map(|v| v * v).sum::<f32>().sqrt().max(NORM_EPS);
        x.iter_mut().skip(c).step_by(cols).for_each(|v| *v /= norm);
    }
}

/// The `[feature_dim + direnc, P, P]` input shared by both lifting generators: `f_feature0` (already in
/// the first `feature_dim` channels of `buffer`) followed by the direction code broadcast to every pixel.
pub fn fill_direnc_channels(cfg: &ModelConfig, buffer: &mut [f32], direnc: &[f32]) {
    let pp = cfg.plane_size * cfg.plane_size;
    let start = cfg.feature_dim * pp;
    for (k, plane) in buffer[start..].chunks_exact_mut(pp).enumerate() {
        plane.fill(direnc[k]);
    }
}

/// `gs_generator_l{index}` on the shared input: conv3x3+ReLU x3 -> conv1x1 -> the 41 raw channels, then the
/// activations and positions `points + sign * s * dir` (sign +1 for plane 0, -1 for plane 1).
pub fn plane_gaussians(
    w: &dyn Weights,
    cfg: &ModelConfig,
    index: usize,
    input: &[f32],
    points: &[f32],
    dir: &[f32; 3],
) -> Result<Gaussians> {
    let prefix = format!("gs_generator_l{index}.gaussian_conv");
    let p = cfg.plane_size;
    let pp = p * p;
    let (c_in, hid, ch) = (cfg.feature_dim + cfg.direnc_dim(), cfg.lift_hidden, cfg.gaussian_channels);
    let raw_c = ch + 9;
    if input.len() != c_in * pp || points.len() != 3 * pp {
        return Err(Error::Config(format!(
            "lifting generator {index}: expected {} input and {} point values, found {} and {}",
            c_in * pp,
            3 * pp,
            input.len(),
            points.len()
        )));
    }
    let mut x: Option<Vec<f32>> = None;
    for (layer, ci, co, k) in [(0, c_in, hid, 3), (2, hid, hid, 3), (4, hid, hid, 3), (6, hid, raw_c, 1)] {
        let wt = w.f32_shaped(&format!("{prefix}.{layer}.weight"), &[co, ci, k, k])?;
        let b = w.f32_shaped(&format!("{prefix}.{layer}.bias"), &[co])?;
        let mut y = vec![0.0; co * pp];
        let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
        conv2d(&spec, x.as_deref().unwrap_or(input), p, p, &wt, Some(&b), &mut y);
        if layer != 6 {
            relu(&mut y);
        }
        x = Some(y);
    }
    Ok(plane_activations(&x.unwrap_or_default(), p, ch, index, points, dir))
}

/// A lifting generator's activations on its raw `[C + 9, P, P]` output: colours (quirk 1), opacity, scales,
/// unit quaternions, and positions `points + sign * s * dir` (sign +1 for plane 0, -1 for plane 1). Shared
/// by the CPU lift and the GPU lift (which reads the raw map back).
pub fn plane_activations(raw: &[f32], p: usize, ch: usize, index: usize, points: &[f32], dir: &[f32; 3]) -> Gaussians {
    let pp = p * p;
    let at = |c: usize, px: usize| raw[c * pp + px];
    let sign = if index == 0 { 1.0 } else { -1.0 };
    let mut g = Gaussians {
        count: pp,
        positions: Vec::with_capacity(3 * pp),
        colors: Vec::with_capacity(ch * pp),
        opacities: Vec::with_capacity(pp),
        scales: Vec::with_capacity(3 * pp),
        rotations: Vec::with_capacity(4 * pp),
    };
    for px in 0..pp {
        // Quirk 1: `colors[..., :3]` on [B, 32, H, W] selects grid columns 0-2, every channel.
        let squash = px % p < 3;
        g.colors.extend((0..ch).map(|c| if squash { sigmoid_scalar(at(c, px)) } else { at(c, px) }));
        g.opacities.push(sigmoid_scalar(at(ch, px)));
        g.scales.extend((0..3).map(|k| sigmoid_scalar(at(ch + 1 + k, px)) * SCALE_MAX));
        let q: [f32; 4] = std::array::from_fn(|k| at(ch + 4 + k, px));
        let norm = q.iter().map(|v| v * v).sum::<f32>().sqrt().max(NORM_EPS);
        g.rotations.extend(q.iter().map(|v| v / norm));
        let s = sigmoid_scalar(at(ch + 8, px));
        g.positions.extend((0..3).map(|k| points[px * 3 + k] + sign * s * dir[k]));
    }
    g
}
