//! The StyleUNet's dispatch order on the GPU, mirroring `Refiner::run` (`runtime/src/refiner.rs`):
//! encoder, style code and MLP, decoder at 4x4, then per level the UNet up block, its SFT condition
//! maps and the decoder level. Buffers are the CPU refiner's, with two aliases (see `build`).

use gaga_kernels::twin::refiner_conv::Epilogue;

use super::program::{side, u32_of, Builder, Fill, Kernel, Program, Slot};
use crate::config::{ModelConfig, RefinerConfig};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// Activation buffers, sized for the largest map each role holds (as the CPU refiner's).
struct Acts {
    feat_a: Slot,
    feat_b: Slot,
    t1: Slot,
    t2: Slot,
    skips: Vec<Slot>,
    sft: Slot,
    dout: Slot,
    dtmp: Slot,
    din: Slot,
    rgb_a: Slot,
    rgb_b: Slot,
    style: Slot,
    constant: Slot,
}

/// Checks `cfg.refiner` has the structure the StyleUNet code assumes (as the CPU refiner does).
fn check_config(r: &RefinerConfig) -> Result<usize> {
    // The shape rules are the CPU refiner's; the Vulkan path adds one of its own.
    crate::refiner::plan::validate(r)?;
    if r.mlp_layers == 0 {
        return Err(Error::Config(
            "refiner: the Vulkan path needs at least one style MLP layer (it fuses NormStyleCode into the first)".into(),
        ));
    }
    Ok(r.unet_channels.len() - 1)
}

/// Builds the whole refiner program for `cfg` from the tensors in `w`.
pub(super) fn build(w: &dyn Weights, cfg: &ModelConfig) -> Result<Program> {
    let r = &cfg.refiner;
    let levels = check_config(r)?;
    let (u, d, sd, s) = (&r.unet_channels, &r.decoder_channels, r.style_dim, r.size);
    let empty = Program { buffers: Vec::new(), steps: Vec::new(), noise: (0, 0) };
    let mut b = Builder { w, style_dim: sd, prog: empty, dummy: Slot::Input, noise: Slot::Input, noise_offsets: Vec::new() };
    b.dummy = b.buffer("refiner unused binding".into(), 1, Fill::Scratch);

    // Noise maps, one buffer, in execution order.
    let sg = "upsampler.stylegan_decoder";
    let mut names = Vec::new();
    let mut total = 0;
    for i in 0..r.style_convs() {
        let n = RefinerConfig::noise_size(i);
        let name = format!("{sg}.noises.noise{i}");
        b.check_shape(&name, &[1, 1, n, n])?;
        b.noise_offsets.push(total);
        total += n * n;
        names.push(name);
    }
    b.noise = b.buffer("refiner noise maps".into(), total, Fill::Noise(names));
    b.prog.noise = (b.prog.buffers.len() - 1, total);

    // Activations, sized as the CPU refiner's buffers.
    let maxk = |f: &dyn Fn(usize) -> usize, ks: std::ops::RangeInclusive<usize>| ks.map(f).max().unwrap_or(0);
    let cap_feat = maxk(&|k| u[k] * side(k) * side(k), 0..=levels);
    let cap_t = maxk(&|k| u[k].max(u[k + 1]) * side(k + 1) * side(k + 1), 0..=levels - 1);
    let cap_d = maxk(&|k| d[k] * side(k) * side(k), 0..=levels);
    let cap_din = maxk(&|k| d[k - 1] * side(k) * side(k), 1..=levels);
    let rgb = r.out_channels * s * s;
    u32_of(2 * cap_d.max(cap_feat).max(cap_t).max(cap_din), "largest activation")?;
    let act = |b: &mut Builder, name: &str, n: usize| b.buffer(format!("refiner activations: {name}"), n, Fill::Scratch);
    // The UNet temporaries are free while the decoder convs of a level run, so they double as the
    // decoder's upsampled input (t2) and its conv1 output (t1): 64 MiB less at official size.
    let (t1, t2) = (act(&mut b, "t1 / dtmp", cap_t.max(cap_d)), act(&mut b, "t2 / din", cap_t.max(cap_din)));
    let a = Acts {
        feat_a: act(&mut b, "feat_a", cap_feat),
        feat_b: act(&mut b, "feat_b", cap_feat),
        t1,
        t2,
        skips: (0..levels).map(|k| act(&mut b, &format!("skip {k}"), u[k] * side(k) * side(k))).collect(),
        sft: act(&mut b, "SFT scale and shift", 2 * cap_d),
        dout: act(&mut b, "dout", cap_d),
        dtmp: t1,
        din: t2,
        rgb_a: act(&mut b, "rgb_a", rgb),
        rgb_b: act(&mut b, "rgb_b", rgb),
        style: act(&mut b, "style and latent", 2 * sd),
        constant: Slot::Input,
    };
    let cname = format!("{sg}.constant_input.weight");
    b.check_shape(&cname, &[1, d[0], 4, 4])?;
    let constant = b.buffer(cname.clone(), d[0] * 16, Fill::Dequantised(vec![cname]));
    let a = Acts { constant, ..a };
    emit(&mut b, cfg, levels, &a)?;
    Ok(b.prog)
}

