//! DINOv2 ViT backbone as `get_intermediate_layers(x, n)` runs it (facebookresearch/dinov2): patch
//! embedding, CLS + learned positions (never interpolated), pre-norm blocks with LayerScale, the final
//! LayerNorm on each returned block output, patch tokens only.

use gaga_kernels::act::gelu;
use gaga_kernels::attention::self_attention;
use gaga_kernels::conv::{conv2d, Conv2d};
use gaga_kernels::linear::linear;
use gaga_kernels::norm::layer_norm;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

const PREFIX: &str = "base_model.dino_model";

/// What the DPT head and the vertex generator need from the backbone.
#[derive(Clone, Debug, PartialEq)]
pub struct DinoOutput {
    /// One `[G*G, dim]` patch-token matrix per `cfg.dino.out_layers` entry, in that order, after the final norm.
    pub layers: Vec<Vec<f32>>,
    /// Element 0 of the last returned layer's patch tokens: the top-left patch, not CLS (official quirk).
    pub global: Vec<f32>,
}

/// Scratch buffers of one block, allocated once per run.
struct Buffers {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
}

/// Runs the backbone on the normalised `[3, Din, Din]` input.
pub fn run(w: &dyn Weights, cfg: &ModelConfig, input: &[f32]) -> Result<DinoOutput> {
    let d = &cfg.dino;
    let (dim, g) = (d.dim, d.grid());
    let n = d.tokens();
    if input.len() != 3 * d.input_size * d.input_size {
        return Err(Error::Config(format!(
            "DINO input: expected {} values (3 x {} x {}), found {}",
            3 * d.input_size * d.input_size,
            d.input_size,
            d.input_size,
            input.len()
        )));
    }
    let last = *d.out_layers.iter().max().ok_or_else(|| Error::Config("dino.out_layers is empty".into()))?;
    if last >= d.depth {
        return Err(Error::Config(format!("dino.out_layers names block {last}, the backbone has {}", d.depth)));
    }

    let mut x = embed(w, cfg, input)?;
    let mut bufs = Buffers {
        normed: vec![0.0; n * dim],
        qkv: vec![0.0; n * 3 * dim],
        attn: vec![0.0; n * dim],
        proj: vec![0.0; n * dim],
        hidden: vec![0.0; n * d.mlp_dim],
    };
    let norm_w = w.f32_shaped(&format!("{PREFIX}.norm.weight"), &[dim])?;
    let norm_b = w.f32_shaped(&format!("{PREFIX}.norm.bias"), &[dim])?;
    let mut outputs: Vec<Option<Vec<f32>>> = vec![None; d.out_layers.len()];
    for b in 0..=last {
        block(w, cfg, b, &mut x, &mut bufs)?;
        for (slot, _) in d.out_layers.iter().enumerate().filter(|(_, &l)| l == b) {
            // Final norm on all tokens, then drop CLS (no register tokens in these models).
            layer_norm(&x, n, dim, &norm_w, &norm_b, d.ln_eps, &mut bufs.normed);
            outputs[slot] = Some(bufs.normed[dim..].to_vec());
        }
    }
    let layers: Vec<Vec<f32>> = outputs.into_iter().flatten().collect();
    let global = layers.last().map(|l| l[..dim].to_vec()).unwrap_or_default();
    debug_assert!(layers.iter().all(|l| l.len() == g * g * dim));
    Ok(DinoOutput { layers, global })
}

/// Patch embedding (conv k = stride = patch) -> tokens `[1 + G*G, dim]` with CLS first, plus `pos_embed`.
fn embed(w: &dyn Weights, cfg: &ModelConfig, input: &[f32]) -> Result<Vec<f32>> {
    let d = &cfg.dino;
    let (dim, g, p) = (d.dim, d.grid(), d.patch_size);
    let spec = Conv2d { c_in: 3, c_out: dim, kernel: p, stride: p, pad: 0 };
    if spec.out_size(d.input_size, d.input_size) != (g, g) {
        return Err(Error::Config(format!("DINO input {} is not a multiple of the patch size {p}", d.input_size)));
    }
    let weight = w.f32_shaped(&format!("{PREFIX}.patch_embed.proj.weight"), &[dim, 3, p, p])?;
    let bias = w.f32_shaped(&format!("{PREFIX}.patch_embed.proj.bias"), &[dim])?;
    let mut patches = vec![0.0; dim * g * g];
    conv2d(&spec, input, d.input_size, d.input_size, &weight, Some(&bias), &mut patches);
    let cls = w.f32_shaped(&format!("{PREFIX}.cls_token"), &[1, 1, dim])?;
    // The official code adds pos_embed as-is only when the token count matches; we never interpolate.
    let pos = w.f32_shaped(&format!("{PREFIX}.pos_embed"), &[1, d.tokens(), dim])?;
    let mut x = vec![0.0; d.tokens() * dim];
    x[..dim].copy_from_slice(&cls);
    for t in 0..g * g {
        for c in 0..dim {
            x[(1 + t) * dim + c] = patches[c * g * g + t];
        }
    }
    x.iter_mut().zip(pos.iter()).for_each(|(v, p)| *v += p);
    Ok(x)
}

