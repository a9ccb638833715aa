//! A refiner convolution's weights, packed once at load in the layout its kernel reads:
//! - f32, row-major in the file: packed into SGEMM panels from the mapped values (`conv2d_prepacked`);
//! - f32 in the file's `Panels` layout: borrowed zero-copy from the map;
//! - f16 or int8 in the file's `QPanelsF16` / `QPanelsI8` layouts (`gaga convert --pack-refiner`):
//!   borrowed zero-copy from the map (`PackedConv::from_packed_bytes`);
//! - f16 or int8 row-major: packed straight from the stored halves / bytes + per-channel scales (never dequantised)
//!   for `gaga_kernels::qgemm` (fp16: widened per call, fp32 arithmetic; int8: i8 x i8 -> i32 with the
//!   calibrated activation quantiser `<weight>@act_scale` when the file has one, the dynamic min-max
//!   quantiser of each call's input otherwise, `qgemm::ActQuant`).
//!
//! No weight is packed per call.

use std::borrow::Cow;
use std::sync::OnceLock;

use gaga_kernels::conv::{conv2d_prepacked, Conv2d, PackedWeights, Scratch};
use gaga_kernels::qgemm::{ActQuant, PackedConv};
use gaga_kernels::{sgemm, winograd, winograd::WinogradWeights};
use half::f16;

use super::modconv::stored_square_sums;
use super::winograd_i8_model;
use crate::error::{Error, Result};
use crate::format::{DType, Layout};
use crate::weights::Weights;

/// How a convolution's weights are held and run.
pub enum ConvKernel<'w> {
    /// fp32 panels (owned, or borrowed from a `Panels` tensor) with the bias folded in.
    F32(PackedWeights<'w>),
    /// fp16 or int8 weights for `qgemm`, with the bias and (int8) the calibrated activation quantiser; `fine`
    /// int8 layers run with ~15-bit activations ([`ConvKernel::fine_activations`]).
    Quant { w: PackedConv<'w>, bias: Option<Cow<'w, [f32]>>, act: Option<ActQuant>, fine: bool },
    /// fp32 3x3 stride-1 weights in the Winograd F(4x4, 3x3) domain (`select_winograd`).
    Winograd(Box<WinogradConv<'w>>),
}

/// A Winograd layer. Both forms are made on first use, because the map side is only known per call
/// (`gaga_kernels::winograd::pays`): the transformed weights on the first call at a Winograd size, the
/// direct panels on the first small-map call. So a layer holds only what its sizes need (4x4 / 8x8-only
/// layers never transform; the others never pack) and the row-major source stays in the mapped file.
pub struct WinogradConv<'w> {
    bias: Vec<f32>,
    direct: Direct<'w>,
    wino: OnceLock<std::result::Result<WinogradWeights, String>>,
}

/// Where a Winograd layer's direct panels come from.
enum Direct<'w> {
    /// Borrowed from a `Panels` file (zero-copy, always there).
    Borrowed(PackedWeights<'w>),
    /// Packed from the row-major weights (borrowed from the map) on the first small-map call.
    Lazy { source: Cow<'w, [f32]>, packed: OnceLock<PackedWeights<'static>> },
}

