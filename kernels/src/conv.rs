//! 2-D convolutions on `[C, H, W]` maps with PyTorch weight layouts.
//!
//! Two GEMM engines ([`GemmPath`]): [`conv2d_with`] (the per-frame refiner) runs our packed, allocation-free
//! implicit GEMM (`conv_packed.rs` on `crate::sgemm`); [`conv2d`] (the lift) keeps the `gemm` crate paths:
//! - 1x1, stride 1, no padding: one GEMM per pixel band, reading the input and weight in place;
//! - every other shape: im2col **tiled over output rows** (a band of rows at a time, about
//!   [`TILE_FLOATS`] floats of columns) followed by a GEMM writing straight into the output planes;
//! - transposed convolution with kernel == stride: a GEMM per input-row band, then a scatter of the
//!   `k x k` blocks.
//!
//! Bands have a size fixed by the shape (not by the thread count) and each output element is computed by
//! exactly one GEMM with an unsplit inner dimension, so results are identical for any `RAYON_NUM_THREADS`.

use rayon::prelude::*;

use crate::matmul::{sgemm, sgemm_raw, threads, SyncPtr, View};
pub use crate::scratch::Scratch;
use crate::scratch::{run_tiled as run_bands, with_local};

/// Which matrix-product engine a convolution uses. [`conv2d_with`] picks [`GemmPath::Packed`]; the other is
/// kept for side-by-side benchmarks (`benches/benches/kernels.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// Our allocation-free packed SGEMM (`crate::sgemm`), reading im2col bands (or 1x1 inputs) in place.
    Packed,
    /// The `gemm` crate (allocates packing buffers per call).
    GemmCrate,
}

/// Shape of a 2-D convolution: square kernel, symmetric zero padding, no dilation, no groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2d {
    /// Output height and width for an input of `h` x `w` (PyTorch's floor rule).
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let oh = (h + 2 * self.pad - self.kernel) / self.stride + 1;
        let ow = (w + 2 * self.pad - self.kernel) / self.stride + 1;
        (oh, ow)
    }

    /// Multiply-accumulate count for an input of `h` x `w`.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (oh, ow) = self.out_size(h, w);
        (self.c_out * oh * ow * self.c_in * self.kernel * self.kernel) as u64
    }

    fn check(&self, input: &[f32], h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, out: &[f32]) {
        let (oh, ow) = self.out_size(h, w);
        assert_eq!(input.len(), self.c_in * h * w, "conv2d input length");
        assert_eq!(weight.len(), self.c_out * self.c_in * self.kernel * self.kernel, "conv2d weight length");
        if let Some(b) = bias {
            assert_eq!(b.len(), self.c_out, "conv2d bias length");
        }
        assert_eq!(out.len(), self.c_out * oh * ow, "conv2d output length");
    }
}

/// Target size of one im2col / transposed-conv tile in floats (512 KiB): small enough to stay in L2 while
/// the GEMM reads it back. Measured with the AVX2 GEMM kernels on the 2-core host: 3x3 32->32 at 512x512
/// ran 108 ms with 4 MiB tiles and 51-55 ms with 128-512 KiB; 283->128 at 296x296 went from 878 ms to
/// 445-520 ms. [`MIN_PIXELS`] and the weight-packing floor can make wide layers' tiles larger (up to
/// ~40 MB per worker for DPT's 1027-channel `layer_rn`).
pub const TILE_FLOATS: usize = 1 << 17;

/// Fewest pixels per im2col band: 4 full 64-pixel tiles of the AVX-512 GEMM kernel. With 1-row bands,
/// 32x32 and 16x16 maps ran in the 2/4-wide edge kernels (perf: 10% of the refiner's time).
pub const MIN_PIXELS: usize = 256;

/// Pixel band of the 1x1 path: 16 KiB of each input channel per GEMM.
const PIXELS_1X1: usize = 4096;

/// `out = conv(input, weight) + bias`; weight `[c_out, c_in, k, k]`, input `[c_in, h, w]`, out `[c_out, oh, ow]`.
/// Uses this thread's reusable workspace and the `gemm` crate ([`GemmPath::GemmCrate`]): this entry point
/// serves the once-per-avatar lift, whose wide layers on small maps (512-1024 channels at 19-37 px) the
/// crate ran faster than our packed SGEMM in the refiner comparisons, and where allocation does not
/// matter. Per-frame callers use [`conv2d_with`] (packed, allocation-free).
pub fn conv2d(spec: &Conv2d, input: &[f32], h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    with_local(|scratch| conv2d_with_path(GemmPath::GemmCrate, scratch, spec, input, h, w, weight, bias, out));
}