/// One pre-norm block in place: `x += ls1 * attn(norm1(x)); x += ls2 * mlp(norm2(x))`.
fn block(w: &dyn Weights, cfg: &ModelConfig, b: usize, x: &mut [f32], bufs: &mut Buffers) -> Result<()> {
    let d = &cfg.dino;
    let (dim, n, mlp) = (d.dim, d.tokens(), d.mlp_dim);
    if d.heads == 0 || dim % d.heads != 0 {
        return Err(Error::Config(format!("dino.dim {dim} does not split into {} heads", d.heads)));
    }
    let p = format!("{PREFIX}.blocks.{b}");
    let t = |s: &str, shape: &[usize]| w.f32_shaped(&format!("{p}.{s}"), shape);

    layer_norm(x, n, dim, &t("norm1.weight", &[dim])?, &t("norm1.bias", &[dim])?, d.ln_eps, &mut bufs.normed);
    let (qw, qb) = (t("attn.qkv.weight", &[3 * dim, dim])?, t("attn.qkv.bias", &[3 * dim])?);
    linear(&bufs.normed, n, dim, &qw, Some(&qb), 3 * dim, &mut bufs.qkv);
    self_attention(&bufs.qkv, n, d.heads, dim / d.heads, &mut bufs.attn);
    let (pw, pb) = (t("attn.proj.weight", &[dim, dim])?, t("attn.proj.bias", &[dim])?);
    linear(&bufs.attn, n, dim, &pw, Some(&pb), dim, &mut bufs.proj);
    add_scaled(x, &bufs.proj, &t("ls1.gamma", &[dim])?);

    layer_norm(x, n, dim, &t("norm2.weight", &[dim])?, &t("norm2.bias", &[dim])?, d.ln_eps, &mut bufs.normed);
    let (w1, b1) = (t("mlp.fc1.weight", &[mlp, dim])?, t("mlp.fc1.bias", &[mlp])?);
    linear(&bufs.normed, n, dim, &w1, Some(&b1), mlp, &mut bufs.hidden);
    gelu(&mut bufs.hidden);
    let (w2, b2) = (t("mlp.fc2.weight", &[dim, mlp])?, t("mlp.fc2.bias", &[dim])?);
    linear(&bufs.hidden, n, mlp, &w2, Some(&b2), dim, &mut bufs.proj);
    add_scaled(x, &bufs.proj, &t("ls2.gamma", &[dim])?);
    Ok(())
}

