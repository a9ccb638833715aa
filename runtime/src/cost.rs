//! FLOP counts (1 FLOP = one multiply or one add, so 2 per MAC) of the refiner, FLAME and the lift, derived
//! from a `ModelConfig`. Only convolutions, linear layers and attention matmuls are counted, as in
//! spec §7.2 (which measured them with `torch.utils.flop_counter` plus the attention added by hand).

use crate::config::ModelConfig;

/// A named FLOP count.
pub type Stage = (&'static str, f64);

fn conv(c_in: usize, c_out: usize, k: usize, side: usize) -> f64 {
    2.0 * (c_in * c_out * k * k) as f64 * (side * side) as f64
}

/// Per-frame refiner FLOPs by part: encoder, UNet up blocks, SFT condition convs, StyleGAN2 decoder
/// (modulated convs, to-RGB and modulation linears), style code (`final_linear` and the MLP).
pub fn refiner_flops(cfg: &ModelConfig) -> Vec<Stage> {
    let r = &cfg.refiner;
    let (u, d, levels, sd) = (&r.unet_channels, &r.decoder_channels, r.levels(), r.style_dim);
    let side = |k: usize| 4usize << k;
    let res = |ci: usize, co: usize, s_in: usize, s_out: usize| conv(ci, ci, 3, s_in) + conv(ci, co, 3, s_out) + conv(ci, co, 1, s_out);
    let mut enc = conv(r.in_channels, u[levels], 1, r.size) + conv(u[0], u[0], 3, 4);
    let (mut up, mut sft) = (0.0, 0.0);
    let mut dec = conv(d[0], d[0], 3, 4) + conv(d[0], r.out_channels, 1, 4) + 2.0 * (sd * 2 * d[0]) as f64;
    for k in 0..levels {
        enc += res(u[k + 1], u[k], side(k + 1), side(k));
        up += res(u[k], u[k + 1], side(k), side(k + 1));
        sft += 2.0 * (conv(u[k + 1], u[k + 1], 3, side(k + 1)) + conv(u[k + 1], 2 * u[k + 1], 3, side(k + 1)));
        dec += conv(d[k], d[k + 1], 3, side(k + 1))
            + conv(d[k + 1], d[k + 1], 3, side(k + 1))
            + conv(d[k + 1], r.out_channels, 1, side(k + 1));
        dec += 2.0 * (sd * (d[k] + 2 * d[k + 1])) as f64;
    }
    let style = 2.0 * (u[0] * 16 * sd + r.mlp_layers * sd * sd) as f64;
    vec![("encoder", enc), ("up blocks", up), ("SFT conditions", sft), ("decoder", dec), ("style code", style)]
}

/// Per-frame FLAME FLOPs: expression blendshapes, joint regression, pose correctives and skinning
/// (spec §4.1 estimates about 14 MFLOP).
pub fn flame_flops(cfg: &ModelConfig) -> f64 {
    let f = &cfg.flame;
    let (v, j) = (f.vertices as f64, f.joints as f64);
    let pose = ((f.joints - 1) * 9) as f64;
    2.0 * v * 3.0 * (f.expr_params as f64 + j + pose) + 2.0 * v * (12.0 * j + 12.0)
}

/// Once-per-source lift FLOPs by part: DINOv2 (every block, attention included), the DPT head, the
/// vertex generator and the two lifting generators.
pub fn lift_flops(cfg: &ModelConfig) -> Vec<Stage> {
    let dn = &cfg.dino;
    let (g, dim) = (dn.grid(), dn.dim);
    let t = dn.tokens() as f64;
    let block = 2.0 * t * (dim * 3 * dim + dim * dim + 2 * dim * dn.mlp_dim) as f64 + 2.0 * 2.0 * t * t * dim as f64;
    let dino = 2.0 * (g * g * dim * 3 * dn.patch_size * dn.patch_size) as f64 + dn.depth as f64 * block;

    let (pc, f) = (cfg.dpt.project_channels, cfg.dpt.features);
    let g3 = (g + 2 - 3) / 2 + 1;
    let sides = [4 * g, 2 * g, g, g3];
    let mut dpt = 0.0;
    for i in 0..4 {
        dpt += 2.0 * (g * g * dim * pc[i]) as f64;
        dpt += conv(pc[i] + 3, f, 3, sides[i]);
    }
    dpt += 2.0 * (g * g * pc[0] * pc[0] * 16) as f64 + 2.0 * (g * g * pc[1] * pc[1] * 4) as f64 + conv(pc[3], pc[3], 3, g3);
    // Fusion: refinenet[0] runs one residual unit (2 convs), the others two; each ends with a 1x1 at the
    // next side (37, 74, 148, 296).
    let fusion_in = [g3, g, 2 * g, 4 * g];
    let fusion_out = [g, 2 * g, 4 * g, cfg.plane_size];
    for i in 0..4 {
        let units = if i == 0 { 1 } else { 2 };
        dpt += units as f64 * 2.0 * conv(f, f, 3, fusion_in[i]) + conv(f, f, 1, fusion_out[i]);
    }
    dpt += conv(f, cfg.feature_dim, 3, cfg.plane_size);

    let (v, tr, hh) = (cfg.flame.vertices, cfg.vertex_trunk_dim, cfg.vertex_head_hidden);
    let head_in = tr + cfg.direnc_dim();
    let ch = cfg.gaussian_channels;
    let vert = 2.0 * v as f64 * ((cfg.head_base_dim + dim) * tr + 3 * tr * tr + 4 * head_in * hh + hh * (ch + 1 + 3 + 4)) as f64;
    let (p, lh) = (cfg.plane_size, cfg.lift_hidden);
    let plane = conv(cfg.feature_dim + cfg.direnc_dim(), lh, 3, p) + 2.0 * conv(lh, lh, 3, p) + conv(lh, ch + 9, 1, p);
    vec![("DINOv2", dino), ("DPT head", dpt), ("vertex generator", vert), ("lifting generators", 2.0 * plane)]
}

/// Sum of a list of stages.
pub fn total(stages: &[Stage]) -> f64 {
    stages.iter().map(|s| s.1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn giga(stages: &[Stage], name: &str) -> f64 {
        stages.iter().find(|s| s.0 == name).map(|s| s.1 / 1e9).unwrap_or(f64::NAN)
    }

    #[test]
    fn official_refiner_flops_match_the_spec_table() {
        let r = refiner_flops(&ModelConfig::official());
        // §7.2: encoder 9.8, up blocks 17.7, SFT 38.5, decoder 70.9, total 136.9 GFLOP (rounded to 0.1).
        for (name, want) in [("encoder", 9.8), ("up blocks", 17.7), ("SFT conditions", 38.5), ("decoder", 70.9)] {
            assert!((giga(&r, name) - want).abs() < 0.1, "{name}: {} GFLOP, spec {want}", giga(&r, name));
        }
        assert!((total(&r) / 1e9 - 136.9).abs() < 0.2, "total {} GFLOP", total(&r) / 1e9);
    }

    #[test]
    fn official_lift_flops_match_the_spec_table() {
        let l = lift_flops(&ModelConfig::official());
        // §7.2: DINOv2 303.1, DPT 320.9, vertex generator 6.1, lifting generators 219.5, total ~849.6.
        for (name, want) in [("DINOv2", 303.1), ("DPT head", 320.9), ("vertex generator", 6.1), ("lifting generators", 219.5)] {
            assert!((giga(&l, name) - want).abs() / want < 0.01, "{name}: {} GFLOP, spec {want}", giga(&l, name));
        }
        assert!((total(&l) / 1e9 - 849.6).abs() < 5.0, "total {} GFLOP", total(&l) / 1e9);
    }
}
