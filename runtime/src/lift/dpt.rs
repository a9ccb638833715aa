//! The DPT-style head of the official `DINOBase`: four token maps -> projections and resampling to four
//! scales, each concatenated with the normalised input image (antialiased resize) -> `layer_rn` -> four
//! fusion blocks (`align_corners=True` upsampling) -> `output_conv` = `f_feature0`, `[feature_dim, P, P]`.

use gaga_kernels::act::relu;
use gaga_kernels::conv::{conv2d, conv_transpose2d_patch, Conv2d};
use gaga_kernels::linear::linear;
use gaga_kernels::resize::{bilinear, bilinear_antialias};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

const PREFIX: &str = "base_model";

/// A `[c, h, w]` map (square here, but kept general).
struct Map {
    data: Vec<f32>,
    c: usize,
    h: usize,
    w: usize,
}

/// Side of each of the four pyramid levels for a patch grid of `g`: 4g, 2g, g, ceil(g/2).
pub fn level_sizes(g: usize) -> [usize; 4] {
    [4 * g, 2 * g, g, (g - 1) / 2 + 1]
}

/// Runs the head and writes `f_feature0` into `out` (`[feature_dim, P, P]`, P = 8 x the patch grid, which
/// must equal `cfg.plane_size`). `image` is the normalised `[3, Din, Din]` DINO input.
pub fn run(w: &dyn Weights, cfg: &ModelConfig, image: &[f32], layers: &[Vec<f32>], out: &mut [f32]) -> Result<()> {
    let g = cfg.dino.grid();
    let sizes = level_sizes(g);
    let p = 2 * sizes[0];
    if p != cfg.plane_size {
        return Err(Error::Config(format!("the DPT head yields {p}x{p} maps, plane_size is {}", cfg.plane_size)));
    }
    if layers.len() != 4 || out.len() != cfg.feature_dim * p * p {
        return Err(Error::Config(format!(
            "DPT head: expected 4 token maps and a {}-value output, found {} maps and {} values",
            cfg.feature_dim * p * p,
            layers.len(),
            out.len()
        )));
    }
    let mut rn: Vec<Map> = Vec::with_capacity(4);
    for (i, tokens) in layers.iter().enumerate() {
        rn.push(level(w, cfg, i, tokens, image)?);
    }
    let rn3 = rn.pop().ok_or_else(|| Error::Other("DPT: level 3 missing".into()))?;
    let mut path = fusion(w, cfg, 0, rn3, None, sizes[2])?;
    for (block, size) in [(1, sizes[1]), (2, sizes[0]), (3, p)] {
        let skip = rn.pop().ok_or_else(|| Error::Other(format!("DPT: level for refinenet.{block} missing")))?;
        path = fusion(w, cfg, block, path, Some(skip), size)?;
    }
    let f = cfg.dpt.features;
    let spec = Conv2d { c_in: f, c_out: cfg.feature_dim, kernel: 3, stride: 1, pad: 1 };
    let wt = w.f32_shaped(&format!("{PREFIX}.output_conv.weight"), &[cfg.feature_dim, f, 3, 3])?;
    let bias = w.f32_shaped(&format!("{PREFIX}.output_conv.bias"), &[cfg.feature_dim])?;
    conv2d(&spec, &path.data, p, p, &wt, Some(&bias), out);
    Ok(())
}

