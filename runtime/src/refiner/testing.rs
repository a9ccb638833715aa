//! The refiner's tensor list in the official naming, and seeded weights for tests and benches.

use gaga_kernels::testing::seeded;

use crate::config::{ModelConfig, RefinerConfig};
use crate::weights::WeightMap;

/// Every `upsampler.*` tensor inference reads, with its shape, for `cfg.refiner`.
pub fn refiner_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let r = &cfg.refiner;
    let (u, d, sd, levels) = (&r.unet_channels, &r.decoder_channels, r.style_dim, r.levels());
    let mut t: Vec<(String, Vec<usize>)> = Vec::new();
    let mut conv = |name: String, ci: usize, co: usize, k: usize, bias: bool| {
        t.push((format!("{name}.weight"), vec![co, ci, k, k]));
        if bias {
            t.push((format!("{name}.bias"), vec![co]));
        }
    };
    conv("upsampler.conv_body_first".into(), r.in_channels, u[levels], 1, true);
    let res = |conv: &mut dyn FnMut(String, usize, usize, usize, bool), p: String, ci: usize, co: usize| {
        conv(format!("{p}.conv1"), ci, ci, 3, true);
        conv(format!("{p}.conv2"), ci, co, 3, true);
        conv(format!("{p}.skip"), ci, co, 1, false);
    };
    for i in 0..levels {
        res(&mut conv, format!("upsampler.conv_body_down.{i}"), u[levels - i], u[levels - i - 1]);
    }
    conv("upsampler.final_conv".into(), u[0], u[0], 3, true);
    for k in 0..levels {
        res(&mut conv, format!("upsampler.conv_body_up.{k}"), u[k], u[k + 1]);
        for branch in ["scale", "shift"] {
            conv(format!("upsampler.condition_{branch}.{k}.0"), u[k + 1], u[k + 1], 3, true);
            conv(format!("upsampler.condition_{branch}.{k}.2"), u[k + 1], 2 * u[k + 1], 3, true);
        }
    }
    t.push(("upsampler.final_linear.weight".into(), vec![sd, u[0] * 16]));
    t.push(("upsampler.final_linear.bias".into(), vec![sd]));
    let sg = "upsampler.stylegan_decoder";
    for i in 0..r.mlp_layers {
        t.push((format!("{sg}.style_mlp.{}.weight", 2 * i + 1), vec![sd, sd]));
        t.push((format!("{sg}.style_mlp.{}.bias", 2 * i + 1), vec![sd]));
    }
    t.push((format!("{sg}.constant_input.weight"), vec![1, d[0], 4, 4]));
    let mut modconv = |p: String, ci: usize, co: usize, k: usize, style_conv: bool| {
        t.push((format!("{p}.modulated_conv.weight"), vec![1, co, ci, k, k]));
        t.push((format!("{p}.modulated_conv.modulation.weight"), vec![ci, sd]));
        t.push((format!("{p}.modulated_conv.modulation.bias"), vec![ci]));
        if style_conv {
            t.push((format!("{p}.weight"), vec![1]));
        }
        t.push((format!("{p}.bias"), vec![1, co, 1, 1]));
    };
    modconv(format!("{sg}.style_conv1"), d[0], d[0], 3, true);
    modconv(format!("{sg}.to_rgb1"), d[0], r.out_channels, 1, false);
    for k in 1..=levels {
        modconv(format!("{sg}.style_convs.{}", 2 * k - 2), d[k - 1], d[k], 3, true);
        modconv(format!("{sg}.style_convs.{}", 2 * k - 1), d[k], d[k], 3, true);
        modconv(format!("{sg}.to_rgbs.{}", k - 1), d[k], r.out_channels, 1, false);
    }
    for i in 0..r.style_convs() {
        let n = RefinerConfig::noise_size(i);
        t.push((format!("{sg}.noises.noise{i}"), vec![1, 1, n, n]));
    }
    t
}

/// Inserts seeded `upsampler.*` tensors: weights uniform with variance ~1/fan_in (activations keep their
/// scale through the network), modulation biases near 1 (as the official init), small other biases,
/// unit-variance noise buffers, noise strengths 0.1.
pub fn insert_seeded_refiner(w: &mut WeightMap, cfg: &ModelConfig, seed: u64) {
    for (i, (name, shape)) in refiner_tensors(cfg).into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let raw = seeded(seed.wrapping_mul(1_000_003).wrapping_add(i as u64), n);
        // Uniform [-1, 1) has variance 1/3.
        let unit = 3f32.sqrt();
        let values: Vec<f32> = if name.contains(".noises.") || name.ends_with("constant_input.weight") {
            raw.iter().map(|v| v * unit).collect()
        } else if name.ends_with("modulation.bias") {
            raw.iter().map(|v| 1.0 + 0.1 * v).collect()
        } else if shape == [1] {
            vec![0.1]
        } else if name.ends_with(".bias") {
            raw.iter().map(|v| 0.05 * v).collect()
        } else {
            let fan_in: usize = if shape.len() == 5 { shape[2..].iter().product() } else { shape[1..].iter().product() };
            raw.iter().map(|v| v * unit / (fan_in as f32).sqrt()).collect()
        };
        w.insert(name, shape, values);
    }
}
