//! Convolutions on our packed SGEMM (`crate::sgemm`): the weights are packed once per call into the
//! caller's scratch, then shared read-only by every band; `B` is the im2col band (the only copy of the
//! input) or, for 1x1 stride-1 layers, the input map itself. Nothing here allocates once the scratch has
//! grown.
//!
//! Bands are fixed by the shape, each output element is computed by one micro-kernel sequence with the
//! same `KC` split, so results are bitwise identical for any thread count.

use super::{im2col, Conv2d, Scratch, MIN_PIXELS, TILE_FLOATS};
use crate::matmul::SyncPtr;
use crate::scratch::{run_tiled_in, tiled_len};
use crate::sgemm::{self, Isa};

/// Pixel band of the 1x1 path (16 KiB of each input channel per task).
const PIXELS_1X1: usize = 4096;

/// `out = conv(input, weight) + bias` (shapes already checked by the caller).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d(scratch: &mut Scratch, spec: &Conv2d, input: &[f32], h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let (oh, ow) = spec.out_size(h, w);
    if out.is_empty() {
        return;
    }
    let isa = Isa::detect();
    let kk = spec.c_in * spec.kernel * spec.kernel;
    let packed_len = sgemm::packed_a_len(spec.c_out, kk);
    let plane = oh * ow;
    let dst = SyncPtr(out.as_mut_ptr());
    if spec.kernel == 1 && spec.stride == 1 && spec.pad == 0 {
        let bands = plane.div_ceil(PIXELS_1X1);
        let tile = sgemm::tail_len(isa, kk);
        let (packed, tiles) = scratch.take(packed_len + tiled_len(bands, tile)).split_at_mut(packed_len);
        sgemm::pack_a(spec.c_out, kk, weight, bias, packed);
        let packed = &*packed;
        run_tiled_in(tiles, bands, tile, |b, tail, gemm_threads| {
            let p0 = b * PIXELS_1X1;
            let pixels = PIXELS_1X1.min(plane - p0);
            // SAFETY: band b owns pixels p0..p0 + pixels of every output plane; B rows are input channels.
            unsafe { sgemm::gemm(isa, spec.c_out, pixels, kk, packed, &input[p0..], plane, tail, dst.get().add(p0), plane, gemm_threads) };
        });
        return;
    }
    // The weights are packed once for all bands, so (unlike the gemm-crate path) bands need no minimum
    // size to amortise weight packing: only enough pixels for full-width micro-tiles.
    let rows = (TILE_FLOATS / (kk * ow).max(1)).max(MIN_PIXELS.div_ceil(ow)).clamp(1, oh);
    let bands = oh.div_ceil(rows);
    let col_len = kk * rows * ow;
    let tile = col_len + sgemm::tail_len(isa, kk);
    let (packed, tiles) = scratch.take(packed_len + tiled_len(bands, tile)).split_at_mut(packed_len);
    sgemm::pack_a(spec.c_out, kk, weight, bias, packed);
    let packed = &*packed;
    run_tiled_in(tiles, bands, tile, |b, tile, gemm_threads| {
        let (y0, y1) = (b * rows, ((b + 1) * rows).min(oh));
        let pixels = (y1 - y0) * ow;
        let (col, tail) = tile.split_at_mut(col_len);
        let col = &mut col[..kk * pixels];
        im2col(spec, input, h, w, y0, y1, ow, col);
        // SAFETY: band b owns output rows y0..y1 of every channel plane; no other task touches them.
        unsafe { sgemm::gemm(isa, spec.c_out, pixels, kk, packed, col, pixels, tail, dst.get().add(y0 * ow), plane, gemm_threads) };
    });
}

