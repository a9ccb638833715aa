//! Every tensor a model file must hold, with its shape, derived from a `ModelConfig`. The converter uses
//! this list to check a checkpoint, and validation uses it to check that a file's configuration agrees
//! with its tensors. Names are the official state-dict names (see the spec's key TSV); FLAME arrays are
//! under `flame.`.

use crate::config::ModelConfig;

use super::directory::Stage;

/// One required tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Required {
    pub name: String,
    pub shape: Vec<usize>,
}

/// The stage a tensor name belongs to (scale tensors `<name>@scale` follow their tensor).
pub fn stage_of(name: &str) -> Stage {
    let base = name.split('@').next().unwrap_or(name);
    if base.starts_with("flame.lmk.") {
        Stage::Tracker
    } else if base.starts_with("flame.") {
        Stage::Flame
    } else if base.starts_with("upsampler.") {
        Stage::Frame
    } else {
        Stage::Lift
    }
}

struct List(Vec<Required>);

impl List {
    fn add(&mut self, name: impl Into<String>, shape: &[usize]) {
        self.0.push(Required { name: name.into(), shape: shape.to_vec() });
    }
    /// `<p>.weight` with `shape` and `<p>.bias` of `[shape[0]]`.
    fn layer(&mut self, p: &str, shape: &[usize]) {
        self.add(format!("{p}.weight"), shape);
        self.add(format!("{p}.bias"), &shape[..1]);
    }
}

/// Largest dimension accepted in a configuration; keeps every derived size far from overflow.
const MAX_DIM: usize = 1 << 20;

/// Checks that a configuration (for example one read from a hostile file) is in range, so that
/// `required_tensors` and the pipeline can do arithmetic on it without overflow or out-of-range indexing.
pub fn check_config(c: &ModelConfig) -> Result<(), String> {
    let r = &c.refiner;
    let dims = [
        ("image_size", c.image_size),
        ("dino.input_size", c.dino.input_size),
        ("dino.patch_size", c.dino.patch_size),
        ("dino.dim", c.dino.dim),
        ("dino.heads", c.dino.heads),
        ("dino.mlp_dim", c.dino.mlp_dim),
        ("dpt.features", c.dpt.features),
        ("plane_size", c.plane_size),
        ("feature_dim", c.feature_dim),
        ("gaussian_channels", c.gaussian_channels),
        ("head_base_dim", c.head_base_dim),
        ("vertex_trunk_dim", c.vertex_trunk_dim),
        ("vertex_head_hidden", c.vertex_head_hidden),
        ("lift_hidden", c.lift_hidden),
        ("flame.vertices", c.flame.vertices),
        ("flame.faces", c.flame.faces),
        ("flame.joints", c.flame.joints),
        ("refiner.size", r.size),
        ("refiner.in_channels", r.in_channels),
        ("refiner.out_channels", r.out_channels),
        ("refiner.style_dim", r.style_dim),
    ];
    let channel_lists = c.dpt.project_channels.iter().chain(&r.unet_channels).chain(&r.decoder_channels);
    for (name, v) in dims.iter().copied().chain(channel_lists.map(|&v| ("a channel count", v))) {
        if v == 0 || v > MAX_DIM {
            return Err(format!("{name} is {v}, expected 1..={MAX_DIM}"));
        }
    }
    let small = [
        ("dino.depth", c.dino.depth, 256),
        ("harmonic_frequencies", c.harmonic_frequencies, 64),
        ("flame.shape_params", c.flame.shape_params, MAX_DIM),
        ("flame.expr_params", c.flame.expr_params, MAX_DIM),
        ("refiner.mlp_layers", r.mlp_layers, 64),
        ("refiner.unet_channels length", r.unet_channels.len(), 12),
    ];
    for (name, v, max) in small {
        if v > max {
            return Err(format!("{name} is {v}, expected at most {max}"));
        }
    }
    if r.unet_channels.is_empty() || r.decoder_channels.len() != r.unet_channels.len() {
        return Err(format!(
            "refiner has {} unet and {} decoder channel counts, expected the same non-zero number",
            r.unet_channels.len(),
            r.decoder_channels.len()
        ));
    }
    if c.dino.out_layers.len() != 4 {
        return Err(format!("dino.out_layers has {} entries, the DPT head takes 4", c.dino.out_layers.len()));
    }
    if let Some(&l) = c.dino.out_layers.iter().find(|&&l| l >= c.dino.depth) {
        return Err(format!("dino.out_layers names block {l}, but dino.depth is {}", c.dino.depth));
    }
    Ok(())
}