impl WinogradConv<'_> {
    /// The `[c_out, c_in, 3, 3]` weights.
    fn row_major(&self, spec: &Conv2d) -> Cow<'_, [f32]> {
        match &self.direct {
            Direct::Lazy { source, .. } => Cow::Borrowed(source),
            Direct::Borrowed(pw) => {
                let mut g = vec![0f32; spec.c_out * spec.c_in * 9];
                sgemm::unpack_a(spec.c_out, spec.c_in * 9, pw.panels(), &mut g);
                Cow::Owned(g)
            }
        }
    }

    /// The transformed weights, made on the first call.
    fn winograd(&self, spec: &Conv2d) -> Result<&WinogradWeights> {
        let ww = self.wino.get_or_init(|| WinogradWeights::new(spec, &self.row_major(spec), Some(&self.bias)));
        ww.as_ref().map_err(|e| Error::Other(format!("refiner conv {spec:?}: {e}")))
    }

    fn run(&self, s: &mut Scratch, spec: &Conv2d, x: &[f32], h: usize, w: usize, out: &mut [f32]) -> Result<()> {
        if winograd::pays(spec, h, w) {
            let ww = self.winograd(spec)?;
            return winograd::conv3x3(s, ww, x, h, w, out).map_err(|e| Error::Other(format!("refiner conv: {e}")));
        }
        let pw = match &self.direct {
            Direct::Borrowed(pw) => pw,
            Direct::Lazy { source, packed } => packed.get_or_init(|| PackedWeights::pack(spec, source, Some(&self.bias))),
        };
        conv2d_prepacked(s, pw, x, h, w, out);
        Ok(())
    }
}

/// Makes fp32 3x3 stride-1 layers Winograd layers unless `GAGA_WINOGRAD=0`. `bias` is the `[c_out]` bias.
fn select_winograd<'w>(
    w: &'w dyn Weights,
    name: &str,
    kernel: ConvKernel<'w>,
    spec: &Conv2d,
    bias: Option<&[f32]>,
) -> Result<ConvKernel<'w>> {
    let ConvKernel::F32(pw) = kernel else { return Ok(kernel) };
    if !(winograd::enabled() && winograd::supports(spec)) {
        return Ok(ConvKernel::F32(pw));
    }
    let direct = if pw.is_borrowed() {
        Direct::Borrowed(pw)
    } else {
        // The packed copy goes: the mapped row-major values are the source of both forms.
        let source = w.f32(name)?;
        let n = spec.c_out * spec.c_in * 9;
        if source.len() != n {
            return Err(err(name, format!("{} values, conv {spec:?} needs {n}", source.len())));
        }
        Direct::Lazy { source, packed: OnceLock::new() }
    };
    let bias = bias.map_or_else(|| vec![0.0; spec.c_out], <[f32]>::to_vec);
    Ok(ConvKernel::Winograd(Box::new(WinogradConv { bias, direct, wino: OnceLock::new() })))
}

/// Which storage a layer's weights have (for `bench`, tests and messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

/// What [`load`] also returns when the caller asked: the per-`(out, in)` sums of squared weights that
/// demodulation needs (`modconv::stored_square_sums`: from the stored values, dequantised on the fly for
/// fp16 / int8, so no row-major f32 copy of the weight is ever made).
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
    let b = bias.as_deref().map(<[f32]>::to_vec);
    let (kernel, rm) = load_stored(w, name, shape, spec, bias, want_row_major)?;
    Ok((select_winograd(w, name, kernel, spec, b.as_deref())?, rm))
}