/// [`conv2d`] with an explicit workspace: after the first call at a shape (or a larger one) it does not
/// allocate, provided it runs on a rayon worker or with one thread (see `tests/no_alloc_conv.rs`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with(
    scratch: &mut Scratch,
    spec: &Conv2d,
    input: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    conv2d_with_path(GemmPath::Packed, scratch, spec, input, h, w, weight, bias, out);
}

/// [`conv2d_with`] on a chosen engine (for benchmarks and tests).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_with_path(
    path: GemmPath,
    scratch: &mut Scratch,
    spec: &Conv2d,
    input: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    spec.check(input, h, w, weight, bias, out);
    if path == GemmPath::Packed {
        packed::conv2d(scratch, spec, input, h, w, weight, bias, out);
        return;
    }
    let (oh, ow) = spec.out_size(h, w);
    if out.is_empty() {
        return;
    }
    if spec.kernel == 1 && spec.stride == 1 && spec.pad == 0 {
        conv1x1(spec, input, h * w, weight, bias, out);
        return;
    }
    let kk = spec.c_in * spec.kernel * spec.kernel;
    // At least 4 pixels per output channel per band, so packing the weights inside each GEMM costs at
    // most a quarter of the columns it multiplies (small maps, wide layers), and full-width GEMM tiles.
    let min_rows = (4 * spec.c_out).max(MIN_PIXELS).div_ceil(ow);
    let rows = (TILE_FLOATS / (kk * ow).max(1)).max(min_rows).clamp(1, oh);
    let bands = oh.div_ceil(rows);
    let plane = oh * ow;
    let dst = SyncPtr(out.as_mut_ptr());
    let band = |b: usize, tile: &mut [f32], gemm_threads: usize| {
        let (y0, y1) = (b * rows, ((b + 1) * rows).min(oh));
        let pixels = (y1 - y0) * ow;
        let col = &mut tile[..kk * pixels];
        im2col(spec, input, h, w, y0, y1, ow, pixels, col);
        // SAFETY: band b owns output rows y0..y1 of every channel plane; no other task touches them.
        unsafe { gemm_band(dst, plane, y0 * ow, pixels, spec.c_out, kk, col, weight, bias, gemm_threads) };
    };
    run_bands(scratch, bands, kk * rows * ow, band);
}

/// `out[o, p0 + p] = sum_q col[q * pixels + p] * weight[o * kk + q] + bias[o]` for `p < pixels`.
///
/// # Safety
/// `dst` points at `c_out` planes of `plane` floats; elements `p0..p0 + pixels` of each must be writable
/// and touched by no one else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_band(
    dst: SyncPtr,
    plane: usize,
    p0: usize,
    pixels: usize,
    c_out: usize,
    kk: usize,
    col: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    gemm_threads: usize,
) {
    let (lhs, rhs) = (View::new(col, 1, pixels), View::new(weight, 1, kk));
    // SAFETY: forwarded from the caller.
    unsafe { gemm_band_views(dst, plane, p0, pixels, c_out, kk, lhs, rhs, bias, gemm_threads) };
}

/// 1x1 convolution as GEMMs over pixel bands: input `[c_in, hw]` is used in place as the left operand.
fn conv1x1(spec: &Conv2d, input: &[f32], hw: usize, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let bands = hw.div_ceil(PIXELS_1X1);
    let dst = SyncPtr(out.as_mut_ptr());
    let band = |b: usize, gemm_threads: usize| {
        let p0 = b * PIXELS_1X1;
        let pixels = PIXELS_1X1.min(hw - p0);
        let lhs = View::new(&input[p0..], 1, hw);
        let rhs = View::new(weight, 1, spec.c_in);
        // SAFETY: band b owns pixels p0..p0 + pixels of every output plane.
        unsafe { gemm_band_views(dst, hw, p0, pixels, spec.c_out, spec.c_in, lhs, rhs, bias, gemm_threads) };
    };
    let t = threads();
    if t > 1 && bands >= 2 * t {
        (0..bands).into_par_iter().for_each(|b| band(b, 1));
    } else {
        (0..bands).for_each(|b| band(b, t));
    }
}

/// [`gemm_band`] with arbitrary operand views.
///
/// # Safety
/// As [`gemm_band`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_band_views(
    dst: SyncPtr,
    plane: usize,
    p0: usize,
    pixels: usize,
    c_out: usize,
    k: usize,
    lhs: View,
    rhs: View,
    bias: Option<&[f32]>,
    gemm_threads: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { sgemm_raw(pixels, c_out, k, dst.get().add(p0), 1, plane, false, lhs, rhs, 1.0, gemm_threads) };
    if let Some(b) = bias {
        for (o, &bo) in b.iter().enumerate() {
            // SAFETY: the band of plane o written above, owned by this call.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o * plane + p0), pixels) };
            row.iter_mut().for_each(|v| *v += bo);
        }
    }
}

