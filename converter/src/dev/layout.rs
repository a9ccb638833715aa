//! The official checkpoint's tensors (names, shapes, order as `state_dict()` lists them), derived from a
//! `ModelConfig` so one function serves the official and the small configuration, each with its
//! calibrated seeded distribution. This file covers everything run once per source (`head_base`, the
//! DINOv2 backbone, the DPT head, the three Gaussian generators); `layout_refiner` covers the StyleUNet
//! and the training-only perceptual nets.

use gaga_runtime::ModelConfig;

use super::init::{Init, ParamSpec, Specs, LINEAR, RELU};

/// Every tensor of a GAGAvatar checkpoint for `cfg`, in `state_dict()` order (597 for the official one).
pub fn checkpoint_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let mut s = Specs::new();
    s.push("head_base", &[cfg.flame.vertices, cfg.head_base_dim], Init::Normal { mean: 0.0, std: 1.0 });
    dino(&mut s, cfg);
    dpt(&mut s, cfg);
    vertex_generator(&mut s, cfg);
    for plane in ["gs_generator_l0", "gs_generator_l1"] {
        lifting_generator(&mut s, cfg, plane);
    }
    super::layout_refiner::refiner(&mut s, cfg);
    super::layout_refiner::perceptual(&mut s, cfg);
    s.list
}

fn dino(s: &mut Specs, cfg: &ModelConfig) {
    let d = &cfg.dino;
    let p = "base_model.dino_model";
    s.push(format!("{p}.cls_token"), &[1, 1, d.dim], Init::Normal { mean: 0.0, std: 0.02 });
    s.push(format!("{p}.pos_embed"), &[1, d.tokens(), d.dim], Init::Normal { mean: 0.0, std: 0.02 });
    s.push(format!("{p}.mask_token"), &[1, d.dim], Init::constant(0.0));
    // The ImageNet-normalised input has about unit variance, so 1/fan_in keeps the tokens at unit scale.
    s.conv(&format!("{p}.patch_embed.proj"), d.dim, 3, d.patch_size, LINEAR, true);
    for b in 0..d.depth {
        let q = format!("{p}.blocks.{b}");
        s.layer_norm(&format!("{q}.norm1"), d.dim);
        s.linear(&format!("{q}.attn.qkv"), 3 * d.dim, d.dim, LINEAR);
        s.linear(&format!("{q}.attn.proj"), d.dim, d.dim, LINEAR);
        s.push(format!("{q}.ls1.gamma"), &[d.dim], Init::Range { lo: 0.1, hi: 0.3 });
        s.layer_norm(&format!("{q}.norm2"), d.dim);
        s.linear(&format!("{q}.mlp.fc1"), d.mlp_dim, d.dim, RELU);
        s.linear(&format!("{q}.mlp.fc2"), d.dim, d.mlp_dim, LINEAR);
        s.push(format!("{q}.ls2.gamma"), &[d.dim], Init::Range { lo: 0.1, hi: 0.3 });
    }
    s.layer_norm(&format!("{p}.norm"), d.dim);
}

/// Variance a fusion block's input grows by before its `out_conv` (path + residual units, each unit
/// adding half its input's variance), and what the `align_corners` upsampling leaves of it; `out_conv`
/// divides it out so every fusion output, and `f_feature0`, stays near unit variance.
const FUSION_GROWTH_FIRST: f32 = 1.5 * 0.6;
const FUSION_GROWTH: f32 = 3.75 * 0.6;

fn dpt(s: &mut Specs, cfg: &ModelConfig) {
    let p = "base_model";
    let (dim, f, pc) = (cfg.dino.dim, cfg.dpt.features, cfg.dpt.project_channels);
    for (i, &c) in pc.iter().enumerate() {
        s.conv(&format!("{p}.projects.{i}"), c, dim, 1, LINEAR, true);
    }
    // Transposed convolutions with kernel = stride: each output pixel sees one input pixel, so the
    // effective fan-in is the input channel count. Weight layout [in, out, k, k].
    for (i, k) in [(0usize, 4usize), (1, 2)] {
        s.push(format!("{p}.resize_layers.{i}.weight"), &[pc[i], pc[i], k, k], Init::fan_in(pc[i], LINEAR));
        s.push(format!("{p}.resize_layers.{i}.bias"), &[pc[i]], Init::default_bias(pc[i]));
    }
    s.conv(&format!("{p}.resize_layers.3"), pc[3], pc[3], 3, LINEAR, true);
    for (i, &c) in pc.iter().enumerate() {
        s.conv(&format!("{p}.layer_rn.{i}"), f, c + 3, 3, LINEAR, false);
    }
    for r in 0..4 {
        let q = format!("{p}.refinenet.{r}");
        let growth = if r == 0 { FUSION_GROWTH_FIRST } else { FUSION_GROWTH };
        s.conv(&format!("{q}.out_conv"), f, f, 1, LINEAR / growth, true);
        for unit in ["resConfUnit1", "resConfUnit2"] {
            // ReLU -> conv1 -> ReLU -> conv2 -> + input: He for conv1, 1/fan_in for conv2, so a unit adds
            // half of its input's variance instead of doubling it.
            s.conv(&format!("{q}.{unit}.conv1"), f, f, 3, RELU, true);
            s.conv(&format!("{q}.{unit}.conv2"), f, f, 3, LINEAR, true);
        }
    }
    s.conv(&format!("{p}.output_conv"), cfg.feature_dim, f, 3, LINEAR, true);
}

