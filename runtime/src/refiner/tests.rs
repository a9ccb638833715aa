use gaga_kernels::conv::Conv2d;
use gaga_kernels::reference;
use gaga_kernels::testing::{assert_close, seeded, Tolerance};

use super::modconv::{demodulation, modulated_conv, weight_square_sums};
use super::testing::insert_seeded_refiner;
use super::*;
use crate::weights::WeightMap;

fn seeded_weights(cfg: &ModelConfig) -> WeightMap {
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, cfg, 3);
    w
}

/// The official formulation: build `W' = W * s`, demodulate it, then convolve.
fn explicit_modulated_conv(x: &[f32], h: usize, weight: &[f32], c_out: usize, k: usize, s: &[f32], demod: bool) -> Vec<f32> {
    let c_in = s.len();
    let kk = k * k;
    let mut wm: Vec<f32> = (0..c_out * c_in * kk).map(|idx| weight[idx] * s[(idx / kk) % c_in]).collect();
    if demod {
        for o in 0..c_out {
            let row = &mut wm[o * c_in * kk..(o + 1) * c_in * kk];
            let d = 1.0 / (row.iter().map(|v| v * v).sum::<f32>() + 1e-8).sqrt();
            row.iter_mut().for_each(|v| *v *= d);
        }
    }
    let mut out = vec![0f32; c_out * h * h];
    reference::conv2d(&Conv2d { c_in, c_out, kernel: k, stride: 1, pad: k / 2 }, x, h, h, &wm, None, &mut out);
    out
}

#[test]
fn modulated_conv_on_activations_equals_the_explicit_modulated_weight_conv() {
    let mut scratch = Scratch::new();
    // Awkward sizes on purpose: 13 input channels, 7 outputs, an 11x11 map.
    for (k, demod) in [(3, true), (1, false), (3, false)] {
        let (c_in, c_out, h) = (13, 7, 11);
        let x = seeded(1, c_in * h * h);
        let weight = seeded(2, c_out * c_in * k * k);
        let s: Vec<f32> = seeded(3, c_in).iter().map(|v| 1.0 + 0.5 * v).collect();
        let q = weight_square_sums(&weight, c_out, c_in, k);
        let mut f = vec![0f32; c_out];
        demodulation(demod.then_some(&q[..]), &s, 1.0, &mut f);
        let (mut scaled, mut out) = (vec![0f32; c_in * h * h], vec![0f32; c_out * h * h]);
        modulated_conv(&mut scratch, &x, h, h, &weight, k, &s, &f, &mut scaled, &mut out);
        let want = explicit_modulated_conv(&x, h, &weight, c_out, k, &s, demod);
        // Same products summed in another order, and the demodulation factor from a different sum: fp32.
        assert_close(&format!("modconv k={k} demod={demod}"), &out, &want, Tolerance::Fp32);
    }
}

