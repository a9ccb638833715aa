//! `Simulated`: the fp32 model seen as the int8 (or fp16) file will hold it, so calibration measures
//! the refiner on exactly the values the written file gives it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use gaga_runtime::format::{DType, Layout};
use gaga_runtime::{Result, Stored, Weights};

use gaga_kernels::qgemm::ActQuant;
use gaga_runtime::refiner::packed::act_quant_values;

use crate::policy::{output_axis, Precision};
use crate::quant::{quantise_i8, to_f16_bytes};

/// An int8 tensor: values, per-channel scales, the channel axis and the shape.
type Int8 = (Vec<i8>, Vec<f32>, usize, Vec<usize>);

/// A `Weights` view of `base` where the tensors in `precision` are replaced by their int8 or fp16
/// storage (and int8 ones get their `@act_scale`).
pub struct Simulated<'a> {
    pub base: &'a dyn Weights,
    pub precision: HashMap<String, Precision>,
    pub act_scales: &'a BTreeMap<String, ActQuant>,
}

impl Simulated<'_> {
    fn act(&self, name: &str) -> Option<ActQuant> {
        let base = name.strip_suffix("@act_scale")?;
        (self.precision.get(base) == Some(&Precision::Int8)).then(|| self.act_scales.get(base).copied()).flatten()
    }
    /// Values, per-channel scales, axis and shape of `name` quantised as the writer does.
    fn int8(&self, name: &str) -> Result<Int8> {
        let (v, shape) = (self.base.f32(name)?, self.base.shape(name)?);
        let axis = output_axis(name) as usize;
        let (q, s) = quantise_i8(&v, &shape, axis);
        Ok((q, s, axis, shape))
    }
}

impl Weights for Simulated<'_> {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match self.act(name) {
            Some(a) => Ok(vec![act_quant_values(a).len()]),
            None => self.base.shape(name),
        }
    }
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        if let Some(a) = self.act(name) {
            return Ok(Cow::Owned(act_quant_values(a)));
        }
        match self.precision.get(name) {
            Some(Precision::Int8) => {
                let (q, s, axis, shape) = self.int8(name)?;
                let inner: usize = shape[axis + 1..].iter().product::<usize>().max(1);
                Ok(Cow::Owned(q.iter().enumerate().map(|(i, &x)| x as f32 * s[(i / inner) % s.len().max(1)]).collect()))
            }
            Some(Precision::Fp16) => Ok(Cow::Owned(self.base.f32(name)?.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect())),
            _ => self.base.f32(name),
        }
    }
    fn stored(&self, name: &str) -> Result<Stored<'_>> {
        let shape = self.shape(name)?;
        let (dtype, bytes, scales, quant_axis) = match self.precision.get(name) {
            Some(Precision::Int8) if self.act(name).is_none() => {
                let (q, s, axis, _) = self.int8(name)?;
                (DType::I8, q.iter().map(|&x| x as u8).collect(), Some(Cow::Owned(s)), Some(axis))
            }
            Some(Precision::Fp16) => (DType::F16, to_f16_bytes(&self.base.f32(name)?), None, None),
            _ => return self.base.stored(name),
        };
        Ok(Stored { dtype, layout: Layout::RowMajor, shape, bytes: Cow::Owned(bytes), scales, quant_axis })
    }
}
