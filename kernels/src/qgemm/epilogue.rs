//! The int8 convolution's epilogue: exact i32 sums to f32 outputs, written into the output planes.

use super::conv::Geometry;
use crate::matmul::SyncPtr;

/// One task's accumulator tile and where its values go.
pub(super) struct Tile<'a> {
    /// Rows of `ldc` i32, row `o - o0` for output channel `o`.
    pub ct: &'a [i32],
    pub ldc: usize,
    /// First flat column and number of columns.
    pub j0: usize,
    pub ncols: usize,
    /// Output channels `o0..o1`.
    pub o0: usize,
    pub o1: usize,
}

/// The per-channel terms: `out[o] = ((acc - shift * sums[o] / 128) as f32) * (scales[o] * s) + bias[o]`.
pub(super) struct Terms<'a> {
    pub scales: &'a [f32],
    pub s: f32,
    /// `128 * sum(w[o])` (the packed weight's row sums).
    pub sums: &'a [i32],
    /// What the kernels' input bytes exceed `q - zero` by: `zero`, plus 128 on offset ISAs.
    pub shift: i32,
    pub bias: Option<&'a [f32]>,
}

/// Writes `tile`'s outputs (channels `o0..o1`, pixels of columns `j0..j0 + ncols`, border columns
/// dropped) into `dst`: the same IEEE multiply then add on every path (no FMA contraction, which Rust
/// never does implicitly), compiled for AVX2 when present.
///
/// # Safety
/// `dst` points at `terms.scales.len()` planes of `h * w` floats whose pixels in the tile's columns
/// and channels no one else touches during the call; `o1 <= scales.len()`, and the tile holds
/// `o1 - o0` rows of at least `ncols` values.
pub(super) unsafe fn epilogue(tile: &Tile, terms: &Terms, g: &Geometry, w: usize, h: usize, dst: SyncPtr) {
    // (An AVX-512 build was not measured to help: rows of 4-32 pixels, most of the refiner's maps, are
    // shorter than its 16-lane main loop.)
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected; the rest is the caller's contract.
        unsafe { epilogue_avx2(tile, terms, g, w, h, dst) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { epilogue_body(tile, terms, g, w, h, dst) }
}

/// [`epilogue_body`] compiled for AVX2.
///
/// # Safety
/// As [`epilogue`], on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn epilogue_avx2(tile: &Tile, terms: &Terms, g: &Geometry, w: usize, h: usize, dst: SyncPtr) {
    // SAFETY: the caller's contract.
    unsafe { epilogue_body(tile, terms, g, w, h, dst) }
}

/// The epilogue's loops.
///
/// # Safety
/// As [`epilogue`].
#[inline(always)]
unsafe fn epilogue_body(tile: &Tile, terms: &Terms, g: &Geometry, w: usize, h: usize, dst: SyncPtr) {
    let (j0, ncols) = (tile.j0, tile.ncols);
    for o in tile.o0..tile.o1 {
        let sc = terms.scales[o] * terms.s;
        // Exact: |128 + zero| <= 255 and the row sums are below 127 * MAX_K_I8, so the product fits in i32.
        let c = (terms.sums[o] / 128).wrapping_mul(terms.shift);
        let b = terms.bias.map_or(0.0, |b| b[o]);
        let r = (o - tile.o0) * tile.ldc;
        let row = &tile.ct[r..r + ncols];
        g.pixel_runs(j0, ncols, w, |k, px, len| {
            // SAFETY: pixels px..px + len of plane o are inside the output and owned by this tile.
            let d = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o * h * w + px), len) };
            for (v, &acc) in d.iter_mut().zip(&row[k..k + len]) {
                *v = (acc.wrapping_sub(c) as f32) * sc + b;
            }
        });
    }
}
