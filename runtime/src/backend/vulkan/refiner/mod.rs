//! The StyleUNet refiner on Vulkan (spec section 6), matching the CPU [`crate::refiner::Refiner`]: the
//! same layers in the same order, weights read as stored (fp32, fp16 or int8 per tensor), fp32
//! arithmetic. [`GpuRefiner::dispatches`] gives the whole refiner as one list of dispatches, recorded
//! once (`Recorded::record`) and replayed per frame; everything that changes per frame (the style, the
//! modulations, the demodulation factors) is computed on the GPU into buffers, so nothing is pushed.
//! Design and bytes per stage: "Refiner on the GPU" in `docs/vulkan.md`.

mod fill;
mod network;
mod program;

use gaga_kernels::twin::{self, bilinear as bl, elementwise as ew, SpecValue};

use super::command::Dispatch;
use super::memory::{Buffer, MemoryLocation};
use super::pipeline::ComputePipeline;
use super::Gpu;
use crate::config::ModelConfig;
use crate::config::RefinerConfig;
use crate::error::{Error, Result};
use crate::refiner::noise::SplitMix;
use crate::refiner::NoiseMode;
use crate::weights::Weights;
use program::{Fill, Kernel, Program, Slot};

/// A dispatch ready to bind: pipeline index, bindings, push bytes, workgroups.
struct Compiled {
    label: String,
    pipeline: usize,
    slots: Vec<Slot>,
    push: Vec<u8>,
    groups: (u32, u32, u32),
}

/// The refiner's buffers (weights as stored, vectors, activations), pipelines and dispatch list.
pub struct GpuRefiner {
    steps: Vec<Compiled>,
    // Field order is drop order: pipelines and buffers go before nothing else of ours needs them.
    pipelines: Vec<ComputePipeline>,
    buffers: Vec<Buffer>,
    in_bytes: u64,
    out_bytes: u64,
    /// `NoiseMode::Random`: the generator, the host copy of the maps, and the noise buffer's index.
    random: Option<std::sync::Mutex<RandomNoise>>,
}

/// Per-frame noise drawn on the host like the CPU refiner's (same generator, same map order), then
/// written into the one noise buffer before each replay.
struct RandomNoise {
    rng: SplitMix,
    maps: Vec<f32>,
    lengths: Vec<usize>,
    buffer: usize,
}

/// What a kernel needs to become a pipeline and a dispatch.
struct ShaderCall {
    name: &'static str,
    spirv: &'static [u8],
    spec: Vec<SpecValue>,
    bindings: u32,
    push: Vec<u8>,
    groups: (u32, u32, u32),
}

/// The shader, its specialization constants, binding count, push bytes and workgroups of a kernel.
fn shader_of(k: &Kernel) -> ShaderCall {
    let call = |name, spirv, spec, bindings, push: &[u8], groups| ShaderCall { name, spirv, spec, bindings, push: push.to_vec(), groups };
    match k {
        Kernel::Conv(v, p) => call("refiner_conv", twin::REFINER_CONV_SPV, v.spec_constants(), 6, p.as_bytes(), v.dispatch(p)),
        Kernel::Matvec(v, p) => call("matvec", twin::MATVEC_SPV, v.spec_constants(), 4, p.as_bytes(), p.dispatch()),
        Kernel::Demod(p) => call("demod", twin::DEMOD_SPV, twin::demod::DemodPush::spec_constants(), 2, p.as_bytes(), p.dispatch()),
        Kernel::Bilinear(p) => call("bilinear", twin::BILINEAR_SPV, bl::spec_constants(false), 2, bytemuck::bytes_of(p), p.dispatch()),
        Kernel::Add(n) => {
            let p = ew::ElementwisePush { n: *n };
            call(
                "elementwise",
                twin::ELEMENTWISE_SPV,
                ew::ElementwiseOp::Add.spec_constants(),
                3,
                bytemuck::bytes_of(&p),
                (ew::dispatch(*n as usize), 1, 1),
            )
        }
    }
}

impl GpuRefiner {
    /// Every buffer [`GpuRefiner::new`] will allocate, with its bytes, so a session can check its
    /// memory budget first. Reads only shapes and stored dtypes; checks every tensor it will use. The
    /// caller's splat input (`[in_channels, S, S]` f32) and RGB output (`[out_channels, S, S]` f32)
    /// are not included.
    pub fn plan(w: &dyn Weights, cfg: &ModelConfig) -> Result<Vec<(String, u64)>> {
        Ok(network::build(w, cfg)?.buffers.into_iter().map(|b| (b.name, b.bytes)).collect())
    }

