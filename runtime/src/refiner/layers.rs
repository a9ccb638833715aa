//! The refiner's building blocks, each holding its weights packed once at load (`packed.rs`) and running
//! on caller-provided buffers. Every `run` reports each convolution's input to `obs` (the calibration
//! hook of `Refiner::run_observed`; a no-op otherwise).

use gaga_kernels::act::leaky_relu;
use gaga_kernels::conv::{Conv2d, Scratch};
use gaga_kernels::fused::{add_assign, bilinear_fast};

use super::packed::{self, ConvKernel};
use crate::error::Result;
use crate::weights::Weights;

/// The observation hook: `(weight name, the conv's input activation)`.
pub type Observe<'a> = dyn FnMut(&str, &[f32]) + 'a;

/// LeakyReLU slope used everywhere in the StyleUNet.
pub const SLOPE: f32 = 0.2;

/// A plain convolution (stride 1, "same" padding) with optional bias.
pub struct Conv<'w> {
    pub spec: Conv2d,
    /// `{prefix}.weight`, the name the observation hook reports.
    pub name: String,
    pub kernel: ConvKernel<'w>,
}

impl<'w> Conv<'w> {
    /// Reads `{prefix}.weight` `[c_out, c_in, k, k]` and, when `bias`, `{prefix}.bias` `[c_out]`.
    pub fn load(w: &'w dyn Weights, prefix: &str, c_in: usize, c_out: usize, k: usize, bias: bool) -> Result<Self> {
        let bias = if bias { Some(w.f32_shaped(&format!("{prefix}.bias"), &[c_out])?) } else { None };
        let spec = Conv2d { c_in, c_out, kernel: k, stride: 1, pad: k / 2 };
        let name = format!("{prefix}.weight");
        let (kernel, _) = packed::load(w, &name, &[c_out, c_in, k, k], &spec, bias, false)?;
        Ok(Conv { spec, name, kernel })
    }

    /// `out[..c_out*h*w] = conv(x[..c_in*h*w])`.
    pub fn run(&self, s: &mut Scratch, x: &[f32], h: usize, w: usize, out: &mut [f32], obs: &mut Observe) -> Result<()> {
        let x = &x[..self.spec.c_in * h * w];
        obs(&self.name, x);
        self.kernel.run(s, &self.spec, x, h, w, out)
    }
}

/// `ResBlock` of `style_unet.py`: conv3x3 + LReLU, bilinear x0.5 or x2 (align_corners=False),
/// conv3x3 + LReLU, plus a skip of bilinear then 1x1 without bias.
pub struct ResBlock<'w> {
    conv1: Conv<'w>,
    conv2: Conv<'w>,
    skip: Conv<'w>,
    up: bool,
}

impl<'w> ResBlock<'w> {
    pub fn load(w: &'w dyn Weights, prefix: &str, c_in: usize, c_out: usize, up: bool) -> Result<Self> {
        Ok(ResBlock {
            conv1: Conv::load(w, &format!("{prefix}.conv1"), c_in, c_in, 3, true)?,
            conv2: Conv::load(w, &format!("{prefix}.conv2"), c_in, c_out, 3, true)?,
            skip: Conv::load(w, &format!("{prefix}.skip"), c_in, c_out, 1, false)?,
            up,
        })
    }

    /// The three convolutions, in run order.
    pub fn convs(&self) -> [&Conv<'w>; 3] {
        [&self.conv1, &self.conv2, &self.skip]
    }

    /// Output side for an input side `h`.
    pub fn out_side(&self, h: usize) -> usize {
        if self.up {
            h * 2
        } else {
            h / 2
        }
    }

    /// `x` is `[c_in, h, h]`; writes `[c_out, h', h']` into `out`; `t1`, `t2` are temporaries.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        s: &mut Scratch,
        x: &[f32],
        h: usize,
        t1: &mut [f32],
        t2: &mut [f32],
        out: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        let (ci, co, h2) = (self.conv1.spec.c_in, self.conv2.spec.c_out, self.out_side(h));
        let (n_in, n_lo, n_out) = (ci * h * h, ci * h2 * h2, co * h2 * h2);
        self.conv1.run(s, x, h, h, t1, obs)?;
        leaky_relu(&mut t1[..n_in], SLOPE);
        bilinear_fast(&t1[..n_in], ci, h, h, h2, h2, &mut t2[..n_lo]);
        self.conv2.run(s, t2, h2, h2, out, obs)?;
        leaky_relu(&mut out[..n_out], SLOPE);
        bilinear_fast(&x[..n_in], ci, h, h, h2, h2, &mut t2[..n_lo]);
        self.skip.run(s, t2, h2, h2, t1, obs)?;
        add_assign(&mut out[..n_out], &t1[..n_out]);
        Ok(())
    }
}

/// One SFT condition branch (`condition_scale[k]` or `condition_shift[k]`): conv3x3, LReLU, conv3x3 to 2C.
pub struct Condition<'w> {
    conv0: Conv<'w>,
    conv2: Conv<'w>,
}

impl<'w> Condition<'w> {
    pub fn load(w: &'w dyn Weights, prefix: &str, c: usize) -> Result<Self> {
        Ok(Condition {
            conv0: Conv::load(w, &format!("{prefix}.0"), c, c, 3, true)?,
            conv2: Conv::load(w, &format!("{prefix}.2"), c, 2 * c, 3, true)?,
        })
    }

    /// The two convolutions, in run order.
    pub fn convs(&self) -> [&Conv<'w>; 2] {
        [&self.conv0, &self.conv2]
    }

    pub fn run(&self, s: &mut Scratch, x: &[f32], h: usize, tmp: &mut [f32], out: &mut [f32], obs: &mut Observe) -> Result<()> {
        let c = self.conv0.spec.c_out;
        self.conv0.run(s, x, h, h, tmp, obs)?;
        leaky_relu(&mut tmp[..c * h * h], SLOPE);
        self.conv2.run(s, tmp, h, h, out, obs)
    }
}
