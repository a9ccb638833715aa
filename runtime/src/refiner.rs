//! The neural renderer `upsampler` (spec §6): a StyleUNet turning the 32-channel splat into RGB.
//!
//! Data flow of [`Refiner::run`]: `conv_body_first` -> 7 down ResBlocks (their outputs are the skips) ->
//! `final_conv` -> `final_linear` gives the style code -> style MLP gives the latent `w` -> the StyleGAN2
//! decoder starts at 4x4 (`constant_input`, `style_conv1`, `to_rgb1`). Then per level the UNet up block,
//! its SFT condition maps (`condition_scale/shift`) and the decoder level run back to back; this is the
//! official order of operations regrouped so only one level's condition maps are alive at a time.
//! All buffers are sized and all convolution weights packed in [`Refiner::new`] (`packed.rs`: fp32 panels,
//! borrowed when the file stores them packed; fp16 / int8 for `qgemm`); `run` allocates nothing once the
//! kernels' scratch has grown (`tests/tests/no_alloc_frame.rs`). int8 convs on maps of side
//! [`FINE_MAX_SIDE`] and below run with ~15-bit activations (`ConvKernel::fine_activations`).

use gaga_kernels::act::{leaky_relu, sigmoid};
use gaga_kernels::conv::Scratch;
use gaga_kernels::fused::{add_assign, bilinear_fast};
use gaga_kernels::winograd::Epilogue;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

mod arena;
mod layers;
mod lowmem;
mod maps;
pub mod modconv;
pub(crate) mod noise;
pub mod packed;
pub mod plan;
pub mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fused;
#[cfg(test)]
mod tests_lowmem;
#[cfg(test)]
mod tests_quant;
pub mod winograd_i8_model;

use arena::carve;
use layers::{Condition, Conv, Linear, Observe, ResBlock, SLOPE};
use maps::{MapMut, MapRef};
use modconv::{ModBufs, StyleConv, ToRgb};
use noise::Noise;
pub use noise::NoiseMode;
use packed::ConvKernel;
pub use plan::MapMemory;
use plan::{side, OnTheFly};

/// Largest map side on which int8 convs run with ~15-bit activations ([`ConvKernel::fine_activations`]).
pub const FINE_MAX_SIDE: usize = 16;

/// Whether decoder level `k` (maps of side `side(k + 1)`) runs its int8 convs with fine activations, so
/// stores its maps instead of computing them on the fly.
pub fn fine_level(k: usize) -> bool {
    side(k + 1) <= FINE_MAX_SIDE
}

/// The small per-frame vectors (style code, latent, per-layer modulation, unit factors for the int8 up
/// blocks); the maps live in the arena.
struct Vectors {
    style: Vec<f32>,
    latent: Vec<f32>,
    m: ModBufs,
    ones: Vec<f32>,
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
    /// Every activation map, placed by lifetime (`plan.rs`, `arena.rs`).
    arena: Vec<f32>,
    plan: arena::Plan,
    ids: plan::Ids,
    /// Per level, the maps computed on the fly (their arena buffers are empty).
    fly: Vec<OnTheFly>,
    /// The encoder's full-size steps' savings.
    enc: plan::Encoder,
    v: Vectors,
}

/// `v` resized to `len` floats (calibration's stand-in for a map the plan computes on the fly).
fn spare_of(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.resize(len, 0.0);
    &mut v[..]
}

impl<'w> Refiner<'w> {
    /// Loads every `upsampler.*` tensor for `cfg.refiner` and allocates the working buffers.
    /// int8 levels compute on the fly the maps `GAGA_INT8_MAPS` allows ([`MapMemory::from_env`]; default
    /// [`MapMemory::Half`]).
    pub fn new(w: &'w dyn Weights, cfg: &ModelConfig, noise: NoiseMode) -> Result<Self> {
        Self::with_options(w, cfg, noise, true, MapMemory::from_env()?)
    }

    /// [`Refiner::new`] with int8 levels' maps stored or computed on the fly as `maps` says (every mode
    /// gives the same bits; tests compare them, benches time them).
    pub fn with_map_memory(w: &'w dyn Weights, cfg: &ModelConfig, noise: NoiseMode, maps: MapMemory) -> Result<Self> {
        Self::with_options(w, cfg, noise, true, maps)
    }