    /// Allocates and fills every buffer and builds the pipelines. With `NoiseMode::Random`, each
    /// [`GpuRefiner::before_frame`] draws new noise maps exactly as the CPU refiner does per call.
    pub fn new(gpu: &Gpu, w: &dyn Weights, cfg: &ModelConfig, noise: NoiseMode) -> Result<GpuRefiner> {
        let Program { buffers: specs, steps, noise: (noise_buffer, noise_len) } = network::build(w, cfg)?;
        let random = match noise {
            NoiseMode::Stored => None,
            NoiseMode::Random { seed } => Some(std::sync::Mutex::new(RandomNoise {
                rng: SplitMix(seed),
                maps: vec![0.0; noise_len],
                lengths: (0..cfg.refiner.style_convs()).map(|i| RefinerConfig::noise_size(i).pow(2)).collect(),
                buffer: noise_buffer,
            })),
        };
        let mut buffers = Vec::with_capacity(specs.len());
        for spec in &specs {
            let location = match spec.fill {
                Fill::Scratch => MemoryLocation::GpuOnly,
                _ => MemoryLocation::CpuToGpu,
            };
            let buf = gpu.memory.buffer(&spec.name, spec.bytes, location)?;
            fill::fill(&buf, &spec.fill, w)?;
            buffers.push(buf);
        }
        let mut pipelines: Vec<ComputePipeline> = Vec::new();
        let mut keys: Vec<(&'static str, Vec<u8>)> = Vec::new();
        let mut compiled = Vec::with_capacity(steps.len());
        for step in steps {
            let c = shader_of(&step.kernel);
            debug_assert_eq!(c.bindings as usize, step.slots.len(), "step `{}`", step.label);
            let key = (c.name, c.spec.iter().flat_map(|v| v.to_bytes()).collect::<Vec<u8>>());
            let pipeline = match keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    pipelines.push(ComputePipeline::new(&gpu.ctx, &gpu.cache, c.name, c.spirv, &c.spec, c.bindings, c.push.len() as u32)?);
                    keys.push(key);
                    pipelines.len() - 1
                }
            };
            compiled.push(Compiled { label: step.label, pipeline, slots: step.slots, push: c.push, groups: c.groups });
        }
        let r = &cfg.refiner;
        let plane = 4 * (r.size * r.size) as u64;
        Ok(GpuRefiner {
            steps: compiled,
            pipelines,
            buffers,
            in_bytes: r.in_channels as u64 * plane,
            out_bytes: r.out_channels as u64 * plane,
            random,
        })
    }

    /// Bytes the splat input buffer must hold (`[in_channels, S, S]` f32).
    pub fn input_bytes(&self) -> u64 {
        self.in_bytes
    }

    /// Bytes the RGB output buffer must hold (`[out_channels, S, S]` f32).
    pub fn output_bytes(&self) -> u64 {
        self.out_bytes
    }

    /// Number of dispatches per frame and of distinct pipelines.
    pub fn counts(&self) -> (usize, usize) {
        (self.steps.len(), self.pipelines.len())
    }

    /// `Err` naming the buffer when `input` or `output` is too small for [`GpuRefiner::dispatches`].
    pub fn check_buffers(&self, input: &Buffer, output: &Buffer) -> Result<()> {
        for (what, b, need) in [("splat input", input, self.in_bytes), ("RGB output", output, self.out_bytes)] {
            if b.size() < need {
                return Err(Error::Vulkan(format!("refiner {what} buffer `{}`: {} bytes, expected at least {need}", b.name(), b.size())));
            }
        }
        Ok(())
    }

    /// The whole refiner, from the `[in_channels, S, S]` f32 splat in `input` to `[out_channels, S, S]`
    /// f32 RGB in [0, 1] (sigmoid, then clamp) in `output`, as dispatches to record once and replay.
    /// Panics when a buffer is too small (a caller bug; [`GpuRefiner::check_buffers`] returns it as `Err`).
    pub fn dispatches<'a>(&'a self, input: &'a Buffer, output: &'a Buffer) -> Vec<Dispatch<'a>> {
        if let Err(e) = self.check_buffers(input, output) {
            panic!("GpuRefiner::dispatches: {e}");
        }
        self.steps
            .iter()
            .map(|s| Dispatch {
                label: s.label.clone(),
                pipeline: &self.pipelines[s.pipeline],
                buffers: s
                    .slots
                    .iter()
                    .map(|slot| match slot {
                        Slot::Input => input,
                        Slot::Output => output,
                        Slot::Own(i) => &self.buffers[*i],
                    })
                    .collect(),
                push: s.push.clone(),
                groups: s.groups,
            })
            .collect()
    }

    /// Per-frame host writes before a replay: new noise maps in `NoiseMode::Random` (none with stored noise).
    pub fn before_frame(&self) -> Result<()> {
        let Some(random) = &self.random else { return Ok(()) };
        let mut guard = random.lock().map_err(|_| Error::Vulkan("refiner noise state poisoned by an earlier panic".into()))?;
        let RandomNoise { rng, maps, lengths, buffer } = &mut *guard;
        let mut rest = &mut maps[..];
        for &n in lengths.iter() {
            let (map, tail) = rest.split_at_mut(n);
            rng.fill_normal(map);
            rest = tail;
        }
        self.buffers[*buffer].write(maps)
    }
}