/// Level `i`: tokens -> `projects[i]` (1x1) -> `resize_layers[i]` -> [resized image; feature] -> `layer_rn[i]`.
fn level(w: &dyn Weights, cfg: &ModelConfig, i: usize, tokens: &[f32], image: &[f32]) -> Result<Map> {
    let (dim, g) = (cfg.dino.dim, cfg.dino.grid());
    let c = cfg.dpt.project_channels[i];
    if tokens.len() != g * g * dim {
        return Err(Error::Config(format!("DPT level {i}: expected {} token values, found {}", g * g * dim, tokens.len())));
    }
    // A 1x1 convolution over the [dim, G, G] map is a linear layer over the [G*G, dim] tokens.
    let pw = w.f32_shaped(&format!("{PREFIX}.projects.{i}.weight"), &[c, dim, 1, 1])?;
    let pb = w.f32_shaped(&format!("{PREFIX}.projects.{i}.bias"), &[c])?;
    let mut projected_t = vec![0.0; g * g * c];
    linear(tokens, g * g, dim, &pw, Some(&pb), c, &mut projected_t);
    let mut projected = vec![0.0; c * g * g];
    for t in 0..g * g {
        for ch in 0..c {
            projected[ch * g * g + t] = projected_t[t * c + ch];
        }
    }
    drop(projected_t);

    let s = level_sizes(g)[i];
    // The resized feature goes straight after the 3 image channels of the layer_rn input.
    let mut cat = vec![0.0; (3 + c) * s * s];
    let din = cfg.dino.input_size;
    bilinear_antialias(image, 3, din, din, s, s, &mut cat[..3 * s * s]);
    let feat = &mut cat[3 * s * s..];
    let rw = |k: usize| w.f32_shaped(&format!("{PREFIX}.resize_layers.{i}.weight"), &[c, c, k, k]);
    let rb = || w.f32_shaped(&format!("{PREFIX}.resize_layers.{i}.bias"), &[c]);
    match i {
        0 | 1 => {
            let k = if i == 0 { 4 } else { 2 };
            conv_transpose2d_patch(c, c, k, &projected, g, g, &rw(k)?, Some(&rb()?), feat);
        }
        2 => feat.copy_from_slice(&projected),
        _ => {
            let spec = Conv2d { c_in: c, c_out: c, kernel: 3, stride: 2, pad: 1 };
            conv2d(&spec, &projected, g, g, &rw(3)?, Some(&rb()?), feat);
        }
    }
    drop(projected);

    let f = cfg.dpt.features;
    let lw = w.f32_shaped(&format!("{PREFIX}.layer_rn.{i}.weight"), &[f, c + 3, 3, 3])?;
    let mut data = vec![0.0; f * s * s];
    conv2d(&Conv2d { c_in: c + 3, c_out: f, kernel: 3, stride: 1, pad: 1 }, &cat, s, s, &lw, None, &mut data);
    Ok(Map { data, c: f, h: s, w: s })
}

/// `ResidualConvUnit`: ReLU (not in place) -> conv3x3 -> ReLU -> conv3x3 -> + input.
fn residual_unit(w: &dyn Weights, prefix: &str, x: &Map) -> Result<Vec<f32>> {
    let (c, h, wd) = (x.c, x.h, x.w);
    let spec = Conv2d { c_in: c, c_out: c, kernel: 3, stride: 1, pad: 1 };
    let conv = |name: &str, input: &[f32], out: &mut [f32]| -> Result<()> {
        let wt = w.f32_shaped(&format!("{prefix}.{name}.weight"), &[c, c, 3, 3])?;
        let b = w.f32_shaped(&format!("{prefix}.{name}.bias"), &[c])?;
        conv2d(&spec, input, h, wd, &wt, Some(&b), out);
        Ok(())
    };
    let mut a = x.data.clone();
    relu(&mut a);
    let mut b = vec![0.0; a.len()];
    conv("conv1", &a, &mut b)?;
    relu(&mut b);
    conv("conv2", &b, &mut a)?;
    a.iter_mut().zip(&x.data).for_each(|(v, s)| *v += s);
    Ok(a)
}

