//! Packed weight layouts (what the converter stores and the kernels read in place) and [`PackedConv`].
//!
//! For a PyTorch weight `[c_out, c_in, k, k]` (a linear layer is `k = 1`), with `P = ceil(c_out / 8)`
//! panels of [`MR`] = 8 output channels, rows past `c_out` zero:
//! - **F32 / F16**: `K = c_in * k * k` in PyTorch order (`q = (ci * k + ky) * k + kx`); element
//!   `(panel p, q, row r)` at index `(p * K + q) * 8 + r` (F32 is exactly `crate::sgemm::pack_a`'s layout, the
//!   model file's `Panels`). Little-endian f32 / IEEE half; 4 / 2-byte aligned.
//! - **I8**: channels in groups of 4 (`G = ceil(c_in / 4)`, missing channels zero), groups tap-major
//!   (`g = (ky * k + kx) * G + ci / 4`); byte `(p, g, r, t)` at `((p * k * k * G + g) * 8 + r) * 4 + t` holds
//!   `q[p * 8 + r, g % G * 4 + t, ky, kx]`, in `[-127, 127]`. Per-channel scales `f32[c_out]` beside it.
//!   1-byte aligned (64 recommended, as for every tensor in the model file).

use std::borrow::Cow;

use half::f16;

use super::{ensure, quantise, QError, QResult, KG, MAX_K_I8, MR};

/// Storage format of a [`PackedConv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedFormat {
    F32,
    F16,
    I8,
}

/// Weights in plain PyTorch layout, as [`PackedConv::unpack_to_row_major`] returns them.
#[derive(Clone, Debug, PartialEq)]
pub enum RowMajor {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Values and the per-output-channel scales (`w ~= q * scales[o]`).
    I8 {
        q: Vec<i8>,
        scales: Vec<f32>,
    },
}

pub(super) enum Packed<'a> {
    F32(Cow<'a, [f32]>),
    F16(Cow<'a, [f16]>),
    /// `sums[r] = 128 * (sum of row r's packed values)`: the VNNI path's correction for reading `x + 128`.
    I8 {
        q: Cow<'a, [i8]>,
        scales: Cow<'a, [f32]>,
        sums: Vec<i32>,
    },
}

/// A convolution (or linear layer, `k = 1`) weight in a packed layout, ready for [`PackedConv::run`].
pub struct PackedConv<'a> {
    pub c_out: usize,
    pub c_in: usize,
    /// Square kernel size (odd; padding `k / 2`).
    pub k: usize,
    pub(super) w: Packed<'a>,
}

fn check_dims(c_out: usize, c_in: usize, k: usize) -> QResult<()> {
    ensure!(c_out > 0 && c_in > 0, "packed conv: c_out {c_out} and c_in {c_in} must be positive");
    ensure!(k % 2 == 1, "packed conv: kernel size {k} must be odd (stride-1 'same' convolutions)");
    Ok(())
}

fn check_len(what: &str, len: usize, c_out: usize, c_in: usize, k: usize) -> QResult<()> {
    let want = c_out * c_in * k * k;
    ensure!(len == want, "{what}: weight has {len} values, [{c_out}, {c_in}, {k}, {k}] needs {want}");
    Ok(())
}

/// Length of a packed F32/F16 weight in elements.
pub(super) fn float_len(c_out: usize, c_in: usize, k: usize) -> usize {
    c_out.div_ceil(MR) * MR * c_in * k * k
}

/// Length of a packed I8 weight in bytes (= elements).
pub(super) fn i8_len(c_out: usize, c_in: usize, k: usize) -> usize {
    c_out.div_ceil(MR) * MR * k * k * c_in.div_ceil(KG) * KG
}

/// Bytes of a weight `[c_out, c_in, k, k]` packed in `format` (what [`PackedConv::packed_bytes`] returns).
pub fn packed_len(format: PackedFormat, c_out: usize, c_in: usize, k: usize) -> usize {
    match format {
        PackedFormat::F32 => 4 * float_len(c_out, c_in, k),
        PackedFormat::F16 => 2 * float_len(c_out, c_in, k),
        PackedFormat::I8 => i8_len(c_out, c_in, k),
    }
}

