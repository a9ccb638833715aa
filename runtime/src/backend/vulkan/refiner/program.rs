//! The refiner as data: every buffer it owns (name, bytes, how it is filled) and every dispatch
//! (shader variant, bindings, push constants) in execution order, built from the configuration and
//! the stored tensors' shapes and dtypes. `GpuRefiner::plan` reads only the buffer list;
//! `GpuRefiner::new` allocates, fills and compiles it. The network's order is in `network.rs`.

use gaga_kernels::twin::bilinear::BilinearPush;
use gaga_kernels::twin::demod::DemodPush;
use gaga_kernels::twin::matvec::{MatvecPush, MatvecVariant};
use gaga_kernels::twin::refiner_conv::{Epilogue, RefinerConvPush, RefinerConvVariant};
use gaga_kernels::twin::stored::WeightType;

use crate::error::{Error, Result};
use crate::format::{DType, Layout};
use crate::weights::Weights;

/// LeakyReLU slope used everywhere in the StyleUNet.
const SLOPE: f32 = 0.2;

/// A dispatch binding: the caller's splat input or RGB output, or buffer `i` of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Input,
    Output,
    Own(usize),
}

/// One part of an fp32 vectors buffer.
#[derive(Clone, Debug)]
pub(super) enum Part {
    /// A tensor's values as f32 (dequantised if stored narrower).
    Tensor(String),
    /// The int8 per-channel scales of a stored weight, or `n` ones when it is not int8.
    Scales(String, usize),
    /// Room the GPU writes per frame (modulation `s`, demodulation `f`).
    Zeros(usize),
}

/// How a buffer is filled at load.
#[derive(Clone, Debug)]
pub(super) enum Fill {
    /// Written by the GPU only (activations, placeholders).
    Scratch,
    /// A weight exactly as stored (fp32, fp16 or int8 words).
    Stored(String),
    /// An fp32 weight stored in another layout, as the row-major values `Weights::f32` returns.
    RowMajorF32(String),
    /// fp32 parts concatenated (biases, int8 scales, per-frame room).
    Vectors(Vec<Part>),
    /// Per-(out, in) sums of squared weights of a `[1, c_out, c_in, k, k]` modulated conv weight.
    SquareSums { tensor: String, c_out: usize, c_in: usize, k: usize },
    /// Tensors as f32, concatenated (the constant input).
    Dequantised(Vec<String>),
    /// The StyleConvs' noise maps, concatenated in execution order.
    Noise(Vec<String>),
}

/// A buffer the refiner owns.
#[derive(Clone, Debug)]
pub(super) struct BufSpec {
    pub name: String,
    pub bytes: u64,
    pub fill: Fill,
}

/// A dispatch's shader and its compile-time and push-constant parameters.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kernel {
    Conv(RefinerConvVariant, RefinerConvPush),
    Matvec(MatvecVariant, MatvecPush),
    Demod(DemodPush),
    Bilinear(BilinearPush),
    /// `elementwise.comp` addition of `n` floats.
    Add(u32),
}

/// One dispatch: `slots[i]` is bound at binding `i`.
#[derive(Clone, Debug)]
pub(super) struct Step {
    pub label: String,
    pub kernel: Kernel,
    pub slots: Vec<Slot>,
}

/// Every buffer and dispatch of the refiner.
pub(super) struct Program {
    pub buffers: Vec<BufSpec>,
    pub steps: Vec<Step>,
    /// Index of the noise buffer and its length in floats.
    pub noise: (usize, usize),
}

/// Side of level `k` (4, 8, ...).
pub(super) use crate::refiner::plan::side;

pub(super) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Config(format!("refiner on Vulkan: {what} = {v} does not fit a 32-bit index")))
}

/// Collects buffers and steps; one method per layer kind, each checking the tensors it reads.
pub(super) struct Builder<'a> {
    pub w: &'a dyn Weights,
    pub style_dim: usize,
    pub prog: Program,
    /// Bound where a shader's binding is unused.
    pub dummy: Slot,
    pub noise: Slot,
    /// Offset of each StyleConv's noise map in the noise buffer.
    pub noise_offsets: Vec<usize>,
}

