//! The cost model: per frame stage, FLOPs (from `cost`) and bytes moved (weights read, activations read
//! and written), and the predicted time on each target board from its public peak figures
//! (`/work/shared/spec/platform-notes.md`): `max(FLOPs / (peak x efficiency), bytes / bandwidth)`.
//!
//! Assumptions, stated once:
//! - **Compute efficiency 40 % of the fp32 peak** for gaga's direct-convolution shaders (no tensor
//!   cores, no cooperative matrix). Where a mature runtime's figure is public (ncnn: 1.6 TFLOPS effective
//!   on Orin Nano, 3.8 on AGX Orin, fp16 paths), it is shown beside as the "mature" prediction.
//! - **Bandwidth at 100 % of the public figure** (an optimistic floor on memory time).
//! - **Activations** are read once and written once per convolution (LeakyReLU, bias, SFT and the
//!   x0.5 / x2 resampling fused into the convolution that consumes them); weights are read once per frame.
//! - **Splat**: each Gaussian is projected once and overlaps 2.6 16x16 tiles on average (what the GPU
//!   splat measured on the synthetic official-size head, `vulkan/splat.rs`); every overlap is
//!   evaluated at all 256 pixels of its tile (10 FLOPs for alpha, 2 per channel to blend); sorting moves
//!   an 8-byte key per overlap through two read-write radix passes. An upper estimate: off-screen and
//!   early-terminated Gaussians cost less.

use crate::config::ModelConfig;
use crate::cost::flame_flops;

/// Storage precision of weights and activations in the prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Fp32,
    Fp16,
}

impl Storage {
    pub fn bytes(self) -> f64 {
        match self {
            Storage::Fp32 => 4.0,
            Storage::Fp16 => 2.0,
        }
    }
}

/// Work of one stage: FLOPs, weight elements read, activation elements read or written.
#[derive(Clone, Debug, PartialEq)]
pub struct StageCost {
    pub name: &'static str,
    pub flops: f64,
    pub weights: f64,
    pub activations: f64,
}

impl StageCost {
    /// Bytes moved with `storage` for weights and activations.
    pub fn bytes(&self, storage: Storage) -> f64 {
        (self.weights + self.activations) * storage.bytes()
    }
}

/// A target board's public figures and the assumed efficiency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Board {
    /// Profile name in `boards/profiles` where one exists.
    pub name: &'static str,
    pub description: &'static str,
    /// fp32 peak of the GPU, TFLOPS.
    pub peak_tflops: f64,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    /// Fraction of the peak gaga's shaders are assumed to sustain.
    pub efficiency: f64,
    /// A mature runtime's measured effective TFLOPS on a large CNN (ncnn), when public.
    pub mature_tflops: Option<f64>,
}

/// The four target boards (platform-notes.md, "Target boards"). The phone class spans 0.5-3.7 TFLOPS and
/// 30-64 GB/s; it is modelled at the low end, so its prediction is a ceiling on time.
pub const BOARDS: [Board; 4] = [
    Board {
        name: "jetson-orin-nano",
        description: "Jetson Orin Nano 8 GB (Ampere, 1.3 TFLOPS fp32, 68 GB/s shared)",
        peak_tflops: 1.3,
        bandwidth_gbs: 68.0,
        efficiency: 0.4,
        mature_tflops: Some(1.6),
    },
    Board {
        name: "jetson-agx-orin",
        description: "Jetson AGX Orin (Ampere, 5.3 TFLOPS fp32, ~205 GB/s)",
        peak_tflops: 5.3,
        bandwidth_gbs: 205.0,
        efficiency: 0.4,
        mature_tflops: Some(3.8),
    },
    Board {
        name: "raspberry-pi-5",
        description: "Raspberry Pi 5 (V3D 7.1, ~0.1 TFLOPS fp32, ~17 GB/s)",
        peak_tflops: 0.1,
        bandwidth_gbs: 17.0,
        efficiency: 0.4,
        mature_tflops: None,
    },
    Board {
        name: "mali-g710-phone",
        description: "Mali-G710 phone (class 0.5-3.7 TFLOPS, 30-64 GB/s; low end used)",
        peak_tflops: 0.5,
        bandwidth_gbs: 30.0,
        efficiency: 0.4,
        mature_tflops: None,
    },
];

/// The boards named `name` (`all` for every board); `None` for an unknown name.
pub fn boards(name: &str) -> Option<Vec<Board>> {
    if name == "all" {
        return Some(BOARDS.to_vec());
    }
    BOARDS.iter().find(|b| b.name == name).map(|b| vec![*b])
}