fn pack_float<T: Copy + Default>(w: &[T], c_out: usize, c_in: usize, k: usize) -> Vec<T> {
    let kk = c_in * k * k;
    let mut out = vec![T::default(); float_len(c_out, c_in, k)];
    for (i, v) in out.iter_mut().enumerate() {
        let (r, q, p) = (i % MR, (i / MR) % kk, i / (MR * kk));
        let o = p * MR + r;
        if o < c_out {
            *v = w[o * kk + q];
        }
    }
    out
}

/// Packs an f32 weight `[c_out, c_in, k, k]` into the F32 layout (= `crate::sgemm::pack_a`'s panels).
pub fn pack_f32(weight: &[f32], c_out: usize, c_in: usize, k: usize) -> QResult<Vec<f32>> {
    check_dims(c_out, c_in, k)?;
    check_len("pack_f32", weight.len(), c_out, c_in, k)?;
    let mut out = vec![0f32; float_len(c_out, c_in, k)];
    crate::sgemm::pack_a(c_out, c_in * k * k, weight, &mut out);
    Ok(out)
}

/// Packs an f16 weight `[c_out, c_in, k, k]` into the F16 layout.
pub fn pack_f16(weight: &[f16], c_out: usize, c_in: usize, k: usize) -> QResult<Vec<f16>> {
    check_dims(c_out, c_in, k)?;
    check_len("pack_f16", weight.len(), c_out, c_in, k)?;
    Ok(pack_float(weight, c_out, c_in, k))
}

/// (panel, group, row, lane) -> (o, ci, tap) of the I8 layout, `None` for padding.
fn i8_source(i: usize, c_out: usize, c_in: usize, k: usize) -> Option<(usize, usize, usize)> {
    let g_all = k * k * c_in.div_ceil(KG);
    let (t, r, g, p) = (i % KG, (i / KG) % MR, (i / (KG * MR)) % g_all, i / (KG * MR * g_all));
    let cgs = c_in.div_ceil(KG);
    let (tap, ci, o) = (g / cgs, (g % cgs) * KG + t, p * MR + r);
    (o < c_out && ci < c_in).then_some((o, ci, tap))
}

/// Packs int8 values `[c_out, c_in, k, k]` (in `[-127, 127]`) into the I8 layout.
pub fn pack_i8(q: &[i8], c_out: usize, c_in: usize, k: usize) -> QResult<Vec<i8>> {
    check_dims(c_out, c_in, k)?;
    check_len("pack_i8", q.len(), c_out, c_in, k)?;
    if let Some(i) = q.iter().position(|&v| v == i8::MIN) {
        return Err(QError(format!("pack_i8: value -128 at index {i}; symmetric int8 weights lie in [-127, 127]")));
    }
    let kk = k * k;
    let mut out = vec![0i8; i8_len(c_out, c_in, k)];
    for (i, v) in out.iter_mut().enumerate() {
        if let Some((o, ci, tap)) = i8_source(i, c_out, c_in, k) {
            *v = q[(o * c_in + ci) * kk + tap];
        }
    }
    Ok(out)
}

/// Symmetric per-row int8 quantisation of a row-major `rows x row_len` matrix (a conv weight's output
/// channels): `scale = max|row| / 127` (1 for an all-zero row), `q = quantise(w, scale)`.
pub fn quantise_rows(weight: &[f32], rows: usize, row_len: usize) -> QResult<(Vec<i8>, Vec<f32>)> {
    ensure!(weight.len() == rows * row_len, "quantise_rows: {} values, {rows} x {row_len} needs {}", weight.len(), rows * row_len);
    let scales: Vec<f32> = weight.chunks_exact(row_len.max(1)).take(rows).map(super::weight_scale_for).collect();
    let q = weight.iter().enumerate().map(|(i, &v)| quantise(v, scales[i / row_len.max(1)])).collect();
    Ok((q, scales))
}

fn row_sums(q: &[i8], c_out: usize) -> Vec<i32> {
    let panels = c_out.div_ceil(MR);
    let per_panel = q.len() / panels.max(1);
    let mut sums = vec![0i32; panels * MR];
    for (p, panel) in q.chunks_exact(per_panel.max(1)).enumerate() {
        for (i, &v) in panel.iter().enumerate() {
            sums[p * MR + (i / KG) % MR] += 128 * v as i32;
        }
    }
    sums
}

