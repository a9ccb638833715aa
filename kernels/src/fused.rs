//! Fused element-wise passes over `[C, H, W]` maps, split over rayon's pool by channel plane.
//!
//! Each function does in one sweep what a chain of plain passes would do in several, with the same
//! arithmetic in the same order per element, so results are bit-identical to the plain composition
//! (the tests check exact equality). None allocates.

use rayon::prelude::*;

/// Planes of fewer elements than this run on the calling thread: waking the pool costs more.
const SERIAL_BELOW: usize = 1 << 15;

/// `out[c] = x[c] * s[c]` for `C = s.len()` planes of `hw` elements (per-channel scaled copy).
pub fn scale_channels(x: &[f32], s: &[f32], hw: usize, out: &mut [f32]) {
    let n = s.len() * hw;
    assert!(x.len() >= n && out.len() >= n, "scale_channels: {} channels of {hw} need {n} floats", s.len());
    let body = |(c, dst): (usize, &mut [f32])| {
        let (si, src) = (s[c], &x[c * hw..(c + 1) * hw]);
        dst.iter_mut().zip(src).for_each(|(d, v)| *d = v * si);
    };
    if n < SERIAL_BELOW || hw == 0 {
        out[..n].chunks_mut(hw.max(1)).enumerate().for_each(body);
    } else {
        out[..n].par_chunks_mut(hw).enumerate().for_each(body);
    }
}

/// `x[c] *= f[c]` for `C = f.len()` planes of `hw` elements.
pub fn scale_channels_in_place(x: &mut [f32], f: &[f32], hw: usize) {
    let n = f.len() * hw;
    let body = |(c, dst): (usize, &mut [f32])| {
        let fc = f[c];
        dst.iter_mut().for_each(|v| *v *= fc);
    };
    if n < SERIAL_BELOW || hw == 0 {
        x[..n].chunks_mut(hw.max(1)).enumerate().for_each(body);
    } else {
        x[..n].par_chunks_mut(hw).enumerate().for_each(body);
    }
}

/// `dst += src`, element-wise, in parallel chunks when large.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign lengths");
    if dst.len() < SERIAL_BELOW {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
    } else {
        dst.par_chunks_mut(SERIAL_BELOW)
            .zip(src.par_chunks(SERIAL_BELOW))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
    }
}

/// The StyleGAN2 `StyleConv` epilogue on a modulated conv's raw output `x` (`C = f.len()` planes of
/// `hw`), optionally followed by the SFT condition of the decoder's first conv per level:
/// `y = lrelu(x * f[c] + strength * noise + bias[c], slope)`, then `y = y * scale + shift` when `sft`
/// is given (`scale`, `shift` shaped like `x`). `noise` is one `[hw]` plane shared by all channels.
#[allow(clippy::too_many_arguments)]
pub fn style_epilogue(
    x: &mut [f32],
    hw: usize,
    f: &[f32],
    noise: &[f32],
    strength: f32,
    bias: &[f32],
    slope: f32,
    sft: Option<(&[f32], &[f32])>,
) {
    let n = f.len() * hw;
    assert!(x.len() >= n && noise.len() >= hw && bias.len() >= f.len(), "style_epilogue: {} channels of {hw}", f.len());
    let body = |(c, plane): (usize, &mut [f32])| {
        let (fc, b) = (f[c], bias[c]);
        let act = |v: f32, nz: f32| {
            let y = v * fc + strength * nz + b;
            if y < 0.0 {
                y * slope
            } else {
                y
            }
        };
        match sft {
            Some((scale, shift)) => {
                let (a, s) = (&scale[c * hw..(c + 1) * hw], &shift[c * hw..(c + 1) * hw]);
                plane.iter_mut().zip(noise).zip(a.iter().zip(s)).for_each(|((v, &nz), (a, s))| *v = act(*v, nz) * a + s);
            }
            None => plane.iter_mut().zip(noise).for_each(|(v, &nz)| *v = act(*v, nz)),
        }
    };
    if n < SERIAL_BELOW || hw == 0 {
        x[..n].chunks_mut(hw.max(1)).enumerate().for_each(body);
    } else {
        x[..n].par_chunks_mut(hw).enumerate().for_each(body);
    }
}

/// `out = bilinear(input)[c] * s[c]`: [`crate::resize::bilinear`] (align_corners = false) to `oh x ow`
/// with each channel scaled while it is written, so the resampled map is not swept a second time.
/// Same taps and sums as `bilinear`, then one multiply: bit-identical to the two passes.
#[allow(clippy::too_many_arguments)]
pub fn bilinear_scaled(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, s: &[f32], out: &mut [f32]) {
    assert_eq!(s.len(), c, "bilinear_scaled scale count");
    resample(input, c, h, w, oh, ow, |ch| s[ch], out);
}

/// [`crate::resize::bilinear`] with align_corners = false, bit-identical to it, with fast paths for
/// the exact x2 and x0.5 resizes (the refiner's ResBlocks) that skip the per-pixel tap arithmetic.
#[allow(clippy::too_many_arguments)]
pub fn bilinear_fast(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
    // Multiplying by 1.0 is exact, so this is the plain resize.
    resample(input, c, h, w, oh, ow, |_| 1.0, out);
}

