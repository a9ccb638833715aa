//! The lift as a list of dispatches over named buffers, built once by the same code whether planning
//! (sizes only, nothing allocated) or building (weights uploaded, buffers and pipelines made).
//! Ops name their buffers by `Buf` index; `GpuLift::run` resolves them and records one command buffer.

use gaga_kernels::twin::SpecValue;

use super::super::memory::{Buffer, MemoryLocation};
use super::super::pipeline::ComputePipeline;
use super::super::weights::{planned_bytes, DeviceWeight, WeightUpload};
use super::super::Gpu;
use crate::error::{Error, Result};
use crate::weights::Weights;

/// A buffer of the graph: a weight tensor or an activation, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    Weight(usize),
    Act(usize),
}

/// One dispatch: `label` starts with its stage (`lift.dino.`, `lift.dpt.`, `lift.vertex.`, `lift.plane.`).
pub struct Op {
    pub label: String,
    pub pipeline: usize,
    pub buffers: Vec<Buf>,
    pub push: Vec<u8>,
    pub groups: (u32, u32, u32),
}

/// A pipeline by shader and specialization; `None` while planning.
pub struct PipelineSlot {
    pub shader: &'static str,
    pub spec: Vec<SpecValue>,
    pub pipeline: Option<ComputePipeline>,
}

/// The graph under construction. Without a device it only collects the plan.
pub struct Graph<'g, 'w> {
    gpu: Option<&'g Gpu>,
    upload: Option<WeightUpload<'w>>,
    source: &'w dyn Weights,
    import_align: Option<u64>,
    pub weights: Vec<DeviceWeight<'w>>,
    pub acts: Vec<Buffer>,
    pub pipelines: Vec<PipelineSlot>,
    pub ops: Vec<Op>,
    /// Every allocation by name and planned bytes, in creation order.
    pub plan: Vec<(String, u64)>,
    /// Counts while planning, so `Buf` indices agree between the two modes.
    planned_weights: usize,
    planned_acts: usize,
}

impl<'g, 'w> Graph<'g, 'w> {
    /// A planning graph: checks every weight's shape, allocates nothing.
    pub fn planning(source: &'w dyn Weights, import_align: Option<u64>) -> Self {
        Self::make(None, source, import_align, false)
    }

    /// A building graph on `gpu`; weights are imported from the mapped file when `import` and the device allow.
    pub fn building(gpu: &'g Gpu, source: &'w dyn Weights, import: bool) -> Self {
        let align = if import { gpu.ctx.probe().external_memory_host } else { None };
        Self::make(Some(gpu), source, align, import)
    }

    fn make(gpu: Option<&'g Gpu>, source: &'w dyn Weights, import_align: Option<u64>, import: bool) -> Self {
        Graph {
            gpu,
            upload: gpu.map(|g| WeightUpload::new(g, source, import)),
            source,
            import_align,
            weights: Vec::new(),
            acts: Vec::new(),
            pipelines: Vec::new(),
            ops: Vec::new(),
            plan: Vec::new(),
            planned_weights: 0,
            planned_acts: 0,
        }
    }

    /// The f32 tensor `name` of `shape` on the device.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Buf> {
        let found = self.source.shape(name)?;
        if found != shape {
            return Err(Error::Shape { name: name.into(), expected: shape.to_vec(), found });
        }
        let n: usize = shape.iter().product();
        self.plan.push((name.to_string(), planned_bytes(4 * n as u64, self.import_align)));
        match self.upload.as_mut() {
            Some(up) => {
                self.weights.push(up.f32(name, shape)?);
                Ok(Buf::Weight(self.weights.len() - 1))
            }
            None => {
                self.planned_weights += 1;
                Ok(Buf::Weight(self.planned_weights - 1))
            }
        }
    }

    /// An activation buffer of `len` f32 values.
    pub fn act(&mut self, name: &str, len: usize, location: MemoryLocation) -> Result<Buf> {
        let bytes = 4 * len.max(1) as u64;
        self.plan.push((name.to_string(), planned_bytes(bytes, None)));
        match self.gpu {
            Some(gpu) => {
                self.acts.push(gpu.memory.buffer(name, bytes, location)?);
                Ok(Buf::Act(self.acts.len() - 1))
            }
            None => {
                self.planned_acts += 1;
                Ok(Buf::Act(self.planned_acts - 1))
            }
        }
    }

    /// Appends a dispatch of `shader` (`spirv`) specialised by `spec`, binding `buffers` in order.
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &mut self,
        label: String,
        shader: &'static str,
        spirv: &[u8],
        spec: Vec<SpecValue>,
        buffers: Vec<Buf>,
        push: &[u8],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let existing = self.pipelines.iter().position(|p| p.shader == shader && p.spec == spec);
        let pipeline = match existing {
            Some(i) => i,
            None => {
                let made = match self.gpu {
                    Some(gpu) => {
                        Some(ComputePipeline::new(&gpu.ctx, &gpu.cache, shader, spirv, &spec, buffers.len() as u32, push.len() as u32)?)
                    }
                    None => None,
                };
                self.pipelines.push(PipelineSlot { shader, spec, pipeline: made });
                self.pipelines.len() - 1
            }
        };
        self.ops.push(Op { label, pipeline, buffers, push: push.to_vec(), groups });
        Ok(())
    }
}
