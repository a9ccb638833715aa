//! The neural renderer `upsampler` (spec §6): a StyleUNet turning the 32-channel splat into RGB.
//!
//! Data flow of [`Refiner::run`]: `conv_body_first` -> 7 down ResBlocks (their outputs are the skips) ->
//! `final_conv` -> `final_linear` gives the style code -> style MLP gives the latent `w` -> the StyleGAN2
//! decoder starts at 4x4 (`constant_input`, `style_conv1`, `to_rgb1`). Then per level the UNet up block,
//! its SFT condition maps (`condition_scale/shift`) and the decoder level run back to back; this is the
//! official order of operations regrouped so only one level's condition maps are alive at a time.
//! All buffers are sized and all convolution weights packed in [`Refiner::new`] (`packed.rs`: fp32 panels,
//! borrowed when the file stores them packed; fp16 / int8 for `qgemm`); `run` allocates nothing once the
//! kernels' scratch has grown (`tests/tests/no_alloc_frame.rs`).

use gaga_kernels::act::{leaky_relu, sigmoid};
use gaga_kernels::conv::Scratch;
use gaga_kernels::fused::{add_assign, bilinear_fast};
use gaga_kernels::linear::linear;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

mod layers;
pub mod modconv;
pub(crate) mod noise;
pub mod packed;
pub mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_quant;

use layers::{Condition, Conv, Observe, ResBlock, SLOPE};
use modconv::{ModBufs, StyleConv, ToRgb};
use noise::Noise;
pub use noise::NoiseMode;

/// A linear layer's weight and bias.
type Linear<'w> = (std::borrow::Cow<'w, [f32]>, std::borrow::Cow<'w, [f32]>);

/// Working buffers, sized once for the largest map each role ever holds.
struct Buffers {
    feat_a: Vec<f32>,
    feat_b: Vec<f32>,
    t1: Vec<f32>,
    t2: Vec<f32>,
    skips: Vec<Vec<f32>>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    dout: Vec<f32>,
    dtmp: Vec<f32>,
    din: Vec<f32>,
    rgb_a: Vec<f32>,
    rgb_b: Vec<f32>,
    style: Vec<f32>,
    latent: Vec<f32>,
    m: ModBufs,
}

/// The StyleUNet with its weights (borrowed from the model when stored as f32) and buffers.
pub struct Refiner<'w> {
    size: usize,
    in_ch: usize,
    out_ch: usize,
    u: Vec<usize>,
    d: Vec<usize>,
    first: Conv<'w>,
    down: Vec<ResBlock<'w>>,
    final_conv: Conv<'w>,
    final_linear: Linear<'w>,
    up: Vec<ResBlock<'w>>,
    cond: Vec<(Condition<'w>, Condition<'w>)>,
    mlp: Vec<Linear<'w>>,
    constant: std::borrow::Cow<'w, [f32]>,
    conv1: StyleConv<'w>,
    to_rgb1: ToRgb<'w>,
    convs: Vec<StyleConv<'w>>,
    to_rgbs: Vec<ToRgb<'w>>,
    noise: Noise<'w>,
    scratch: Scratch,
    b: Buffers,
}

/// Side of level `k` (4, 8, ...).
fn side(k: usize) -> usize {
    4 << k
}