/// Straightforward StyleUNet in the official order (whole UNet, then the decoder with explicit weight
/// modulation), on the reference kernels, as the oracle for `Refiner::run`.
fn reference_refiner(w: &WeightMap, cfg: &ModelConfig, x: &[f32]) -> Vec<f32> {
    let r = &cfg.refiner;
    let (u, d, levels, sd) = (&r.unet_channels, &r.decoder_channels, r.levels(), r.style_dim);
    let t = |n: &str| w.tensors[n].1.clone();
    let conv = |name: &str, x: &[f32], ci: usize, co: usize, k: usize, h: usize, bias: bool| {
        let mut out = vec![0f32; co * h * h];
        let b = bias.then(|| t(&format!("{name}.bias")));
        reference::conv2d(
            &Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 },
            x,
            h,
            h,
            &t(&format!("{name}.weight")),
            b.as_deref(),
            &mut out,
        );
        out
    };
    let lrelu = |mut v: Vec<f32>| {
        v.iter_mut().for_each(|x| *x = if *x < 0.0 { 0.2 * *x } else { *x });
        v
    };
    let resize = |x: &[f32], c: usize, h: usize, h2: usize| {
        let mut out = vec![0f32; c * h2 * h2];
        reference::bilinear(x, c, h, h, h2, h2, false, &mut out);
        out
    };
    let resblock = |p: &str, x: &[f32], ci: usize, co: usize, h: usize, h2: usize| {
        let a = lrelu(conv(&format!("{p}.conv1"), x, ci, ci, 3, h, true));
        let a = lrelu(conv(&format!("{p}.conv2"), &resize(&a, ci, h, h2), ci, co, 3, h2, true));
        let s = conv(&format!("{p}.skip"), &resize(x, ci, h, h2), ci, co, 1, h2, false);
        a.iter().zip(&s).map(|(a, b)| a + b).collect::<Vec<f32>>()
    };
    let side = |k: usize| 4usize << k;
    let mut feat = lrelu(conv("upsampler.conv_body_first", x, r.in_channels, u[levels], 1, r.size, true));
    let mut skips = Vec::new();
    for i in 0..levels {
        feat = resblock(
            &format!("upsampler.conv_body_down.{i}"),
            &feat,
            u[levels - i],
            u[levels - i - 1],
            side(levels - i),
            side(levels - i - 1),
        );
        skips.insert(0, feat.clone());
    }
    feat = lrelu(conv("upsampler.final_conv", &feat, u[0], u[0], 3, 4, true));
    let mut style = vec![0f32; sd];
    reference::linear(&feat, 1, u[0] * 16, &t("upsampler.final_linear.weight"), Some(&t("upsampler.final_linear.bias")), sd, &mut style);
    let mut conditions = Vec::new();
    for k in 0..levels {
        feat = feat.iter().zip(&skips[k]).map(|(a, b)| a + b).collect();
        feat = resblock(&format!("upsampler.conv_body_up.{k}"), &feat, u[k], u[k + 1], side(k), side(k + 1));
        for br in ["scale", "shift"] {
            let p = format!("upsampler.condition_{br}.{k}");
            let a = lrelu(conv(&format!("{p}.0"), &feat, u[k + 1], u[k + 1], 3, side(k + 1), true));
            conditions.push(conv(&format!("{p}.2"), &a, u[k + 1], 2 * u[k + 1], 3, side(k + 1), true));
        }
    }
    let sg = "upsampler.stylegan_decoder";
    let norm = 1.0 / (style.iter().map(|v| v * v).sum::<f32>() / sd as f32 + 1e-8).sqrt();
    let mut lat: Vec<f32> = style.iter().map(|v| v * norm).collect();
    for i in 0..r.mlp_layers {
        let mut o = vec![0f32; sd];
        reference::linear(
            &lat,
            1,
            sd,
            &t(&format!("{sg}.style_mlp.{}.weight", 2 * i + 1)),
            Some(&t(&format!("{sg}.style_mlp.{}.bias", 2 * i + 1))),
            sd,
            &mut o,
        );
        lat = lrelu(o);
    }
    let modconv = |p: &str, x: &[f32], ci: usize, co: usize, k: usize, h: usize, demod: bool| {
        let mut s = vec![0f32; ci];
        let mc = format!("{p}.modulated_conv");
        reference::linear(&lat, 1, sd, &t(&format!("{mc}.modulation.weight")), Some(&t(&format!("{mc}.modulation.bias"))), ci, &mut s);
        explicit_modulated_conv(x, h, &t(&format!("{mc}.weight")), co, k, &s, demod)
    };
    let style_conv = |p: &str, x: &[f32], ci: usize, co: usize, h: usize, noise: usize| {
        let out = modconv(p, x, ci, co, 3, h, true);
        let (strength, bias, nz) = (t(&format!("{p}.weight"))[0], t(&format!("{p}.bias")), t(&format!("{sg}.noises.noise{noise}")));
        lrelu(out.iter().enumerate().map(|(i, v)| v * 2f32.sqrt() + strength * nz[i % (h * h)] + bias[i / (h * h)]).collect())
    };
    let to_rgb = |p: &str, x: &[f32], ci: usize, h: usize| {
        let b = t(&format!("{p}.bias"));
        modconv(p, x, ci, r.out_channels, 1, h, false).iter().enumerate().map(|(i, v)| v + b[i / (h * h)]).collect::<Vec<f32>>()
    };
    let mut out = style_conv(&format!("{sg}.style_conv1"), &t(&format!("{sg}.constant_input.weight")), d[0], d[0], 4, 0);
    let mut skip = to_rgb(&format!("{sg}.to_rgb1"), &out, d[0], 4);
    for k in 1..=levels {
        let h = side(k);
        out = style_conv(&format!("{sg}.style_convs.{}", 2 * k - 2), &resize(&out, d[k - 1], h / 2, h), d[k - 1], d[k], h, 2 * k - 1);
        out = out.iter().zip(&conditions[2 * k - 2]).zip(&conditions[2 * k - 1]).map(|((o, a), b)| o * a + b).collect();
        out = style_conv(&format!("{sg}.style_convs.{}", 2 * k - 1), &out, d[k], d[k], h, 2 * k);
        let up = resize(&skip, r.out_channels, h / 2, h);
        skip = to_rgb(&format!("{sg}.to_rgbs.{}", k - 1), &out, d[k], h).iter().zip(&up).map(|(a, b)| a + b).collect();
    }
    skip.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
}

fn run_once(refiner: &mut Refiner, cfg: &ModelConfig, x: &[f32]) -> Vec<f32> {
    let s = cfg.refiner.size;
    let mut out = vec![0f32; cfg.refiner.out_channels * s * s];
    refiner.run(x, &mut out).expect("refiner runs");
    out
}

