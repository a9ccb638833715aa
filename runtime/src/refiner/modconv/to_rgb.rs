//! StyleGAN2's `ToRGB` layer: a modulated 1x1 conv without demodulation, in its whole-map, in-place and
//! banded forms (the last two for the int8 refiner's low-memory plan; every form gives the same bits).

use std::borrow::Cow;

use gaga_kernels::conv::{Conv2d, Scratch};
use gaga_kernels::fused::scale_channels_in_place;

use super::super::layers::Observe;
use super::{ModBufs, ModConv};
use crate::error::{Error, Result};
use crate::weights::Weights;

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
        scale_channels_in_place(&mut out[..co * hw], &m.f[..co], hw);
        self.add_bias_skip(h, skip, out);
        Ok(())
    }

    /// [`ToRgb::run`] of an int8 conv in row bands of `plan::UP_BAND_ROWS`: each band quantises its rows
    /// of `x * s` straight from `x` (`PackedConv::run_rows`, the whole map's activation scale) into
    /// `band` (at least `plan::rgb_band_len` floats), then into `out`: the same bits, a band-sized kernel
    /// scratch, and `x` is left as it is. No observation hook (a caller that observes uses `run`).
    #[allow(clippy::too_many_arguments)]
    pub fn run_banded(
        &self,
        scratch: &mut Scratch,
        latent: &[f32],
        x: &[f32],
        h: usize,
        skip: Option<&[f32]>,
        m: &mut ModBufs,
        band: &mut [f32],
        out: &mut [f32],
    ) -> Result<()> {
        self.mc.modulate(latent, 1.0, &mut m.s, &mut m.f);
        self.mc.run_banded(scratch, x, h, false, &m.s, band, out)?;
        let (co, hw) = (self.mc.c_out, h * h);
        scale_channels_in_place(&mut out[..co * hw], &m.f[..co], hw);
        self.add_bias_skip(h, skip, out);
        Ok(())
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
