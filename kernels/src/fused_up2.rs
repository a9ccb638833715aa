//! [`super::bilinear_scaled`]'s exact x2 upsample in two halves, for consumers that read the upsampled
//! map a window at a time and never store it (the Winograd input transform of a level's first
//! StyleConv: `winograd::conv3x3_up2_with`). Output pixel `(y, c)` is `(wy0 h(y0, c) + wy1 h(y1, c)) *
//! sc`, where `h(r, c)` blends input row `r` horizontally: the same operations in the same order as the
//! one-pass resize, so the same bits. Caching `h` per input row saves recomputing it for each of the (up
//! to four) output rows and overlapping windows that read it.

#[cfg(target_arch = "x86_64")]
use super::avx512;
use super::taps;

/// `(y0, y1, wy0, wy1)`: the input rows and weights of output row `y` of a `2h`-row upsample.
pub fn up2_vtaps(y: usize, h: usize) -> (usize, usize, f32, f32) {
    taps(y, h, 2 * h)
}

/// `out[k] = h(row, x0 + k)`, the horizontal blend of input row `row` (`w` floats) for output column
/// `x0 + k` of the `2w`-wide upsample; 0 for columns outside `0..2w`. `wide` picks the AVX-512F interior
/// where the CPU has it (same bits as the scalar one).
pub fn up2_hrow(row: &[f32], x0: isize, wide: bool, out: &mut [f32]) {
    let w = row.len();
    let ow = 2 * w;
    // Column c's blend, by `resample_row`'s rule for it (the clamped borders and w < 2 through `taps`).
    let col = |c: usize| {
        if w < 2 || c == 0 || c == ow - 1 {
            let (a, b, wa, wb) = taps(c, w, ow);
            wa * row[a] + wb * row[b]
        } else if c % 2 == 1 {
            0.75 * row[c / 2] + 0.25 * row[c / 2 + 1]
        } else {
            0.25 * row[c / 2 - 1] + 0.75 * row[c / 2]
        }
    };
    // Columns left of the map, then an odd first column, leave an even start x0 >= 0.
    let mut c0 = 0;
    if x0 < 0 {
        c0 = ((-x0) as usize).min(out.len());
        out[..c0].fill(0.0);
    }
    let mut x = x0 + c0 as isize;
    if x % 2 == 1 && c0 < out.len() {
        out[c0] = if (x as usize) < ow { col(x as usize) } else { 0.0 };
        c0 += 1;
        x += 1;
    }
    let out = &mut out[c0..];
    // Now out[k] is column x + k, x even and >= 0.
    let x = x as usize;
    let inside = ow.saturating_sub(x).min(out.len());
    out[inside..].fill(0.0);
    // Columns out[..k] done by the AVX-512 kernel.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut k = 0;
    #[cfg(target_arch = "x86_64")]
    if wide && super::avx512() && w >= 2 && inside > 0 {
        // out[0] is column x = 2 j1, and the kernel on input columns j1 .. j1 + n writes columns
        // x + 1 ..= x + 2n - 2 straight into out[1 .. 2n - 1] (all inside the map).
        let j1 = x / 2;
        let n = (w - j1).min(out.len() / 2);
        if n >= 2 {
            // SAFETY: AVX-512F was detected; the row slice holds n floats and the output 2n.
            unsafe { avx512::up2_hrow(&row[j1..j1 + n], &mut out[..2 * n]) };
            out[0] = col(x);
            k = 2 * n - 1;
        }
    }
    let _ = wide;
    for (kk, o) in out[..inside].iter_mut().enumerate().skip(k) {
        *o = col(x + kk);
    }
}

/// `out[k] = (wy0 h0[k] + wy1 h1[k]) * sc` (the vertical blend and the channel's factor), AVX-512F where
/// `wide` and the CPU has it (same bits).
///
/// # Panics
/// If `h0` or `h1` is shorter than `out` (a caller bug).
pub fn up2_vrow(h0: &[f32], h1: &[f32], wy0: f32, wy1: f32, sc: f32, wide: bool, out: &mut [f32]) {
    assert!(h0.len() >= out.len() && h1.len() >= out.len(), "up2_vrow: rows of {} and {} floats for {}", h0.len(), h1.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if wide && super::avx512() {
        // SAFETY: AVX-512F was detected; lengths checked above.
        unsafe { avx512::up2_vrow(h0, h1, wy0, wy1, sc, out) };
        return;
    }
    let _ = wide;
    for ((o, a), b) in out.iter_mut().zip(h0).zip(h1) {
        *o = (wy0 * a + wy1 * b) * sc;
    }
}