/// The required tensors of a model with configuration `c`, in a fixed order. `c` must pass
/// `check_config`.
pub fn required_tensors(c: &ModelConfig) -> Vec<Required> {
    let mut l = List(Vec::new());
    dino(&mut l, c);
    dpt(&mut l, c);
    generators(&mut l, c);
    refiner(&mut l, c);
    flame(&mut l, c);
    l.0
}

fn dino(l: &mut List, c: &ModelConfig) {
    let (d, m, p) = (c.dino.dim, c.dino.mlp_dim, c.dino.patch_size);
    let b = "base_model.dino_model";
    l.add(format!("{b}.cls_token"), &[1, 1, d]);
    l.add(format!("{b}.pos_embed"), &[1, c.dino.tokens(), d]);
    l.layer(&format!("{b}.patch_embed.proj"), &[d, 3, p, p]);
    l.layer(&format!("{b}.norm"), &[d]);
    for i in 0..c.dino.depth {
        let k = format!("{b}.blocks.{i}");
        l.layer(&format!("{k}.norm1"), &[d]);
        l.layer(&format!("{k}.attn.qkv"), &[3 * d, d]);
        l.layer(&format!("{k}.attn.proj"), &[d, d]);
        l.add(format!("{k}.ls1.gamma"), &[d]);
        l.layer(&format!("{k}.norm2"), &[d]);
        l.layer(&format!("{k}.mlp.fc1"), &[m, d]);
        l.layer(&format!("{k}.mlp.fc2"), &[d, m]);
        l.add(format!("{k}.ls2.gamma"), &[d]);
    }
}

fn dpt(l: &mut List, c: &ModelConfig) {
    let (d, f, pc) = (c.dino.dim, c.dpt.features, c.dpt.project_channels);
    for (i, &ch) in pc.iter().enumerate() {
        l.layer(&format!("base_model.projects.{i}"), &[ch, d, 1, 1]);
    }
    // ConvTranspose weights are [in, out, k, k]; index 2 is an Identity.
    l.layer("base_model.resize_layers.0", &[pc[0], pc[0], 4, 4]);
    l.layer("base_model.resize_layers.1", &[pc[1], pc[1], 2, 2]);
    l.layer("base_model.resize_layers.3", &[pc[3], pc[3], 3, 3]);
    for (i, &ch) in pc.iter().enumerate() {
        // Three extra input channels: a coordinate map is concatenated before `layer_rn`.
        l.add(format!("base_model.layer_rn.{i}.weight"), &[f, ch + 3, 3, 3]);
    }
    for i in 0..4 {
        let r = format!("base_model.refinenet.{i}");
        l.layer(&format!("{r}.out_conv"), &[f, f, 1, 1]);
        // refinenet.0 receives a single input, so its resConfUnit1 is unused and left out.
        let units: &[usize] = if i == 0 { &[2] } else { &[1, 2] };
        for u in units {
            l.layer(&format!("{r}.resConfUnit{u}.conv1"), &[f, f, 3, 3]);
            l.layer(&format!("{r}.resConfUnit{u}.conv2"), &[f, f, 3, 3]);
        }
    }
    l.layer("base_model.output_conv", &[c.feature_dim, f, 3, 3]);
}

fn generators(l: &mut List, c: &ModelConfig) {
    let (t, h, e) = (c.vertex_trunk_dim, c.vertex_head_hidden, c.direnc_dim());
    l.add("head_base", &[c.flame.vertices, c.head_base_dim]);
    let g = "gs_generator_g";
    l.layer(&format!("{g}.feature_layers.0"), &[t, c.head_base_dim + c.dino.dim]);
    for i in [2, 4, 6] {
        l.layer(&format!("{g}.feature_layers.{i}"), &[t, t]);
    }
    for (head, out) in [("color", c.gaussian_channels), ("opacity", 1), ("scale", 3), ("rotation", 4)] {
        l.layer(&format!("{g}.{head}_layers.0"), &[h, t + e]);
        l.layer(&format!("{g}.{head}_layers.2"), &[out, h]);
    }
    let lh = c.lift_hidden;
    for p in ["gs_generator_l0", "gs_generator_l1"] {
        l.layer(&format!("{p}.gaussian_conv.0"), &[lh, c.feature_dim + e, 3, 3]);
        l.layer(&format!("{p}.gaussian_conv.2"), &[lh, lh, 3, 3]);
        l.layer(&format!("{p}.gaussian_conv.4"), &[lh, lh, 3, 3]);
        // Colour channels + opacity 1 + scale 3 + rotation 4 + plane offset 1.
        l.layer(&format!("{p}.gaussian_conv.6"), &[c.gaussian_channels + 9, lh, 1, 1]);
    }
}

