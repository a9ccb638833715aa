//! Conversions for [`Layout::Panels`] tensors: the converter packs row-major weights into panels, and
//! readers that want the checkpoint's layout (`Weights::f32`, the GPU upload) unpack them. The same for
//! the packed f16 / int8 layouts of `gaga_kernels::qgemm` ([`qpacked`], [`unpack_q_f32`]).

use gaga_kernels::{qgemm, sgemm};

use super::directory::{Layout, TensorEntry, PANEL_ROWS};

// The file layout is the CPU micro-kernel's panel; they must not drift apart.
const _: () = assert!(PANEL_ROWS as usize == sgemm::MR);

/// `(m, kk)` of the matrix view of a weight of logical `shape` (rank >= 4), see [`Layout::Panels`].
pub fn matrix_of(shape: &[usize]) -> Option<(usize, usize)> {
    let r = shape.len();
    (r >= 4).then(|| (shape[..r - 3].iter().product(), shape[r - 3..].iter().product()))
}

/// Row-major f32 `values` of logical `shape` packed into panels (as little-endian bytes).
pub fn pack_f32(shape: &[usize], values: &[f32]) -> Option<Vec<u8>> {
    let (m, kk) = matrix_of(shape)?;
    if values.len() != m * kk {
        return None;
    }
    let mut panels = vec![0f32; sgemm::packed_a_len(m, kk)];
    sgemm::pack_a(m, kk, values, &mut panels);
    Some(panels.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// The row-major f32 values of a validated panels `entry` whose bytes are `bytes`.
pub fn unpack_f32(entry: &TensorEntry, bytes: &[u8]) -> Vec<f32> {
    debug_assert_eq!(entry.layout, Layout::Panels);
    let (m, kk) = matrix_of(&entry.shape_usize()).unwrap_or((0, 0));
    let panels: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut out = vec![0f32; m * kk];
    if panels.len() >= sgemm::packed_a_len(m, kk) {
        sgemm::unpack_a(m, kk, &panels, &mut out);
    }
    out
}

/// The `qgemm` view of a validated [`Layout::QPanelsF16`] / [`Layout::QPanelsI8`] tensor, borrowing
/// `bytes` (int8 also its `scales`). The error names the tensor and what does not fit.
pub fn qpacked<'a>(entry: &TensorEntry, bytes: &'a [u8], scales: Option<&'a [f32]>) -> Result<qgemm::PackedConv<'a>, String> {
    let format = match entry.layout {
        Layout::QPanelsF16 => qgemm::PackedFormat::F16,
        Layout::QPanelsI8 => qgemm::PackedFormat::I8,
        other => return Err(format!("tensor `{}`: layout {} is not a qgemm layout", entry.name, other.name())),
    };
    let (m, c_in, k) =
        entry.conv_dims().ok_or_else(|| format!("tensor `{}`: shape {:?} is no square odd conv weight", entry.name, entry.shape))?;
    qgemm::PackedConv::from_packed_bytes(format, m as usize, c_in as usize, k as usize, bytes, scales)
        .map_err(|e| format!("tensor `{}`: {e}", entry.name))
}

/// The row-major f32 values of a [`Layout::QPanelsF16`] / [`Layout::QPanelsI8`] tensor (int8
/// dequantised as `q as f32 * scale[o]`, the same operation as for a row-major int8 tensor).
pub fn unpack_q_f32(entry: &TensorEntry, bytes: &[u8], scales: Option<&[f32]>) -> Result<Vec<f32>, String> {
    Ok(match qpacked(entry, bytes, scales)?.unpack_to_row_major() {
        qgemm::RowMajor::F32(v) => v,
        qgemm::RowMajor::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
        qgemm::RowMajor::I8 { q, scales } => {
            let per = q.len() / scales.len().max(1);
            q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / per.max(1)]).collect()
        }
    })
}
