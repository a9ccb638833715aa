//! The refiner's building blocks, each holding its weights packed once at load (`packed.rs`) and running
//! on caller-provided buffers. Every `run` reports each convolution's input to `obs` (the calibration
//! hook of `Refiner::run_observed`; a no-op otherwise, see [`Observe`]).

use std::borrow::Cow;

use gaga_kernels::act::leaky_relu;
use gaga_kernels::conv::{Conv2d, Scratch};
use gaga_kernels::fused::{add_assign, bilinear_fast, bilinear_lrelu, lrelu_add, mul_assign, resize_conv1x1_lrelu_add};
use gaga_kernels::linear::{linear, linear_vec, RowsRef};
use gaga_kernels::winograd::Epilogue;

use super::packed::{self, ConvKernel};
use crate::error::{Error, Result};
use crate::format::{DType, Layout};
use crate::weights::Weights;

/// The observation hook: `(weight name, the conv's input activation)`. [`ResBlock::run`] is told
/// explicitly whether anyone records: when nobody does it fuses its skip branch, which never
/// materialises (so cannot report) the skip conv's input.
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

    /// `out[i] = epi(conv(x)[i], out[i])`: inside the Winograd output transform when the layer runs one at
    /// this size, else the convolution (into `tmp` for `MulInto` / `AddInto`) then the plain pass. The
    /// same arithmetic either way (bit-identical).
    #[allow(clippy::too_many_arguments)]
    pub fn run_then(
        &self,
        s: &mut Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        out: &mut [f32],
        epi: Epilogue,
        tmp: &mut [f32],
        obs: &mut Observe,
    ) -> Result<()> {
        let x = &x[..self.spec.c_in * h * w];
        obs(&self.name, x);
        if self.kernel.run_fused(s, &self.spec, x, h, w, out, epi)? {
            return Ok(());
        }
        let n = self.spec.c_out * h * w;
        match epi {
            Epilogue::Store => self.kernel.run(s, &self.spec, x, h, w, out),
            Epilogue::LeakyRelu(slope) => {
                self.kernel.run(s, &self.spec, x, h, w, out)?;
                leaky_relu(&mut out[..n], slope);
                Ok(())
            }
            Epilogue::MulInto | Epilogue::AddInto => {
                self.kernel.run(s, &self.spec, x, h, w, tmp)?;
                let (out, tmp) = (&mut out[..n], &tmp[..n]);
                if epi == Epilogue::MulInto {
                    mul_assign(out, tmp)
                } else {
                    add_assign(out, tmp)
                }
                Ok(())
            }
        }
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

    /// [`ConvKernel::fine_activations`] for the block's convs on maps of side `max_side` and below, for an
    /// input of side `h` (conv1 runs at `h`, conv2 and the skip at [`ResBlock::out_side`]).
    pub fn fine_activations(&mut self, h: usize, max_side: usize) {
        if h <= max_side {
            self.conv1.kernel.fine_activations();
        }
        if self.out_side(h) <= max_side {
            self.conv2.kernel.fine_activations();
            self.skip.kernel.fine_activations();
        }
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
        observing: bool,
    ) -> Result<()> {
        let (ci, co, h2) = (self.conv1.spec.c_in, self.conv2.spec.c_out, self.out_side(h));
        let (n_in, n_lo, n_out) = (ci * h * h, ci * h2 * h2, co * h2 * h2);
        // The activations are fused into the passes that read them (bit-identical to separate passes):
        // conv1's into the resize, conv2's into the skip sum, which the skip branch does not depend on.
        self.conv1.run(s, x, h, h, t1, obs)?;
        bilinear_lrelu(&t1[..n_in], ci, h, h, h2, h2, SLOPE, &mut t2[..n_lo]);
        self.conv2.run(s, t2, h2, h2, out, obs)?;
        // Skip branch and sum in one pass when nothing observes the skip conv's input (which that pass
        // never materialises).
        if !observing {
            if let ConvKernel::F32(pw) = &self.skip.kernel {
                if resize_conv1x1_lrelu_add(s, pw, &x[..n_in], h, h, h2, h2, SLOPE, &mut out[..n_out]) {
                    return Ok(());
                }
            }
        }
        bilinear_fast(&x[..n_in], ci, h, h, h2, h2, &mut t2[..n_lo]);
        self.skip.run(s, t2, h2, h2, t1, obs)?;
        lrelu_add(&mut out[..n_out], &t1[..n_out], SLOPE);
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

    /// [`ConvKernel::fine_activations`] for both convs of the branch.
    pub fn fine_activations(&mut self) {
        [&mut self.conv0, &mut self.conv2].into_iter().for_each(|c| c.kernel.fine_activations());
    }

    /// The branch on `x` `[c, h, h]` combined into `e` `[2c, h, h]` by `epi` (`MulInto` for the SFT
    /// scale, `AddInto` for the shift; `Store` writes the branch itself). The LeakyReLU and the combine
    /// ride on the convolutions' output transforms where those run Winograd; `tmp` `[c, h, h]` and
    /// `cx` `[2c, h, h]` are temporaries.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        s: &mut Scratch,
        x: &[f32],
        h: usize,
        tmp: &mut [f32],
        cx: &mut [f32],
        e: &mut [f32],
        epi: Epilogue,
        obs: &mut Observe,
    ) -> Result<()> {
        self.conv0.run_then(s, x, h, h, tmp, Epilogue::LeakyRelu(SLOPE), &mut [], obs)?;
        self.conv2.run_then(s, tmp, h, h, e, epi, cx, obs)
    }
}

