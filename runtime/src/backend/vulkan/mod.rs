//! The Vulkan backend (ash + gpu-allocator), built and tested on lavapipe, Mesa's CPU Vulkan device.
//!
//! Design choices, in the manner of wgpu-hal's list:
//! - **Loaded at run time.** ash opens libvulkan when a context opens, so building needs no Vulkan
//!   package and a machine without a loader or driver gets an `Err` with a sentence, never a crash.
//! - **Device choice.** Discrete, then integrated, then virtual, then CPU devices; `ContextOptions::device`
//!   (`--device N`) overrides. Devices older than Vulkan 1.2 are listed with the reason and refused.
//! - **Everything optional the device offers is enabled** (fp16, int8, 8/16-bit storage, integer dot
//!   product), so shader variants can be chosen from the `DeviceProbe` without reopening the device.
//! - **One budget.** Every allocation goes through `Memory`, with a name, against the `Budget` given at
//!   open; over-budget errors name the request, the budget and the largest holders.
//! - **Shipped SPIR-V only.** Shaders are compiled ahead of time (`kernels/shaders/build.sh`, checked by
//!   `check.sh`); each has a CPU twin in `gaga_kernels::twin` that owns its push-constant struct.
//! - **Pipelines go through a disk cache** keyed by vendor, device, driver version and pipelineCacheUUID.
//! - **Record once, replay.** `Recorded` holds a command buffer with barriers between dispatches and a
//!   timestamp pair around each; it borrows its buffers and pipelines, so they outlive it.
//! - **Misuse is asserted, the environment is an `Err`.** A wrong buffer count is our bug; a missing
//!   driver, an out-of-memory or a device loss is returned.
//! - **Validation is counted.** With `GAGA_VULKAN_VALIDATION=1` (and in tests) the Khronos layer runs and
//!   its errors and warnings are counted, so tests can assert zero.

use std::path::Path;
use std::sync::Arc;

use ash::vk;

use crate::backend::{Backend, Budget, Session};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::Weights;

pub mod cache;
pub mod chunks;
pub mod command;
pub mod device;
pub mod flame;
pub mod instance;
pub mod lift;
pub mod memory;
pub mod ops;
pub mod pipeline;
pub mod probe;
pub mod refiner;
pub mod session;
pub mod splat;
pub mod weights;

pub use cache::PipelineCache;
pub use chunks::plan_chunks;
pub use command::{Dispatch, Recorded};
pub use device::{Context, ContextOptions, Requirement};
pub use lift::GpuLift;
pub use memory::{Buffer, Memory, MemoryLocation, MemoryReport};
pub use pipeline::ComputePipeline;
pub use probe::{DeviceKind, DeviceProbe};
pub use session::VulkanSession;

/// The error for a failed Vulkan call: the step and the `VkResult`.
pub(crate) fn vk_err(step: &str, result: vk::Result) -> Error {
    Error::Vulkan(format!("{step}: {result:?}"))
}

/// An open device with its budgeted memory and pipeline cache: what a session is built on.
pub struct Gpu {
    // Field order is drop order: cache and memory before the last Arc to the device.
    pub cache: PipelineCache,
    pub memory: Memory,
    pub ctx: Arc<Context>,
}

impl Gpu {
    /// Opens a device, a memory budget and a pipeline cache in `cache_dir` (`None`: memory only).
    pub fn open(options: &ContextOptions, budget: Budget, cache_dir: Option<&Path>) -> Result<Gpu> {
        let ctx = Context::open(options)?;
        let memory = Memory::new(&ctx, budget)?;
        let cache = PipelineCache::open(&ctx, cache_dir)?;
        Ok(Gpu { cache, memory, ctx })
    }
}

/// Lists every device with its probe (for `gaga inspect --device`), validation off.
pub fn list_devices() -> Result<Vec<(DeviceProbe, Option<String>)>> {
    let instance = instance::Instance::new(false)?;
    device::list_devices(&instance)
}

/// The Vulkan backend: FLAME on the GPU, the frame recorded once and replayed, one memory budget.
#[derive(Clone, Debug, Default)]
pub struct VulkanBackend {
    pub options: ContextOptions,
    /// Where the pipeline cache lives (`None`: memory only; `cache::default_cache_dir()` for the CLI).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Copy weights into upload memory even when the device can import the mapped file.
    pub copy_weights: bool,
}

impl VulkanBackend {
    /// `prepare` with the concrete session type (memory report, GPU timings, validation counters).
    pub fn open_session<'w>(&self, weights: &'w dyn Weights, config: &ModelConfig, budget: Budget) -> Result<VulkanSession<'w>> {
        VulkanSession::new(&self.options, self.cache_dir.as_deref(), weights, config, budget, !self.copy_weights)
    }
}

impl Backend for VulkanBackend {
    fn name(&self) -> &str {
        "vulkan"
    }

    fn probe(&self) -> std::result::Result<String, String> {
        Context::open(&self.options).map(|ctx| ctx.probe().summary()).map_err(|e| e.to_string())
    }

    /// Plans every device allocation against `budget` and fails before allocating when it does not fit.
    fn prepare<'w>(&self, weights: &'w dyn Weights, config: &ModelConfig, budget: Budget) -> Result<Box<dyn Session + 'w>> {
        Ok(Box::new(self.open_session(weights, config, budget)?))
    }
}