/// Per-output-row calibration of a generator's last layer: `(bias mean, output std)` for each channel.
/// The weight std is `output std / sqrt(fan_in)` because the ReLU'd hidden units have E[h^2] near 1.
fn output_rows(rows: &[(f32, f32)], fan_in: usize) -> (Init, Init) {
    let w = rows.iter().map(|&(_, std)| (0.0, std / (fan_in as f32).sqrt())).collect();
    let b = rows.iter().map(|&(mean, _)| (mean, 0.02)).collect();
    (Init::Rows(w), Init::Rows(b))
}

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// Logit of the scale sigmoid for a Gaussian of `size` world units (`scale = sigmoid * 0.05`).
fn scale_logit(size: f32) -> f32 {
    logit((size / 0.05).clamp(0.02, 0.9))
}

fn vertex_generator(s: &mut Specs, cfg: &ModelConfig) {
    let p = "gs_generator_g";
    let (t, h) = (cfg.vertex_trunk_dim, cfg.vertex_head_hidden);
    s.linear(&format!("{p}.feature_layers.0"), t, cfg.head_base_dim + cfg.dino.dim, RELU);
    s.linear(&format!("{p}.feature_layers.2"), t, t, RELU);
    s.linear(&format!("{p}.feature_layers.4"), t, t, RELU);
    s.linear(&format!("{p}.feature_layers.6"), t, t, LINEAR);
    let head_in = t + cfg.direnc_dim();
    // FLAME vertices sit about 5 mm apart (2.5 cm in world units): Gaussians of ~1.2 cm overlap their
    // neighbours without blurring. Opacity sigmoid(1.5 +- 0.5): the face stays mostly opaque.
    let colour = vec![(0.0, 1.0); cfg.gaussian_channels];
    let heads: [(&str, Vec<(f32, f32)>); 4] = [
        ("color", colour),
        ("opacity", vec![(1.5, 0.5)]),
        ("scale", vec![(scale_logit(0.012), 0.3); 3]),
        ("rotation", vec![(1.0, 0.3), (0.0, 0.3), (0.0, 0.3), (0.0, 0.3)]),
    ];
    for (name, rows) in heads {
        let q = format!("{p}.{name}_layers");
        s.linear(&format!("{q}.0"), h, head_in, RELU);
        let (w, b) = output_rows(&rows, h);
        s.push(format!("{q}.2.weight"), &[rows.len(), h], w);
        s.push(format!("{q}.2.bias"), &[rows.len()], b);
    }
}

fn lifting_generator(s: &mut Specs, cfg: &ModelConfig, p: &str) {
    let l = cfg.lift_hidden;
    s.conv(&format!("{p}.gaussian_conv.0"), l, cfg.feature_dim + cfg.direnc_dim(), 3, RELU, true);
    s.conv(&format!("{p}.gaussian_conv.2"), l, l, 3, RELU, true);
    s.conv(&format!("{p}.gaussian_conv.4"), l, l, 3, RELU, true);
    // The plane spans about 1.5 world units over `plane_size` pixels: a scale of 1.5 pixel spacings
    // covers it without holes (0.0076 at 296, capped for coarse test planes).
    let spacing = 1.5 / cfg.plane_size as f32;
    let mut rows = vec![(0.0, 1.0); cfg.gaussian_channels];
    rows.push((1.0, 0.7)); // opacity: sigmoid mostly in 0.4..0.92
    rows.extend([(scale_logit((1.5 * spacing).min(0.03)), 0.4); 3]);
    rows.extend([(1.0, 0.3), (0.0, 0.3), (0.0, 0.3), (0.0, 0.3)]); // quaternion near identity
    rows.push((-1.0, 1.2)); // lifting distance: sigmoid spread over about 0.05..0.6
    let (w, b) = output_rows(&rows, l);
    s.push(format!("{p}.gaussian_conv.6.weight"), &[rows.len(), l, 1, 1], w);
    s.push(format!("{p}.gaussian_conv.6.bias"), &[rows.len()], b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's key list (`key<TAB>[d0, d1, ...]<TAB>dtype<TAB>...`), shared with the converter's tests.
    const OFFICIAL_KEYS: &str = include_str!("../../tests/fixtures/gagavatar-state-dict-keys.tsv");

    #[test]
    fn official_layout_matches_the_published_key_list() {
        let specs = checkpoint_specs(&ModelConfig::official());
        let want: Vec<(String, Vec<usize>)> = OFFICIAL_KEYS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let mut fields = l.split('\t');
                let name = fields.next().expect("key column");
                let shape = fields.next().expect("shape column").trim_matches(|c| c == '[' || c == ']');
                let dims = shape.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().expect("dim")).collect();
                (name.to_string(), dims)
            })
            .collect();
        assert_eq!(want.len(), 597);
        assert_eq!(specs.len(), want.len(), "tensor count");
        for (spec, (name, shape)) in specs.iter().zip(&want) {
            assert_eq!((&spec.name, &spec.shape), (name, shape), "tensor order, name and shape");
        }
        let elements: usize = specs.iter().map(|s| s.numel()).sum();
        assert_eq!(elements, 186_800_582, "state-dict elements (spec section 7.1)");
    }

    #[test]
    fn small_layout_has_the_official_key_patterns() {
        // Depth and level counts differ, so compare names with their indices blanked out.
        let patterns = |cfg| {
            let mut p: Vec<String> = checkpoint_specs(&cfg)
                .into_iter()
                .map(|s| {
                    let parts: Vec<&str> = s.name.split('.').map(|p| p.trim_end_matches(|c: char| c.is_ascii_digit())).collect();
                    parts.join(".")
                })
                .collect();
            p.sort();
            p.dedup();
            p
        };
        assert_eq!(patterns(ModelConfig::small()), patterns(ModelConfig::official()));
    }

    #[test]
    fn scale_logit_inverts_the_scale_activation() {
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        assert!((sigmoid(scale_logit(0.012)) * 0.05 - 0.012).abs() < 1e-6);
    }
}
