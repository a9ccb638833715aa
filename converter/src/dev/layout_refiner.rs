//! Seeded layout of the StyleUNet refiner (`upsampler.*`) and of the training-only perceptual nets
//! (`percep_loss.*`), in `state_dict()` order. See `layout` for the rest of the checkpoint.

use gaga_runtime::config::RefinerConfig;
use gaga_runtime::ModelConfig;

use super::init::{Init, Specs, LINEAR, LRELU, RELU};

/// Down blocks: two branches of half the input's variance each, so a block preserves variance instead of
/// doubling it (7 doublings would leave the deepest features at std ~11).
const DOWN_BRANCH_GAIN: f32 = 0.5;
/// Up blocks add a skip (unit variance) first; halving the sum's variance makes unit variance the fixed
/// point of `x -> up(x + skip)` instead of a linear growth with depth.
const UP_BRANCH_GAIN: f32 = 0.25;
/// Output std of the SFT scale branch around its bias of 1: the condition modulates features by
/// about +-20 % instead of multiplying them by a zero-mean random map.
const SFT_SCALE_STD: f32 = 0.2;
/// Output std of the SFT shift branch: the UNet's view of the splat reaches the decoder at about half
/// the decoder features' scale, so different splats give visibly different images.
const SFT_SHIFT_STD: f32 = 0.5;
/// Mean square of the SFT branches' hidden activations (after `.0` and its LeakyReLU), which the output
/// layers `.2` divide out. Measured through the reference refiner on real splats it ranges 0.04-0.6 with
/// the level and the seed; 0.2 sits in the middle in log terms. (It was 0.1, from a stand-in splat:
/// with seed 7 the shift then reached std 1.2 at 16 and 32 px, the decoder features after the SFT grew
/// to std 2.5 and 46 % of the golden RGB values saturated.)
const UNET_FEATURE_VAR: f32 = 0.2;
/// Variance gain of the ToRGB modulated weights (no demodulation follows) for a decoder of 5 ToRGB
/// levels; deeper decoders sum more levels and their last features are larger, so the gain falls with
/// the square of the level count. Measured pre-sigmoid RGB std (seed 0, bundled frames): 0.8-0.9 small,
/// 1.05-1.2 official (docs/seeded-models.md).
const TO_RGB_GAIN_5_LEVELS: f32 = 0.33;
/// Variance gain of the ToRGB style modulation (official init: 1). Without demodulation the RGB scales
/// with the style `s = 1 + W w`, and the style MLP's random product lets `|w|` drift by 2-3x with the
/// seed; a gain of 0.1 keeps `s` at 1 +- 0.3 so the drift barely reaches the image.
const TO_RGB_MODULATION_GAIN: f32 = 0.1;

/// `upsampler.*`: UNet encoder and decoder, style code, StyleGAN2 decoder, SFT condition convs.
pub fn refiner(s: &mut Specs, cfg: &ModelConfig) {
    let r = &cfg.refiner;
    let (u, levels) = (&r.unet_channels, r.levels());
    let p = "upsampler";
    s.conv(&format!("{p}.conv_body_first"), u[levels], r.in_channels, 1, LRELU, true);
    for i in 0..levels {
        res_block(s, &format!("{p}.conv_body_down.{i}"), u[levels - i], u[levels - i - 1], DOWN_BRANCH_GAIN);
    }
    s.conv(&format!("{p}.final_conv"), u[0], u[0], 3, LRELU, true);
    for k in 0..levels {
        res_block(s, &format!("{p}.conv_body_up.{k}"), u[k], u[k + 1], UP_BRANCH_GAIN);
    }
    for k in 0..levels {
        s.conv(&format!("{p}.toRGB.{k}"), 3, u[k + 1], 1, LINEAR, true);
    }
    s.linear(&format!("{p}.final_linear"), r.style_dim, u[0] * 16, LINEAR);
    decoder(s, r);
    for (branch, std, bias) in [("condition_scale", SFT_SCALE_STD, 1.0), ("condition_shift", SFT_SHIFT_STD, 0.0)] {
        for k in 0..levels {
            let (ch, out) = (u[k + 1], r.decoder_channels[k + 1]);
            let q = format!("{p}.{branch}.{k}");
            s.conv(&format!("{q}.0"), ch, ch, 3, LRELU, true);
            s.push(format!("{q}.2.weight"), &[out, ch, 3, 3], Init::fan_in(ch * 9, std * std / UNET_FEATURE_VAR));
            s.push(format!("{q}.2.bias"), &[out], Init::Uniform { mean: bias, std: 0.02 });
        }
    }
}

/// GFPGAN-style ResBlock: conv1 in->in, conv2 in->out (both LeakyReLU), 1x1 skip without bias. The
/// block's output is the sum of its two branches; `branch_gain` scales both branches' variance.
fn res_block(s: &mut Specs, p: &str, inp: usize, out: usize, branch_gain: f32) {
    s.conv(&format!("{p}.conv1"), inp, inp, 3, LRELU, true);
    s.conv(&format!("{p}.conv2"), out, inp, 3, LRELU * branch_gain, true);
    s.conv(&format!("{p}.skip"), out, inp, 1, LINEAR * branch_gain, false);
}