/// `FeatureFusionBlock` `refinenet.{block}`: `path (+ resConfUnit1(skip))` -> resConfUnit2 -> bilinear
/// (`align_corners=True`) to `size` -> `out_conv` 1x1. `refinenet.0` has no skip and never reads resConfUnit1.
fn fusion(w: &dyn Weights, cfg: &ModelConfig, block: usize, path: Map, skip: Option<Map>, size: usize) -> Result<Map> {
    let p = format!("{PREFIX}.refinenet.{block}");
    let mut x = path;
    if let Some(skip) = skip {
        if (skip.c, skip.h, skip.w) != (x.c, x.h, x.w) {
            return Err(Error::Config(format!(
                "refinenet.{block}: path is {}x{}x{}, skip is {}x{}x{}",
                x.c, x.h, x.w, skip.c, skip.h, skip.w
            )));
        }
        let res = residual_unit(w, &format!("{p}.resConfUnit1"), &skip)?;
        x.data.iter_mut().zip(&res).for_each(|(v, r)| *v += r);
    }
    let x = Map { data: residual_unit(w, &format!("{p}.resConfUnit2"), &x)?, ..x };
    let c = x.c;
    let mut up = vec![0.0; c * size * size];
    bilinear(&x.data, c, x.h, x.w, size, size, true, &mut up);
    drop(x);
    let f = cfg.dpt.features;
    let wt = w.f32_shaped(&format!("{p}.out_conv.weight"), &[f, c, 1, 1])?;
    let b = w.f32_shaped(&format!("{p}.out_conv.bias"), &[f])?;
    let mut data = vec![0.0; f * size * size];
    conv2d(&Conv2d { c_in: c, c_out: f, kernel: 1, stride: 1, pad: 0 }, &up, size, size, &wt, Some(&b), &mut data);
    Ok(Map { data, c: f, h: size, w: size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lift::testing::seeded_weights;
    use gaga_kernels::testing::{assert_close, seeded, Tolerance};

    fn inputs(cfg: &ModelConfig) -> (Vec<f32>, Vec<Vec<f32>>) {
        let (din, g, dim) = (cfg.dino.input_size, cfg.dino.grid(), cfg.dino.dim);
        let image = seeded(11, 3 * din * din);
        let layers = (0..4).map(|i| seeded(20 + i, g * g * dim)).collect();
        (image, layers)
    }

    #[test]
    fn pyramid_sizes_follow_the_official_grid() {
        assert_eq!(level_sizes(37), [148, 74, 37, 19]);
        assert_eq!(level_sizes(5), [20, 10, 5, 3]);
    }

    #[test]
    fn head_yields_a_plane_sized_feature_map_without_resconfunit1_of_block_0() {
        let cfg = ModelConfig::small();
        let w = seeded_weights(&cfg);
        assert!(!w.tensors.keys().any(|k| k.contains("refinenet.0.resConfUnit1")));
        let (image, layers) = inputs(&cfg);
        let p = cfg.plane_size;
        let mut out = vec![f32::NAN; cfg.feature_dim * p * p];
        run(&w, &cfg, &image, &layers, &mut out).expect("head runs");
        assert!(out.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn residual_unit_matches_its_definition_on_reference_kernels() {
        let cfg = ModelConfig::small();
        let w = seeded_weights(&cfg);
        let (c, h) = (cfg.dpt.features, 7);
        let x = Map { data: seeded(4, c * h * h), c, h, w: h };
        let prefix = "base_model.refinenet.1.resConfUnit1";
        let got = residual_unit(&w, prefix, &x).expect("unit runs");
        let spec = Conv2d { c_in: c, c_out: c, kernel: 3, stride: 1, pad: 1 };
        let t = |n: &str| w.tensors[&format!("{prefix}.{n}")].1.clone();
        let relu_of = |v: &[f32]| v.iter().map(|a| a.max(0.0)).collect::<Vec<_>>();
        let mut a = vec![0.0; c * h * h];
        gaga_kernels::reference::conv2d(&spec, &relu_of(&x.data), h, h, &t("conv1.weight"), Some(&t("conv1.bias")), &mut a);
        let mut b = vec![0.0; c * h * h];
        gaga_kernels::reference::conv2d(&spec, &relu_of(&a), h, h, &t("conv2.weight"), Some(&t("conv2.bias")), &mut b);
        let want: Vec<f32> = b.iter().zip(&x.data).map(|(v, s)| v + s).collect();
        // Same arithmetic, possibly another summation order in the fast kernels.
        assert_close("residual unit", &got, &want, Tolerance::Fp32);
        // The skip sees the original input: a negative input survives the (not in-place) ReLU.
        assert!(x.data.iter().any(|v| *v < 0.0));
    }

    #[test]
    fn a_mis_sized_plane_is_a_config_error() {
        let mut cfg = ModelConfig::small();
        let w = seeded_weights(&cfg);
        cfg.plane_size += 1;
        let (image, layers) = inputs(&cfg);
        let mut out = vec![0.0; cfg.feature_dim * cfg.plane_size * cfg.plane_size];
        let err = run(&w, &cfg, &image, &layers, &mut out).expect_err("plane size differs");
        assert!(err.to_string().contains("plane_size"), "{err}");
    }
}