    /// [`Refiner::new`] with the arena planned (`shared`) or one region per buffer (tests compare the two).
    #[cfg(test)]
    pub(crate) fn with_arena(w: &'w dyn Weights, cfg: &ModelConfig, noise: NoiseMode, shared: bool) -> Result<Self> {
        Self::with_options(w, cfg, noise, shared, MapMemory::Lean)
    }

    fn with_options(w: &'w dyn Weights, cfg: &ModelConfig, noise: NoiseMode, shared: bool, maps: MapMemory) -> Result<Self> {
        let r = &cfg.refiner;
        plan::validate(r)?;
        let (u, d, sd) = (r.unet_channels.clone(), r.decoder_channels.clone(), r.style_dim);
        let levels = r.levels();
        let p = "upsampler";
        let sg = "upsampler.stylegan_decoder";
        let mut down: Vec<ResBlock> = (0..levels)
            .map(|i| ResBlock::load(w, &format!("{p}.conv_body_down.{i}"), u[levels - i], u[levels - i - 1], false))
            .collect::<Result<_>>()?;
        let mut up: Vec<ResBlock> =
            (0..levels).map(|k| ResBlock::load(w, &format!("{p}.conv_body_up.{k}"), u[k], u[k + 1], true)).collect::<Result<_>>()?;
        let mut cond: Vec<(Condition, Condition)> = (0..levels)
            .map(|k| {
                Ok((
                    Condition::load(w, &format!("{p}.condition_scale.{k}"), u[k + 1])?,
                    Condition::load(w, &format!("{p}.condition_shift.{k}"), u[k + 1])?,
                ))
            })
            .collect::<Result<_>>()?;
        let mlp = (0..r.mlp_layers).map(|i| Linear::load(w, &format!("{sg}.style_mlp.{}", 2 * i + 1), sd, sd)).collect::<Result<_>>()?;
        let mut convs: Vec<StyleConv> = Vec::new();
        for k in 1..=levels {
            convs.push(StyleConv::load(w, &format!("{sg}.style_convs.{}", 2 * k - 2), d[k - 1], d[k], sd)?);
            convs.push(StyleConv::load(w, &format!("{sg}.style_convs.{}", 2 * k - 1), d[k], d[k], sd)?);
        }
        let mut conv1 = StyleConv::load(w, &format!("{sg}.style_conv1"), d[0], d[0], sd)?;
        let mut to_rgb1 = ToRgb::load(w, &format!("{sg}.to_rgb1"), d[0], r.out_channels, sd)?;
        let mut final_conv = Conv::load(w, &format!("{p}.final_conv"), u[0], u[0], 3, true)?;
        let mut to_rgbs: Vec<ToRgb> =
            (1..=levels).map(|k| ToRgb::load(w, &format!("{sg}.to_rgbs.{}", k - 1), d[k], r.out_channels, sd)).collect::<Result<_>>()?;
        // int8 convs on maps of side FINE_MAX_SIDE and below run with ~15-bit activations (before the
        // level plans, which treat them as float: they have no on-the-fly forms).
        for (i, b) in down.iter_mut().enumerate() {
            b.fine_activations(side(levels - i), FINE_MAX_SIDE);
        }
        for (k, b) in up.iter_mut().enumerate() {
            b.fine_activations(side(k), FINE_MAX_SIDE);
        }
        for k in (0..levels).filter(|&k| fine_level(k)) {
            cond[k].0.fine_activations();
            cond[k].1.fine_activations();
            convs[2 * k].mc.kernel.fine_activations();
            convs[2 * k + 1].mc.kernel.fine_activations();
            to_rgbs[k].mc.kernel.fine_activations();
        }
        conv1.mc.kernel.fine_activations();
        to_rgb1.mc.kernel.fine_activations();
        final_conv.kernel.fine_activations();

        let s = r.size;
        // int8 layers compute their inputs on the fly where they can (no f32 buffer for them: 64 MiB for
        // the upsampled StyleConv input at 512x512, 32 MiB each for the rest); the plan is otherwise the
        // same for every precision.
        let fly: Vec<OnTheFly> = (0..levels)
            .map(|k| lowmem::level_plan(k, levels, &up[k], &cond[k], [&convs[2 * k], &convs[2 * k + 1]], &to_rgbs[k], maps))
            .collect();
        let fly = plan::settle_half(fly);
        // The encoder's savings come with f16 maps (an int8 refiner in `MapMemory::Half`), where its
        // layers allow.
        let first = Conv::load(w, &format!("{p}.conv_body_first"), r.in_channels, u[levels], 1, true)?;
        let wanted = if fly.iter().any(|f| f.half) { plan::Encoder::for_mode(maps) } else { plan::Encoder::default() };
        let enc = plan::Encoder {
            first_in_place: wanted.first_in_place && first.spec.c_out <= first.spec.c_in,
            down_bands: wanted.down_bands && lowmem::down_fits(&down[0]) && r.size.is_multiple_of(2),
        };
        let (plan, ids, enc) = plan::place_best(r, enc, &fly, shared);
        plan.check()?;
        let maxc = d.iter().chain(&u).copied().max().unwrap_or(0).max(r.out_channels);
        let m = ModBufs { s: vec![0.0; maxc], f: vec![0.0; maxc] };
        let v = Vectors { style: vec![0.0; sd], latent: vec![0.0; sd], m, ones: vec![1.0; maxc] };
        Ok(Refiner {
            size: s,
            in_ch: r.in_channels,
            out_ch: r.out_channels,
            first,
            down,
            final_conv,
            final_linear: Linear::load(w, &format!("{p}.final_linear"), sd, u[0] * 16)?,
            up,
            cond,
            mlp,
            constant: w.f32_shaped(&format!("{sg}.constant_input.weight"), &[1, d[0], 4, 4])?,
            conv1,
            to_rgb1,
            convs,
            to_rgbs,
            noise: Noise::new(w, cfg, noise)?,
            scratch: Scratch::new(),
            // Zeroed pages are mapped lazily: resident memory grows to the arena's touched extent.
            arena: vec![0.0; plan.len()],
            plan,
            ids,
            fly,
            enc,
            v,
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
        self.run_inner(Some(splat), out, None)
    }

    /// The arena's input region `[in_channels, size, size]`: a caller that splats straight into it and
    /// then calls [`Refiner::run_input`] needs no splat image of its own (32 MiB at official size; the
    /// region is reused by later maps of the run). Its contents are unspecified after a run.
    pub fn input_mut(&mut self) -> &mut [f32] {
        let r = self.input_region();
        &mut self.arena[r.offset..r.offset + r.len]
    }

    /// The splat input's region: with [`plan::Encoder::first_in_place`] its two glued buffers as one
    /// (`Plan::check` verified at load that the tail follows the head).
    fn input_region(&self) -> arena::Region {
        let head = self.plan.region(self.ids.input);
        let tail = self.ids.input_tail.map_or(0, |t| self.plan.region(t).len);
        arena::Region { offset: head.offset, len: head.len + tail }
    }

    /// [`Refiner::run`] on the input written into [`Refiner::input_mut`] since the last run.
    pub fn run_input(&mut self, out: &mut [f32]) -> Result<()> {
        self.run_inner(None, out, None)
    }

    /// [`Refiner::run`] that also hands every convolution's input activation to `observe`, with the
    /// conv's weight name (`upsampler.final_conv.weight`, `...style_convs.3.modulated_conv.weight`). For a
    /// modulated conv the activation is the modulated (channel-scaled, for a level's first conv also
    /// upsampled) input the kernel multiplies, i.e. what an int8 activation scale must cover. Used by
    /// calibration; the callback may allocate.
    pub fn run_observed(&mut self, splat: &[f32], out: &mut [f32], observe: &mut dyn FnMut(&str, &[f32])) -> Result<()> {
        self.run_inner(Some(splat), out, Some(observe))
    }

    /// Every convolution's weight name and kernel, in run order.
    fn conv_kernels(&self) -> Vec<(&str, &ConvKernel<'w>)> {
        let mut v: Vec<(&str, &ConvKernel<'w>)> = vec![(&self.first.name, &self.first.kernel)];
        let blocks = self.down.iter().chain(&self.up).flat_map(|b| b.convs());
        let head = std::iter::once(&self.final_conv);
        let conds = self.cond.iter().flat_map(|(a, b)| a.convs().into_iter().chain(b.convs()));
        v.extend(blocks.chain(head).chain(conds).map(|c| (c.name.as_str(), &c.kernel)));
        let mods = [&self.conv1.mc, &self.to_rgb1.mc].into_iter();
        let mods = mods.chain(self.convs.iter().map(|c| &c.mc)).chain(self.to_rgbs.iter().map(|t| &t.mc));
        v.extend(mods.map(|m| (m.name.as_str(), &m.kernel)));
        v
    }

    /// Storage precision of every convolution, by weight name, in run order (for reports and tests).
    pub fn conv_precisions(&self) -> Vec<(String, packed::Precision)> {
        self.conv_kernels().into_iter().map(|(n, k)| (n.to_string(), k.precision())).collect()
    }

    /// How many convolutions borrow their fp32 panels straight from the model file (zero-copy).
    pub fn borrowed_convs(&self) -> usize {
        self.conv_kernels().into_iter().filter(|(_, k)| k.is_borrowed()).count()
    }

    /// Bytes of the activation arena (planned at load; see `plan.rs`).
    pub fn arena_bytes(&self) -> usize {
        4 * self.arena.len()
    }

    /// Bytes the kernels' scratch has grown to (the quantised / bordered input copies and GEMM tiles).
    pub fn scratch_bytes(&self) -> usize {
        4 * self.scratch.capacity()
    }

    /// The run on `splat`, or (None) on the arena's input region, handing activations to `observe`.
    fn run_inner(&mut self, splat: Option<&[f32]>, out: &mut [f32], observe: Option<&mut Observe>) -> Result<()> {
        let observing = observe.is_some();
        let mut ignore = |_: &str, _: &[f32]| {};
        let obs: &mut Observe = match observe {
            Some(o) => o,
            None => &mut ignore,
        };
        let s = self.size;
        let n_in = splat.map_or(self.in_ch * s * s, <[f32]>::len);
        for (what, found, want) in [("splat input", n_in, self.in_ch * s * s), ("RGB output", out.len(), self.out_ch * s * s)] {
            if found != want {
                return Err(Error::Other(format!("refiner {what}: expected {want} floats ([C, {s}, {s}]), found {found}")));
            }
        }
        self.noise.next_frame();
        let levels = self.down.len();
        let (u, d, oc) = (&self.u, &self.d, self.out_ch);
        let input_region = self.input_region();
        let (ids, a, sc) = (&self.ids, &mut self.arena[..], &mut self.scratch);
        let r = |id| self.plan.region(id);
        let Vectors { style, latent, m, ones } = &mut self.v;

        // Encoder: the down blocks write straight into the skip buffers (skips[k] at side(k)).
        if self.enc.first_in_place {
            let [input, band] = carve(a, [input_region, r(ids.enc_band)])?;
            lowmem::first_in_place(&self.first, sc, splat, input, s, band)?;
        } else {
            let [input, first] = carve(a, [r(ids.input), r(ids.first)])?;
            self.first.run(sc, splat.unwrap_or(&*input), s, s, first, obs)?;
        }
        let [first] = carve(a, [r(ids.first)])?;
        leaky_relu(&mut first[..u[levels] * s * s], SLOPE);
        for (i, (block, t)) in self.down.iter().zip(&ids.down).enumerate() {
            let lo = levels - 1 - i;
            let input = if i == 0 { ids.first } else { ids.skips[lo + 1] };
            if i == 0 && self.enc.down_bands {
                let [x, band, t2, skip] = carve(a, [r(input), r(ids.enc_band), r(t.t2), r(ids.skips[lo])])?;
                lowmem::down_block_banded(block, sc, x, side(lo + 1), band, t2, skip)?;
                continue;
            }
            let [x, t1, t2, skip] = carve(a, [r(input), r(t.t1), r(t.t2), r(ids.skips[lo])])?;
            block.run(sc, x, side(lo + 1), t1, t2, skip, obs, observing)?;
        }
        let [skip0, head] = carve(a, [r(ids.skips[0]), r(ids.head)])?;
        self.final_conv.run(sc, skip0, 4, 4, head, obs)?;
        let n4 = u[0] * 16;
        leaky_relu(&mut head[..n4], SLOPE);
        let sd = style.len();
        self.final_linear.run(&head[..n4], style);

        // Style MLP: NormStyleCode, then Linear + LeakyReLU(0.2) layers.
        let norm = 1.0 / (style.iter().map(|v| v * v).sum::<f32>() / sd as f32 + 1e-8).sqrt();
        style.iter_mut().for_each(|v| *v *= norm);
        for layer in &self.mlp {
            layer.run(style, latent);
            leaky_relu(latent, SLOPE);
            style.copy_from_slice(latent);
        }
        let lat: &[f32] = style;

        // Decoder at 4x4.
        let [din, dec] = carve(a, [r(ids.din0), r(ids.dec0)])?;
        self.conv1.run(sc, lat, &self.constant, 4, false, self.noise.get(0), None, m, din, dec, obs)?;
        let [dec, din, rgb] = carve(a, [r(ids.dec0), r(ids.din_rgb0), r(ids.rgb0)])?;
        self.to_rgb1.run(sc, lat, dec, 4, None, m, din, rgb, obs)?;

        if observing && (self.fly.iter().any(|f| f.half) || self.enc != plan::Encoder::default()) {
            return Err(Error::Other("refiner: observing every conv input needs f32 maps (GAGA_INT8_MAPS=lean), not f16 ones".into()));
        }
        let (mut feat, mut dec, mut rgb) = (ids.head, ids.dec0, ids.rgb0);
        // Whether `dec` (the previous level's decoder output) is stored in f16.
        let mut dec_half = false;
        // Calibration observes every conv input, so the maps computed on the fly are then materialised in
        // this temporary (`run_observed` may allocate).
        let (mut spare, mut spare_t1) = (Vec::new(), Vec::new());
        for (k, (l, fly)) in ids.levels.iter().zip(&self.fly).enumerate() {
            let (h, h2) = (side(k), side(k + 1));
            let n = d[k + 1] * h2 * h2;
            // UNet up block k at side(k + 1).
            let [x, skip] = carve(a, [r(feat), r(ids.skips[k])])?;
            add_assign(&mut x[..u[k] * h * h], &skip[..u[k] * h * h]);
            let [x, t1, t2, f, band] = carve(a, [r(feat), r(l.t1), r(l.t2), r(l.feat), r(l.block_band)])?;
            let nf = u[k + 1] * h2 * h2;
            if fly.up_block && !observing {
                let band = fly.block_bands.then_some(band);
                lowmem::up_block(&self.up[k], sc, x, h, ones, t1, band, MapMut::of(f, nf, fly.half_feat, "UNet feature")?)?;
            } else {
                let t2 = if fly.up_block { spare_of(&mut spare, u[k] * h2 * h2) } else { t2 };
                // A banded block's `t1` holds only conv1's output; the plain block needs the skip's too.
                let t1 = if fly.block_bands { spare_of(&mut spare_t1, (u[k] * h * h).max(u[k + 1] * h2 * h2)) } else { t1 };
                self.up[k].run(sc, x, h, t1, t2, f, obs, observing)?;
            }

            // Decoder level k + 1. conv1 upsamples while it modulates; its SFT condition is applied after
            // it in place (the same two roundings as `act * scale + shift` in one pass), so the condition's
            // maps are computed only once the 2x-wide upsampled input is dead. An int8 conv without a
            // `din_up` buffer quantises the upsampled input on the fly (empty `din`).
            if fly.up_input && fly.up_bands && !observing {
                let [prev, band, e] = carve(a, [r(dec), r(l.up_band), r(l.e)])?;
                let (prev, e) =
                    (MapRef::of(prev, d[k] * h * h, dec_half, "decoder input")?, MapMut::of(e, n, fly.half, "StyleConv output")?);
                self.convs[2 * k].run_banded(sc, lat, prev, h2, true, self.noise.get(2 * k + 1), m, band, e)?;
            } else {
                let (prev, din, e) = match l.din_up {
                    Some(id) => {
                        let [prev, din, e] = carve(a, [r(dec), r(id), r(l.e)])?;
                        (prev, din, e)
                    }
                    None => {
                        let [prev, e] = carve(a, [r(dec), r(l.e)])?;
                        (prev, if observing { spare_of(&mut spare, d[k] * h2 * h2) } else { &mut [][..] }, e)
                    }
                };
                self.convs[2 * k].run(sc, lat, &prev[..d[k] * h * h], h2, true, self.noise.get(2 * k + 1), None, m, din, e, obs)?;
            }
            let [f, ct, cx, e] = carve(a, [r(l.feat), r(l.cond_t), r(l.cond_x), r(l.e)])?;
            // SFT: `e * scale + shift`, each branch's last conv combining straight into `e`.
            let (cs, csh) = (&self.cond[k].0, &self.cond[k].1);
            if fly.cond_bands && !observing {
                let nt = u[k + 1] * h2 * h2;
                for (c, epi) in [(cs, Epilogue::MulInto), (csh, Epilogue::AddInto)] {
                    let f = MapRef::of(f, nf, fly.half_feat, "UNet feature")?;
                    let (t, e) = (MapMut::of(ct, nt, fly.half, "SFT hidden map")?, MapMut::of(e, n, fly.half, "StyleConv output")?);
                    lowmem::cond_banded(c, sc, f, h2, t, cx, e, epi)?;
                }
            } else {
                let cx = if fly.cond_bands { spare_of(&mut spare, n) } else { cx };
                cs.apply(sc, f, h2, ct, cx, &mut e[..n], Epilogue::MulInto, obs)?;
                csh.apply(sc, f, h2, ct, cx, &mut e[..n], Epilogue::AddInto, obs)?;
            }
            if fly.mod_input && fly.mod_bands && !observing {
                let [e, band, dk] = carve(a, [r(l.e), r(l.mod_band), r(l.dec)])?;
                let (e, dk) = (MapRef::of(e, n, fly.half, "StyleConv output")?, MapMut::of(dk, n, fly.half, "decoder output")?);
                self.convs[2 * k + 1].run_banded(sc, lat, e, h2, false, self.noise.get(2 * k + 2), m, band, dk)?;
            } else {
                let [e, din, dk] = carve(a, [r(l.e), r(l.din2), r(l.dec)])?;
                let din = if fly.mod_input && observing { spare_of(&mut spare, n) } else { din };
                self.convs[2 * k + 1].run(sc, lat, e, h2, false, self.noise.get(2 * k + 2), None, m, din, dk, obs)?;
            }

            let nrgb = oc * h2 * h2;
            let [prev, dk, up, din, rk] = carve(a, [r(rgb), r(l.dec), r(l.rgb_up), r(l.din3), r(l.rgb)])?;
            bilinear_fast(&prev[..oc * h * h], oc, h, h, h2, h2, &mut up[..nrgb]);
            if fly.rgb_bands && !observing {
                let [dk, up, rk, band] = carve(a, [r(l.dec), r(l.rgb_up), r(l.rgb), r(l.rgb_band)])?;
                let dk = MapRef::of(dk, n, fly.half, "decoder output")?;
                self.to_rgbs[k].run_banded(sc, lat, dk, h2, Some(&up[..nrgb]), m, band, rk)?;
            } else if fly.rgb_in_place {
                self.to_rgbs[k].run_in_place(sc, lat, dk, h2, Some(&up[..nrgb]), m, rk, obs)?;
            } else {
                // A banded ToRGB (`rgb_bands`) has no `din3`; observed, it modulates into a spare.
                let din = if fly.rgb_bands { spare_of(&mut spare, n) } else { din };
                self.to_rgbs[k].run(sc, lat, dk, h2, Some(&up[..nrgb]), m, din, rk, obs)?;
            }
            (feat, dec, rgb, dec_half) = (l.feat, l.dec, l.rgb, fly.half);
        }
        let [rgb] = carve(a, [r(rgb)])?;
        out.copy_from_slice(&rgb[..out.len()]);
        sigmoid(out);
        Ok(())
    }
}