fn check_scales(scales: &[f32], c_out: usize) -> QResult<()> {
    ensure!(scales.len() == c_out, "int8 weight scales: {} values, c_out is {c_out}", scales.len());
    if let Some(i) = scales.iter().position(|s| !(s.is_finite() && *s >= 0.0)) {
        return Err(QError(format!("int8 weight scales: scale {i} is {}, expected finite and >= 0", scales[i])));
    }
    Ok(())
}

impl PackedConv<'static> {
    /// Packs an f32 weight `[c_out, c_in, k, k]` (fp32 kernels).
    pub fn from_f32(weight: &[f32], c_out: usize, c_in: usize, k: usize) -> QResult<Self> {
        Ok(PackedConv { c_out, c_in, k, w: Packed::F32(Cow::Owned(pack_f32(weight, c_out, c_in, k)?)) })
    }

    /// Packs an f16 weight `[c_out, c_in, k, k]` (fp16 storage, fp32 arithmetic).
    pub fn from_f16(weight: &[f16], c_out: usize, c_in: usize, k: usize) -> QResult<Self> {
        Ok(PackedConv { c_out, c_in, k, w: Packed::F16(Cow::Owned(pack_f16(weight, c_out, c_in, k)?)) })
    }

    /// Packs int8 values `[c_out, c_in, k, k]` with per-output-channel scales (int8 kernels).
    pub fn from_i8(q: &[i8], scales: &[f32], c_out: usize, c_in: usize, k: usize) -> QResult<Self> {
        check_scales(scales, c_out)?;
        ensure!(c_in * k * k <= MAX_K_I8, "from_i8: inner size {} exceeds {MAX_K_I8}", c_in * k * k);
        let q = pack_i8(q, c_out, c_in, k)?;
        let sums = row_sums(&q, c_out);
        Ok(PackedConv { c_out, c_in, k, w: Packed::I8 { q: Cow::Owned(q), scales: Cow::Owned(scales.to_vec()), sums } })
    }

    /// Quantises an f32 weight per output channel ([`quantise_rows`]) and packs it as int8.
    pub fn from_f32_as_i8(weight: &[f32], c_out: usize, c_in: usize, k: usize) -> QResult<Self> {
        check_dims(c_out, c_in, k)?;
        check_len("from_f32_as_i8", weight.len(), c_out, c_in, k)?;
        let (q, scales) = quantise_rows(weight, c_out, c_in * k * k)?;
        PackedConv::from_i8(&q, &scales, c_out, c_in, k)
    }
}

impl<'a> PackedConv<'a> {
    /// Borrows a weight already in a packed layout (e.g. straight from a memory-mapped model file).
    /// `bytes` must have the layout's exact length and alignment (4 for F32, 2 for F16); int8 needs its
    /// `c_out` scales. Checks every value that matters for exactness (no -128, finite scales).
    pub fn from_packed_bytes(
        format: PackedFormat,
        c_out: usize,
        c_in: usize,
        k: usize,
        bytes: &'a [u8],
        scales: Option<&'a [f32]>,
    ) -> QResult<Self> {
        check_dims(c_out, c_in, k)?;
        let (elem, want) = match format {
            PackedFormat::F32 => (4, float_len(c_out, c_in, k)),
            PackedFormat::F16 => (2, float_len(c_out, c_in, k)),
            PackedFormat::I8 => (1, i8_len(c_out, c_in, k)),
        };
        ensure!(
            bytes.len() == want * elem,
            "packed {format:?} weight [{c_out}, {c_in}, {k}, {k}]: {} bytes, expected {}",
            bytes.len(),
            want * elem
        );
        #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85.
        let aligned = (bytes.as_ptr() as usize) % elem == 0;
        ensure!(aligned, "packed {format:?} weight: data at address {:#x} is not {elem}-byte aligned", bytes.as_ptr() as usize);
        let w = match format {
            PackedFormat::F32 => Packed::F32(Cow::Borrowed(bytemuck::cast_slice(bytes))),
            PackedFormat::F16 => Packed::F16(Cow::Borrowed(bytemuck::cast_slice(bytes))),
            PackedFormat::I8 => {
                let q: &'a [i8] = bytemuck::cast_slice(bytes);
                if let Some(i) = q.iter().position(|&v| v == i8::MIN) {
                    return Err(QError(format!("packed I8 weight: value -128 at byte offset {i}; expected [-127, 127]")));
                }
                ensure!(c_in * k * k <= MAX_K_I8, "packed I8 weight: inner size {} exceeds {MAX_K_I8}", c_in * k * k);
                let scales = scales.ok_or_else(|| QError("packed I8 weight: per-channel scales missing".into()))?;
                check_scales(scales, c_out)?;
                Packed::I8 { q: Cow::Borrowed(q), scales: Cow::Borrowed(scales), sums: row_sums(q, c_out) }
            }
        };
        Ok(PackedConv { c_out, c_in, k, w })
    }

