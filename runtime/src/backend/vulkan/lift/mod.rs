//! The lift on the GPU (`GpuLift`): DINOv2, the DPT head and the generators' layers as one recorded
//! command buffer of ~170 dispatches (small config), matching `crate::lift` within fp32 rounding.
//!
//! Host-side parts (tiny next to the network, listed in docs/vulkan.md "Lift on the GPU"): the
//! preprocessing resize and ImageNet normalisation and the four image resizes of the DPT levels (3
//! channels each, `gaga_kernels::resize`), the plane geometry and direction code (`crate::camera`), and
//! the generators' final activations (sigmoids, per-Gaussian quaternion normalisation, quirk 2's
//! normalisation across vertices, plane positions), applied to the raw heads read back.

mod graph;
mod network;
mod ops;

use std::sync::Arc;
use std::time::Instant;

use gaga_kernels::act::{sigmoid, sigmoid_scalar};
use gaga_kernels::resize::bilinear_antialias;

use super::command::{Dispatch, Recorded};
use super::device::Context;
use super::memory::Buffer;
use super::pipeline::ComputePipeline;
use super::weights::DeviceWeight;
use super::Gpu;
use crate::backend::StageTimes;
use crate::camera::{harmonic_encoding, lifting_plane};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::lift::assemble;
use crate::lift::dpt::level_sizes;
use crate::lift::generators::{normalize_across_rows, plane_activations, Gaussians, SCALE_MAX};
use crate::types::{Avatar, Image, SourceParams};
use crate::weights::Weights;

use graph::{Buf, Graph, Op, PipelineSlot};
use network::Io;

/// The lift's weights, buffers and pipelines on one device. Borrows the weights (`'w`): imported
/// tensors read the mapped model file directly.
pub struct GpuLift<'w> {
    // Field order is drop order: pipelines and buffers before the context they live on.
    pipelines: Vec<PipelineSlot>,
    ops: Vec<Op>,
    acts: Vec<Buffer>,
    weights: Vec<DeviceWeight<'w>>,
    io: Io,
    cfg: ModelConfig,
    last_gpu: Vec<(String, f64)>,
    ctx: Arc<Context>,
}

/// GPU stage of a dispatch label, in `StageTimes` names.
fn stage_of(label: &str) -> &'static str {
    if label.starts_with("lift.dino.") {
        "lift.dino"
    } else if label.starts_with("lift.dpt.") {
        "lift.dpt"
    } else if label.starts_with("lift.vertex.") {
        "lift.vertex_generator"
    } else {
        "lift.plane_generators"
    }
}

impl<'w> GpuLift<'w> {
    /// Every allocation `new` will make, by name and bytes, without a device. `import_align` is the
    /// device's host-import alignment when weights will be imported (`None`: copies).
    pub fn plan(w: &dyn Weights, cfg: &ModelConfig, import_align: Option<u64>) -> Result<Vec<(String, u64)>> {
        let mut g = Graph::planning(w, import_align);
        network::build(&mut g, cfg)?;
        Ok(g.plan)
    }

