//! Infers a `ModelConfig` from tensor shapes, so any instance of the architecture (official, small)
//! converts. A few values are not visible in shapes: attention heads (64 channels per head as in
//! DINOv2, or the `small` preset's 2 for its width of 48), the DINO output blocks (the last four), the
//! shape/expression split of FLAME's basis (expression is the last 100 columns), focal length and FLAME
//! scale (`meta_cfg.DATASET` when present, else 12 and 5). `schema::required_tensors` then checks every
//! tensor against the result.

use std::collections::HashMap;

use gaga_runtime::config::{DinoConfig, DptConfig, FlameConfig, ModelConfig, RefinerConfig};

/// Values read from the checkpoint's `meta_cfg`, where present.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaCfg {
    pub plane_size: Option<usize>,
    pub focal: Option<f32>,
    pub flame_scale: Option<f32>,
}

/// Expression coefficients in FLAME's basis (the tracker fits 100).
const EXPR_PARAMS: usize = 100;

struct Shapes<'a>(&'a HashMap<String, Vec<usize>>);

impl Shapes<'_> {
    fn dim(&self, name: &str, axis: usize) -> Result<usize, String> {
        let s = self.0.get(name).ok_or_else(|| format!("tensor `{name}` is missing from the checkpoint"))?;
        s.get(axis).copied().ok_or_else(|| format!("tensor `{name}` has shape {s:?}, expected at least {} dimensions", axis + 1))
    }
    /// How many consecutive `prefix.{i}.suffix` exist, from 0.
    fn count(&self, prefix: &str, suffix: &str, step: usize, first: usize) -> usize {
        (0..).take_while(|i| self.0.contains_key(&format!("{prefix}.{}.{suffix}", first + step * i))).count()
    }
}

/// The configuration whose shapes `shapes` (state-dict names, FLAME under `flame.`) have.
pub fn infer_config(shapes: &HashMap<String, Vec<usize>>, meta: &MetaCfg) -> Result<ModelConfig, String> {
    let s = Shapes(shapes);
    let b = "base_model.dino_model";
    let dim = s.dim(&format!("{b}.cls_token"), 2)?;
    let patch = s.dim(&format!("{b}.patch_embed.proj.weight"), 2)?;
    let tokens = s.dim(&format!("{b}.pos_embed"), 1)?;
    let grid = (tokens.saturating_sub(1) as f64).sqrt().round() as usize;
    if grid * grid + 1 != tokens {
        return Err(format!("tensor `{b}.pos_embed`: {tokens} tokens is not a square grid plus one class token"));
    }
    let depth = s.count(&format!("{b}.blocks"), "norm1.weight", 1, 0);
    if depth < 4 {
        return Err(format!("checkpoint has {depth} DINO blocks, the DPT head needs at least 4"));
    }
    let small = ModelConfig::small();
    let heads = if dim == small.dino.dim { small.dino.heads } else { (dim / 64).max(1) };
    let dino = DinoConfig {
        input_size: grid.saturating_mul(patch),
        patch_size: patch,
        dim,
        depth,
        heads,
        mlp_dim: s.dim(&format!("{b}.blocks.0.mlp.fc1.weight"), 0)?,
        out_layers: (depth - 4..depth).collect(),
        ln_eps: 1e-6,
    };
    let mut project_channels = [0; 4];
    for (i, c) in project_channels.iter_mut().enumerate() {
        *c = s.dim(&format!("base_model.projects.{i}.weight"), 0)?;
    }
    let dpt = DptConfig { project_channels, features: s.dim("base_model.layer_rn.0.weight", 0)? };

    // The lifting planes sample the DPT output at 8x the patch grid.
    let plane_size = grid.saturating_mul(8);
    if let Some(p) = meta.plane_size {
        if p != plane_size {
            return Err(format!(
                "meta_cfg.DATASET.POINT_PLANE_SIZE is {p}, but the {grid}x{grid} patch grid of `{b}.pos_embed` needs {plane_size}"
            ));
        }
    }
    let trunk = s.dim("gs_generator_g.feature_layers.0.weight", 0)?;
    let direnc = s.dim("gs_generator_g.color_layers.0.weight", 1)?.checked_sub(trunk);
    let frequencies = match direnc {
        Some(e) if e % 3 == 0 && (e / 3) % 2 == 1 => (e / 3 - 1) / 2,
        _ => {
            return Err(format!("tensor `gs_generator_g.color_layers.0.weight`: input width minus the trunk ({trunk}) is not 3 x (2F + 1)"))
        }
    };
    let basis = s.dim("flame.shapedirs", 2)?;
    let flame = FlameConfig {
        vertices: s.dim("flame.v_template", 0)?,
        faces: s.dim("flame.faces", 0)?,
        shape_params: basis
            .checked_sub(EXPR_PARAMS)
            .ok_or_else(|| format!("tensor `flame.shapedirs`: basis of {basis} columns, expected more than {EXPR_PARAMS}"))?,
        expr_params: EXPR_PARAMS,
        joints: s.dim("flame.J_regressor", 0)?,
        scale: meta.flame_scale.unwrap_or(5.0),
    };
    let refiner = refiner(&s)?;
    Ok(ModelConfig {
        image_size: refiner.size,
        dino,
        dpt,
        plane_size,
        feature_dim: s.dim("base_model.output_conv.weight", 0)?,
        gaussian_channels: s.dim("gs_generator_g.color_layers.2.weight", 0)?,
        head_base_dim: s.dim("head_base", 1)?,
        vertex_trunk_dim: trunk,
        vertex_head_hidden: s.dim("gs_generator_g.color_layers.0.weight", 0)?,
        lift_hidden: s.dim("gs_generator_l0.gaussian_conv.0.weight", 0)?,
        harmonic_frequencies: frequencies,
        flame,
        focal: meta.focal.unwrap_or(12.0),
        refiner,
    })
}

fn refiner(s: &Shapes) -> Result<RefinerConfig, String> {
    let up = "upsampler";
    let sd = "upsampler.stylegan_decoder";
    let levels = s.count(&format!("{up}.conv_body_down"), "conv2.weight", 1, 0);
    if levels == 0 {
        return Err(format!("tensor `{up}.conv_body_down.0.conv2.weight` is missing from the checkpoint"));
    }
    let mut unet = vec![0; levels + 1];
    unet[levels] = s.dim(&format!("{up}.conv_body_first.weight"), 0)?;
    for i in 0..levels {
        unet[levels - i - 1] = s.dim(&format!("{up}.conv_body_down.{i}.conv2.weight"), 0)?;
    }
    let mut decoder = vec![s.dim(&format!("{sd}.constant_input.weight"), 1)?];
    for j in 0..levels {
        decoder.push(s.dim(&format!("{sd}.style_convs.{}.modulated_conv.weight", 2 * j), 1)?);
    }
    let last_noise = format!("{sd}.noises.noise{}", 2 * levels);
    Ok(RefinerConfig {
        size: s.dim(&last_noise, 3)?,
        in_channels: s.dim(&format!("{up}.conv_body_first.weight"), 1)?,
        out_channels: s.dim(&format!("{sd}.to_rgb1.modulated_conv.weight"), 1)?,
        style_dim: s.dim(&format!("{up}.final_linear.weight"), 0)?,
        mlp_layers: s.count(&format!("{sd}.style_mlp"), "weight", 2, 1),
        unet_channels: unet,
        decoder_channels: decoder,
    })
}
