//! A refiner convolution's weights, packed once at load in the layout its kernel reads:
//! - f32, row-major in the file: packed into SGEMM panels from the mapped values (`conv2d_prepacked`);
//! - f32 in the file's `Panels` layout: borrowed zero-copy from the map;
//! - f16 or int8: packed straight from the stored halves / bytes + per-channel scales (never dequantised)
//!   for `gaga_kernels::qgemm` (fp16: widened per call, fp32 arithmetic; int8: i8 x i8 -> i32 with the
//!   calibrated activation scale `<weight>@act_scale` when the file has one, dynamic max-abs otherwise).
//!
//! No weight is packed per call.

use std::borrow::Cow;

use gaga_kernels::conv::{conv2d_prepacked, Conv2d, PackedWeights, Scratch};
use gaga_kernels::qgemm::PackedConv;
use half::f16;

use crate::error::{Error, Result};
use crate::format::{DType, Layout};
use crate::weights::Weights;

/// How a convolution's weights are held and run.
pub enum ConvKernel<'w> {
    /// fp32 panels (owned, or borrowed from a `Panels` tensor) with the bias folded in.
    F32(PackedWeights<'w>),
    /// fp16 or int8 weights for `qgemm`, with the bias and (int8) the calibrated activation scale.
    Quant { w: PackedConv<'w>, bias: Option<Cow<'w, [f32]>>, act_scale: Option<f32> },
}

/// Which storage a layer's weights have (for `bench`, tests and messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

/// What [`load`] also returns: the weights as row-major f32 when the caller asked (modulated convs
/// need per-`(out, in)` square sums for demodulation), dequantised for fp16/int8.
pub type RowMajorF32 = Option<Vec<f32>>;

fn err(name: &str, what: String) -> Error {
    Error::Other(format!("tensor `{name}`: {what}"))
}

/// Loads the weight `name` of logical shape `shape` (`[c_out, c_in, k, k]`, or `[1, c_out, c_in, k, k]` for
/// a modulated conv) and the optional `[c_out]` bias for `spec`.
pub fn load<'w>(
    w: &'w dyn Weights,
    name: &str,
    shape: &[usize],
    spec: &Conv2d,
    bias: Option<Cow<'w, [f32]>>,
    want_row_major: bool,
) -> Result<(ConvKernel<'w>, RowMajorF32)> {
    let found = w.shape(name)?;
    if found != shape {
        return Err(Error::Shape { name: name.to_string(), expected: shape.to_vec(), found });
    }
    let st = w.stored(name)?;
    let (co, ci, k) = (spec.c_out, spec.c_in, spec.kernel);
    let n = co * ci * k * k;
    let row_major = |w: &'w dyn Weights| -> Result<RowMajorF32> { Ok(if want_row_major { Some(w.f32(name)?.into_owned()) } else { None }) };
    match (st.layout, st.dtype) {
        (Layout::Panels, DType::F32) => {
            let rm = row_major(w)?;
            let panels: Cow<'w, [f32]> = match st.bytes {
                Cow::Borrowed(b) => Cow::Borrowed(
                    bytemuck::try_cast_slice(b)
                        .map_err(|e| err(name, format!("panels at address {:#x} are not readable as f32 ({e})", b.as_ptr() as usize)))?,
                ),
                Cow::Owned(b) => Cow::Owned(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            };
            let pw = PackedWeights::from_panels(spec, panels, bias.as_deref()).map_err(|e| err(name, e))?;
            Ok((ConvKernel::F32(pw), rm))
        }
        (Layout::RowMajor, DType::F32) => {
            let v = w.f32(name)?;
            let pw = PackedWeights::pack(spec, &v, bias.as_deref());
            Ok((ConvKernel::F32(pw), want_row_major.then(|| v.into_owned())))
        }
        (Layout::RowMajor, DType::F16) => {
            if st.bytes.len() != 2 * n {
                return Err(err(name, format!("f16 data has {} bytes, {shape:?} needs {}", st.bytes.len(), 2 * n)));
            }
            let halves: Vec<f16> = st.bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect();
            let pc = PackedConv::from_f16(&halves, co, ci, k).map_err(|e| err(name, e.0))?;
            Ok((ConvKernel::Quant { w: pc, bias, act_scale: None }, row_major(w)?))
        }
        (Layout::RowMajor, DType::I8) => {
            let axis = shape.len() - 4;
            if st.quant_axis != Some(axis) {
                return Err(err(name, format!("int8 scales along axis {:?}, expected the output-channel axis {axis}", st.quant_axis)));
            }
            let scales = st.scales.as_deref().ok_or_else(|| err(name, "int8 without per-channel scales".into()))?;
            if st.bytes.len() != n {
                return Err(err(name, format!("int8 data has {} bytes, {shape:?} needs {n}", st.bytes.len())));
            }
            let q: &[i8] = bytemuck::cast_slice(&st.bytes);
            let pc = PackedConv::from_i8(q, scales, co, ci, k).map_err(|e| err(name, e.0))?;
            Ok((ConvKernel::Quant { w: pc, bias, act_scale: act_scale(w, name)? }, row_major(w)?))
        }
        (layout, dtype) => Err(err(name, format!("{} weights in layout {} are not supported by the refiner", dtype.name(), layout.name()))),
    }
}