    /// Uploads (or imports) the lift's weights, allocates its buffers and builds its pipelines.
    pub fn new(gpu: &Gpu, w: &'w dyn Weights, cfg: &ModelConfig) -> Result<GpuLift<'w>> {
        let mut g = Graph::building(gpu, w, true);
        let io = network::build(&mut g, cfg)?;
        let Graph { weights, acts, pipelines, ops, .. } = g;
        let lift = GpuLift { pipelines, ops, acts, weights, io, cfg: cfg.clone(), last_gpu: Vec::new(), ctx: gpu.ctx.clone() };
        lift.buf(lift.io.zero)?.write(&[0.0f32])?;
        Ok(lift)
    }

    /// GPU milliseconds of each dispatch of the last run, by label.
    pub fn gpu_timings(&self) -> &[(String, f64)] {
        &self.last_gpu
    }

    /// Number of dispatches one lift records.
    pub fn dispatch_count(&self) -> usize {
        self.ops.len()
    }

    fn buf(&self, b: Buf) -> Result<&Buffer> {
        let found = match b {
            Buf::Weight(i) => self.weights.get(i).map(|w| &w.buffer),
            Buf::Act(i) => self.acts.get(i),
        };
        found.ok_or_else(|| Error::Other(format!("GpuLift: buffer {b:?} was never allocated")))
    }

    /// Lifts one photo: host preprocessing, one GPU submission (DINO, DPT, generator layers), host
    /// activations. Stage times: GPU timestamps for the GPU stages, wall time for the `(cpu)` ones.
    pub fn run(&mut self, image: &Image, source: &SourceParams) -> Result<(Avatar, StageTimes)> {
        let cfg = self.cfg.clone();
        crate::lift::check_image(&cfg, image)?;
        crate::lift::check_source(&cfg, source)?;
        let start = Instant::now();
        let dino_input = crate::lift::preprocess(&cfg, image);
        self.buf(self.io.dino_input)?.write(&dino_input)?;
        let din = cfg.dino.input_size;
        for (i, &s) in level_sizes(cfg.dino.grid()).iter().enumerate() {
            let mut resized = vec![0.0; 3 * s * s];
            bilinear_antialias(&dino_input, 3, din, din, s, s, &mut resized);
            self.buf(self.io.cats[i])?.write(&resized)?;
        }
        let (points, dir) = lifting_plane(&cfg, &source.transform);
        let direnc = harmonic_encoding(&dir, cfg.harmonic_frequencies);
        self.buf(self.io.direnc)?.write(&direnc)?;
        let preprocess = start.elapsed().as_secs_f64();

        let wall = Instant::now();
        self.last_gpu = self.submit()?;
        let gpu_wall = wall.elapsed().as_secs_f64();

        let clock = Instant::now();
        let (v, ch, pp) = (cfg.flame.vertices, cfg.gaussian_channels, cfg.plane_size * cfg.plane_size);
        let mut raw = vec![0.0; v * (ch + 8)];
        self.buf(self.io.vertex_raw)?.read(&mut raw)?;
        let vertex = vertex_activations(&raw, v, ch);
        let mut planes = Vec::with_capacity(2);
        let mut raw = vec![0.0; (ch + 9) * pp];
        for (index, &b) in self.io.plane_raw.iter().enumerate() {
            self.buf(b)?.read(&mut raw)?;
            planes.push(plane_activations(&raw, cfg.plane_size, ch, index, &points, &dir));
        }
        let mut parts = vec![vertex];
        parts.extend(planes);
        let avatar = assemble(&cfg, parts, &source.shapecode);
        let host_after = clock.elapsed().as_secs_f64();

        let mut times: StageTimes = vec![("lift.preprocess (cpu)", preprocess)];
        if self.last_gpu.is_empty() {
            times.push(("lift.gpu (wall, no GPU timestamps)", gpu_wall));
        } else {
            for stage in ["lift.dino", "lift.dpt", "lift.vertex_generator", "lift.plane_generators"] {
                let ms: f64 = self.last_gpu.iter().filter(|t| stage_of(&t.0) == stage).map(|t| t.1).sum();
                times.push((stage, ms / 1e3));
            }
        }
        times.push(("lift.activations (cpu)", host_after));
        times.push(("lift.total (wall)", start.elapsed().as_secs_f64()));
        Ok((avatar, times))
    }

    /// Records every op, runs it once and returns the per-dispatch GPU times.
    fn submit(&self) -> Result<Vec<(String, f64)>> {
        let mut dispatches = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let pipeline: &ComputePipeline = self.pipelines[op.pipeline]
                .pipeline
                .as_ref()
                .ok_or_else(|| Error::Other(format!("GpuLift: op `{}` has no pipeline", op.label)))?;
            let buffers = op.buffers.iter().map(|&b| self.buf(b)).collect::<Result<Vec<_>>>()?;
            dispatches.push(Dispatch { label: op.label.clone(), pipeline, buffers, push: op.push.clone(), groups: op.groups });
        }
        let rec = Recorded::record(&self.ctx, &dispatches)?;
        rec.run()?;
        rec.timings()
    }
}