/// Columns for output rows `y0..y1`: `col[q * ld + p]` with `q = (ci * k + ky) * k + kx` and `p < pixels`
/// the pixel index within the band (`ld >= pixels`; floats past `pixels` in each row are left as they
/// were); taps that fall into the zero padding are 0.
#[allow(clippy::too_many_arguments)]
fn im2col(spec: &Conv2d, input: &[f32], h: usize, w: usize, y0: usize, y1: usize, ow: usize, ld: usize, col: &mut [f32]) {
    let (k, s, pad) = (spec.kernel, spec.stride, spec.pad as isize);
    let pixels = (y1 - y0) * ow;
    let kk = spec.c_in * k * k;
    for (q, dst_q) in col.chunks_mut(ld).take(kk).enumerate() {
        let dst_q = &mut dst_q[..pixels];
        let (ci, ky, kx) = (q / (k * k), (q / k) % k, q % k);
        for (r, dst) in dst_q.chunks_exact_mut(ow).enumerate() {
            let iy = ((y0 + r) * s + ky) as isize - pad;
            if iy < 0 || iy >= h as isize {
                dst.fill(0.0);
                continue;
            }
            let src = &input[(ci * h + iy as usize) * w..][..w];
            // Output columns whose tap lands inside the row: ix = ox * s + kx - pad in [0, w).
            let shift = kx as isize - pad;
            let lo = ((-shift).max(0) as usize).div_ceil(s).min(ow);
            let hi = if w as isize - shift <= 0 { 0 } else { ((w as isize - shift) as usize).div_ceil(s).min(ow) };
            let hi = hi.max(lo);
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if s == 1 {
                let start = (lo as isize + shift) as usize;
                dst[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
            } else {
                for (ox, d) in dst[lo..hi].iter_mut().enumerate() {
                    *d = src[(lo + ox) * s + kx - spec.pad];
                }
            }
        }
    }
}

/// Transposed convolution whose kernel equals its stride and has no padding (DPT's k4s4 and k2s2 layers):
/// every input pixel writes its own `k x k` output block. Weight `[c_in, c_out, k, k]`, out `[c_out, h*k, w*k]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_patch(
    c_in: usize,
    c_out: usize,
    k: usize,
    input: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    with_local(|scratch| conv_transpose2d_patch_with(scratch, c_in, c_out, k, input, h, w, weight, bias, out));
}

/// [`conv_transpose2d_patch`] with an explicit workspace.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_patch_with(
    scratch: &mut Scratch,
    c_in: usize,
    c_out: usize,
    k: usize,
    input: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    assert_eq!(input.len(), c_in * h * w, "conv_transpose2d input length");
    assert_eq!(weight.len(), c_in * c_out * k * k, "conv_transpose2d weight length");
    assert_eq!(out.len(), c_out * h * k * w * k, "conv_transpose2d output length");
    if let Some(b) = bias {
        assert_eq!(b.len(), c_out, "conv_transpose2d bias length");
    }
    if out.is_empty() {
        return;
    }
    // T[j * pixels + p] = sum_i input[i, p] * weight[i, j] with j = (o, ky, kx), then scattered.
    let cols = c_out * k * k;
    let rows = (TILE_FLOATS / (cols * w)).clamp(1, h);
    let (oh, ow) = (h * k, w * k);
    let dst = SyncPtr(out.as_mut_ptr());
    let band = |b: usize, tile: &mut [f32], gemm_threads: usize| {
        let (y0, y1) = (b * rows, ((b + 1) * rows).min(h));
        let pixels = (y1 - y0) * w;
        let t = &mut tile[..cols * pixels];
        let lhs = View::new(&input[y0 * w..], 1, h * w);
        sgemm(pixels, cols, c_in, t, 1, pixels, false, lhs, View::new(weight, cols, 1), 1.0, gemm_threads);
        for o in 0..c_out {
            let bo = bias.map_or(0.0, |b| b[o]);
            for y in y0..y1 {
                for ky in 0..k {
                    // SAFETY: output rows y0*k..y1*k of every plane belong to this band only.
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add((o * oh + y * k + ky) * ow), ow) };
                    for kx in 0..k {
                        let src = &t[((o * k + ky) * k + kx) * pixels + (y - y0) * w..][..w];
                        for (x, &v) in src.iter().enumerate() {
                            row[x * k + kx] = v + bo;
                        }
                    }
                }
            }
        }
    };
    run_bands(scratch, h.div_ceil(rows), cols * rows * w, band);
}

#[path = "conv_packed.rs"]
mod packed;

pub use packed::{conv2d_prepacked, PackedWeights};

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
