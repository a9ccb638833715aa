//! The refiner's building blocks, each holding its weights as read from `&dyn Weights` (borrowed when
//! the model stores f32) and running on caller-provided buffers.

use std::borrow::Cow;

use gaga_kernels::act::leaky_relu;
use gaga_kernels::conv::{conv2d_with, Conv2d, Scratch};
use gaga_kernels::fused::{add_assign, bilinear_fast};

use crate::error::Result;
use crate::weights::Weights;

/// LeakyReLU slope used everywhere in the StyleUNet.
pub const SLOPE: f32 = 0.2;

/// A plain convolution (stride 1, "same" padding) with optional bias.
pub struct Conv<'w> {
    pub spec: Conv2d,
    weight: Cow<'w, [f32]>,
    bias: Option<Cow<'w, [f32]>>,
}

impl<'w> Conv<'w> {
    /// Reads `{prefix}.weight` `[c_out, c_in, k, k]` and, when `bias`, `{prefix}.bias` `[c_out]`.
    pub fn load(w: &'w dyn Weights, prefix: &str, c_in: usize, c_out: usize, k: usize, bias: bool) -> Result<Self> {
        let weight = w.f32_shaped(&format!("{prefix}.weight"), &[c_out, c_in, k, k])?;
        let bias = if bias { Some(w.f32_shaped(&format!("{prefix}.bias"), &[c_out])?) } else { None };
        Ok(Conv { spec: Conv2d { c_in, c_out, kernel: k, stride: 1, pad: k / 2 }, weight, bias })
    }

    /// `out[..c_out*h*w] = conv(x[..c_in*h*w])`.
    pub fn run(&self, s: &mut Scratch, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (ci, co) = (self.spec.c_in, self.spec.c_out);
        conv2d_with(s, &self.spec, &x[..ci * h * w], h, w, &self.weight, self.bias.as_deref(), &mut out[..co * h * w]);
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

    /// Output side for an input side `h`.
    pub fn out_side(&self, h: usize) -> usize {
        if self.up {
            h * 2
        } else {
            h / 2
        }
    }

    /// `x` is `[c_in, h, h]`; writes `[c_out, h', h']` into `out`; `t1`, `t2` are temporaries.
    pub fn run(&self, s: &mut Scratch, x: &[f32], h: usize, t1: &mut [f32], t2: &mut [f32], out: &mut [f32]) {
        let (ci, co, h2) = (self.conv1.spec.c_in, self.conv2.spec.c_out, self.out_side(h));
        let (n_in, n_lo, n_out) = (ci * h * h, ci * h2 * h2, co * h2 * h2);
        self.conv1.run(s, x, h, h, t1);
        leaky_relu(&mut t1[..n_in], SLOPE);
        bilinear_fast(&t1[..n_in], ci, h, h, h2, h2, &mut t2[..n_lo]);
        self.conv2.run(s, t2, h2, h2, out);
        leaky_relu(&mut out[..n_out], SLOPE);
        bilinear_fast(&x[..n_in], ci, h, h, h2, h2, &mut t2[..n_lo]);
        self.skip.run(s, t2, h2, h2, t1);
        add_assign(&mut out[..n_out], &t1[..n_out]);
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

    pub fn run(&self, s: &mut Scratch, x: &[f32], h: usize, tmp: &mut [f32], out: &mut [f32]) {
        let c = self.conv0.spec.c_out;
        self.conv0.run(s, x, h, h, tmp);
        leaky_relu(&mut tmp[..c * h * h], SLOPE);
        self.conv2.run(s, tmp, h, h, out);
    }
}
