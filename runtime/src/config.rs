//! Every dimension of a GAGAvatar network. The official model is one instance (`official()`); smaller
//! instances with the same structure (`small()`, used by the fast tests) convert and run through the same
//! code. The converter infers the configuration from a checkpoint's tensor shapes and writes it into the
//! model file; the runtime never hard-codes a size.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Side of the source crop and of the output frame (512).
    pub image_size: usize,
    pub dino: DinoConfig,
    pub dpt: DptConfig,
    /// Side of each lifting plane (296 = 8 x the patch grid).
    pub plane_size: usize,
    /// Channels of the local feature map `f_feature0` (DPT `output_conv` output, 256).
    pub feature_dim: usize,
    /// Feature channels carried by every Gaussian (the rasteriser's NUM_CHANNELS, 32).
    pub gaussian_channels: usize,
    /// Width of the learned per-vertex embedding `head_base` (256).
    pub head_base_dim: usize,
    /// Width of the vertex generator's trunk (`(head_base_dim + dino.dim) / 4` = 256).
    pub vertex_trunk_dim: usize,
    /// Hidden width of the vertex generator's four heads (128).
    pub vertex_head_hidden: usize,
    /// Hidden width of the lifting generators (`feature_dim / 2` = 128).
    pub lift_hidden: usize,
    /// Frequencies of the harmonic direction encoding (4, giving 27 values).
    pub harmonic_frequencies: usize,
    pub flame: FlameConfig,
    /// Pinhole focal length in NDC units (12); in pixels it is `focal * image_size / 2`.
    pub focal: f32,
    pub refiner: RefinerConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DinoConfig {
    /// Side of the square network input (518 = 37 patches of 14).
    pub input_size: usize,
    pub patch_size: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    /// Blocks whose outputs (after the final LayerNorm) feed the DPT head, in order (8, 9, 10, 11).
    pub out_layers: Vec<usize>,
    pub ln_eps: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DptConfig {
    /// Output channels of `projects[0..4]` (256, 512, 1024, 1024).
    pub project_channels: [usize; 4],
    /// Width of `layer_rn` and the fusion blocks (256).
    pub features: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlameConfig {
    pub vertices: usize,
    pub faces: usize,
    pub shape_params: usize,
    pub expr_params: usize,
    pub joints: usize,
    /// World units per FLAME metre (5.0).
    pub scale: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefinerConfig {
    /// Input and output side (512); levels run 4, 8, ..., size.
    pub size: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub style_dim: usize,
    pub mlp_layers: usize,
    /// UNet channels per level, index 0 = 4x4 ... last = size (256, 256, 256, 256, 128, 64, 32, 16).
    pub unet_channels: Vec<usize>,
    /// StyleGAN2 decoder channels per level, same indexing (512, 512, 512, 512, 256, 128, 64, 32).
    pub decoder_channels: Vec<usize>,
}

impl RefinerConfig {
    /// Number of resolution levels above 4x4 (7 at 512).
    pub fn levels(&self) -> usize {
        self.unet_channels.len() - 1
    }
    /// Number of StyleConv layers, and so of noise buffers (15 at 512).
    pub fn style_convs(&self) -> usize {
        2 * self.levels() + 1
    }
    /// Side of noise buffer `i` (4, 8, 8, 16, 16, ...).
    pub fn noise_size(i: usize) -> usize {
        1 << ((i + 5) / 2)
    }
}

impl DinoConfig {
    pub fn grid(&self) -> usize {
        self.input_size / self.patch_size
    }
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

impl ModelConfig {
    /// Vertex Gaussians (one per FLAME vertex) plus two lifting planes.
    pub fn gaussians(&self) -> usize {
        self.flame.vertices + 2 * self.plane_size * self.plane_size
    }
    /// Length of the harmonic direction encoding (27).
    pub fn direnc_dim(&self) -> usize {
        3 * (2 * self.harmonic_frequencies + 1)
    }
    /// Focal length in output pixels (3072 at 512).
    pub fn focal_px(&self) -> f32 {
        self.focal * self.image_size as f32 / 2.0
    }

    /// The released GAGAvatar checkpoint.
    pub fn official() -> Self {
        ModelConfig {
            image_size: 512,
            dino: DinoConfig {
                input_size: 518,
                patch_size: 14,
                dim: 768,
                depth: 12,
                heads: 12,
                mlp_dim: 3072,
                out_layers: vec![8, 9, 10, 11],
                ln_eps: 1e-6,
            },
            dpt: DptConfig { project_channels: [256, 512, 1024, 1024], features: 256 },
            plane_size: 296,
            feature_dim: 256,
            gaussian_channels: 32,
            head_base_dim: 256,
            vertex_trunk_dim: 256,
            vertex_head_hidden: 128,
            lift_hidden: 128,
            harmonic_frequencies: 4,
            flame: FlameConfig { vertices: 5023, faces: 9976, shape_params: 300, expr_params: 100, joints: 5, scale: 5.0 },
            focal: 12.0,
            refiner: RefinerConfig {
                size: 512,
                in_channels: 32,
                out_channels: 3,
                style_dim: 512,
                mlp_layers: 8,
                unet_channels: vec![256, 256, 256, 256, 128, 64, 32, 16],
                decoder_channels: vec![512, 512, 512, 512, 256, 128, 64, 32],
            },
        }
    }

    /// The same structure with small widths and a 64x64 frame, for fast tests: every layer type, every
    /// resampling mode and both quirks are still exercised. The FLAME topology stays official.
    pub fn small() -> Self {
        ModelConfig {
            image_size: 64,
            dino: DinoConfig {
                input_size: 70,
                patch_size: 14,
                dim: 48,
                depth: 5,
                heads: 2,
                mlp_dim: 192,
                out_layers: vec![1, 2, 3, 4],
                ln_eps: 1e-6,
            },
            dpt: DptConfig { project_channels: [8, 16, 24, 24], features: 16 },
            plane_size: 40,
            feature_dim: 16,
            gaussian_channels: 32,
            head_base_dim: 16,
            vertex_trunk_dim: 16,
            vertex_head_hidden: 24,
            lift_hidden: 8,
            harmonic_frequencies: 4,
            flame: FlameConfig { vertices: 5023, faces: 9976, shape_params: 300, expr_params: 100, joints: 5, scale: 5.0 },
            focal: 12.0,
            refiner: RefinerConfig {
                size: 64,
                in_channels: 32,
                out_channels: 3,
                style_dim: 32,
                mlp_layers: 8,
                unet_channels: vec![16, 16, 16, 8, 4],
                decoder_channels: vec![32, 32, 32, 16, 8],
            },
        }
    }
}
