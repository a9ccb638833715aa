//! StyleGAN2's modulated convolution, computed **on activations**: instead of building the per-frame
//! weight `W' = W * s` (and demodulating it), the input channels are scaled by `s`, the stored weight is
//! used as is, and each output channel is multiplied by `rsqrt(sum_{in,k} (W s)^2 + 1e-8)`. That factor
//! comes from per-`(out, in)` sums of squared weights precomputed at load, so the weight tensor is never
//! rewritten per frame (and can stay in fp16 or int8 later).

use std::borrow::Cow;

use half::f16;

use gaga_kernels::conv::{conv2d_with, Conv2d, Scratch};
use gaga_kernels::fused::{bilinear_scaled, scale_channels, scale_channels_in_place, style_epilogue};
use gaga_kernels::qgemm::PackedFormat;
use gaga_kernels::winograd::Epilogue;

use super::layers::{Linear, Observe};
use super::maps::{with_map, MapMut, MapRef};
use super::packed::{self, ConvKernel};
use crate::error::{Error, Result};
use crate::format::{DType, Layout};
use crate::weights::{Stored, Weights};

mod to_rgb;
pub use to_rgb::ToRgb;

/// `q[o * c_in + i] = sum_k weight[o, i, k]^2` for a `[c_out, c_in, k, k]` weight, summed in f64.
pub fn weight_square_sums(weight: &[f32], c_out: usize, c_in: usize, k: usize) -> Vec<f32> {
    let kk = k * k;
    (0..c_out * c_in).map(|oi| weight[oi * kk..(oi + 1) * kk].iter().map(|&v| (v as f64).powi(2)).sum::<f64>() as f32).collect()
}

/// [`weight_square_sums`] of the stored weight `name` `[c_out, c_in, k, k]` without a row-major f32 copy:
/// int8 and fp16 values are dequantised one at a time exactly as `Weights::f32` would (`q * scale[o]`,
/// `f16 -> f32`), so the sums are bit-identical to summing the dequantised tensor; other storage reads
/// `Weights::f32` (borrowed for row-major f32).
pub fn stored_square_sums(w: &dyn Weights, st: &Stored, name: &str, c_out: usize, c_in: usize, k: usize) -> Result<Vec<f32>> {
    let (kk, n) = (k * k, c_out * c_in * k * k);
    let sums = |value: &dyn Fn(usize) -> f32| -> Vec<f32> {
        (0..c_out * c_in).map(|oi| (oi * kk..(oi + 1) * kk).map(|j| (value(j) as f64).powi(2)).sum::<f64>() as f32).collect()
    };
    match (st.layout, st.dtype) {
        (Layout::RowMajor, DType::I8) if st.bytes.len() == n => {
            let scales = st.scales.as_deref().filter(|s| s.len() == c_out).ok_or_else(|| {
                Error::Other(format!(
                    "tensor `{name}`: int8 needs {c_out} per-output-channel scales, found {:?}",
                    st.scales.as_ref().map(|s| s.len())
                ))
            })?;
            let q: &[i8] = bytemuck::cast_slice(&st.bytes);
            Ok(sums(&|j| q[j] as f32 * scales[j / (c_in * kk)]))
        }
        (Layout::RowMajor, DType::F16) if st.bytes.len() == 2 * n => {
            let b = &st.bytes;
            Ok(sums(&|j| half::f16::from_le_bytes([b[2 * j], b[2 * j + 1]]).to_f32()))
        }
        _ => {
            let v = w.f32(name)?;
            if v.len() != n {
                return Err(Error::Other(format!("tensor `{name}`: {} values, [{c_out}, {c_in}, {k}, {k}] needs {n}", v.len())));
            }
            Ok(weight_square_sums(&v, c_out, c_in, k))
        }
    }
}

/// Demodulation factors: `out[o] = gain * rsqrt(sum_i s_i^2 q[o, i] + 1e-8)`, or `gain` without `q`.
pub fn demodulation(q: Option<&[f32]>, s: &[f32], gain: f32, out: &mut [f32]) {
    let c_in = s.len();
    let Some(q) = q else {
        out.fill(gain);
        return;
    };
    by_rows(out, c_in, |o, d| {
        let sum: f32 = q[o * c_in..(o + 1) * c_in].iter().zip(s).map(|(q, s)| q * s * s).sum();
        *d = gain / (sum + 1e-8).sqrt();
    });
}

