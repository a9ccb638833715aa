//! Developer tools behind `gaga dev`: seeded files in the official layouts, so every stage can be built,
//! converted, tested and benchmarked without the licence-gated assets.
//!
//! - `pickle` and `torch_zip`: writers for `torch.save`'s container (`torch.load(weights_only=True)`
//!   opens the results);
//! - `rng` and `init`: the exactly specified seeded value streams and their distributions;
//! - `layout` and `layout_refiner`: every tensor of `GAGAvatar.pt` derived from a `ModelConfig`, with the
//!   calibration that keeps a forward pass healthy (see `docs/seeded-models.md`);
//! - `checkpoint`: the seeded `GAGAvatar.pt` writer and the same values as an in-memory `WeightMap`;
//! - `flame_mesh` and `flame`: a head-like, structurally valid FLAME asset (`FLAME_with_eye.pt` keys);
//! - `driver`: scripted driving sequences.

pub mod checkpoint;
pub mod driver;
pub mod flame;
pub mod flame_mesh;
pub mod init;
pub mod layout;
pub mod layout_refiner;
pub mod pickle;
pub mod rng;
pub mod torch_zip;

pub use checkpoint::{seeded_weights, write_checkpoint, write_checkpoint_file};
pub use layout::checkpoint_specs;

#[cfg(test)]
mod roundtrip_tests;