impl Builder<'_> {
    pub(super) fn buffer(&mut self, name: String, floats: usize, fill: Fill) -> Slot {
        self.buffer_bytes(name, 4 * floats as u64, fill)
    }

    pub(super) fn buffer_bytes(&mut self, name: String, bytes: u64, fill: Fill) -> Slot {
        self.prog.buffers.push(BufSpec { name, bytes, fill });
        Slot::Own(self.prog.buffers.len() - 1)
    }

    pub(super) fn step(&mut self, label: String, kernel: Kernel, slots: Vec<Slot>) {
        self.prog.steps.push(Step { label, kernel, slots });
    }

    pub(super) fn check_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        let found = self.w.shape(name)?;
        if found != expected {
            return Err(Error::Shape { name: name.to_string(), expected: expected.to_vec(), found });
        }
        Ok(())
    }

    /// A weight buffer holding `tensor` as stored, after checking shape, dtype, layout, byte count and
    /// (int8) that its scales run along `axis`, the output-channel axis the shaders index.
    pub(super) fn weight(&mut self, tensor: &str, shape: &[usize], axis: usize) -> Result<(Slot, WeightType)> {
        let st = self.w.stored(tensor)?;
        if st.shape != shape {
            return Err(Error::Shape { name: tensor.to_string(), expected: shape.to_vec(), found: st.shape.clone() });
        }
        let bad = |what: String| Error::Other(format!("tensor `{tensor}`: {what}"));
        if st.layout != Layout::RowMajor {
            // A CPU-packed fp32 layout: upload the row-major values `Weights::f32` unpacks.
            if st.dtype != DType::F32 {
                return Err(bad(format!("{:?} in layout {:?}; the Vulkan refiner reads row-major weights", st.dtype, st.layout)));
            }
            let n: usize = shape.iter().product();
            return Ok((self.buffer(format!("{tensor} (fp32, unpacked)"), n, Fill::RowMajorF32(tensor.to_string())), WeightType::F32));
        }
        let wt = match st.dtype {
            DType::F32 => WeightType::F32,
            DType::F16 => WeightType::F16,
            DType::I8 => WeightType::I8,
            other => return Err(bad(format!("dtype {other:?}, expected f32, f16 or int8"))),
        };
        let n: usize = shape.iter().product();
        if st.bytes.len() != n * wt.size() {
            return Err(bad(format!("{} bytes, expected {} ({n} x {:?})", st.bytes.len(), n * wt.size(), st.dtype)));
        }
        if wt == WeightType::I8 {
            let scales = st.scales.as_ref().map_or(0, |s| s.len());
            if st.quant_axis != Some(axis) || scales != shape[axis] {
                return Err(bad(format!(
                    "int8 scales along axis {:?} ({scales} values), expected axis {axis} ({} values)",
                    st.quant_axis, shape[axis]
                )));
            }
        }
        let name = format!("{tensor} ({})", ["fp32", "fp16", "int8"][wt as usize]);
        Ok((self.buffer_bytes(name, st.bytes.len() as u64, Fill::Stored(tensor.to_string())), wt))
    }

    /// A plain conv (`{prefix}.weight` `[co, ci, k, k]`, optional `{prefix}.bias`) from `x` into `y`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv(
        &mut self,
        prefix: &str,
        ci: usize,
        co: usize,
        k: usize,
        bias: bool,
        x: Slot,
        h: usize,
        y: Slot,
        y_off: usize,
        leaky: bool,
        epi: (Epilogue, Slot),
    ) -> Result<()> {
        let (wslot, wtype) = self.weight(&format!("{prefix}.weight"), &[co, ci, k, k], 0)?;
        let mut parts = Vec::new();
        if bias {
            self.check_shape(&format!("{prefix}.bias"), &[co])?;
            parts.push(Part::Tensor(format!("{prefix}.bias")));
        } else {
            parts.push(Part::Zeros(co));
        }
        parts.push(Part::Scales(format!("{prefix}.weight"), co));
        let vecs = self.buffer(format!("{prefix} vectors"), 2 * co, Fill::Vectors(parts));
        let v = RefinerConvVariant {
            kernel: k as u32,
            wtype,
            has_bias: bias,
            modulated: false,
            demod: false,
            noise: false,
            leaky: leaky.then_some(SLOPE),
            epilogue: epi.0,
        };
        let push = self.conv_push(ci, co, h, 0, co, 0, 0, (0, 0.0), y_off)?;
        let (noise, aux) = (self.dummy, epi.1);
        self.step(prefix.to_string(), Kernel::Conv(v, push), vec![x, wslot, vecs, noise, aux, y]);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_push(
        &self,
        ci: usize,
        co: usize,
        h: usize,
        bias_off: usize,
        wscale_off: usize,
        s_off: usize,
        f_off: usize,
        noise: (usize, f32),
        y_off: usize,
    ) -> Result<RefinerConvPush> {
        let h32 = u32_of(h, "map side")?;
        Ok(RefinerConvPush {
            c_in: u32_of(ci, "input channels")?,
            h: h32,
            w: h32,
            c_out: u32_of(co, "output channels")?,
            bias_off: bias_off as u32,
            wscale_off: wscale_off as u32,
            s_off: s_off as u32,
            f_off: f_off as u32,
            noise_off: u32_of(noise.0, "noise offset")?,
            strength: noise.1,
            aux_off: 0,
            y_off: u32_of(y_off, "output offset")?,
        })
    }

    /// A ResBlock (`style_unet.py`): conv3x3 + LReLU, bilinear x0.5 / x2, conv3x3 + LReLU, plus the skip
    /// path bilinear then 1x1 (no bias), added in the skip conv's epilogue. `x` `[ci, h, h]` -> `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resblock(
        &mut self,
        prefix: &str,
        ci: usize,
        co: usize,
        up: bool,
        x: Slot,
        h: usize,
        out: Slot,
        t1: Slot,
        t2: Slot,
    ) -> Result<()> {
        let h2 = if up { 2 * h } else { h / 2 };
        let plain = (Epilogue::Plain, self.dummy);
        self.conv(&format!("{prefix}.conv1"), ci, ci, 3, true, x, h, t1, 0, true, plain)?;
        self.bilinear(&format!("{prefix} resample"), ci, h, h2, t1, t2)?;
        self.conv(&format!("{prefix}.conv2"), ci, co, 3, true, t2, h2, t1, 0, true, plain)?;
        self.bilinear(&format!("{prefix} skip resample"), ci, h, h2, x, t2)?;
        self.conv(&format!("{prefix}.skip"), ci, co, 1, false, t2, h2, out, 0, false, (Epilogue::Residual, t1))
    }

    pub(super) fn bilinear(&mut self, label: &str, c: usize, h: usize, h2: usize, x: Slot, y: Slot) -> Result<()> {
        u32_of(c * h2 * h2, "resampled elements")?;
        self.step(label.to_string(), Kernel::Bilinear(BilinearPush::new(c, h, h, h2, h2, false)), vec![x, y]);
        Ok(())
    }

    /// A linear layer `{prefix}.weight` `[n_out, n_in]` + bias on one vector.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear(
        &mut self,
        prefix: &str,
        n_in: usize,
        n_out: usize,
        x: (Slot, usize),
        y: (Slot, usize),
        prenorm: bool,
        leaky: bool,
    ) -> Result<()> {
        let (wslot, wtype) = self.weight(&format!("{prefix}.weight"), &[n_out, n_in], 0)?;
        self.check_shape(&format!("{prefix}.bias"), &[n_out])?;
        let parts = vec![Part::Tensor(format!("{prefix}.bias")), Part::Scales(format!("{prefix}.weight"), n_out)];
        let vecs = self.buffer(format!("{prefix} vectors"), 2 * n_out, Fill::Vectors(parts));
        let v = MatvecVariant { wtype, prenorm, leaky: leaky.then_some(SLOPE) };
        let push = MatvecPush {
            n_in: u32_of(n_in, "linear inputs")?,
            n_out: u32_of(n_out, "linear outputs")?,
            x_off: x.1 as u32,
            bias_off: 0,
            wscale_off: n_out as u32,
            y_off: y.1 as u32,
        };
        self.step(prefix.to_string(), Kernel::Matvec(v, push), vec![x.0, wslot, vecs, y.0]);
        Ok(())
    }

    /// A StyleGAN2 modulated conv with its per-frame modulation (and demodulation) dispatches.
    /// `style_conv`: a StyleConv (3x3, demodulated, gain sqrt 2, noise `noise_i`, LReLU); otherwise a
    /// ToRGB (1x1, gain 1, no noise, no activation). The vectors buffer holds, in order:
    /// bias (co) | int8 scales (co) | s (ci) | f (co) | modulation bias (ci) | modulation int8 scales (ci).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn modconv(
        &mut self,
        prefix: &str,
        ci: usize,
        co: usize,
        style_conv: Option<usize>,
        lat: (Slot, usize),
        x: Slot,
        h: usize,
        y: Slot,
        epi: (Epilogue, Slot),
    ) -> Result<()> {
        let k = if style_conv.is_some() { 3 } else { 1 };
        let sd = self.style_dim;
        let wname = format!("{prefix}.modulated_conv.weight");
        let mname = format!("{prefix}.modulated_conv.modulation");
        let (wslot, wtype) = self.weight(&wname, &[1, co, ci, k, k], 1)?;
        let (mslot, mtype) = self.weight(&format!("{mname}.weight"), &[ci, sd], 0)?;
        self.check_shape(&format!("{mname}.bias"), &[ci])?;
        self.check_shape(&format!("{prefix}.bias"), &[1, co, 1, 1])?;
        let parts = vec![
            Part::Tensor(format!("{prefix}.bias")),
            Part::Scales(wname.clone(), co),
            Part::Zeros(ci + co),
            Part::Tensor(format!("{mname}.bias")),
            Part::Scales(format!("{mname}.weight"), ci),
        ];
        let vecs = self.buffer(format!("{prefix} vectors"), 3 * co + 3 * ci, Fill::Vectors(parts));
        let (s_off, f_off) = (2 * co, 2 * co + ci);
        let mv = MatvecVariant { wtype: mtype, prenorm: false, leaky: None };
        let mp = MatvecPush {
            n_in: u32_of(sd, "style width")?,
            n_out: u32_of(ci, "modulated channels")?,
            x_off: lat.1 as u32,
            bias_off: (3 * co + ci) as u32,
            wscale_off: (3 * co + 2 * ci) as u32,
            y_off: s_off as u32,
        };
        // The modulation reads its bias from and writes `s` into the same buffer (disjoint ranges).
        self.step(mname.clone(), Kernel::Matvec(mv, mp), vec![lat.0, mslot, vecs, vecs]);
        let mut noise = (0, 0.0);
        if let Some(i) = style_conv {
            let q = Fill::SquareSums { tensor: wname.clone(), c_out: co, c_in: ci, k };
            let qslot = self.buffer(format!("{prefix} square sums"), co * ci, q);
            let dp =
                DemodPush { c_in: ci as u32, c_out: co as u32, s_off: s_off as u32, f_off: f_off as u32, gain: std::f32::consts::SQRT_2 };
            self.step(format!("{prefix} demodulation"), Kernel::Demod(dp), vec![qslot, vecs]);
            let strength = self.w.f32_shaped(&format!("{prefix}.weight"), &[1])?[0];
            noise = (self.noise_offsets[i], strength);
        }
        let v = RefinerConvVariant {
            kernel: k as u32,
            wtype,
            has_bias: true,
            modulated: true,
            demod: style_conv.is_some(),
            noise: style_conv.is_some(),
            leaky: style_conv.map(|_| SLOPE),
            epilogue: epi.0,
        };
        let push = self.conv_push(ci, co, h, 0, co, s_off, f_off, noise, 0)?;
        let nslot = if style_conv.is_some() { self.noise } else { self.dummy };
        self.step(prefix.to_string(), Kernel::Conv(v, push), vec![x, wslot, vecs, nslot, epi.1, y]);
        Ok(())
    }
}