/// `row(o, &mut out[o])` for every output; split over the pool when the rows hold many terms (each
/// row is one task's, so the bits do not depend on the thread count).
fn by_rows(out: &mut [f32], row_len: usize, row: impl Fn(usize, &mut f32) + Sync) {
    const PARALLEL_TERMS: usize = 1 << 16;
    if out.len() * row_len >= PARALLEL_TERMS {
        use rayon::prelude::*;
        out.par_iter_mut().enumerate().with_min_len(16).for_each(|(o, d)| row(o, d));
    } else {
        out.iter_mut().enumerate().for_each(|(o, d)| row(o, d));
    }
}

/// Modulated conv on activations. `x` `[c_in, h, w]` is scaled into `scaled` by `s`, convolved with
/// `weight` `[c_out, c_in, k, k]` (no bias, "same" padding) into `out`, and channel `o` of `out` is
/// multiplied by `factors[o]` (from [`demodulation`]).
#[allow(clippy::too_many_arguments)]
pub fn modulated_conv(
    scratch: &mut Scratch,
    x: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    k: usize,
    s: &[f32],
    factors: &[f32],
    scaled: &mut [f32],
    out: &mut [f32],
) {
    let (c_in, hw) = (s.len(), h * w);
    scale_channels(x, s, hw, scaled);
    conv_scaled(scratch, &scaled[..c_in * hw], h, w, weight, k, c_in, factors.len(), out);
    scale_channels_in_place(out, factors, hw);
}

/// The convolution step alone: `scaled` `[c_in, h, w]` (already modulated) -> raw `out` `[c_out, h, w]`.
#[allow(clippy::too_many_arguments)]
fn conv_scaled(
    scratch: &mut Scratch,
    scaled: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    k: usize,
    c_in: usize,
    c_out: usize,
    out: &mut [f32],
) {
    let spec = Conv2d { c_in, c_out, kernel: k, stride: 1, pad: k / 2 };
    conv2d_with(scratch, &spec, &scaled[..c_in * h * w], h, w, weight, None, &mut out[..c_out * h * w]);
}

/// `c_out x c_in` square sums ([`stored_square_sums`]) as a layer keeps them: f32 for fp32 and fp16
/// layers (the PyTorch-checked path), f16 for int8 ones, scaled by a power of two so the largest lies in
/// [2^14, 2^15) (exact, and far from the f16 range's ends). Half the memory (4 MiB at official size) for
/// a rounding of 2^-11 relative, against the weights' own int8 rounding of about 2^-8.
enum SquareSums {
    F32(Vec<f32>),
    F16 { q: Vec<f16>, unscale: f32 },
}

impl SquareSums {
    /// `q` in f16 with its power-of-two scale (f32 when it holds nothing finite and non-zero to scale).
    fn narrowed(q: Vec<f32>) -> SquareSums {
        match gaga_kernels::elem::narrow_scaled(&q) {
            Some((q, unscale)) => SquareSums::F16 { q, unscale },
            None => SquareSums::F32(q),
        }
    }

    fn demodulate(&self, s: &[f32], gain: f32, out: &mut [f32]) {
        match self {
            SquareSums::F32(q) => demodulation(Some(q), s, gain, out),
            SquareSums::F16 { q, unscale } => demodulation_f16(q, *unscale, s, gain, out),
        }
    }
}

/// [`demodulation`] from f16 square sums scaled by `1 / unscale`: each row widened a chunk at a time
/// (F16C / NEON), summed in f32, then unscaled.
pub fn demodulation_f16(q: &[f16], unscale: f32, s: &[f32], gain: f32, out: &mut [f32]) {
    const CHUNK: usize = 256;
    let c_in = s.len();
    by_rows(out, c_in, |o, d| {
        let mut buf = [0f32; CHUNK];
        let mut sum = 0f32;
        for (qc, sc) in q[o * c_in..(o + 1) * c_in].chunks(CHUNK).zip(s.chunks(CHUNK)) {
            let w = &mut buf[..qc.len()];
            gaga_kernels::qgemm::widen_f16(qc, w);
            sum += w.iter().zip(sc).map(|(q, s)| q * s * s).sum::<f32>();
        }
        *d = gain / (sum * unscale + 1e-8).sqrt();
    });
}

