//! Bilinear resampling of `[C, H, W]` maps with PyTorch's exact index rules.
//!
//! Both kernels evaluate the reference's formulas in the reference's order, so their results are
//! bit-identical to `reference.rs`; the speed comes from splitting channels over rayon's pool and from
//! computing each row's vertical taps once.

use rayon::prelude::*;

use crate::reference::{antialias_taps, bilinear_source};

/// `(i0, i1, w0, w1)` for one destination index, exactly as the reference computes it.
#[inline]
fn taps(dst: usize, in_len: usize, out_len: usize, align_corners: bool) -> (usize, usize, f32, f32) {
    let src = bilinear_source(dst, in_len, out_len, align_corners);
    let i0 = (src.floor() as usize).min(in_len - 1);
    let i1 = (i0 + 1).min(in_len - 1);
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

/// `F.interpolate(mode='bilinear', antialias=False)` to `oh x ow`.
/// With `align_corners = false`, source = (dst + 0.5) * in/out - 0.5, clamped at 0 (PyTorch's rule);
/// with `align_corners = true`, source = dst * (in - 1) / (out - 1). Does not allocate.
#[allow(clippy::too_many_arguments)]
pub fn bilinear(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, align_corners: bool, out: &mut [f32]) {
    assert_eq!(input.len(), c * h * w, "bilinear input length");
    assert_eq!(out.len(), c * oh * ow, "bilinear output length");
    if out.is_empty() {
        return;
    }
    assert!(h > 0 && w > 0, "bilinear from an empty {h}x{w} map");
    // One task per output row of each channel plane keeps both threads busy for few-channel maps.
    out.par_chunks_mut(ow).enumerate().with_min_len(16).for_each(|(r, row)| {
        let (ch, y) = (r / oh, r % oh);
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        let (y0, y1, wy0, wy1) = taps(y, h, oh, align_corners);
        let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
        for (x, o) in row.iter_mut().enumerate() {
            let (x0, x1, wx0, wx1) = taps(x, w, ow, align_corners);
            *o = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
        }
    });
}

/// `F.interpolate(mode='bilinear', align_corners=False, antialias=True)` (also what torchvision's tensor
/// `resize` does): a separable triangle filter whose support widens with the downscale factor.
/// Used once per source image (DPT's image pyramid), so it allocates its tap tables and one
/// intermediate plane per channel.
pub fn bilinear_antialias(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
    assert_eq!(input.len(), c * h * w, "bilinear_antialias input length");
    assert_eq!(out.len(), c * oh * ow, "bilinear_antialias output length");
    if out.is_empty() {
        return;
    }
    let tx = antialias_taps(w, ow);
    let ty = antialias_taps(h, oh);
    out.par_chunks_mut(oh * ow).zip(input.par_chunks(h * w)).for_each(|(dst, plane)| {
        // Horizontal pass first, then vertical, as PyTorch's separable CPU kernel (and the reference) do.
        let mut tmp = vec![0f32; h * ow];
        for (src, t) in plane.chunks_exact(w).zip(tmp.chunks_exact_mut(ow)) {
            for (v, (x0, wts)) in t.iter_mut().zip(&tx) {
                *v = wts.iter().enumerate().map(|(j, wt)| wt * src[x0 + j]).sum();
            }
        }
        for (row, (y0, wts)) in dst.chunks_exact_mut(ow).zip(&ty) {
            for (x, v) in row.iter_mut().enumerate() {
                *v = wts.iter().enumerate().map(|(j, wt)| wt * tmp[(y0 + j) * ow + x]).sum();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::testing::seeded;

    #[test]
    fn bilinear_is_bit_identical_to_the_reference() {
        // Same formulas in the same order: exact equality, for both corner rules, up and down.
        for &(c, h, w, oh, ow) in &[(3, 5, 7, 10, 14), (13, 37, 37, 74, 74), (2, 8, 6, 4, 3), (1, 1, 1, 3, 2), (4, 19, 19, 37, 37)] {
            for align in [false, true] {
                let x = seeded(9, c * h * w);
                let mut want = vec![0f32; c * oh * ow];
                reference::bilinear(&x, c, h, w, oh, ow, align, &mut want);
                let mut got = vec![f32::NAN; want.len()];
                bilinear(&x, c, h, w, oh, ow, align, &mut got);
                assert_eq!(got, want, "bilinear {c}x{h}x{w} -> {oh}x{ow} align {align}");
            }
        }
    }

    #[test]
    fn antialias_is_bit_identical_to_the_reference() {
        for &(c, h, w, oh, ow) in &[(3, 37, 41, 19, 19), (2, 13, 13, 5, 7), (1, 5, 5, 9, 9)] {
            let x = seeded(10, c * h * w);
            let mut want = vec![0f32; c * oh * ow];
            reference::bilinear_antialias(&x, c, h, w, oh, ow, &mut want);
            let mut got = vec![f32::NAN; want.len()];
            bilinear_antialias(&x, c, h, w, oh, ow, &mut got);
            assert_eq!(got, want, "antialias {c}x{h}x{w} -> {oh}x{ow}");
        }
    }
}