/// `x[t, c] += y[t, c] * gamma[c]` (LayerScale then the residual add).
fn add_scaled(x: &mut [f32], y: &[f32], gamma: &[f32]) {
    for (xr, yr) in x.chunks_exact_mut(gamma.len()).zip(y.chunks_exact(gamma.len())) {
        for ((v, a), g) in xr.iter_mut().zip(yr).zip(gamma) {
            *v += a * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lift::testing::seeded_weights;
    use crate::weights::WeightMap;
    use gaga_kernels::testing::{assert_close, seeded, Tolerance};

    /// A 2x2-patch, 2-block backbone: small enough to transcribe the equations naively.
    fn tiny() -> ModelConfig {
        let mut cfg = ModelConfig::small();
        cfg.dino.input_size = 28;
        cfg.dino.dim = 8;
        cfg.dino.heads = 2;
        cfg.dino.mlp_dim = 12;
        cfg.dino.depth = 3;
        cfg.dino.out_layers = vec![0, 2];
        cfg
    }

    fn get<'a>(w: &'a WeightMap, name: &str) -> &'a [f32] {
        &w.tensors[&format!("{PREFIX}.{name}")].1
    }

    fn naive_ln(x: &[f64], g: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        x.iter().enumerate().map(|(i, v)| (v - mean) / (var + eps).sqrt() * g[i] as f64 + b[i] as f64).collect()
    }

    fn naive_linear(x: &[f64], w: &[f32], b: &[f32]) -> Vec<f64> {
        let inp = x.len();
        (0..b.len()).map(|o| b[o] as f64 + (0..inp).map(|i| w[o * inp + i] as f64 * x[i]).sum::<f64>()).collect()
    }

    /// The equations of the DINOv2 forward pass, one token at a time in f64.
    fn naive(w: &WeightMap, cfg: &ModelConfig, img: &[f32]) -> Vec<Vec<f64>> {
        let d = &cfg.dino;
        let (dim, g, p, s) = (d.dim, d.grid(), d.patch_size, d.input_size);
        let (pw, pb) = (get(w, "patch_embed.proj.weight"), get(w, "patch_embed.proj.bias"));
        let mut x: Vec<Vec<f64>> = vec![get(w, "cls_token").iter().map(|&v| v as f64).collect()];
        for t in 0..g * g {
            let (py, px) = (t / g, t % g);
            x.push(
                (0..dim)
                    .map(|o| {
                        let mut acc = pb[o] as f64;
                        for c in 0..3 {
                            for ky in 0..p {
                                for kx in 0..p {
                                    let wv = pw[((o * 3 + c) * p + ky) * p + kx] as f64;
                                    acc += wv * img[(c * s + py * p + ky) * s + px * p + kx] as f64;
                                }
                            }
                        }
                        acc
                    })
                    .collect(),
            );
        }
        let pos = get(w, "pos_embed");
        for (t, tok) in x.iter_mut().enumerate() {
            tok.iter_mut().enumerate().for_each(|(c, v)| *v += pos[t * dim + c] as f64);
        }
        let (heads, hd) = (d.heads, dim / d.heads);
        let mut outs = Vec::new();
        for b in 0..d.depth {
            let q = |n: &str| get(w, &format!("blocks.{b}.{n}"));
            let eps = d.ln_eps as f64;
            let qkv: Vec<Vec<f64>> = x
                .iter()
                .map(|t| naive_linear(&naive_ln(t, q("norm1.weight"), q("norm1.bias"), eps), q("attn.qkv.weight"), q("attn.qkv.bias")))
                .collect();
            let mut attn = vec![vec![0f64; dim]; x.len()];
            for h in 0..heads {
                for i in 0..x.len() {
                    let score = |j: usize| (0..hd).map(|e| qkv[i][h * hd + e] * qkv[j][dim + h * hd + e]).sum::<f64>() / (hd as f64).sqrt();
                    let scores: Vec<f64> = (0..x.len()).map(score).collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                    for (j, s) in scores.iter().enumerate() {
                        for e in 0..hd {
                            attn[i][h * hd + e] += (s - m).exp() / z * qkv[j][2 * dim + h * hd + e];
                        }
                    }
                }
            }
            for (t, tok) in x.iter_mut().enumerate() {
                let o = naive_linear(&attn[t], q("attn.proj.weight"), q("attn.proj.bias"));
                tok.iter_mut().enumerate().for_each(|(c, v)| *v += o[c] * q("ls1.gamma")[c] as f64);
                let mut hdn = naive_linear(&naive_ln(tok, q("norm2.weight"), q("norm2.bias"), eps), q("mlp.fc1.weight"), q("mlp.fc1.bias"));
                hdn.iter_mut().for_each(|v| *v = gaga_kernels::act::gelu_scalar(*v as f32) as f64);
                let m = naive_linear(&hdn, q("mlp.fc2.weight"), q("mlp.fc2.bias"));
                tok.iter_mut().enumerate().for_each(|(c, v)| *v += m[c] * q("ls2.gamma")[c] as f64);
            }
            if d.out_layers.contains(&b) {
                let normed = x[1..].iter().flat_map(|t| naive_ln(t, get(w, "norm.weight"), get(w, "norm.bias"), eps));
                outs.push(normed.collect());
            }
        }
        outs
    }

    #[test]
    fn backbone_matches_a_naive_transcription_of_the_equations() {
        let cfg = tiny();
        let w = seeded_weights(&cfg);
        let img = seeded(3, 3 * 28 * 28);
        let got = run(&w, &cfg, &img).expect("dino runs");
        let want = naive(&w, &cfg, &img);
        assert_eq!(got.layers.len(), 2);
        for (i, (g, r)) in got.layers.iter().zip(&want).enumerate() {
            let r: Vec<f32> = r.iter().map(|&v| v as f32).collect();
            // f32 kernels vs an f64 transcription through 3 blocks: a few ulps of the largest value per op.
            assert_close(&format!("layer {i}"), g, &r, Tolerance::Custom { abs: 1e-5, rel: 1e-4 });
        }
        // Quirk: the global feature is the first patch token of the last returned layer, not CLS.
        assert_eq!(got.global, got.layers[1][..cfg.dino.dim].to_vec());
    }

    #[test]
    fn small_config_gives_one_token_matrix_per_used_block() {
        let cfg = ModelConfig::small();
        let w = seeded_weights(&cfg);
        let d = &cfg.dino;
        let out = run(&w, &cfg, &seeded(5, 3 * d.input_size * d.input_size)).expect("dino runs");
        assert_eq!(out.layers.len(), d.out_layers.len());
        assert!(out.layers.iter().all(|l| l.len() == d.grid() * d.grid() * d.dim));
        assert_eq!(out.global.len(), d.dim);
        assert!(out.layers.iter().flatten().all(|v| v.is_finite()));
    }

    #[test]
    fn a_pos_embed_of_another_token_count_is_refused_by_name() {
        let cfg = ModelConfig::small();
        let mut w = seeded_weights(&cfg);
        let name = format!("{PREFIX}.pos_embed");
        w.insert(name.clone(), vec![1, 10, cfg.dino.dim], vec![0.0; 10 * cfg.dino.dim]);
        let d = &cfg.dino;
        let err = run(&w, &cfg, &seeded(5, 3 * d.input_size * d.input_size)).expect_err("token count differs");
        let msg = err.to_string();
        assert!(msg.contains("pos_embed") && msg.contains("26") && msg.contains("10"), "{msg}");
    }
}