/// A linear layer's weight as stored: f32 runs on the `linear` kernel (bit-exact with the dequantised
/// path); fp16 and int8 stay in the file's bytes and are widened one value at a time while multiplied,
/// so no f32 copy exists (1 MiB per 512 x 512 layer at official size, 31 MiB in all) and the stored
/// pages are the only copy resident.
enum LinearWeight<'w> {
    F32(Cow<'w, [f32]>),
    F16(Cow<'w, [u8]>),
    I8 { q: Cow<'w, [u8]>, scales: Cow<'w, [f32]> },
}

/// `out = W x + b` for one vector, `W` `[out_f, in_f]` in its stored precision.
pub struct Linear<'w> {
    weight: LinearWeight<'w>,
    bias: Cow<'w, [f32]>,
    in_f: usize,
    out_f: usize,
}

impl<'w> Linear<'w> {
    /// Reads `{prefix}.weight` `[out_f, in_f]` (f32, fp16, or int8 with one scale per output row) and
    /// `{prefix}.bias` `[out_f]`.
    pub fn load(w: &'w dyn Weights, prefix: &str, out_f: usize, in_f: usize) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let found = w.shape(&name)?;
        if found != [out_f, in_f] {
            return Err(Error::Shape { name, expected: vec![out_f, in_f], found });
        }
        let bias = w.f32_shaped(&format!("{prefix}.bias"), &[out_f])?;
        let st = w.stored(&name)?;
        let n = out_f * in_f;
        let bad = |what: String| Error::Other(format!("tensor `{name}`: {what}"));
        let weight = match (st.layout, st.dtype) {
            (Layout::RowMajor, DType::F16) if st.bytes.len() == 2 * n => LinearWeight::F16(st.bytes),
            (Layout::RowMajor, DType::I8) if st.bytes.len() == n => {
                let scales = st.scales.filter(|s| s.len() == out_f && st.quant_axis == Some(0));
                let scales = scales.ok_or_else(|| bad(format!("int8 linear needs {out_f} scales along axis 0")))?;
                LinearWeight::I8 { q: st.bytes, scales }
            }
            (Layout::RowMajor, DType::F16 | DType::I8) => {
                return Err(bad(format!("{} bytes for [{out_f}, {in_f}] in {}", st.bytes.len(), st.dtype.name())));
            }
            _ => LinearWeight::F32(w.f32(&name)?),
        };
        Ok(Linear { weight, bias, in_f, out_f })
    }

    /// `out[..out_f] = W x[..in_f] + b`.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (x, out) = (&x[..self.in_f], &mut out[..self.out_f]);
        match &self.weight {
            LinearWeight::F32(wt) => linear(x, 1, self.in_f, wt, Some(&self.bias), self.out_f, out),
            LinearWeight::F16(b) => linear_vec(x, RowsRef::F16(b), &self.bias, out),
            LinearWeight::I8 { q, scales } => linear_vec(x, RowsRef::I8 { q, scales }, &self.bias, out),
        }
    }
}