    /// The same weight owning its values (copies whatever was borrowed).
    pub fn into_owned(self) -> PackedConv<'static> {
        let w = match self.w {
            Packed::F32(v) => Packed::F32(Cow::Owned(v.into_owned())),
            Packed::F16(v) => Packed::F16(Cow::Owned(v.into_owned())),
            Packed::I8 { q, scales, sums } => Packed::I8 { q: Cow::Owned(q.into_owned()), scales: Cow::Owned(scales.into_owned()), sums },
        };
        PackedConv { c_out: self.c_out, c_in: self.c_in, k: self.k, w }
    }

    /// True when the weight values are borrowed (e.g. from a memory-mapped model file), not owned.
    pub fn is_borrowed(&self) -> bool {
        match &self.w {
            Packed::F32(v) => matches!(v, Cow::Borrowed(_)),
            Packed::F16(v) => matches!(v, Cow::Borrowed(_)),
            Packed::I8 { q, .. } => matches!(q, Cow::Borrowed(_)),
        }
    }

    /// The storage format.
    pub fn format(&self) -> PackedFormat {
        match self.w {
            Packed::F32(_) => PackedFormat::F32,
            Packed::F16(_) => PackedFormat::F16,
            Packed::I8 { .. } => PackedFormat::I8,
        }
    }

    /// The packed weight as bytes (what the converter writes; [`PackedConv::from_packed_bytes`] reads it back).
    pub fn packed_bytes(&self) -> &[u8] {
        match &self.w {
            Packed::F32(v) => bytemuck::cast_slice(v),
            Packed::F16(v) => bytemuck::cast_slice(v),
            Packed::I8 { q, .. } => bytemuck::cast_slice(q),
        }
    }

    /// Per-output-channel scales of an int8 weight.
    pub fn scales(&self) -> Option<&[f32]> {
        match &self.w {
            Packed::I8 { scales, .. } => Some(scales),
            _ => None,
        }
    }

    /// The weight back in PyTorch layout `[c_out, c_in, k, k]` (e.g. for a GPU upload).
    pub fn unpack_to_row_major(&self) -> RowMajor {
        let (c_out, c_in, k) = (self.c_out, self.c_in, self.k);
        let kk = c_in * k * k;
        let float = |dst: &mut dyn FnMut(usize, usize)| {
            for o in 0..c_out {
                for q in 0..kk {
                    dst(o * kk + q, ((o / MR) * kk + q) * MR + o % MR);
                }
            }
        };
        match &self.w {
            Packed::F32(v) => {
                let mut out = vec![0f32; c_out * kk];
                float(&mut |d, s| out[d] = v[s]);
                RowMajor::F32(out)
            }
            Packed::F16(v) => {
                let mut out = vec![f16::ZERO; c_out * kk];
                float(&mut |d, s| out[d] = v[s]);
                RowMajor::F16(out)
            }
            Packed::I8 { q, scales, .. } => {
                let mut out = vec![0i8; c_out * kk];
                for (i, &v) in q.iter().enumerate() {
                    if let Some((o, ci, tap)) = i8_source(i, c_out, c_in, k) {
                        out[(o * c_in + ci) * k * k + tap] = v;
                    }
                }
                RowMajor::I8 { q: out, scales: scales.to_vec() }
            }
        }
    }
}