/// `gs_generator_g`'s activations on raw `[V, C + 8]` rows (as `crate::lift::generators::vertex_gaussians`).
fn vertex_activations(raw: &[f32], v: usize, ch: usize) -> Gaussians {
    let mut g = Gaussians {
        count: v,
        positions: vec![0.0; 3 * v],
        colors: Vec::with_capacity(ch * v),
        opacities: Vec::with_capacity(v),
        scales: Vec::with_capacity(3 * v),
        rotations: Vec::with_capacity(4 * v),
    };
    for row in raw.chunks_exact(ch + 8) {
        let start = g.colors.len();
        g.colors.extend_from_slice(&row[..ch]);
        sigmoid(&mut g.colors[start..start + 3.min(ch)]);
        g.opacities.push(sigmoid_scalar(row[ch]));
        g.scales.extend(row[ch + 1..ch + 4].iter().map(|&s| sigmoid_scalar(s) * SCALE_MAX));
        g.rotations.extend_from_slice(&row[ch + 4..ch + 8]);
    }
    normalize_across_rows(&mut g.rotations, 4);
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lift::testing::seeded_weights;

    #[test]
    fn the_plan_names_every_lift_tensor_once_and_the_big_activations() {
        let cfg = ModelConfig::small();
        let w = seeded_weights(&cfg);
        let plan = GpuLift::plan(&w, &cfg, None).expect("plan");
        for (name, _) in crate::lift::testing::lift_tensors(&cfg) {
            if name.contains("resize_layers.2") {
                continue;
            }
            assert_eq!(plan.iter().filter(|i| i.0 == name).count(), 1, "{name}");
        }
        assert!(plan.iter().any(|i| i.0 == "lift dino qkv"));
        assert!(plan.iter().all(|i| i.1 >= 256 && i.1 % 256 == 0));
    }

    #[test]
    fn a_weight_of_the_wrong_shape_fails_the_plan_by_name() {
        let cfg = ModelConfig::small();
        let mut w = seeded_weights(&cfg);
        w.insert("base_model.output_conv.bias", vec![3], vec![0.0; 3]);
        let err = GpuLift::plan(&w, &cfg, None).expect_err("shape").to_string();
        assert!(err.contains("output_conv.bias") && err.contains("[3]"), "{err}");
    }

    /// Shapes of the lift's tensors and no values: enough to plan at official size without 400 MB of weights.
    struct ShapesOnly(std::collections::BTreeMap<String, Vec<usize>>);

    impl Weights for ShapesOnly {
        fn shape(&self, name: &str) -> Result<Vec<usize>> {
            self.0.get(name).cloned().ok_or_else(|| Error::MissingTensor { name: name.into() })
        }
        fn f32(&self, name: &str) -> Result<std::borrow::Cow<'_, [f32]>> {
            Err(Error::Other(format!("{name}: shapes only")))
        }
    }

    #[test]
    fn the_official_lift_plans_its_weights_and_activations() {
        let cfg = ModelConfig::official();
        let w = ShapesOnly(crate::lift::testing::lift_tensors(&cfg).into_iter().collect());
        let plan = GpuLift::plan(&w, &cfg, None).expect("plan");
        let weights: u64 = plan.iter().filter(|i| !i.0.starts_with("lift ")).map(|i| i.1).sum();
        let acts: u64 = plan.iter().filter(|i| i.0.starts_with("lift ")).map(|i| i.1).sum();
        println!("official lift plan: weights {} MiB, activations {} MiB", weights >> 20, acts >> 20);
        // DINOv2 ViT-B alone holds 86 M parameters (344 MB as f32).
        assert!(weights > 340 << 20, "{weights}");
    }

    #[test]
    fn dispatch_labels_map_to_the_lift_stages() {
        assert_eq!(stage_of("lift.dino.block0.qkv"), "lift.dino");
        assert_eq!(stage_of("lift.dpt.refinenet1.unit1.add"), "lift.dpt");
        assert_eq!(stage_of("lift.vertex.color0"), "lift.vertex_generator");
        assert_eq!(stage_of("lift.plane.l1.conv6"), "lift.plane_generators");
    }
}
