//! Filling the refiner's buffers at load: weights as stored (little-endian bytes to 32-bit words),
//! fp32 vectors (biases, int8 scales, room for per-frame values), square sums, dequantised tensors.

use gaga_kernels::twin::stored::words_from_le_bytes;

use super::program::{Fill, Part};
use crate::backend::vulkan::memory::Buffer;
use crate::error::Result;
use crate::refiner::modconv::weight_square_sums;
use crate::weights::Weights;

/// Writes the load-time contents of `buf` described by `fill`.
pub(super) fn fill(buf: &Buffer, fill: &Fill, w: &dyn Weights) -> Result<()> {
    match fill {
        Fill::Scratch => Ok(()),
        Fill::Stored(name) => buf.write(&words_from_le_bytes(&w.stored(name)?.bytes)),
        Fill::Vectors(parts) => {
            let mut v: Vec<f32> = Vec::new();
            for part in parts {
                match part {
                    Part::Tensor(name) => v.extend_from_slice(&w.f32(name)?),
                    Part::Scales(name, n) => match w.stored(name)?.scales {
                        Some(s) => v.extend_from_slice(&s),
                        None => v.extend(std::iter::repeat_n(1.0f32, *n)),
                    },
                    Part::Zeros(n) => v.extend(std::iter::repeat_n(0.0f32, *n)),
                }
            }
            buf.write(&v)
        }
        Fill::SquareSums { tensor, c_out, c_in, k } => {
            // From the dequantised weight, exactly as the CPU refiner computes them.
            buf.write(&weight_square_sums(&w.f32(tensor)?, *c_out, *c_in, *k))
        }
        Fill::RowMajorF32(name) => buf.write(&w.f32(name)?),
        Fill::Dequantised(names) | Fill::Noise(names) => {
            let mut v: Vec<f32> = Vec::new();
            for name in names {
                v.extend_from_slice(&w.f32(name)?);
            }
            buf.write(&v)
        }
    }
}
