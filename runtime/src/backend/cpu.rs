//! The CPU backend: the lift (`crate::lift`) and the allocation-free frame renderer (`crate::render`),
//! multi-threaded through rayon's current pool.

use crate::backend::{Backend, Budget, Session, StageTimes};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::render::{FrameRenderer, RenderOptions};
use crate::types::{Avatar, DrivingFrame, Image, SourceParams};
use crate::weights::Weights;

/// Runs everything on the CPU. Always usable.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend {
    pub options: RenderOptions,
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        "cpu"
    }

    fn probe(&self) -> std::result::Result<String, String> {
        let threads = rayon::current_num_threads();
        let simd = if cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("fma") { ", FMA" } else { "" };
        Ok(format!("CPU, {threads} threads{simd}"))
    }

    /// Loads FLAME and the refiner and sizes the frame buffers; the budget is not enforced yet.
    fn prepare<'w>(&self, weights: &'w dyn Weights, config: &ModelConfig, _budget: Budget) -> Result<Box<dyn Session + 'w>> {
        let renderer = FrameRenderer::new(weights, config, self.options)?;
        Ok(Box::new(CpuSession { weights, config: config.clone(), renderer, last: Vec::new() }))
    }
}

struct CpuSession<'w> {
    weights: &'w dyn Weights,
    config: ModelConfig,
    renderer: FrameRenderer<'w>,
    last: StageTimes,
}

impl Session for CpuSession<'_> {
    fn lift(&mut self, image: &Image, source: &SourceParams) -> Result<Avatar> {
        // lift_timed keeps no intermediates (lift_traced would hold f_feature0, 90 MB at official size).
        let (avatar, times) = crate::lift::lift_timed(self.weights, &self.config, image, source)?;
        self.last = times.stage_times();
        Ok(avatar)
    }

    fn render(&mut self, avatar: &Avatar, frame: &DrivingFrame, out: &mut Image) -> Result<()> {
        self.renderer.render(avatar, frame, out)?;
        // Stage times are kept in the renderer (fixed size) and turned into a list only when asked.
        self.last.clear();
        Ok(())
    }

    fn prepare_avatar(&self, avatar: Avatar) -> Avatar {
        self.renderer.prepare_avatar(avatar)
    }

    fn stage_times(&self) -> StageTimes {
        if self.last.is_empty() {
            self.renderer.times().stage_times()
        } else {
            self.last.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testing::{driving_frame, seeded_frame_weights};

    #[test]
    fn cpu_session_lifts_and_renders_like_the_library_calls() {
        let cfg = ModelConfig::small();
        let mut w = crate::lift::testing::seeded_weights(&cfg);
        let frame_weights = seeded_frame_weights(&cfg, 4);
        w.tensors.extend(frame_weights.tensors);
        let backend = CpuBackend::default();
        assert!(backend.probe().is_ok());
        let mut session = backend.prepare(&w, &cfg, Budget::UNLIMITED).expect("session");
        let s = cfg.image_size;
        let image = Image { width: s, height: s, data: gaga_kernels::testing::seeded(3, 3 * s * s).iter().map(|v| v.abs()).collect() };
        let source = SourceParams { shapecode: vec![0.1; cfg.flame.shape_params], transform: crate::render::testing::FRONTAL };
        let avatar = session.lift(&image, &source).expect("lift");
        assert_eq!(avatar, crate::lift::lift(&w, &cfg, &image, &source).expect("library lift"));
        assert!(session.stage_times().iter().any(|(name, _)| name.starts_with("lift.")));

        let frame = driving_frame(&cfg, 2);
        let (mut a, mut b) = (Image::new(s, s), Image::new(s, s));
        session.render(&avatar, &frame, &mut a).expect("session render");
        let mut renderer = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
        renderer.render(&avatar, &frame, &mut b).expect("library render");
        assert_eq!(a, b);
        let names: Vec<&str> = session.stage_times().iter().map(|t| t.0).collect();
        assert_eq!(names, ["flame", "splat", "refine"]);
    }
}