/// Average 16x16 tiles a Gaussian overlaps (assumption, see the module doc).
pub const TILE_OVERLAPS: f64 = 2.6;

fn sq(s: usize) -> f64 {
    (s * s) as f64
}

/// A convolution `ci -> co`, `k x k`, reading `ci` planes of side `s_in`, writing `co` of side `s_out`.
fn conv(c: &mut StageCost, ci: usize, co: usize, k: usize, s_in: usize, s_out: usize) {
    c.flops += 2.0 * (ci * co * k * k) as f64 * sq(s_out);
    c.weights += (ci * co * k * k) as f64;
    c.activations += ci as f64 * sq(s_in) + co as f64 * sq(s_out);
}

/// A residual block as `cost::refiner_flops` counts it: two 3x3 convs and a 1x1 skip.
fn res(c: &mut StageCost, ci: usize, co: usize, s_in: usize, s_out: usize) {
    conv(c, ci, ci, 3, s_in, s_in);
    conv(c, ci, co, 3, s_in, s_out);
    conv(c, ci, co, 1, s_in, s_out);
}

fn linear(c: &mut StageCost, n_in: usize, n_out: usize) {
    c.flops += 2.0 * (n_in * n_out) as f64;
    c.weights += (n_in * n_out) as f64;
    c.activations += (n_in + n_out) as f64;
}

fn stage(name: &'static str) -> StageCost {
    StageCost { name, flops: 0.0, weights: 0.0, activations: 0.0 }
}

/// The per-frame stages: FLAME, splat, the refiner's five parts, and the RGB readback.
pub fn frame_costs(cfg: &ModelConfig) -> Vec<StageCost> {
    let f = &cfg.flame;
    let (v, j, pose) = (f.vertices as f64, f.joints as f64, ((f.joints.max(1) - 1) * 9) as f64);
    let flame = StageCost {
        name: "flame",
        flops: flame_flops(cfg),
        weights: 3.0 * v * (f.expr_params as f64 + pose) + v * j,
        activations: 3.0 * v * 2.0,
    };

    let (n, ch, s) = (cfg.gaussians() as f64, cfg.gaussian_channels as f64, cfg.image_size);
    let overlaps = n * TILE_OVERLAPS;
    let projected = 7.0 + ch;
    let splat = StageCost {
        name: "splat",
        flops: n * 100.0 + overlaps * 256.0 * (10.0 + 2.0 * ch),
        weights: 0.0,
        // Gaussians in, projected records out and back per overlap, keys sorted, image written.
        activations: n * (11.0 + ch) + n * projected + overlaps * projected + overlaps * 2.0 * 2.0 * 2.0 + ch * sq(s),
    };

    let r = &cfg.refiner;
    let (u, d, levels, sd) = (&r.unet_channels, &r.decoder_channels, r.levels(), r.style_dim);
    let side = |k: usize| 4usize << k;
    let (mut enc, mut up, mut sft, mut dec, mut style) =
        (stage("encoder"), stage("up blocks"), stage("SFT conditions"), stage("decoder"), stage("style code"));
    conv(&mut enc, r.in_channels, u[levels], 1, r.size, r.size);
    conv(&mut enc, u[0], u[0], 3, 4, 4);
    conv(&mut dec, d[0], d[0], 3, 4, 4);
    conv(&mut dec, d[0], r.out_channels, 1, 4, 4);
    linear(&mut dec, sd, 2 * d[0]);
    for k in 0..levels {
        let (lo, hi) = (side(k), side(k + 1));
        res(&mut enc, u[k + 1], u[k], hi, lo);
        res(&mut up, u[k], u[k + 1], lo, hi);
        for _ in 0..2 {
            conv(&mut sft, u[k + 1], u[k + 1], 3, hi, hi);
            conv(&mut sft, u[k + 1], 2 * u[k + 1], 3, hi, hi);
        }
        conv(&mut dec, d[k], d[k + 1], 3, lo, hi);
        conv(&mut dec, d[k + 1], d[k + 1], 3, hi, hi);
        conv(&mut dec, d[k + 1], r.out_channels, 1, hi, hi);
        linear(&mut dec, sd, d[k] + 2 * d[k + 1]);
    }
    linear(&mut style, u[0] * 16, sd);
    for _ in 0..r.mlp_layers {
        linear(&mut style, sd, sd);
    }
    let readback = StageCost { name: "output", flops: 0.0, weights: 0.0, activations: (r.out_channels * s * s) as f64 };
    vec![flame, splat, enc, up, sft, dec, style, readback]
}