#[test]
fn refiner_matches_the_official_order_reference_and_stays_in_unit_range() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let s = cfg.refiner.size;
    let x = seeded(9, cfg.refiner.in_channels * s * s);
    let mut refiner = Refiner::new(&w, &cfg, NoiseMode::Stored).expect("refiner loads");
    let got = run_once(&mut refiner, &cfg, &x);
    assert_eq!(got.len(), 3 * s * s);
    assert!(got.iter().all(|v| *v > 0.0 && *v < 1.0), "sigmoid output leaves (0, 1)");
    let want = reference_refiner(&w, &cfg, &x);
    // ~40 chained layers in fp32 with different summation orders: errors grow to ~1e-5 of the range.
    assert_close("refiner RGB", &got, &want, Tolerance::Custom { abs: 1e-5, rel: 1e-4 });
}

#[test]
fn stored_noise_is_deterministic_and_random_noise_is_seeded() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let s = cfg.refiner.size;
    let x = seeded(10, cfg.refiner.in_channels * s * s);
    let mut stored = Refiner::new(&w, &cfg, NoiseMode::Stored).expect("refiner loads");
    let (a, b) = (run_once(&mut stored, &cfg, &x), run_once(&mut stored, &cfg, &x));
    assert_eq!(a, b, "stored noise: two runs differ");
    let mut r1 = Refiner::new(&w, &cfg, NoiseMode::Random { seed: 5 }).expect("refiner loads");
    let mut r2 = Refiner::new(&w, &cfg, NoiseMode::Random { seed: 5 }).expect("refiner loads");
    let (c, d) = (run_once(&mut r1, &cfg, &x), run_once(&mut r1, &cfg, &x));
    assert_ne!(c, d, "random noise: two calls gave the same frame");
    assert_eq!(c, run_once(&mut r2, &cfg, &x), "random noise: same seed, different first frame");
}

#[test]
fn missing_and_misshapen_tensors_are_named_in_the_error() {
    let cfg = ModelConfig::small();
    let mut w = seeded_weights(&cfg);
    w.tensors.remove("upsampler.final_conv.bias");
    let err = Refiner::new(&w, &cfg, NoiseMode::Stored).err().expect("missing tensor");
    assert!(err.to_string().contains("upsampler.final_conv.bias"), "{err}");
    let mut w = seeded_weights(&cfg);
    w.insert("upsampler.stylegan_decoder.noises.noise0", vec![1, 1, 2, 8], vec![0.0; 16]);
    let err = Refiner::new(&w, &cfg, NoiseMode::Stored).err().expect("bad shape");
    assert!(err.to_string().contains("noise0") && err.to_string().contains("[1, 1, 4, 4]"), "{err}");
}

#[test]
fn wrong_input_length_is_an_error() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let mut refiner = Refiner::new(&w, &cfg, NoiseMode::Stored).expect("refiner loads");
    let mut out = vec![0f32; 3 * 64 * 64];
    let err = refiner.run(&[0.0; 10], &mut out).expect_err("short input");
    assert!(err.to_string().contains("splat input"), "{err}");
}

/// int8 modulated convs keep their square sums in f16 (scaled by a power of two): demodulation factors
/// within 2^-11 relative of the f32 sums' (the bound of one f16 rounding per sum, halved by the square
/// root, plus f32 summation noise), over sums spanning eight orders of magnitude; fp32 layers keep f32.
#[test]
fn int8_layers_keep_f16_square_sums_and_demodulate_within_a_half_rounding() {
    let (c_out, c_in) = (7, 300);
    let q: Vec<f32> = seeded(60, c_out * c_in).iter().enumerate().map(|(i, v)| v.abs() * 10f32.powi((i % 9) as i32 - 6)).collect();
    let s: Vec<f32> = seeded(61, c_in).iter().map(|v| 0.3 + v.abs()).collect();
    let (mut want, mut got) = (vec![0f32; c_out], vec![0f32; c_out]);
    demodulation(Some(&q), &s, 1.5, &mut want);
    let (halves, unscale) = gaga_kernels::elem::narrow_scaled(&q).expect("non-zero sums");
    modconv::demodulation_f16(&halves, unscale, &s, 1.5, &mut got);
    for (o, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(((a - b) / b).abs() < 1.0 / 2048.0, "output {o}: {a} vs {b}");
    }

    let cfg = ModelConfig::small();
    let q8 = super::tests_quant::Quantised::new(&cfg, crate::format::DType::I8);
    let (d, sd) = (&cfg.refiner.decoder_channels, cfg.refiner.style_dim);
    let prefix = "upsampler.stylegan_decoder.style_convs.1.modulated_conv";
    let int8 = modconv::ModConv::load(&q8, prefix, d[1], d[1], 3, sd, true).expect("int8 layer");
    let fp32 = modconv::ModConv::load(&q8.plain, prefix, d[1], d[1], 3, sd, true).expect("fp32 layer");
    assert_eq!((int8.square_sum_bytes(), fp32.square_sum_bytes()), (2 * d[1] * d[1], 4 * d[1] * d[1]));
}