/// A `ModulatedConv2d` with its `modulation` linear layer and, when demodulating, its square sums.
pub struct ModConv<'w> {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    /// `{prefix}.weight`, the name the observation hook reports.
    pub name: String,
    pub kernel: ConvKernel<'w>,
    modulation: Linear<'w>,
    q: Option<SquareSums>,
}

impl<'w> ModConv<'w> {
    /// Reads `{prefix}.weight` `[1, c_out, c_in, k, k]` and `{prefix}.modulation.{weight,bias}`.
    pub fn load(w: &'w dyn Weights, prefix: &str, c_in: usize, c_out: usize, k: usize, style: usize, demod: bool) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let spec = Conv2d { c_in, c_out, kernel: k, stride: 1, pad: k / 2 };
        // Demodulation needs the weights' square sums, of the values the kernel multiplies by (dequantised
        // for fp16 / int8), once at load: `c_out x c_in` floats instead of a copy of the weight.
        let (kernel, q) = packed::load(w, &name, &[1, c_out, c_in, k, k], &spec, None, demod)?;
        let int8 = matches!(&kernel, ConvKernel::Quant { w, .. } if w.format() == PackedFormat::I8);
        let q = q.map(|q| if int8 { SquareSums::narrowed(q) } else { SquareSums::F32(q) });
        Ok(ModConv { c_in, c_out, k, name, kernel, modulation: Linear::load(w, &format!("{prefix}.modulation"), c_in, style)?, q })
    }

    /// Bytes of the square sums this layer keeps (reports and tests).
    pub fn square_sum_bytes(&self) -> usize {
        match &self.q {
            Some(SquareSums::F32(q)) => 4 * q.len(),
            Some(SquareSums::F16 { q, .. }) => 2 * q.len(),
            None => 0,
        }
    }

    /// Per-frame modulation: `s = modulation(latent)` into `s[..c_in]`, output factors into `f[..c_out]`.
    pub fn modulate(&self, latent: &[f32], gain: f32, s: &mut [f32], f: &mut [f32]) {
        self.modulation.run(latent, &mut s[..self.c_in]);
        match &self.q {
            Some(q) => q.demodulate(&s[..self.c_in], gain, &mut f[..self.c_out]),
            None => demodulation(None, &s[..self.c_in], gain, &mut f[..self.c_out]),
        }
    }

    /// Runs on `x` `[c_in, h, h]` with the factors of the last `modulate`.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        h: usize,
        s: &[f32],
        f: &[f32],
        scaled: &mut [f32],
        out: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        self.run_raw(scratch, x, h, None, s, scaled, out, obs)?;
        scale_channels_in_place(&mut out[..self.c_out * h * h], &f[..self.c_out], h * h);
        Ok(())
    }

    /// True when a call given an empty `scaled` buffer quantises its modulated input straight from the
    /// unmodulated map (int8 weights: `PackedConv::run_upsampled` for an upsampling call,
    /// `PackedConv::run_scaled` otherwise; see [`ModConv::run_raw`]).
    pub fn fuses_upsample(&self) -> bool {
        matches!(&self.kernel, ConvKernel::Quant { w, fine: false, .. } if w.format() == PackedFormat::I8)
    }

    /// Like [`ModConv::run`] without the output factors (the caller fuses them into its epilogue). With
    /// `up_from = Some(hl)`, `x` is `[c_in, hl, hl]` and is bilinearly resized to `h` while modulated.
    /// The modulated input goes into `scaled`, or, when `scaled` is empty and
    /// [`ModConv::fuses_upsample`], is computed on the fly while it is quantised (bit-identical; the
    /// observation hook is then not called, as there is no map to show).
    #[allow(clippy::too_many_arguments)]
    fn run_raw(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        h: usize,
        up_from: Option<usize>,
        s: &[f32],
        scaled: &mut [f32],
        out: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        let (ci, hw) = (self.c_in, h * h);
        let fused = scaled.is_empty() && self.fuses_upsample();
        if let (true, ConvKernel::Quant { w: pc, bias, act, .. }) = (fused, &self.kernel) {
            let (s, out, b) = (&s[..ci], &mut out[..self.c_out * hw], bias.as_deref());
            let done = match up_from {
                Some(hl) => pc.run_upsampled(scratch, &x[..ci * hl * hl], hl, hl, s, *act, b, out),
                None => pc.run_scaled(scratch, &x[..ci * hw], h, h, s, *act, b, out),
            };
            return done.map_err(|e| Error::Other(format!("refiner conv `{}`: {}", self.name, e.0)));
        }
        if scaled.len() < ci * hw {
            let (name, n) = (&self.name, scaled.len());
            return Err(Error::Other(format!("refiner conv `{name}`: modulated input buffer {n} floats, needs {}", ci * hw)));
        }
        match up_from {
            Some(hl) => bilinear_scaled(&x[..ci * hl * hl], ci, hl, hl, h, h, &s[..ci], &mut scaled[..ci * hw]),
            None => scale_channels(&x[..ci * hw], &s[..ci], hw, &mut scaled[..ci * hw]),
        }
        let spec = Conv2d { c_in: ci, c_out: self.c_out, kernel: self.k, stride: 1, pad: self.k / 2 };
        // The modulated input is what the conv (and an int8 activation quantiser) sees.
        obs(&self.name, &scaled[..ci * hw]);
        self.kernel.run(scratch, &spec, &scaled[..ci * hw], h, h, out)
    }
}

