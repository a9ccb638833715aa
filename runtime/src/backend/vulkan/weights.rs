//! Weights from the mapped model file to the device with no intermediate heap copy.
//!
//! When the device has `VK_EXT_external_memory_host` (lavapipe: yes, alignment 4096), the pages holding
//! a tensor are imported as device memory and a buffer is bound at the tensor's offset inside them;
//! otherwise the tensor's bytes are copied straight from the map into mapped upload memory. Either way
//! the bytes are charged to the session's budget. A tensor longer than the device's storage-buffer
//! range is split with `plan_chunks` into bindable pieces. Tensors stored as fp16 or int8 that a
//! shader needs as f32 are dequantised on the host first (the one case with a heap copy).

use std::marker::PhantomData;
use std::ops::Range;

use super::chunks::plan_chunks;
use super::memory::{Buffer, Memory, MemoryLocation};
use super::Gpu;
use crate::error::Result;
use crate::format::{DType, Layout};
use crate::weights::Weights;

/// One device buffer holding (a piece of) a weight tensor. Borrows the weights for `'w`: an imported
/// buffer reads the mapped file's pages directly.
pub struct DeviceWeight<'w> {
    pub buffer: Buffer,
    /// Byte range of the tensor this buffer holds.
    pub range: Range<u64>,
    /// Whether the buffer is imported host memory (no copy) rather than a copy.
    pub imported: bool,
    pub dtype: DType,
    _source: PhantomData<&'w [u8]>,
}

/// Uploads named tensors of one `Weights` source, counting what was imported and what was copied.
pub struct WeightUpload<'w> {
    weights: &'w dyn Weights,
    memory: Memory,
    max_range: u64,
    align: u64,
    import: bool,
    /// Bytes imported and bytes copied so far.
    pub imported_bytes: u64,
    pub copied_bytes: u64,
}

/// Bytes a tensor of `len` bytes may take on the device: the import span's worst case (whole pages of
/// `import_align` on both sides) or the copy rounded to 256 bytes (buffers' usual alignment).
pub fn planned_bytes(len: u64, import_align: Option<u64>) -> u64 {
    match import_align {
        Some(a) if a > 0 => len.div_ceil(a) * a + a,
        _ => len.max(4).div_ceil(256) * 256,
    }
}

impl<'w> WeightUpload<'w> {
    /// An uploader into `gpu`'s budgeted memory. `import = false` forces copies (tests of both paths).
    pub fn new(gpu: &Gpu, weights: &'w dyn Weights, import: bool) -> Self {
        let p = gpu.ctx.probe();
        WeightUpload {
            weights,
            memory: gpu.memory.clone(),
            max_range: p.max_storage_buffer_range as u64,
            align: p.min_storage_buffer_offset_alignment.max(4),
            import: import && p.external_memory_host.is_some(),
            imported_bytes: 0,
            copied_bytes: 0,
        }
    }

    /// Device bytes `names` will take (for a session's plan before anything is allocated), as f32.
    pub fn plan(weights: &dyn Weights, names: &[&str], import_align: Option<u64>) -> Result<u64> {
        let mut total = 0;
        for name in names {
            let n: usize = weights.shape(name)?.iter().product();
            total += planned_bytes(4 * n as u64, import_align);
        }
        Ok(total)
    }

    /// The tensor as f32 values in one buffer, after checking its shape. Stored f32 row-major tensors
    /// are imported or copied from the map; others are dequantised first.
    pub fn f32(&mut self, name: &str, shape: &[usize]) -> Result<DeviceWeight<'w>> {
        let stored = self.weights.stored(name)?;
        if stored.shape != shape {
            return Err(crate::error::Error::Shape { name: name.into(), expected: shape.to_vec(), found: stored.shape });
        }
        if stored.dtype == DType::F32 && stored.layout == Layout::RowMajor {
            if let std::borrow::Cow::Borrowed(bytes) = stored.bytes {
                return self.bytes(name, bytes, 0, DType::F32);
            }
        }
        let values = self.weights.f32_shaped(name, shape)?;
        self.copy(name, bytemuck::cast_slice(&values), 0, DType::F32)
    }

    /// The tensor exactly as stored (dtype, layout, bytes), split into pieces of at most the device's
    /// storage-buffer range that start on multiples of `unit` bytes (a row or a channel plane).
    pub fn stored_chunks(&mut self, name: &str, unit: u64) -> Result<Vec<DeviceWeight<'w>>> {
        let stored = self.weights.stored(name)?;
        let (dtype, bytes) = (stored.dtype, stored.bytes);
        let ranges = plan_chunks(name, bytes.len() as u64, unit, self.align, self.max_range)?;
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let piece_name =
                if out.is_empty() && r.end == bytes.len() as u64 { name.to_string() } else { format!("{name}[{}..{}]", r.start, r.end) };
            let piece = &bytes[r.start as usize..r.end as usize];
            out.push(match &bytes {
                std::borrow::Cow::Borrowed(b) => self.bytes(&piece_name, &b[r.start as usize..r.end as usize], r.start, dtype)?,
                std::borrow::Cow::Owned(_) => self.copy(&piece_name, piece, r.start, dtype)?,
            });
        }
        Ok(out)
    }

    /// Bytes that live as long as `'w`: imported when possible, else copied.
    fn bytes(&mut self, name: &str, bytes: &'w [u8], start: u64, dtype: DType) -> Result<DeviceWeight<'w>> {
        if self.import {
            // SAFETY: `bytes` borrows the weights for `'w`, and the returned `DeviceWeight<'w>` (which owns
            // the buffer) cannot outlive that borrow; weights are immutable.
            if let Some(buffer) = unsafe { self.memory.import_host(name, bytes) }? {
                self.imported_bytes += bytes.len() as u64;
                let range = start..start + bytes.len() as u64;
                return Ok(DeviceWeight { buffer, range, imported: true, dtype, _source: PhantomData });
            }
        }
        self.copy(name, bytes, start, dtype)
    }

    fn copy(&mut self, name: &str, bytes: &[u8], start: u64, dtype: DType) -> Result<DeviceWeight<'w>> {
        let buffer = self.memory.buffer(name, bytes.len() as u64, MemoryLocation::CpuToGpu)?;
        buffer.write(bytes)?;
        self.copied_bytes += bytes.len() as u64;
        Ok(DeviceWeight { buffer, range: start..start + bytes.len() as u64, imported: false, dtype, _source: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_bytes_cover_the_worst_import_span_and_the_copy_rounding() {
        // 10,000 bytes can straddle 4 pages of 4096 (offset 4095): 16,384 <= 3 * 4096 + 4096.
        assert_eq!(planned_bytes(10_000, Some(4096)), 16_384);
        assert_eq!(planned_bytes(10_000, None), 10_240);
        assert_eq!(planned_bytes(0, None), 256);
    }
}