/// A modulated conv and its style modulation: weights N(0, gain/fan_in), the modulation Linear
/// mod_gain/fan_in with bias 1 (the official init has both gains 1: styles start near 1).
fn modulated(s: &mut Specs, p: &str, style: usize, inp: usize, out: usize, k: usize, (gain, mod_gain): (f32, f32)) {
    s.push(
        format!("{p}.modulated_conv.weight"),
        &[1, out, inp, k, k],
        Init::Normal { mean: 0.0, std: (gain / (inp * k * k) as f32).sqrt() },
    );
    s.push(format!("{p}.modulated_conv.modulation.weight"), &[inp, style], Init::fan_in(style, mod_gain));
    s.push(format!("{p}.modulated_conv.modulation.bias"), &[inp], Init::constant(1.0));
}

fn style_conv(s: &mut Specs, p: &str, style: usize, inp: usize, out: usize) {
    // Noise strength: small, so the random noise of the official path is a texture, not the content.
    s.push(format!("{p}.weight"), &[1], Init::Range { lo: 0.01, hi: 0.05 });
    s.push(format!("{p}.bias"), &[1, out, 1, 1], Init::Uniform { mean: 0.0, std: 0.02 });
    modulated(s, p, style, inp, out, 3, (LINEAR, LINEAR));
}

fn to_rgb(s: &mut Specs, p: &str, style: usize, inp: usize, gain: f32) {
    s.push(format!("{p}.bias"), &[1, 3, 1, 1], Init::Uniform { mean: 0.0, std: 0.02 });
    modulated(s, p, style, inp, 3, 1, (gain, TO_RGB_MODULATION_GAIN));
}

fn decoder(s: &mut Specs, r: &RefinerConfig) {
    let p = "upsampler.stylegan_decoder";
    let (d, sd) = (&r.decoder_channels, r.style_dim);
    let rgb_gain = TO_RGB_GAIN_5_LEVELS * (5.0 / (r.levels() + 1) as f32).powi(2);
    for i in 0..r.mlp_layers {
        let q = format!("{p}.style_mlp.{}", 2 * i + 1);
        s.push(format!("{q}.weight"), &[sd, sd], Init::fan_in(sd, LRELU));
        s.push(format!("{q}.bias"), &[sd], Init::constant(0.0));
    }
    s.push(format!("{p}.constant_input.weight"), &[1, d[0], 4, 4], Init::Normal { mean: 0.0, std: 1.0 });
    style_conv(s, &format!("{p}.style_conv1"), sd, d[0], d[0]);
    to_rgb(s, &format!("{p}.to_rgb1"), sd, d[0], rgb_gain);
    for k in 0..r.levels() {
        style_conv(s, &format!("{p}.style_convs.{}", 2 * k), sd, d[k], d[k + 1]);
        style_conv(s, &format!("{p}.style_convs.{}", 2 * k + 1), sd, d[k + 1], d[k + 1]);
    }
    for k in 0..r.levels() {
        to_rgb(s, &format!("{p}.to_rgbs.{k}"), sd, d[k + 1], rgb_gain);
    }
    for i in 0..r.style_convs() {
        let n = RefinerConfig::noise_size(i);
        s.push(format!("{p}.noises.noise{i}"), &[1, 1, n, n], Init::Normal { mean: 0.0, std: 1.0 });
    }
}

/// `percep_loss.*` (training only): VGG-Face convs and AlexNet features. Their widths are not part of
/// `ModelConfig`; they shrink with the style width (divided by 512 / style_dim, so 1 for the official
/// model and 16 for the small one) so small test files stay small.
pub fn perceptual(s: &mut Specs, cfg: &ModelConfig) {
    let div = (512 / cfg.refiner.style_dim.max(1)).max(1);
    let w = |c: usize| (c / div).max(1);
    let vgg = [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256), (14, 256, 256)];
    let vgg_tail = [(17, 512, 256), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)];
    for (i, out, inp) in vgg.into_iter().chain(vgg_tail) {
        let inp = if i == 0 { 3 } else { w(inp) };
        s.conv(&format!("percep_loss.vggface.network.{i}"), w(out), inp, 3, RELU, true);
    }
    let alex = [(1, 0, 64, 3, 11), (2, 3, 192, 64, 5), (3, 6, 384, 192, 3), (4, 8, 256, 384, 3), (5, 10, 256, 256, 3)];
    for (slice, i, out, inp, k) in alex {
        let inp = if i == 0 { 3 } else { w(inp) };
        s.conv(&format!("percep_loss.net.slice{slice}.{i}"), w(out), inp, k, RELU, true);
    }
}