/// One stage's prediction on one board, in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub stage: &'static str,
    pub compute_ms: f64,
    pub memory_ms: f64,
    /// `max(compute, memory)`: the stage is bound by whichever is slower.
    pub ms: f64,
    /// At the mature runtime's effective rate, when known.
    pub mature_ms: Option<f64>,
}

/// Predicted time of `cost` on `board` with `storage`.
pub fn predict(cost: &StageCost, board: &Board, storage: Storage) -> Prediction {
    let compute_ms = cost.flops / (board.peak_tflops * 1e12 * board.efficiency) * 1e3;
    let memory_ms = cost.bytes(storage) / (board.bandwidth_gbs * 1e9) * 1e3;
    let mature_ms = board.mature_tflops.map(|t| (cost.flops / (t * 1e12) * 1e3).max(memory_ms));
    Prediction { stage: cost.name, compute_ms, memory_ms, ms: compute_ms.max(memory_ms), mature_ms }
}

/// Every stage of `costs` on `board`, and the frame total (the sum of the per-stage maxima).
pub fn predict_frame(costs: &[StageCost], board: &Board, storage: Storage) -> (Vec<Prediction>, f64) {
    let rows: Vec<Prediction> = costs.iter().map(|c| predict(c, board, storage)).collect();
    let total = rows.iter().map(|p| p.ms).sum();
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{refiner_flops, total};

    #[test]
    fn the_prediction_is_the_slower_of_compute_and_memory() {
        let b = Board { name: "t", description: "", peak_tflops: 1.0, bandwidth_gbs: 10.0, efficiency: 0.5, mature_tflops: Some(2.0) };
        // 1 GFLOP at 0.5 TFLOPS = 2 ms; 10 MB at 10 GB/s = 1 ms (fp32: 2.5 M elements x 4 bytes).
        let c = StageCost { name: "x", flops: 1e9, weights: 2e6, activations: 0.5e6 };
        let p = predict(&c, &b, Storage::Fp32);
        assert!((p.compute_ms - 2.0).abs() < 1e-12 && (p.memory_ms - 1.0).abs() < 1e-12 && p.ms == p.compute_ms, "{p:?}");
        assert_eq!(p.mature_ms, Some(1.0f64.max(0.5)));
        // 100 MB moved: memory-bound at 10 ms; fp16 halves it.
        let m = StageCost { name: "m", flops: 1e9, weights: 25e6, activations: 0.0 };
        assert!((predict(&m, &b, Storage::Fp32).ms - 10.0).abs() < 1e-9);
        assert!((predict(&m, &b, Storage::Fp16).ms - 5.0).abs() < 1e-9);
    }

    #[test]
    fn refiner_flops_agree_with_the_cost_module() {
        let cfg = ModelConfig::official();
        let costs = frame_costs(&cfg);
        for (name, flops) in refiner_flops(&cfg) {
            let c = costs.iter().find(|c| c.name == name).map(|c| c.flops);
            assert!(c.is_some_and(|c| (c - flops).abs() <= 1e-9 * flops), "{name}: {c:?} vs {flops}");
        }
        assert_eq!(costs[0].flops, flame_flops(&cfg));
        let refiner: f64 = costs[2..7].iter().map(|c| c.flops).sum();
        assert!((refiner - total(&refiner_flops(&cfg))).abs() < 1.0);
    }

    #[test]
    fn official_refiner_weights_are_about_the_specs_per_frame_parameters() {
        // Spec §7: 48,672,343 parameters run per frame (biases, noise and norms not counted here).
        let costs = frame_costs(&ModelConfig::official());
        let weights: f64 = costs[2..7].iter().map(|c| c.weights).sum();
        assert!((weights / 48_672_343.0 - 1.0).abs() < 0.1, "{weights}");
    }

    #[test]
    fn orin_nano_at_ncnn_efficiency_is_near_the_notes_86_ms() {
        // platform-notes: 137 GFLOP at 1.6 TFLOPS effective is about 86 ms.
        let costs = frame_costs(&ModelConfig::official());
        let nano = &boards("jetson-orin-nano").expect("board")[0];
        let refiner: f64 = costs[2..7].iter().map(|c| predict(c, nano, Storage::Fp16).mature_ms.unwrap_or(f64::NAN)).sum();
        assert!((refiner - 86.0).abs() < 3.0, "{refiner} ms");
        assert_eq!(boards("all").map(|b| b.len()), Some(4));
        assert!(boards("nope").is_none());
    }
}