/// The calibrated activation scale `<name>@act_scale` (f32 `[1]`, finite and > 0) when the file has one.
fn act_scale(w: &dyn Weights, name: &str) -> Result<Option<f32>> {
    let sname = format!("{name}@act_scale");
    let Ok(shape) = w.shape(&sname) else {
        return Ok(None);
    };
    if shape != [1] {
        return Err(Error::Shape { name: sname, expected: vec![1], found: shape });
    }
    let v = w.f32(&sname)?[0];
    if !(v.is_finite() && v > 0.0) {
        return Err(err(&sname, format!("activation scale {v}, expected finite and > 0")));
    }
    Ok(Some(v))
}

impl ConvKernel<'_> {
    /// `out[..c_out*h*w] = conv(x[..c_in*h*w]) + bias`.
    pub fn run(&self, s: &mut Scratch, spec: &Conv2d, x: &[f32], h: usize, w: usize, out: &mut [f32]) -> Result<()> {
        let (ci, co) = (spec.c_in, spec.c_out);
        let (x, out) = (&x[..ci * h * w], &mut out[..co * h * w]);
        match self {
            ConvKernel::F32(pw) => {
                conv2d_prepacked(s, pw, x, h, w, out);
                Ok(())
            }
            ConvKernel::Quant { w: pc, bias, act_scale } => {
                pc.run(s, x, h, w, *act_scale, bias.as_deref(), out).map_err(|e| Error::Other(format!("refiner conv {spec:?}: {}", e.0)))
            }
        }
    }

    /// The storage precision.
    pub fn precision(&self) -> Precision {
        match self {
            ConvKernel::F32(_) => Precision::Fp32,
            ConvKernel::Quant { w, .. } => match w.format() {
                gaga_kernels::qgemm::PackedFormat::I8 => Precision::Int8,
                gaga_kernels::qgemm::PackedFormat::F16 => Precision::Fp16,
                gaga_kernels::qgemm::PackedFormat::F32 => Precision::Fp32,
            },
        }
    }

    /// The calibrated int8 activation scale, when the file had one.
    pub fn act_scale(&self) -> Option<f32> {
        match self {
            ConvKernel::Quant { act_scale, .. } => *act_scale,
            ConvKernel::F32(_) => None,
        }
    }

    /// True when the fp32 panels are borrowed from the model file.
    pub fn is_borrowed(&self) -> bool {
        matches!(self, ConvKernel::F32(pw) if pw.is_borrowed())
    }
}
