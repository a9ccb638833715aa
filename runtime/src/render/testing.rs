//! Seeded inputs for the per-frame path: model weights (FLAME + refiner), a synthetic avatar and
//! driving frames, so tests and benches run without the licence-gated assets or a lift.

use gaga_kernels::testing::seeded;

use crate::config::ModelConfig;
use crate::flame::testing::insert_seeded_flame;
use crate::refiner::testing::insert_seeded_refiner;
use crate::types::{Avatar, DrivingFrame, Transform};
use crate::weights::WeightMap;

/// The official worked example's frontal camera (spec §3.3): R = diag(-1, 1, -1), T = (0, 0, 9.0144).
pub const FRONTAL: Transform = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]];

/// Every tensor the frame renderer reads, seeded.
pub fn seeded_frame_weights(cfg: &ModelConfig, seed: u64) -> WeightMap {
    let mut w = WeightMap::default();
    insert_seeded_flame(&mut w, cfg, seed);
    insert_seeded_refiner(&mut w, cfg, seed);
    w
}

/// An avatar of `cfg.gaussians()` Gaussians spread over the frontal camera's view, vertex positions zero
/// as a lift leaves them.
pub fn synthetic_avatar(cfg: &ModelConfig, seed: u64) -> Avatar {
    let n = cfg.gaussians();
    let c = cfg.gaussian_channels;
    let r = |s: u64, len: usize| seeded(seed.wrapping_mul(7919).wrapping_add(s), len);
    let mut positions: Vec<f32> = r(1, n * 3).iter().map(|v| v * 0.7).collect();
    positions[..cfg.flame.vertices * 3].iter_mut().for_each(|v| *v = 0.0);
    Avatar {
        count: n,
        channels: c,
        positions,
        colors: r(2, n * c).into(),
        opacities: r(3, n).iter().map(|v| 0.5 + 0.4 * v).collect(),
        scales: r(4, n * 3).iter().map(|v| 0.03 + 0.02 * v).collect(),
        // Quirk 2 leaves quaternions short (norm ~0.03); the kernel uses them as they are.
        rotations: r(5, n * 4).iter().map(|v| 0.015 * (1.0 + v)).collect(),
        covariances: Vec::new(),
        shapecode: r(6, cfg.flame.shape_params),
    }
}

/// Driving frame `i` of a seeded sequence: small expression, jaw and eye motion, frontal camera.
pub fn driving_frame(cfg: &ModelConfig, i: usize) -> DrivingFrame {
    let a = i as f32 * 0.1;
    DrivingFrame {
        key: format!("seeded_{i}"),
        expcode: seeded(100 + i as u64, cfg.flame.expr_params),
        posecode: [0.0, 0.0, 0.0, 0.1 + 0.05 * a.sin(), 0.0, 0.0],
        eyecode: [0.02 * a.cos(), 0.03, 0.0, 0.02 * a.cos(), 0.03, 0.0],
        transform: FRONTAL,
        shapecode: None,
        face: true,
    }
}
