//! Seeded weights for every tensor the lift reads, under the official names and the shapes implied by a
//! `ModelConfig`, so tests (here and in other crates) can run the lift without a checkpoint.

use crate::config::ModelConfig;
use crate::weights::WeightMap;

/// Name and shape of every tensor the lift reads, in a fixed order. `refinenet.0.resConfUnit1.*` is absent on
/// purpose: the official fusion never uses it and converted files do not carry it.
pub fn lift_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let d = &cfg.dino;
    let dim = d.dim;
    let mut t: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| t.push((name, shape));
    let dm = "base_model.dino_model";
    add("head_base".into(), vec![cfg.flame.vertices, cfg.head_base_dim]);
    add(format!("{dm}.cls_token"), vec![1, 1, dim]);
    add(format!("{dm}.pos_embed"), vec![1, d.tokens(), dim]);
    add(format!("{dm}.patch_embed.proj.weight"), vec![dim, 3, d.patch_size, d.patch_size]);
    add(format!("{dm}.patch_embed.proj.bias"), vec![dim]);
    for b in 0..d.depth {
        let p = format!("{dm}.blocks.{b}");
        for (suffix, shape) in [
            ("norm1.weight", vec![dim]),
            ("norm1.bias", vec![dim]),
            ("attn.qkv.weight", vec![3 * dim, dim]),
            ("attn.qkv.bias", vec![3 * dim]),
            ("attn.proj.weight", vec![dim, dim]),
            ("attn.proj.bias", vec![dim]),
            ("ls1.gamma", vec![dim]),
            ("norm2.weight", vec![dim]),
            ("norm2.bias", vec![dim]),
            ("mlp.fc1.weight", vec![d.mlp_dim, dim]),
            ("mlp.fc1.bias", vec![d.mlp_dim]),
            ("mlp.fc2.weight", vec![dim, d.mlp_dim]),
            ("mlp.fc2.bias", vec![dim]),
            ("ls2.gamma", vec![dim]),
        ] {
            add(format!("{p}.{suffix}"), shape);
        }
    }
    add(format!("{dm}.norm.weight"), vec![dim]);
    add(format!("{dm}.norm.bias"), vec![dim]);
    let pc = cfg.dpt.project_channels;
    let f = cfg.dpt.features;
    for (i, &c) in pc.iter().enumerate() {
        add(format!("base_model.projects.{i}.weight"), vec![c, dim, 1, 1]);
        add(format!("base_model.projects.{i}.bias"), vec![c]);
        add(format!("base_model.layer_rn.{i}.weight"), vec![f, c + 3, 3, 3]);
    }
    for (i, k) in [(0usize, 4usize), (1, 2), (3, 3)] {
        add(format!("base_model.resize_layers.{i}.weight"), vec![pc[i], pc[i], k, k]);
        add(format!("base_model.resize_layers.{i}.bias"), vec![pc[i]]);
    }
    for i in 0..4 {
        let p = format!("base_model.refinenet.{i}");
        add(format!("{p}.out_conv.weight"), vec![f, f, 1, 1]);
        add(format!("{p}.out_conv.bias"), vec![f]);
        for unit in if i == 0 { &["resConfUnit2"][..] } else { &["resConfUnit1", "resConfUnit2"][..] } {
            for conv in ["conv1", "conv2"] {
                add(format!("{p}.{unit}.{conv}.weight"), vec![f, f, 3, 3]);
                add(format!("{p}.{unit}.{conv}.bias"), vec![f]);
            }
        }
    }
    add("base_model.output_conv.weight".into(), vec![cfg.feature_dim, f, 3, 3]);
    add("base_model.output_conv.bias".into(), vec![cfg.feature_dim]);
    let g = "gs_generator_g";
    let trunk = cfg.vertex_trunk_dim;
    let mut fin = cfg.head_base_dim + dim;
    for i in [0, 2, 4, 6] {
        add(format!("{g}.feature_layers.{i}.weight"), vec![trunk, fin]);
        add(format!("{g}.feature_layers.{i}.bias"), vec![trunk]);
        fin = trunk;
    }
    let hidden = cfg.vertex_head_hidden;
    for (head, out) in [("color", cfg.gaussian_channels), ("opacity", 1), ("scale", 3), ("rotation", 4)] {
        add(format!("{g}.{head}_layers.0.weight"), vec![hidden, trunk + cfg.direnc_dim()]);
        add(format!("{g}.{head}_layers.0.bias"), vec![hidden]);
        add(format!("{g}.{head}_layers.2.weight"), vec![out, hidden]);
        add(format!("{g}.{head}_layers.2.bias"), vec![out]);
    }
    for l in ["gs_generator_l0", "gs_generator_l1"] {
        let h = cfg.lift_hidden;
        let convs = [(0, h, cfg.feature_dim + cfg.direnc_dim(), 3), (2, h, h, 3), (4, h, h, 3), (6, cfg.gaussian_channels + 9, h, 1)];
        for (i, out, inp, k) in convs {
            add(format!("{l}.gaussian_conv.{i}.weight"), vec![out, inp, k, k]);
            add(format!("{l}.gaussian_conv.{i}.bias"), vec![out]);
        }
    }
    t
}

/// Deterministic values for one tensor: each name gets its own seed (so adding a tensor never shifts the
/// others) and a scale that keeps activations near unit size through the deep stacks.
fn seeded_values(name: &str, shape: &[usize]) -> Vec<f32> {
    let len = shape.iter().product();
    let s = gaga_kernels::testing::seeded(xxhash_rust::xxh3::xxh3_64(name.as_bytes()), len);
    let fan_in = if name.contains("resize_layers.0") || name.contains("resize_layers.1") {
        shape[0] // transposed convolution: [in, out, k, k] with k = stride, one tap per output
    } else {
        shape.iter().skip(1).product::<usize>().max(1)
    };
    let (offset, scale) = if name.ends_with(".bias") {
        (0.0, 0.1)
    } else if name.ends_with("gamma") {
        (0.3, 0.1)
    } else if name.contains("norm") {
        (1.0, 0.1)
    } else if name.ends_with("cls_token") || name.ends_with("pos_embed") || name == "head_base" {
        (0.0, 0.5)
    } else {
        (0.0, (3.0 / fan_in as f32).sqrt())
    };
    s.into_iter().map(|v| offset + scale * v).collect()
}

/// A `WeightMap` holding every tensor the lift reads, seeded deterministically from the names.
pub fn seeded_weights(cfg: &ModelConfig) -> WeightMap {
    let mut w = WeightMap::default();
    for (name, shape) in lift_tensors(cfg) {
        let values = seeded_values(&name, &shape);
        w.insert(name, shape, values);
    }
    w
}
