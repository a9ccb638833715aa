//! StyleGAN2's `ToRGB` layer: a modulated 1x1 conv without demodulation, in its whole-map, in-place and
//! banded forms (the last two for the int8 refiner's low-memory plans; every form gives the same bits).

use std::borrow::Cow;

use gaga_kernels::conv::{Conv2d, Scratch};
use gaga_kernels::fused::scale_channels_in_place;
use gaga_kernels::qgemm::widen_f16;
use gaga_kernels::winograd::Epilogue;
use rayon::prelude::*;

use super::super::layers::Observe;
use super::super::maps::{MapMut, MapRef};
use super::{ModBufs, ModConv};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// Band values from which preparing a float ToRGB band's input is worth splitting over the pool.
const PARALLEL_BAND: usize = 1 << 15;

/// `ToRGB`: modulated 1x1 conv without demodulation, + bias (the upsampled skip is added by the caller).
pub struct ToRgb<'w> {
    pub mc: ModConv<'w>,
    bias: Cow<'w, [f32]>,
}

impl<'w> ToRgb<'w> {
    pub fn load(w: &'w dyn Weights, prefix: &str, c_in: usize, c_out: usize, style: usize) -> Result<Self> {
        Ok(ToRgb {
            mc: ModConv::load(w, &format!("{prefix}.modulated_conv"), c_in, c_out, 1, style, false)?,
            bias: w.f32_shaped(&format!("{prefix}.bias"), &[1, c_out, 1, 1])?,
        })
    }

