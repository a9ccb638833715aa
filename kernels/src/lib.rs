//! gaga-kernels: the numeric operations of the GAGAvatar pipeline, on plain `f32` slices.
//!
//! Conventions shared by every kernel:
//! - feature maps are batch-1, channel-major `[C, H, W]`, contiguous;
//! - token/row matrices are row-major `[N, D]`;
//! - weights keep PyTorch's layout (`[out, in, k, k]` for convolutions, `[out, in]` for linear layers,
//!   `[in, out, k, k]` for transposed convolutions), so they can be used in place from the model file;
//! - every public kernel has a plain reference twin in `reference` that tests compare against.
//!
//! A kernel never allocates a buffer the caller could have passed, and never panics on shapes the caller
//! validated: shape mismatches between arguments are programming errors and are asserted.

pub mod act;
pub mod attention;
pub mod conv;
pub mod elem;
pub mod fused;
pub mod linear;
pub mod matmul;
pub mod norm;
pub mod peak;
pub mod qgemm;
pub mod reference;
pub mod resize;
pub mod scratch;
pub mod sgemm;
pub mod splat;
pub mod testing;
pub mod twin;
pub mod vmath;
pub mod winograd;