/// What a banded call does to each output band `[c_out, y1 - y0, w]` (rows `(y0, y1)`) before storing it.
pub type BandEpilogue<'a> = dyn Fn(&mut [f32], (usize, usize)) + 'a;

impl ModConv<'_> {
    /// The output of an int8 call computed in row bands of `plan::UP_BAND_ROWS`: `x` `[c_in, h/2, h/2]`
    /// upsampled (`up`) or `[c_in, h, h]` (f32 or f16) -> `out` `[c_out, h, h]`, each band (its quantised
    /// input holds the halo rows, so no row is computed twice) into `band`, then through `epi` and
    /// stored into `out` (f32, or f16 rounded once). Uses the whole map's activation quantiser, so the bits
    /// before the store are [`ModConv::run_raw`]'s; the kernels' scratch holds one band's quantised input.
    #[allow(clippy::too_many_arguments)]
    fn run_banded(
        &self,
        scratch: &mut Scratch,
        x: MapRef,
        h: usize,
        up: bool,
        s: &[f32],
        band: &mut [f32],
        mut out: MapMut,
        epi: &BandEpilogue,
    ) -> Result<()> {
        let err = |what: String| Error::Other(format!("refiner conv `{}`: {what}", self.name));
        let (ConvKernel::Quant { w: pc, bias, act, .. }, true) = (&self.kernel, self.fuses_upsample()) else {
            return Err(err("banded int8 conv needs int8 weights".into()));
        };
        let (ci, co, rows) = (self.c_in, self.c_out, super::plan::UP_BAND_ROWS);
        let hx = if up { h / 2 } else { h };
        if band.len() < co * rows.min(h) * h || out.len() < co * h * h || x.len() < ci * hx * hx || s.len() < ci {
            return Err(err(format!(
                "band {} floats (needs {}), output {} values (needs {})",
                band.len(),
                co * rows.min(h) * h,
                out.len(),
                co * h * h
            )));
        }
        let (s, b) = (&s[..ci], bias.as_deref());
        let q = |e: gaga_kernels::qgemm::QError| err(e.0);
        let n_in = ci * hx * hx;
        let quant = match (act, up) {
            (Some(a), _) => *a,
            (None, true) => with_map!(x, v => pc.upsampled_act_quant(&v[..n_in], hx, hx, s)).map_err(q)?,
            (None, false) => with_map!(x, v => pc.scaled_act_quant(&v[..n_in], h, h, s)).map_err(q)?,
        };
        for y0 in (0..h).step_by(rows) {
            let y1 = (y0 + rows).min(h);
            let dst = &mut band[..co * (y1 - y0) * h];
            if up {
                with_map!(x, v => pc.run_upsampled_rows(scratch, &v[..n_in], hx, hx, s, quant, (y0, y1 - y0), b, dst)).map_err(q)?;
            } else {
                with_map!(x, v => pc.run_rows(scratch, &v[..n_in], (h, h), Some(s), quant, (y0, y1 - y0), b, dst)).map_err(q)?;
            }
            epi(dst, (y0, y1));
            out.put_rows((h, h), (y0, y1), dst, Epilogue::Store);
        }
        Ok(())
    }
}