#[allow(clippy::too_many_arguments)]
fn resample(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, scale: impl Fn(usize) -> f32 + Sync, out: &mut [f32]) {
    assert_eq!(input.len(), c * h * w, "bilinear input length");
    assert_eq!(out.len(), c * oh * ow, "bilinear output length");
    if out.is_empty() {
        return;
    }
    assert!(h > 0 && w > 0, "bilinear from an empty {h}x{w} map");
    out.par_chunks_mut(ow).enumerate().with_min_len(16).for_each(|(r, row)| {
        let (ch, y) = (r / oh, r % oh);
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        let (y0, y1, wy0, wy1) = taps(y, h, oh);
        let (r0, r1, sc) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w], scale(ch));
        let px =
            |x0: usize, x1: usize, wx0: f32, wx1: f32| (wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1])) * sc;
        if ow == 2 * w && w >= 2 {
            // Exact x2: destination 2j samples j - 0.25 (taps j-1, j at 0.25, 0.75) and 2j+1 samples
            // j + 0.25 (taps j, j+1 at 0.75, 0.25), exactly the weights `taps` gives; only the two
            // border columns are clamped, so they go through `taps`.
            let (a, b) = (taps(0, w, ow), taps(ow - 1, w, ow));
            row[0] = px(a.0, a.1, a.2, a.3);
            row[ow - 1] = px(b.0, b.1, b.2, b.3);
            for j in 1..w {
                row[2 * j - 1] = px(j - 1, j, 0.75, 0.25);
                row[2 * j] = px(j - 1, j, 0.25, 0.75);
            }
        } else if w == 2 * ow {
            // Exact x0.5: destination x samples 2x + 0.5, taps 2x and 2x+1 at 0.5 each.
            for (x, o) in row.iter_mut().enumerate() {
                *o = px(2 * x, 2 * x + 1, 0.5, 0.5);
            }
        } else {
            for (x, o) in row.iter_mut().enumerate() {
                let (x0, x1, wx0, wx1) = taps(x, w, ow);
                *o = px(x0, x1, wx0, wx1);
            }
        }
    });
}

/// `(i0, i1, w0, w1)` of one destination index, by the reference's rule (align_corners = false).
#[inline]
fn taps(dst: usize, in_len: usize, out_len: usize) -> (usize, usize, f32, f32) {
    let src = crate::reference::bilinear_source(dst, in_len, out_len, false);
    let i0 = (src.floor() as usize).min(in_len - 1);
    let i1 = (i0 + 1).min(in_len - 1);
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seeded;

    // Same formulas in the same order as the plain passes, so the tolerance is zero (exact equality).

    #[test]
    fn fused_style_epilogue_equals_the_plain_passes() {
        let (c, hw) = (3, 200 * 200);
        for with_sft in [false, true] {
            let x = seeded(1, c * hw);
            let noise = seeded(2, hw);
            let (scale, shift) = (seeded(3, c * hw), seeded(4, c * hw));
            let (f, bias) = ([0.5, -1.25, 2.0], [0.1, -0.3, 0.0]);
            let mut want = x.clone();
            for o in 0..c {
                want[o * hw..(o + 1) * hw].iter_mut().for_each(|v| *v *= f[o]);
            }
            for o in 0..c {
                for (v, nz) in want[o * hw..(o + 1) * hw].iter_mut().zip(&noise) {
                    let y = *v + 0.7 * nz + bias[o];
                    *v = if y < 0.0 { y * 0.2 } else { y };
                }
            }
            if with_sft {
                want.iter_mut().zip(&scale).zip(&shift).for_each(|((v, a), b)| *v = *v * a + b);
            }
            let mut got = x.clone();
            style_epilogue(&mut got, hw, &f, &noise, 0.7, &bias, 0.2, with_sft.then_some((&scale[..], &shift[..])));
            assert_eq!(got, want, "sft {with_sft}");
        }
    }

    #[test]
    fn channel_scaling_and_adding_equal_the_plain_loops() {
        let (c, hw) = (4, 150 * 150);
        let x = seeded(5, c * hw);
        let s = [1.5, -0.5, 0.0, 3.0];
        let mut got = vec![0.0; c * hw];
        scale_channels(&x, &s, hw, &mut got);
        let want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * s[i / hw]).collect();
        assert_eq!(got, want);
        let mut in_place = x.clone();
        scale_channels_in_place(&mut in_place, &s, hw);
        assert_eq!(in_place, want);
        let mut sum = x.clone();
        add_assign(&mut sum, &want);
        let plain: Vec<f32> = x.iter().zip(&want).map(|(a, b)| a + b).collect();
        assert_eq!(sum, plain);
    }

    #[test]
    fn scaled_bilinear_equals_bilinear_then_scaling() {
        let (c, h, w) = (3, 37, 20);
        let x = seeded(6, c * h * w);
        let s = [0.25, -2.0, 1.0];
        for (oh, ow) in [(74, 40), (16, 9), (37, 20), (37, 41)] {
            let mut plain = vec![0.0; c * oh * ow];
            crate::resize::bilinear(&x, c, h, w, oh, ow, false, &mut plain);
            let want: Vec<f32> = plain.iter().enumerate().map(|(i, v)| v * s[i / (oh * ow)]).collect();
            let mut got = vec![0.0; c * oh * ow];
            bilinear_scaled(&x, c, h, w, oh, ow, &s, &mut got);
            assert_eq!(got, want, "{oh}x{ow}");
        }
    }

    #[test]
    fn fast_bilinear_equals_the_plain_resize_for_x2_x05_and_other_sizes() {
        let (c, h, w) = (2, 18, 24);
        let x = seeded(7, c * h * w);
        for (oh, ow) in [(36, 48), (9, 12), (18, 24), (7, 30), (36, 2 * 24 + 1)] {
            let mut want = vec![0.0; c * oh * ow];
            crate::resize::bilinear(&x, c, h, w, oh, ow, false, &mut want);
            let mut got = vec![0.0; c * oh * ow];
            bilinear_fast(&x, c, h, w, oh, ow, &mut got);
            assert_eq!(got, want, "{oh}x{ow}");
        }
    }
}