/// [`load`] before the Winograd selection: the kernel for the stored layout and dtype.
fn load_stored<'w>(
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
    let row_major =
        |w: &'w dyn Weights| -> Result<RowMajorF32> { want_row_major.then(|| stored_square_sums(w, &st, name, co, ci, k)).transpose() };
    // Once a kernel owns its packed copy, the stored bytes are never read again: drop their pages.
    let release = |w: &'w dyn Weights| w.release_tensor(name);
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
            let sums = row_major(w)?;
            release(w)?;
            Ok((ConvKernel::F32(pw), sums))
        }
        (Layout::RowMajor, DType::F16) => {
            if st.bytes.len() != 2 * n {
                return Err(err(name, format!("f16 data has {} bytes, {shape:?} needs {}", st.bytes.len(), 2 * n)));
            }
            let halves: Vec<f16> = st.bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect();
            let pc = PackedConv::from_f16(&halves, co, ci, k).map_err(|e| err(name, e.0))?;
            let sums = row_major(w)?;
            release(w)?;
            Ok((ConvKernel::Quant { w: pc, bias, act: None, fine: false }, sums))
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
            let sums = row_major(w)?;
            release(w)?;
            Ok((ConvKernel::Quant { w: pc, bias, act: act_quant(w, name)?, fine: false }, sums))
        }
        (Layout::QPanelsF16 | Layout::QPanelsI8, DType::F16 | DType::I8) => {
            // Packed by the converter in the kernel's own layout: borrowed from the map, never repacked.
            let int8 = st.dtype == DType::I8;
            let found_dims = (co, ci, k);
            let entry_dims = {
                let r = shape.len();
                (shape[..r - 3].iter().product::<usize>(), shape[r - 3], shape[r - 1])
            };
            if found_dims != entry_dims {
                return Err(err(name, format!("packed weight of shape {shape:?} does not fit conv {spec:?}")));
            }
            let act = if int8 { act_quant(w, name)? } else { None };
            let rm = row_major(w)?;
            let pc = match (&st.bytes, &st.scales) {
                (Cow::Borrowed(b), Some(Cow::Borrowed(s))) => quant_view(name, st.layout, shape, b, Some(s))?,
                (Cow::Borrowed(b), None) => quant_view(name, st.layout, shape, b, None)?,
                // A source that does not borrow (not the mapped file): an owned copy of the same layout.
                (b, s) => quant_view(name, st.layout, shape, b, s.as_deref())?.into_owned(),
            };
            Ok((ConvKernel::Quant { w: pc, bias, act, fine: false }, rm))
        }
        (layout, dtype) => Err(err(name, format!("{} weights in layout {} are not supported by the refiner", dtype.name(), layout.name()))),
    }
}

/// The `qgemm` view of packed bytes in `layout` (the same checks as the model file's reader).
fn quant_view<'a>(name: &str, layout: Layout, shape: &[usize], bytes: &'a [u8], scales: Option<&'a [f32]>) -> Result<PackedConv<'a>> {
    let entry = crate::format::TensorEntry {
        name: name.to_string(),
        dtype: if layout == Layout::QPanelsI8 { DType::I8 } else { DType::F16 },
        layout,
        stage: crate::format::Stage::Frame,
        quant_axis: None,
        reason: crate::format::Reason::Requested,
        shape: shape.iter().map(|&d| d as u64).collect(),
        offset: 0,
        length: bytes.len() as u64,
        checksum: 0,
    };
    crate::format::panels::qpacked(&entry, bytes, scales).map_err(Error::Other)
}

/// The values of a calibrated activation quantiser's `<weight>@act_scale` tensor: `[scale]` for a symmetric
/// one (the only form before session 11), `[scale, zero point]` for an affine one.
pub fn act_quant_values(a: ActQuant) -> Vec<f32> {
    if a.zero == 0 {
        vec![a.scale]
    } else {
        vec![a.scale, a.zero as f32]
    }
}