/// Small per-frame vectors shared by every modulated layer.
pub struct ModBufs {
    pub s: Vec<f32>,
    pub f: Vec<f32>,
}

/// `StyleConv`: modulated 3x3 conv (demodulated), x sqrt(2), + strength * noise, + bias, LeakyReLU 0.2.
pub struct StyleConv<'w> {
    pub mc: ModConv<'w>,
    strength: f32,
    bias: Cow<'w, [f32]>,
}

impl<'w> StyleConv<'w> {
    pub fn load(w: &'w dyn Weights, prefix: &str, c_in: usize, c_out: usize, style: usize) -> Result<Self> {
        let strength = w.f32_shaped(&format!("{prefix}.weight"), &[1])?[0];
        Ok(StyleConv {
            mc: ModConv::load(w, &format!("{prefix}.modulated_conv"), c_in, c_out, 3, style, true)?,
            strength,
            bias: w.f32_shaped(&format!("{prefix}.bias"), &[1, c_out, 1, 1])?,
        })
    }

    /// `x` `[c_in, h, h]`, or `[c_in, h/2, h/2]` with `up` (a level's first conv: the x2 bilinear
    /// upsample is fused with the input modulation; an int8 conv given an empty `scaled` also fuses it
    /// with quantising, see [`ModConv::run_raw`]) -> `out` `[c_out, h, h]`. `noise` is `[h, h]`.
    /// With `sft = Some((scale, shift))` the SFT condition `out * scale + shift` follows the activation.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        scratch: &mut Scratch,
        latent: &[f32],
        x: &[f32],
        h: usize,
        up: bool,
        noise: &[f32],
        sft: Option<(&[f32], &[f32])>,
        m: &mut ModBufs,
        scaled: &mut [f32],
        out: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        self.mc.modulate(latent, std::f32::consts::SQRT_2, &mut m.s, &mut m.f);
        self.mc.run_raw(scratch, x, h, up.then_some(h / 2), &m.s, scaled, out, obs)?;
        let co = self.mc.c_out;
        style_epilogue(&mut out[..co * h * h], h * h, &m.f[..co], noise, self.strength, &self.bias, super::layers::SLOPE, sft);
        Ok(())
    }

    /// [`StyleConv::run`] of an int8 conv (a level's first, upsampling one with `up`), without SFT,
    /// computed in row bands through `band` (at least `plan::up_band_len` floats), each band's epilogue
    /// applied before it is stored (f32: the same bits; f16: those values rounded once), a band-sized
    /// kernel scratch. No observation hook (a caller that observes uses `run`).
    #[allow(clippy::too_many_arguments)]
    pub fn run_banded(
        &self,
        scratch: &mut Scratch,
        latent: &[f32],
        x: MapRef,
        h: usize,
        up: bool,
        noise: &[f32],
        m: &mut ModBufs,
        band: &mut [f32],
        out: MapMut,
    ) -> Result<()> {
        self.mc.modulate(latent, std::f32::consts::SQRT_2, &mut m.s, &mut m.f);
        let co = self.mc.c_out;
        if noise.len() < h * h {
            return Err(Error::Other(format!("refiner conv `{}`: noise {} floats, needs {}", self.mc.name, noise.len(), h * h)));
        }
        let (f, slope) = (&m.f[..co], super::layers::SLOPE);
        // The epilogue is per element, so per band it computes the whole map's values.
        let epi = |v: &mut [f32], (y0, y1): (usize, usize)| {
            style_epilogue(v, (y1 - y0) * h, f, &noise[y0 * h..y1 * h], self.strength, &self.bias, slope, None);
        };
        self.mc.run_banded(scratch, x, h, up, &m.s, band, out, &epi)
    }
}
