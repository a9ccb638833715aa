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

use std::path::{Path, PathBuf};

use gaga_runtime::ModelConfig;

use gaga_runtime::Result;

use crate::{convert, ConvertOptions, Precision};

/// Converts the seeded `small` checkpoint and FLAME of `seed` at `precision` into `dir/m-{precision}.gaga`
/// (writing `dir/ck.pt` and `dir/flame.pt` first), for tests and benches that need a real converted file.
pub fn convert_seeded_small(dir: &Path, seed: u64, precision: Precision, created_by: &str) -> Result<PathBuf> {
    let (checkpoint, flame, output) = (dir.join("ck.pt"), dir.join("flame.pt"), dir.join(format!("m-{}.gaga", precision.name())));
    write_checkpoint_file(&checkpoint, &ModelConfig::small(), "small", seed)?;
    flame::build(seed).write_file(&flame)?;
    let opts = ConvertOptions { checkpoint, flame, output: output.clone(), precision, keep: vec![], created_by: created_by.into() };
    convert(&opts, &mut |_| {})?;
    Ok(output)
}

#[cfg(test)]
mod roundtrip_tests;
