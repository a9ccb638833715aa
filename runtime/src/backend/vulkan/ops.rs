//! One-shot runs of the first shaders: upload, dispatch once, read back. Used by tests and benches to
//! compare each shader with its CPU twin; the frame will record its dispatches once instead.

use gaga_kernels::conv::Conv2d;
use gaga_kernels::twin::{bilinear as bl, conv2d as cv, elementwise as ew, SpecValue};

use half::f16;

use super::command::{Dispatch, Recorded};
use super::memory::MemoryLocation;
use super::pipeline::ComputePipeline;
use super::Gpu;
use crate::error::{Error, Result};

/// Output of a one-shot run and the GPU time of its dispatch (None without timestamps).
#[derive(Clone, Debug)]
pub struct OpRun<T = f32> {
    pub out: Vec<T>,
    pub gpu_ms: Option<f64>,
}

struct Shader<'s> {
    name: &'s str,
    spirv: &'s [u8],
    spec: Vec<SpecValue>,
    push: Vec<u8>,
    groups: (u32, u32, u32),
}

/// Uploads `inputs` (bound at 0..), binds an output of `out_len` values last, runs, reads back.
fn run_once<T: bytemuck::Pod>(gpu: &Gpu, s: Shader<'_>, inputs: &[(&str, &[T])], out_len: usize) -> Result<OpRun<T>> {
    let mut bufs = Vec::with_capacity(inputs.len() + 1);
    for (name, data) in inputs {
        let b = gpu.memory.buffer(&format!("{}.{name}", s.name), std::mem::size_of_val(*data) as u64, MemoryLocation::CpuToGpu)?;
        b.write(data)?;
        bufs.push(b);
    }
    let out_bytes = (out_len * std::mem::size_of::<T>()) as u64;
    let out = gpu.memory.buffer(&format!("{}.out", s.name), out_bytes, MemoryLocation::GpuToCpu)?;
    let pipeline = ComputePipeline::new(&gpu.ctx, &gpu.cache, s.name, s.spirv, &s.spec, inputs.len() as u32 + 1, s.push.len() as u32)?;
    let gpu_ms = {
        let mut buffers: Vec<&_> = bufs.iter().collect();
        buffers.push(&out);
        let dispatch = Dispatch { label: s.name.to_string(), pipeline: &pipeline, buffers, push: s.push, groups: s.groups };
        let rec = Recorded::record(&gpu.ctx, &[dispatch])?;
        rec.run()?;
        rec.timings()?.first().map(|t| t.1)
    };
    let mut result = vec![T::zeroed(); out_len];
    out.read(&mut result)?;
    Ok(OpRun { out: result, gpu_ms })
}

/// `conv2d.comp`: like `gaga_kernels::conv::conv2d`, with an optional fused LeakyReLU of slope `leaky`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    gpu: &Gpu,
    spec: &Conv2d,
    leaky: Option<f32>,
    input: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<OpRun> {
    let p = cv::Conv2dPush::new(spec, h, w);
    let v = cv::Conv2dVariant { kernel: spec.kernel as u32, stride: spec.stride as u32, has_bias: bias.is_some(), leaky };
    assert_eq!(input.len(), spec.c_in * h * w, "conv2d input length");
    assert_eq!(weight.len(), spec.c_out * spec.c_in * spec.kernel * spec.kernel, "conv2d weight length");
    // The shader declares a bias binding in every variant; without bias it is never read.
    let bias = bias.unwrap_or(&[0.0]);
    let shader = Shader {
        name: "conv2d",
        spirv: gaga_kernels::twin::CONV2D_SPV,
        spec: v.spec_constants(),
        push: bytemuck::bytes_of(&p).to_vec(),
        groups: v.dispatch(&p),
    };
    run_once(gpu, shader, &[("input", input), ("weight", weight), ("bias", bias)], (p.c_out * p.oh * p.ow) as usize)
}

/// `conv2d_f16.spv`: `conv2d` with fp16 activations, weights, bias and output, fp32 arithmetic.
/// Needs `storageBuffer16BitAccess`; returns `Err` naming the device when it lacks it.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_f16(
    gpu: &Gpu,
    spec: &Conv2d,
    leaky: Option<f32>,
    input: &[f16],
    h: usize,
    w: usize,
    weight: &[f16],
    bias: Option<&[f16]>,
) -> Result<OpRun<f16>> {
    if !gpu.ctx.probe().storage_buffer_16bit {
        return Err(Error::Vulkan(format!("device {} lacks 16-bit storage buffers, needed by conv2d_f16", gpu.ctx.probe().summary())));
    }
    let p = cv::Conv2dPush::new(spec, h, w);
    let v = cv::Conv2dVariant { kernel: spec.kernel as u32, stride: spec.stride as u32, has_bias: bias.is_some(), leaky };
    assert_eq!(input.len(), spec.c_in * h * w, "conv2d_f16 input length");
    assert_eq!(weight.len(), spec.c_out * spec.c_in * spec.kernel * spec.kernel, "conv2d_f16 weight length");
    let zero = [f16::ZERO];
    let bias = bias.unwrap_or(&zero);
    let shader = Shader {
        name: "conv2d_f16",
        spirv: gaga_kernels::twin::CONV2D_F16_SPV,
        spec: v.spec_constants(),
        push: bytemuck::bytes_of(&p).to_vec(),
        groups: v.dispatch(&p),
    };
    run_once(gpu, shader, &[("input", input), ("weight", weight), ("bias", bias)], (p.c_out * p.oh * p.ow) as usize)
}

/// `bilinear.comp`: like `gaga_kernels::resize::bilinear`.
#[allow(clippy::too_many_arguments)]
pub fn bilinear(gpu: &Gpu, input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, align_corners: bool) -> Result<OpRun> {
    assert_eq!(input.len(), c * h * w, "bilinear input length");
    let p = bl::BilinearPush::new(c, h, w, oh, ow, align_corners);
    let shader = Shader {
        name: "bilinear",
        spirv: gaga_kernels::twin::BILINEAR_SPV,
        spec: bl::spec_constants(align_corners),
        push: bytemuck::bytes_of(&p).to_vec(),
        groups: p.dispatch(),
    };
    run_once(gpu, shader, &[("input", input)], c * oh * ow)
}

/// `elementwise.comp`: `op` over `a` (and `b` for `Add`, same length).
pub fn elementwise(gpu: &Gpu, op: ew::ElementwiseOp, a: &[f32], b: &[f32]) -> Result<OpRun> {
    let b = match op {
        ew::ElementwiseOp::Add => {
            assert_eq!(a.len(), b.len(), "elementwise add lengths");
            b
        }
        ew::ElementwiseOp::LeakyRelu { .. } => &[0.0],
    };
    let p = ew::ElementwisePush { n: a.len() as u32 };
    let shader = Shader {
        name: "elementwise",
        spirv: gaga_kernels::twin::ELEMENTWISE_SPV,
        spec: op.spec_constants(),
        push: bytemuck::bytes_of(&p).to_vec(),
        groups: (ew::dispatch(a.len()), 1, 1),
    };
    run_once(gpu, shader, &[("a", a), ("b", b)], a.len())
}