fn refiner(l: &mut List, c: &ModelConfig) {
    let r = &c.refiner;
    let (u, dc, s, n) = (&r.unet_channels, &r.decoder_channels, r.style_dim, r.levels());
    let up = "upsampler";
    l.layer(&format!("{up}.conv_body_first"), &[u[n], r.in_channels, 1, 1]);
    let res_block = |l: &mut List, p: String, cin: usize, cout: usize| {
        l.layer(&format!("{p}.conv1"), &[cin, cin, 3, 3]);
        l.layer(&format!("{p}.conv2"), &[cout, cin, 3, 3]);
        l.add(format!("{p}.skip.weight"), &[cout, cin, 1, 1]);
    };
    for i in 0..n {
        res_block(l, format!("{up}.conv_body_down.{i}"), u[n - i], u[n - i - 1]);
    }
    l.layer(&format!("{up}.final_conv"), &[u[0], u[0], 3, 3]);
    for i in 0..n {
        res_block(l, format!("{up}.conv_body_up.{i}"), u[i], u[i + 1]);
    }
    l.layer(&format!("{up}.final_linear"), &[s, u[0] * 16]);
    for cond in ["condition_scale", "condition_shift"] {
        for i in 0..n {
            l.layer(&format!("{up}.{cond}.{i}.0"), &[u[i + 1], u[i + 1], 3, 3]);
            l.layer(&format!("{up}.{cond}.{i}.2"), &[dc[i + 1], u[i + 1], 3, 3]);
        }
    }
    let sd = format!("{up}.stylegan_decoder");
    for i in 0..r.mlp_layers {
        l.layer(&format!("{sd}.style_mlp.{}", 2 * i + 1), &[s, s]);
    }
    l.add(format!("{sd}.constant_input.weight"), &[1, dc[0], 4, 4]);
    let modulated = |l: &mut List, p: String, cout: usize, cin: usize, k: usize, noise: bool| {
        l.add(format!("{p}.modulated_conv.weight"), &[1, cout, cin, k, k]);
        l.layer(&format!("{p}.modulated_conv.modulation"), &[cin, s]);
        if noise {
            l.add(format!("{p}.weight"), &[1]);
        }
        l.add(format!("{p}.bias"), &[1, cout, 1, 1]);
    };
    modulated(l, format!("{sd}.style_conv1"), dc[0], dc[0], 3, true);
    for j in 0..n {
        modulated(l, format!("{sd}.style_convs.{}", 2 * j), dc[j + 1], dc[j], 3, true);
        modulated(l, format!("{sd}.style_convs.{}", 2 * j + 1), dc[j + 1], dc[j + 1], 3, true);
    }
    modulated(l, format!("{sd}.to_rgb1"), r.out_channels, dc[0], 1, false);
    for j in 0..n {
        modulated(l, format!("{sd}.to_rgbs.{j}"), r.out_channels, dc[j + 1], 1, false);
    }
    for i in 0..r.style_convs() {
        let side = crate::config::RefinerConfig::noise_size(i);
        l.add(format!("{sd}.noises.noise{i}"), &[1, 1, side, side]);
    }
}

fn flame(l: &mut List, c: &ModelConfig) {
    let f = &c.flame;
    l.add("flame.v_template", &[f.vertices, 3]);
    l.add("flame.shapedirs", &[f.vertices, 3, f.shape_params + f.expr_params]);
    l.add("flame.posedirs", &[f.vertices, 3, 9 * f.joints.saturating_sub(1)]);
    l.add("flame.J_regressor", &[f.joints, f.vertices]);
    l.add("flame.weights", &[f.vertices, f.joints]);
    l.add("flame.kintree_table", &[2, f.joints]);
    l.add("flame.faces", &[f.faces, 3]);
}
