//! A checkpoint opened for reading: a memory map plus, per tensor, where its storage lies in the file
//! and how to walk it (shape, strides, offset). Torch zips and safetensors both open into this, so the
//! converter streams tensors one at a time the same way for either.

use std::ops::Range;
use std::path::{Path, PathBuf};

use gaga_runtime::pickle::Value;
use gaga_runtime::{Error, Result};

/// Element type in the source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrcDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl SrcDType {
    pub fn size(self) -> usize {
        match self {
            SrcDType::F64 | SrcDType::I64 => 8,
            SrcDType::F32 | SrcDType::I32 => 4,
            SrcDType::F16 | SrcDType::BF16 | SrcDType::I16 => 2,
            SrcDType::I8 | SrcDType::U8 | SrcDType::Bool => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, SrcDType::F64 | SrcDType::F32 | SrcDType::F16 | SrcDType::BF16)
    }
}

/// One tensor of a source file. `storage` is the byte range of its storage in the file; element
/// `(i0, i1, ...)` is at storage element `offset + sum(ik * strides[k])`.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceTensor {
    pub name: String,
    pub dtype: SrcDType,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
    pub storage: Range<usize>,
}

impl SourceTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Tensor values after reading: floats as f32, integers as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// An opened checkpoint: its map, its tensors in file order, and (torch files) the unpickled root for
/// reading configuration values such as `meta_cfg`.
pub struct SourceFile {
    pub path: PathBuf,
    pub(crate) map: memmap2::Mmap,
    pub tensors: Vec<SourceTensor>,
    pub root: Option<Value>,
}

impl SourceFile {
    /// Opens a torch zip (`.pt`, `.pth`) or a `.safetensors` file, chosen by content.
    pub fn open(path: &Path) -> Result<SourceFile> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        // SAFETY: the converter only reads the map, and only while converting; the checkpoint must not
        // change during that time (documented on `convert`).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        if map.starts_with(b"PK\x03\x04") {
            crate::pt::open(path, map)
        } else {
            crate::safetensors_in::open(path, map)
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn get(&self, name: &str) -> Option<&SourceTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn err(&self, what: String) -> Error {
        Error::Format { path: self.path.clone(), what }
    }

    /// Reads `t` into a contiguous row-major vector, converting the element type (floats to f32,
    /// integers and bools to i64). Every index is checked against the storage range first.
    pub fn read(&self, t: &SourceTensor) -> Result<TensorData> {
        let size = t.dtype.size();
        let storage = self.map.get(t.storage.clone()).ok_or_else(|| {
            self.err(format!("tensor `{}`: storage bytes {:?} lie outside the {}-byte file", t.name, t.storage, self.map.len()))
        })?;
        let elems = storage.len() / size;
        if t.strides.len() != t.shape.len() {
            return Err(self.err(format!("tensor `{}`: {} strides for {} dimensions", t.name, t.strides.len(), t.shape.len())));
        }
        let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let last = t.shape.iter().zip(&t.strides).try_fold(t.offset, |a, (&d, &s)| a.checked_add(d.saturating_sub(1).checked_mul(s)?));
        match (n, last) {
            (Some(0), _) => return Ok(empty(t.dtype)),
            (Some(_), Some(last)) if last < elems => {}
            _ => {
                return Err(self.err(format!(
                    "tensor `{}`: shape {:?} strides {:?} offset {} reach past its storage of {elems} elements",
                    t.name, t.shape, t.strides, t.offset
                )))
            }
        }
        let idx = element_indices(t);
        let at = |i: usize| &storage[i * size..(i + 1) * size];
        Ok(if t.dtype.is_float() {
            TensorData::F32(idx.map(|i| float(at(i), t.dtype)).collect())
        } else {
            TensorData::I64(idx.map(|i| int(at(i), t.dtype)).collect())
        })
    }

    /// Tells the kernel the pages of `t`'s storage are no longer needed, so a streaming conversion
    /// keeps at most a few tensors of the input resident.
    pub fn release(&self, t: &SourceTensor) {
        #[cfg(unix)]
        {
            let page = 4096;
            let start = t.storage.start.div_ceil(page) * page;
            let end = t.storage.end.min(self.map.len()) / page * page;
            if end > start {
                // SAFETY: the map is a private read-only file mapping; dropping its pages only makes the
                // next access fault them in again from the file.
                let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
            }
        }
    }
}

fn empty(d: SrcDType) -> TensorData {
    if d.is_float() {
        TensorData::F32(Vec::new())
    } else {
        TensorData::I64(Vec::new())
    }
}

/// Storage element indices of `t` in row-major order of its shape.
fn element_indices(t: &SourceTensor) -> impl Iterator<Item = usize> + '_ {
    let n = t.numel();
    let mut pos = vec![0usize; t.shape.len()];
    let mut cur = t.offset;
    (0..n).map(move |k| {
        if k > 0 {
            // Odometer step: bump the last axis, carrying into earlier ones. Wrapping arithmetic: a
            // size-1 axis may have any stride, and stepping onto it and back cancels out.
            for ax in (0..pos.len()).rev() {
                pos[ax] += 1;
                cur = cur.wrapping_add(t.strides[ax]);
                if pos[ax] < t.shape[ax] {
                    break;
                }
                cur = cur.wrapping_sub(t.strides[ax].wrapping_mul(t.shape[ax]));
                pos[ax] = 0;
            }
        }
        cur
    })
}

fn float(b: &[u8], d: SrcDType) -> f32 {
    match d {
        SrcDType::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
        SrcDType::F32 => f32::from_le_bytes(b.try_into().unwrap_or([0; 4])),
        SrcDType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        _ => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
    }
}

fn int(b: &[u8], d: SrcDType) -> i64 {
    match d {
        SrcDType::I64 => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        SrcDType::I32 => i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as i64,
        SrcDType::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
        SrcDType::I8 => b[0] as i8 as i64,
        _ => b[0] as i64,
    }
}