/// The calibrated activation quantiser `<name>@act_scale` when the file has one: f32 `[1]` (the scale,
/// finite and > 0) or `[2]` (scale, then an integer zero point in [-127, 127]).
fn act_quant(w: &dyn Weights, name: &str) -> Result<Option<ActQuant>> {
    let sname = format!("{name}@act_scale");
    let Ok(shape) = w.shape(&sname) else {
        return Ok(None);
    };
    if shape != [1] && shape != [2] {
        return Err(err(&sname, format!("shape {shape:?}, expected [1] (scale) or [2] (scale, zero point)")));
    }
    let v = w.f32(&sname)?;
    let scale = v[0];
    if !(scale.is_finite() && scale > 0.0) {
        return Err(err(&sname, format!("activation scale {scale}, expected finite and > 0")));
    }
    let zero = v.get(1).copied().unwrap_or(0.0);
    if !(zero.fract() == 0.0 && (-127.0..=127.0).contains(&zero)) {
        return Err(err(&sname, format!("activation zero point {zero}, expected an integer in [-127, 127]")));
    }
    Ok(Some(ActQuant { scale, zero: zero as i32 }))
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
            ConvKernel::Quant { w: pc, bias, act, fine } => {
                if let Some(model) = winograd_i8_model::Options::from_env()?.filter(|m| !*fine && m.applies(pc, spec, h, w)) {
                    winograd_i8_model::conv(&model, pc, spec, x, h, w, bias.as_deref(), out);
                    return Ok(());
                }
                let run = if *fine { PackedConv::run_fine } else { PackedConv::run };
                run(pc, s, x, h, w, *act, bias.as_deref(), out).map_err(|e| Error::Other(format!("refiner conv {spec:?}: {}", e.0)))
            }
            ConvKernel::Winograd(wc) => wc.run(s, spec, x, h, w, out),
        }
    }

    /// [`ConvKernel::run`] with `epi` applied to every output value on its way into `out` (which holds the
    /// map to combine with for `MulInto` / `AddInto`), when this layer runs Winograd at this size.
    /// `Ok(false)` when it does not: nothing was written and the caller runs the plain passes.
    #[allow(clippy::too_many_arguments)]
    pub fn run_fused(
        &self,
        s: &mut Scratch,
        spec: &Conv2d,
        x: &[f32],
        h: usize,
        w: usize,
        out: &mut [f32],
        epi: winograd::Epilogue,
    ) -> Result<bool> {
        let ConvKernel::Winograd(wc) = self else { return Ok(false) };
        if !winograd::pays(spec, h, w) {
            return Ok(false);
        }
        let (x, out) = (&x[..spec.c_in * h * w], &mut out[..spec.c_out * h * w]);
        winograd::conv3x3_with(s, wc.winograd(spec)?, x, h, w, out, epi).map_err(|e| Error::Other(format!("refiner conv: {e}")))?;
        Ok(true)
    }

    /// The storage precision.
    pub fn precision(&self) -> Precision {
        match self {
            ConvKernel::F32(_) | ConvKernel::Winograd(_) => Precision::Fp32,
            ConvKernel::Quant { w, .. } => match w.format() {
                gaga_kernels::qgemm::PackedFormat::I8 => Precision::Int8,
                gaga_kernels::qgemm::PackedFormat::F16 => Precision::Fp16,
                gaga_kernels::qgemm::PackedFormat::F32 => Precision::Fp32,
            },
        }
    }

    /// Makes an int8 layer run with ~15-bit activations (`PackedConv::run_fine`: two int8 passes, the
    /// second on the first's rounding residual); other layers are unchanged. For layers on small maps,
    /// whose few values do not average their activation rounding away: on the official seeded model,
    /// int8 activations on the maps of side 16 and below cost ~1.1 dB of median PSNR and ~2 dB of the
    /// worst frame (`docs/performance.md`, session 9), for about 5 % more int8 work (3.5 of 68 G multiply-adds
    /// per official frame).
    pub fn fine_activations(&mut self) {
        if let ConvKernel::Quant { w, fine, .. } = self {
            *fine = w.format() == gaga_kernels::qgemm::PackedFormat::I8;
        }
    }

    /// True for an int8 layer running with ~15-bit activations.
    pub fn is_fine(&self) -> bool {
        matches!(self, ConvKernel::Quant { fine: true, .. })
    }

    /// The calibrated int8 activation quantiser, when the file had one.
    pub fn act_quant(&self) -> Option<ActQuant> {
        match self {
            ConvKernel::Quant { act, .. } => *act,
            ConvKernel::F32(_) | ConvKernel::Winograd(_) => None,
        }
    }

    /// True when the fp32 panels are borrowed from the model file.
    pub fn is_borrowed(&self) -> bool {
        match self {
            ConvKernel::F32(pw) => pw.is_borrowed(),
            ConvKernel::Quant { w, .. } => w.is_borrowed(),
            ConvKernel::Winograd(wc) => matches!(wc.direct, Direct::Borrowed(_)),
        }
    }
}

#[cfg(test)]
#[path = "tests_qpacked.rs"]
mod tests_qpacked;
