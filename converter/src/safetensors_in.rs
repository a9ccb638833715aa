//! `.safetensors` input: the same key names as the torch checkpoint, contiguous row-major tensors.

use std::path::Path;

use gaga_runtime::{Error, Result};
use safetensors::{Dtype, SafeTensors};

use crate::source::{SourceFile, SourceTensor, SrcDType};

pub(crate) fn open(path: &Path, map: memmap2::Mmap) -> Result<SourceFile> {
    let err = |what: String| Error::Format { path: path.to_path_buf(), what };
    let base = map.as_ptr() as usize;
    let tensors = {
        let st = SafeTensors::deserialize(&map).map_err(|e| err(format!("neither a torch zip nor safetensors: {e}")))?;
        let mut list = Vec::new();
        // The header lists tensors in no particular order; file order (by data offset) keeps reads
        // sequential and the output independent of the JSON's key order.
        for (name, view) in st.tensors() {
            let dtype = match view.dtype() {
                Dtype::F64 => SrcDType::F64,
                Dtype::F32 => SrcDType::F32,
                Dtype::F16 => SrcDType::F16,
                Dtype::BF16 => SrcDType::BF16,
                Dtype::I64 => SrcDType::I64,
                Dtype::I32 => SrcDType::I32,
                Dtype::I16 => SrcDType::I16,
                Dtype::I8 => SrcDType::I8,
                Dtype::U8 => SrcDType::U8,
                Dtype::BOOL => SrcDType::Bool,
                other => return Err(err(format!("tensor `{name}`: unsupported dtype {other:?}"))),
            };
            let shape = view.shape().to_vec();
            let mut strides = vec![1usize; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * shape[i + 1];
            }
            let start = view.data().as_ptr() as usize - base;
            list.push(SourceTensor { name, dtype, shape, strides, offset: 0, storage: start..start + view.data().len() });
        }
        list.sort_by_key(|t| (t.storage.start, t.name.clone()));
        list
    };
    Ok(SourceFile { path: path.to_path_buf(), map, tensors, root: None })
}