    /// `out[o] = modconv(x)[o] + bias[o] + skip[o]` (skip `[c_out, h, h]`, already upsampled, or None).
    /// With `in_place`, `x` is modulated in place (it is garbage afterwards) and `scaled` is unused: the
    /// same `v * s` as into `scaled`, so the same bits.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        scratch: &mut Scratch,
        latent: &[f32],
        x: &[f32],
        h: usize,
        skip: Option<&[f32]>,
        m: &mut ModBufs,
        scaled: &mut [f32],
        out: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        self.mc.modulate(latent, 1.0, &mut m.s, &mut m.f);
        self.mc.run(scratch, x, h, &m.s, &m.f, scaled, out, obs)?;
        self.add_bias_skip(h, skip, out);
        Ok(())
    }

    /// [`ToRgb::run`] modulating `x` in place instead of into a buffer of its own (`x` is garbage
    /// afterwards): the same `v * s`, so the same bits. For a map nothing reads later.
    #[allow(clippy::too_many_arguments)]
    pub fn run_in_place(
        &self,
        scratch: &mut Scratch,
        latent: &[f32],
        x: &mut [f32],
        h: usize,
        skip: Option<&[f32]>,
        m: &mut ModBufs,
        out: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        self.mc.modulate(latent, 1.0, &mut m.s, &mut m.f);
        let (ci, co, hw) = (self.mc.c_in, self.mc.c_out, h * h);
        if x.len() < ci * hw {
            return Err(Error::Other(format!("refiner conv `{}`: input {} floats, needs {}", self.mc.name, x.len(), ci * hw)));
        }
        scale_channels_in_place(&mut x[..ci * hw], &m.s[..ci], hw);
        let spec = Conv2d { c_in: ci, c_out: co, kernel: self.mc.k, stride: 1, pad: self.mc.k / 2 };
        obs(&self.mc.name, &x[..ci * hw]);
        self.mc.kernel.run(scratch, &spec, &x[..ci * hw], h, h, out)?;
        self.finish(h, skip, &m.f, out);
        Ok(())
    }

    /// [`ToRgb::run`] in row bands of `plan::UP_BAND_ROWS`, `x` (f32 or f16) left as it is, through
    /// `band` (at least `plan::rgb_band_len` floats): an int8 conv quantises each band's rows of `x * s`
    /// straight from `x` (`PackedConv::run_rows`, the whole map's activation scale); a float one (the
    /// converter keeps these 3-output convs fp16) modulates each band's rows into the band buffer and runs
    /// on them (a 1x1 conv reads no halo). Each band's output goes into `out`: the same bits as `run`, a
    /// band-sized scratch. No observation hook (a caller that observes uses `run`).
    #[allow(clippy::too_many_arguments)]
    pub fn run_banded(
        &self,
        scratch: &mut Scratch,
        latent: &[f32],
        x: MapRef,
        h: usize,
        skip: Option<&[f32]>,
        m: &mut ModBufs,
        band: &mut [f32],
        out: &mut [f32],
    ) -> Result<()> {
        self.mc.modulate(latent, 1.0, &mut m.s, &mut m.f);
        if self.mc.fuses_upsample() {
            self.mc.run_banded(scratch, x, h, false, &m.s, band, MapMut::F32(&mut *out), &|_, _| {})?;
        } else {
            self.run_float_bands(scratch, x, h, &m.s, band, out)?;
        }
        self.finish(h, skip, &m.f, out);
        Ok(())
    }

    /// The float conv of [`ToRgb::run_banded`]: per band, `x * s` widened into the front of `band`, the
    /// conv's output band after it, then into `out`.
    fn run_float_bands(&self, scratch: &mut Scratch, x: MapRef, h: usize, s: &[f32], band: &mut [f32], out: &mut [f32]) -> Result<()> {
        let (ci, co, rows) = (self.mc.c_in, self.mc.c_out, super::super::plan::UP_BAND_ROWS.min(h));
        let (need_in, need_out) = (ci * rows * h, co * rows * h);
        if self.mc.k != 1 || band.len() < need_in + need_out || x.len() < ci * h * h || out.len() < co * h * h || s.len() < ci {
            return Err(Error::Other(format!(
                "refiner conv `{}`: banded {}x{} conv, band {} floats (needs {}), input {} values, output {}",
                self.mc.name,
                self.mc.k,
                self.mc.k,
                band.len(),
                need_in + need_out,
                x.len(),
                out.len()
            )));
        }
        let (inp, res) = band.split_at_mut(need_in);
        let spec = Conv2d { c_in: ci, c_out: co, kernel: 1, stride: 1, pad: 0 };
        let mut dst = MapMut::F32(&mut out[..co * h * h]);
        for y0 in (0..h).step_by(rows) {
            let y1 = (y0 + rows).min(h);
            let n = (y1 - y0) * h;
            let prepare = |(c, plane): (usize, &mut [f32])| {
                let src = c * h * h + y0 * h..c * h * h + y1 * h;
                match x {
                    MapRef::F32(v) => plane.copy_from_slice(&v[src]),
                    MapRef::F16(v) => widen_f16(&v[src], plane),
                }
                // `v * s`, as `scale_channels_in_place` modulates the whole map.
                plane.iter_mut().for_each(|v| *v *= s[c]);
            };
            // Per channel in parallel once a band is large (a memory-bound pass; 0.5 MiB at 512 x 512).
            if ci * n >= PARALLEL_BAND {
                inp[..ci * n].par_chunks_mut(n).enumerate().for_each(prepare);
            } else {
                inp[..ci * n].chunks_mut(n).enumerate().for_each(prepare);
            }
            self.mc.kernel.run(scratch, &spec, &inp[..ci * n], y1 - y0, h, &mut res[..co * n])?;
            dst.put_rows((h, h), (y0, y1), &res[..co * n], Epilogue::Store);
        }
        Ok(())
    }

    /// The output factors, bias and skip on `out` (`[c_out, h, h]`) after the conv.
    fn finish(&self, h: usize, skip: Option<&[f32]>, f: &[f32], out: &mut [f32]) {
        let (co, hw) = (self.mc.c_out, h * h);
        scale_channels_in_place(&mut out[..co * hw], &f[..co], hw);
        self.add_bias_skip(h, skip, out);
    }

    /// `out[o] += bias[o] + skip[o]` (or `+= bias[o]` without a skip).
    fn add_bias_skip(&self, h: usize, skip: Option<&[f32]>, out: &mut [f32]) {
        let hw = h * h;
        for (o, &b) in self.bias.iter().enumerate() {
            let plane = &mut out[o * hw..(o + 1) * hw];
            match skip {
                Some(sk) => plane.iter_mut().zip(&sk[o * hw..(o + 1) * hw]).for_each(|(v, s)| *v += b + s),
                None => plane.iter_mut().for_each(|v| *v += b),
            }
        }
    }
}
