//! What a backend is: a name, a probe that says whether it can run here (and if not, why), and a
//! prepare step that turns a model and a memory budget into a session that lifts and renders.
//! Ops stay private to each backend.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::types::{Avatar, DrivingFrame, Image, SourceParams};
use crate::weights::Weights;

pub mod cpu;
pub mod vulkan;

/// Bytes a session may use for everything it allocates (weights it copies, activations, staging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget { bytes: u64::MAX };
}

/// Wall time per pipeline stage of the last call, in seconds, by stage name.
pub type StageTimes = Vec<(&'static str, f64)>;

pub trait Backend {
    fn name(&self) -> &str;
    /// A one-line description of the device when usable, or the reason it is not.
    fn probe(&self) -> std::result::Result<String, String>;
    fn prepare<'w>(&self, weights: &'w dyn Weights, config: &ModelConfig, budget: Budget) -> Result<Box<dyn Session + 'w>>;
}

pub trait Session {
    /// Runs the lift on a source photo of `config.image_size` squared.
    fn lift(&mut self, image: &Image, source: &SourceParams) -> Result<Avatar>;
    /// Renders one frame into `out` (`config.image_size` squared, RGB in [0, 1]). After the first call,
    /// a CPU session allocates nothing on the heap.
    fn render(&mut self, avatar: &Avatar, frame: &DrivingFrame, out: &mut Image) -> Result<()>;
    /// `avatar` in the storage this session renders it from best, called once after loading or lifting it
    /// (the input is consumed, so a replaced array is freed). The default keeps it unchanged; the CPU
    /// session with an int8 refiner narrows the colours to f16 (half their memory, frames within the int8
    /// path's own noise). Any session still renders an avatar it was not given back by this call.
    fn prepare_avatar(&self, avatar: Avatar) -> Avatar {
        avatar
    }
    /// Per-stage times of the last `lift` or `render`.
    fn stage_times(&self) -> StageTimes;
}