/// Emits the dispatches in the CPU refiner's order (see `refiner.rs`).
fn emit(b: &mut Builder, cfg: &ModelConfig, levels: usize, a: &Acts) -> Result<()> {
    let r = &cfg.refiner;
    let (u, d, sd, s) = (&r.unet_channels, &r.decoder_channels, r.style_dim, r.size);
    let (p, sg) = ("upsampler", "upsampler.stylegan_decoder");
    let plain = (Epilogue::Plain, b.dummy);

    // Encoder: the down blocks write the skips (skip k at side(k)).
    b.conv(&format!("{p}.conv_body_first"), r.in_channels, u[levels], 1, true, Slot::Input, s, a.feat_a, 0, true, plain)?;
    for i in 0..levels {
        let lo = levels - 1 - i;
        let x = if i == 0 { a.feat_a } else { a.skips[lo + 1] };
        b.resblock(&format!("{p}.conv_body_down.{i}"), u[lo + 1], u[lo], false, x, side(lo + 1), a.skips[lo], a.t1, a.t2)?;
    }
    b.conv(&format!("{p}.final_conv"), u[0], u[0], 3, true, a.skips[0], 4, a.feat_a, 0, true, plain)?;
    b.linear(&format!("{p}.final_linear"), u[0] * 16, sd, (a.feat_a, 0), (a.style, 0), false, false)?;
    // Style MLP ping-pongs between the two halves of the style buffer; NormStyleCode fused into layer 0.
    for i in 0..r.mlp_layers {
        let (from, to) = ((i % 2) * sd, ((i + 1) % 2) * sd);
        b.linear(&format!("{sg}.style_mlp.{}", 2 * i + 1), sd, sd, (a.style, from), (a.style, to), i == 0, true)?;
    }
    let lat = (a.style, (r.mlp_layers % 2) * sd);

    // Decoder at 4x4.
    b.modconv(&format!("{sg}.style_conv1"), d[0], d[0], Some(0), lat, a.constant, 4, a.dout, plain)?;
    b.modconv(&format!("{sg}.to_rgb1"), d[0], r.out_channels, None, lat, a.dout, 4, a.rgb_a, plain)?;
    for k in 0..levels {
        let (h, h2) = (side(k), side(k + 1));
        let n = u32_of(u[k] * h * h, "skip elements")?;
        b.step(format!("{p}.conv_body_up.{k} input + skip {k}"), Kernel::Add(n), vec![a.feat_a, a.skips[k], a.feat_b]);
        b.resblock(&format!("{p}.conv_body_up.{k}"), u[k], u[k + 1], true, a.feat_b, h, a.feat_a, a.t1, a.t2)?;
        let c = u[k + 1];
        for (j, branch) in ["scale", "shift"].iter().enumerate() {
            let q = format!("{p}.condition_{branch}.{k}");
            b.conv(&format!("{q}.0"), c, c, 3, true, a.feat_a, h2, a.t1, 0, true, plain)?;
            b.conv(&format!("{q}.2"), c, 2 * c, 3, true, a.t1, h2, a.sft, j * 2 * c * h2 * h2, false, plain)?;
        }
        b.bilinear(&format!("{sg} level {} upsample", k + 1), d[k], h, h2, a.dout, a.din)?;
        b.modconv(&format!("{sg}.style_convs.{}", 2 * k), d[k], d[k + 1], Some(2 * k + 1), lat, a.din, h2, a.dtmp, (Epilogue::Sft, a.sft))?;
        b.modconv(&format!("{sg}.style_convs.{}", 2 * k + 1), d[k + 1], d[k + 1], Some(2 * k + 2), lat, a.dtmp, h2, a.dout, plain)?;
        b.bilinear(&format!("{sg} RGB {} upsample", k + 1), r.out_channels, h, h2, a.rgb_a, a.rgb_b)?;
        let last = k + 1 == levels;
        let (y, epi) = if last { (Slot::Output, Epilogue::ResidualSigmoid) } else { (a.rgb_a, Epilogue::Residual) };
        b.modconv(&format!("{sg}.to_rgbs.{k}"), d[k + 1], r.out_channels, None, lat, a.dout, h2, y, (epi, a.rgb_b))?;
    }
    Ok(())
}
