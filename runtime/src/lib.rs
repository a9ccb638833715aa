//! gaga-runtime: everything a device program needs to run a converted GAGAvatar model.
//!
//! Data flow: `format` validates the mapped bytes of a `.gaga` file; `model::Model` exposes its
//! configuration and named weights through the `weights::Weights` trait; the pipeline stages read weights
//! only through that trait, so tests can feed them seeded in-memory tensors and the file format stays
//! independent of the network code.
//!
//! Once per source photo (`lift`): preprocess -> DINOv2 + DPT head (`lift::dino`, `lift::dpt`) -> the
//! vertex and lifting Gaussian generators (`lift::generators`) -> an `Avatar`.
//! Per driving frame (`render`): FLAME (`flame`) moves the vertex Gaussians -> the 32-channel splat
//! (`gaga_kernels::splat`, camera from `camera`) -> the StyleUNet refiner (`refiner`) -> RGB frame.

pub mod avatar;
pub mod backend;
pub mod camera;
pub mod config;
pub mod cost;
pub mod driving;
pub mod error;
pub mod eval;
pub mod flame;
pub mod format;
pub mod image_io;
pub mod lift;
pub mod malloc;
pub mod model;
pub mod pickle;
pub mod predict;
pub mod refiner;
pub mod render;
pub mod types;
pub mod weights;
pub mod write_aside;

pub use config::ModelConfig;
pub use error::{Error, Result};
pub use types::{Avatar, AvatarColors, DrivingFrame, Image, SourceParams, Transform};
pub use weights::{Stored, WeightMap, Weights};
