//! Named weight access, the only way the pipeline reads parameters.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::format::{DType, Layout};

/// A tensor exactly as stored, for kernels that read fp16 or int8 weights (or a packed layout)
/// without dequantising: the CPU fixed-point kernels and the GPU upload.
#[derive(Clone, Debug)]
pub struct Stored<'a> {
    pub dtype: DType,
    pub layout: Layout,
    /// Logical shape (the checkpoint's), whatever the layout.
    pub shape: Vec<usize>,
    /// Little-endian element bytes in `layout` order.
    pub bytes: Cow<'a, [u8]>,
    /// For int8: one fp32 scale per channel along `quant_axis` (value = q * scale).
    pub scales: Option<Cow<'a, [f32]>>,
    pub quant_axis: Option<usize>,
}

/// A source of named tensors in the official checkpoint's naming (`upsampler.final_conv.weight`, ...;
/// FLAME arrays under `flame.`). `Model` implements it over a mapped file; tests implement it over a map
/// of seeded tensors.
pub trait Weights {
    /// Shape of the named tensor, or `MissingTensor`.
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// Values as f32: borrowed when stored as f32, dequantised (f16, int8 with its scales) otherwise.
    /// Integer tensors (FLAME faces, parents) are converted exactly.
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>>;

    /// `f32` after checking the shape, so a wrong file fails with the tensor's name and both shapes.
    fn f32_shaped(&self, name: &str, expected: &[usize]) -> Result<Cow<'_, [f32]>> {
        let found = self.shape(name)?;
        if found != expected {
            return Err(Error::Shape { name: name.to_string(), expected: expected.to_vec(), found });
        }
        self.f32(name)
    }

    /// Hints that `name`'s stored bytes will not be read again (the caller keeps its own packed or
    /// dequantised copy), so a file-backed source may drop their pages from the resident set; a later
    /// read still works (the pages come back from the file). Returns the bytes released; sources held in
    /// memory release nothing (the default).
    fn release_tensor(&self, name: &str) -> Result<u64> {
        self.shape(name).map(|_| 0)
    }

    /// This source as one that may be shared between threads, when it is (`Model`): per-frame objects
    /// that must stay `Send` keep this to call [`Weights::release_tensor`] later. None by default.
    fn as_sync(&self) -> Option<&(dyn Weights + Sync)> {
        None
    }

    /// The tensor as stored (dtype, layout, bytes, int8 scales). The default, for sources that hold
    /// only f32 (like `WeightMap`), lends the f32 values as bytes.
    fn stored(&self, name: &str) -> Result<Stored<'_>> {
        let shape = self.shape(name)?;
        let bytes = match self.f32(name)? {
            Cow::Borrowed(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Cow::Owned(v) => Cow::Owned(bytemuck::cast_slice(&v).to_vec()),
        };
        Ok(Stored { dtype: DType::F32, layout: Layout::RowMajor, shape, bytes, scales: None, quant_axis: None })
    }
}

/// In-memory weights for tests and for seeded models built without a file.
#[derive(Default, Clone, Debug)]
pub struct WeightMap {
    pub tensors: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl WeightMap {
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "WeightMap::insert: shape and length differ");
        self.tensors.insert(name.into(), (shape, values));
    }
}

impl Weights for WeightMap {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.tensors.get(name).map(|t| t.0.clone()).ok_or_else(|| Error::MissingTensor { name: name.to_string() })
    }
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        self.tensors.get(name).map(|t| Cow::Borrowed(t.1.as_slice())).ok_or_else(|| Error::MissingTensor { name: name.to_string() })
    }
}