impl<'w> Refiner<'w> {
    /// Loads every `upsampler.*` tensor for `cfg.refiner` and allocates the working buffers.
    pub fn new(w: &'w dyn Weights, cfg: &ModelConfig, noise: NoiseMode) -> Result<Self> {
        let r = &cfg.refiner;
        let (u, d, sd) = (r.unet_channels.clone(), r.decoder_channels.clone(), r.style_dim);
        let levels = r.levels();
        if levels == 0 || d.len() != u.len() || side(levels) != r.size {
            return Err(Error::Config(format!(
                "refiner: size {} needs {} UNet and decoder channel entries (4x4 .. size), found {} and {}",
                r.size,
                (r.size.max(4) / 4).trailing_zeros() + 1,
                u.len(),
                d.len()
            )));
        }
        if let Some(k) = (1..=levels).find(|&k| d[k] != 2 * u[k]) {
            return Err(Error::Config(format!(
                "refiner level {k}: SFT needs decoder channels = 2 x UNet channels, found {} and {}",
                d[k], u[k]
            )));
        }
        let p = "upsampler";
        let sg = "upsampler.stylegan_decoder";
        let down = (0..levels)
            .map(|i| ResBlock::load(w, &format!("{p}.conv_body_down.{i}"), u[levels - i], u[levels - i - 1], false))
            .collect::<Result<_>>()?;
        let up = (0..levels).map(|k| ResBlock::load(w, &format!("{p}.conv_body_up.{k}"), u[k], u[k + 1], true)).collect::<Result<_>>()?;
        let cond = (0..levels)
            .map(|k| {
                Ok((
                    Condition::load(w, &format!("{p}.condition_scale.{k}"), u[k + 1])?,
                    Condition::load(w, &format!("{p}.condition_shift.{k}"), u[k + 1])?,
                ))
            })
            .collect::<Result<_>>()?;
        let mlp = (0..r.mlp_layers)
            .map(|i| {
                let n = 2 * i + 1;
                Ok((
                    w.f32_shaped(&format!("{sg}.style_mlp.{n}.weight"), &[sd, sd])?,
                    w.f32_shaped(&format!("{sg}.style_mlp.{n}.bias"), &[sd])?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut convs = Vec::new();
        for k in 1..=levels {
            convs.push(StyleConv::load(w, &format!("{sg}.style_convs.{}", 2 * k - 2), d[k - 1], d[k], sd)?);
            convs.push(StyleConv::load(w, &format!("{sg}.style_convs.{}", 2 * k - 1), d[k], d[k], sd)?);
        }
        let to_rgbs =
            (1..=levels).map(|k| ToRgb::load(w, &format!("{sg}.to_rgbs.{}", k - 1), d[k], r.out_channels, sd)).collect::<Result<_>>()?;

        let s = r.size;
        let maxk = |f: &dyn Fn(usize) -> usize, ks: std::ops::RangeInclusive<usize>| ks.map(f).max().unwrap_or(0);
        let cap_feat = maxk(&|k| u[k] * side(k) * side(k), 0..=levels);
        let cap_t = maxk(&|k| u[k].max(u[k + 1]) * side(k + 1) * side(k + 1), 0..=levels - 1);
        let cap_d = maxk(&|k| d[k] * side(k) * side(k), 0..=levels);
        let cap_din = maxk(&|k| d[k.saturating_sub(1)].max(d[k]) * side(k) * side(k), 0..=levels);
        let maxc = d.iter().chain(&u).copied().max().unwrap_or(0).max(r.out_channels);
        let b = Buffers {
            feat_a: vec![0.0; cap_feat.max(r.in_channels * s * s)],
            feat_b: vec![0.0; cap_feat],
            t1: vec![0.0; cap_t],
            t2: vec![0.0; cap_t],
            skips: (0..levels).map(|k| vec![0.0; u[k] * side(k) * side(k)]).collect(),
            scale: vec![0.0; cap_d],
            shift: vec![0.0; cap_d],
            // dout and dtmp swap roles, so they share one size.
            dout: vec![0.0; cap_d.max(cap_din).max(r.out_channels * s * s)],
            dtmp: vec![0.0; cap_d.max(cap_din).max(r.out_channels * s * s)],
            din: vec![0.0; cap_din],
            rgb_a: vec![0.0; r.out_channels * s * s],
            rgb_b: vec![0.0; r.out_channels * s * s],
            style: vec![0.0; sd],
            latent: vec![0.0; sd],
            m: ModBufs { s: vec![0.0; maxc], f: vec![0.0; maxc] },
        };
        Ok(Refiner {
            size: s,
            in_ch: r.in_channels,
            out_ch: r.out_channels,
            first: Conv::load(w, &format!("{p}.conv_body_first"), r.in_channels, u[levels], 1, true)?,
            down,
            final_conv: Conv::load(w, &format!("{p}.final_conv"), u[0], u[0], 3, true)?,
            final_linear: (
                w.f32_shaped(&format!("{p}.final_linear.weight"), &[sd, u[0] * 16])?,
                w.f32_shaped(&format!("{p}.final_linear.bias"), &[sd])?,
            ),
            up,
            cond,
            mlp,
            constant: w.f32_shaped(&format!("{sg}.constant_input.weight"), &[1, d[0], 4, 4])?,
            conv1: StyleConv::load(w, &format!("{sg}.style_conv1"), d[0], d[0], sd)?,
            to_rgb1: ToRgb::load(w, &format!("{sg}.to_rgb1"), d[0], r.out_channels, sd)?,
            convs,
            to_rgbs,
            noise: Noise::new(w, cfg, noise)?,
            scratch: Scratch::new(),
            b,
            u,
            d,
        })
    }

    /// Side of the input and output maps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Refines `splat` `[in_channels, size, size]` into `out` `[out_channels, size, size]` (after the
    /// final sigmoid, so in (0, 1)). Allocates nothing once the kernels' scratch has grown on the first
    /// call.
    pub fn run(&mut self, splat: &[f32], out: &mut [f32]) -> Result<()> {
        self.run_inner(splat, out, &mut |_, _| {})
    }

    /// [`Refiner::run`] that also hands every convolution's input activation to `observe`, with the
    /// conv's weight name (`upsampler.final_conv.weight`, `...style_convs.3.modulated_conv.weight`). For a
    /// modulated conv the activation is the modulated (channel-scaled, for a level's first conv also
    /// upsampled) input the kernel multiplies, i.e. what an int8 activation scale must cover. Used by
    /// calibration; the callback may allocate.
    pub fn run_observed(&mut self, splat: &[f32], out: &mut [f32], observe: &mut dyn FnMut(&str, &[f32])) -> Result<()> {
        self.run_inner(splat, out, observe)
    }

    /// Storage precision of every convolution, by weight name, in run order (for reports and tests).
    pub fn conv_precisions(&self) -> Vec<(String, packed::Precision)> {
        let mut v: Vec<(String, packed::Precision)> = Vec::new();
        let mut conv = |c: &Conv| v.push((c.name.clone(), c.kernel.precision()));
        conv(&self.first);
        for b in self.down.iter().chain(&self.up) {
            b.convs().into_iter().for_each(&mut conv);
        }
        conv(&self.final_conv);
        for (a, b) in &self.cond {
            a.convs().into_iter().chain(b.convs()).for_each(&mut conv);
        }
        let mods = std::iter::once(&self.conv1.mc).chain(std::iter::once(&self.to_rgb1.mc));
        for mc in mods.chain(self.convs.iter().map(|c| &c.mc)).chain(self.to_rgbs.iter().map(|t| &t.mc)) {
            v.push((mc.name.clone(), mc.kernel.precision()));
        }
        v
    }

    /// How many convolutions borrow their fp32 panels straight from the model file (zero-copy).
    pub fn borrowed_convs(&self) -> usize {
        let mut n = [&self.first, &self.final_conv].iter().filter(|c| c.kernel.is_borrowed()).count();
        for b in self.down.iter().chain(&self.up) {
            n += b.convs().iter().filter(|c| c.kernel.is_borrowed()).count();
        }
        for (a, b) in &self.cond {
            n += a.convs().iter().chain(b.convs().iter()).filter(|c| c.kernel.is_borrowed()).count();
        }
        let mods = [&self.conv1.mc, &self.to_rgb1.mc]
            .into_iter()
            .chain(self.convs.iter().map(|c| &c.mc))
            .chain(self.to_rgbs.iter().map(|t| &t.mc));
        n + mods.filter(|m| m.kernel.is_borrowed()).count()
    }

    fn run_inner(&mut self, splat: &[f32], out: &mut [f32], obs: &mut Observe) -> Result<()> {
        let s = self.size;
        for (what, found, want) in [("splat input", splat.len(), self.in_ch * s * s), ("RGB output", out.len(), self.out_ch * s * s)] {
            if found != want {
                return Err(Error::Other(format!("refiner {what}: expected {want} floats ([C, {s}, {s}]), found {found}")));
            }
        }
        self.noise.next_frame();
        let levels = self.down.len();
        let (u, d) = (&self.u, &self.d);
        let Buffers { feat_a, feat_b, t1, t2, skips, scale, shift, dout, dtmp, din, rgb_a, rgb_b, style, latent, m } = &mut self.b;
        let sc = &mut self.scratch;

        // Encoder: the down blocks write straight into the skip buffers (skips[k] at side(k)).
        self.first.run(sc, splat, s, s, feat_a, obs)?;
        leaky_relu(&mut feat_a[..u[levels] * s * s], SLOPE);
        for (i, block) in self.down.iter().enumerate() {
            let lo = levels - 1 - i;
            let (lower, upper) = skips.split_at_mut(lo + 1);
            let input: &[f32] = if i == 0 { feat_a } else { &upper[0] };
            block.run(sc, input, side(lo + 1), t1, t2, &mut lower[lo], obs)?;
        }
        self.final_conv.run(sc, &skips[0], 4, 4, feat_a, obs)?;
        let n4 = u[0] * 16;
        leaky_relu(&mut feat_a[..n4], SLOPE);
        let sd = style.len();
        linear(&feat_a[..n4], 1, n4, &self.final_linear.0, Some(&self.final_linear.1), sd, style);

        // Style MLP: NormStyleCode, then Linear + LeakyReLU(0.2) layers.
        let norm = 1.0 / (style.iter().map(|v| v * v).sum::<f32>() / sd as f32 + 1e-8).sqrt();
        style.iter_mut().for_each(|v| *v *= norm);
        for (wt, bias) in &self.mlp {
            linear(style, 1, sd, wt, Some(bias), sd, latent);
            leaky_relu(latent, SLOPE);
            style.copy_from_slice(latent);
        }
        let lat: &[f32] = style;

        // Decoder at 4x4.
        self.conv1.run(sc, lat, &self.constant, 4, false, self.noise.get(0), None, m, din, dout, obs)?;
        self.to_rgb1.run(sc, lat, dout, 4, None, m, din, rgb_a, obs)?;

        for k in 0..levels {
            let (h, h2) = (side(k), side(k + 1));
            // UNet up block k and its condition maps at side(k + 1).
            add_assign(&mut feat_a[..u[k] * h * h], &skips[k]);
            self.up[k].run(sc, feat_a, h, t1, t2, feat_b, obs)?;
            std::mem::swap(feat_a, feat_b);
            self.cond[k].0.run(sc, feat_a, h2, t1, scale, obs)?;
            self.cond[k].1.run(sc, feat_a, h2, t1, shift, obs)?;

            // Decoder level k + 1: upsample, conv1, SFT, conv2, to_rgb with the upsampled skip.
            let n = d[k + 1] * h2 * h2;
            // Upsample + modulation in one pass; the SFT condition fused into conv1's epilogue.
            let sft = Some((&scale[..n], &shift[..n]));
            self.convs[2 * k].run(sc, lat, &dout[..d[k] * h * h], h2, true, self.noise.get(2 * k + 1), sft, m, din, dtmp, obs)?;
            std::mem::swap(dout, dtmp);
            self.convs[2 * k + 1].run(sc, lat, dout, h2, false, self.noise.get(2 * k + 2), None, m, din, dtmp, obs)?;
            std::mem::swap(dout, dtmp);
            let nrgb = self.out_ch * h2 * h2;
            bilinear_fast(&rgb_a[..self.out_ch * h * h], self.out_ch, h, h, h2, h2, &mut rgb_b[..nrgb]);
            self.to_rgbs[k].run(sc, lat, dout, h2, Some(&rgb_b[..nrgb]), m, din, rgb_a, obs)?;
        }
        out.copy_from_slice(&rgb_a[..out.len()]);
        sigmoid(out);
        Ok(())
    }
}
