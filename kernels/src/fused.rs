//! Fused element-wise passes over `[C, H, W]` maps, split over rayon's pool by channel plane.
//!
//! Each function does in one sweep what a chain of plain passes would do in several, with the same
//! arithmetic in the same order per element, so results are bit-identical to the plain composition
//! (the tests check exact equality). None allocates (the fused skip pass grows the caller's scratch
//! once).

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
#[path = "fused_avx512.rs"]
mod avx512;

/// True when the AVX-512F bodies of `fused_avx512.rs` run (bit-identical to the scalar ones).
fn avx512() -> bool {
    crate::sgemm::Isa::detect() == crate::sgemm::Isa::Avx512
}

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

/// `dst = leaky_relu(dst, slope) + src`, element-wise: [`crate::act::leaky_relu`] then [`add_assign`] in
/// one sweep (the ResBlock's activation and skip sum), bit-identical to the two passes.
pub fn lrelu_add(dst: &mut [f32], src: &[f32], slope: f32) {
    assert_eq!(dst.len(), src.len(), "lrelu_add lengths");
    let body = |(d, s): (&mut [f32], &[f32])| {
        d.iter_mut().zip(s).for_each(|(d, s)| {
            let y = if *d < 0.0 { *d * slope } else { *d };
            *d = y + s;
        })
    };
    if dst.len() < SERIAL_BELOW {
        body((dst, src));
    } else {
        dst.par_chunks_mut(SERIAL_BELOW).zip(src.par_chunks(SERIAL_BELOW)).for_each(body);
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

/// `dst *= src`, element-wise, in parallel chunks when large (the SFT scale).
pub fn mul_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "mul_assign lengths");
    if dst.len() < SERIAL_BELOW {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d *= s);
    } else {
        dst.par_chunks_mut(SERIAL_BELOW)
            .zip(src.par_chunks(SERIAL_BELOW))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d *= s));
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
    #[allow(unused_variables)] // only the x86-64 build has an AVX-512 body
    let wide = avx512();
    let body = |(c, plane): (usize, &mut [f32])| {
        let (fc, b) = (f[c], bias[c]);
        #[cfg(target_arch = "x86_64")]
        if wide {
            let sft = sft.map(|(a, s)| (&a[c * hw..(c + 1) * hw], &s[c * hw..(c + 1) * hw]));
            // SAFETY: AVX-512F was detected; noise and the SFT planes hold hw >= plane.len() floats.
            unsafe { avx512::style_plane(plane, &noise[..hw], fc, strength, b, slope, sft) };
            return;
        }
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
    resample(input, c, h, w, oh, ow, |ch| s[ch], None, out);
}

/// [`crate::resize::bilinear`] with align_corners = false, bit-identical to it, with fast paths for
/// the exact x2 and x0.5 resizes (the refiner's ResBlocks) that skip the per-pixel tap arithmetic.
#[allow(clippy::too_many_arguments)]
pub fn bilinear_fast(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
    // Multiplying by 1.0 is exact, so this is the plain resize.
    resample(input, c, h, w, oh, ow, |_| 1.0, None, out);
}

/// [`bilinear_fast`] of `leaky_relu(input, slope)`: the activation is applied to each tap as it is read
/// (the same `v < 0 ? v * slope : v`), so the activated map is never written; bit-identical to
/// [`crate::act::leaky_relu`] followed by [`bilinear_fast`]. `input` is left as it was.
#[allow(clippy::too_many_arguments)]
pub fn bilinear_lrelu(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, slope: f32, out: &mut [f32]) {
    resample(input, c, h, w, oh, ow, |_| 1.0, Some(slope), out);
}

#[allow(clippy::too_many_arguments)]
fn resample(
    input: &[f32],
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    scale: impl Fn(usize) -> f32 + Sync,
    slope: Option<f32>,
    out: &mut [f32],
) {
    assert_eq!(input.len(), c * h * w, "bilinear input length");
    assert_eq!(out.len(), c * oh * ow, "bilinear output length");
    if out.is_empty() {
        return;
    }
    assert!(h > 0 && w > 0, "bilinear from an empty {h}x{w} map");
    let wide = avx512();
    out.par_chunks_mut(ow).enumerate().with_min_len(16).for_each(|(r, row)| {
        let (ch, y) = (r / oh, r % oh);
        resample_row(&input[ch * h * w..(ch + 1) * h * w], h, w, oh, y, scale(ch), slope, wide, row);
    });
}

/// Output row `y` (of `oh`, width `row.len()`) of one `h x w` plane, scaled by `sc`, with the optional
/// leaky ReLU on read; `wide` selects the AVX-512F bodies.
#[allow(clippy::too_many_arguments)]
#[inline]
fn resample_row(plane: &[f32], h: usize, w: usize, oh: usize, y: usize, sc: f32, slope: Option<f32>, wide: bool, row: &mut [f32]) {
    let ow = row.len();
    let _ = wide; // only the x86-64 build has AVX-512 bodies
    let (y0, y1, wy0, wy1) = taps(y, h, oh);
    let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
    // The optional input activation, exactly `act::leaky_relu`'s per-element rule.
    let a = |v: f32| match slope {
        Some(sl) if v < 0.0 => v * sl,
        _ => v,
    };
    let px = |x0: usize, x1: usize, wx0: f32, wx1: f32| {
        (wy0 * (wx0 * a(r0[x0]) + wx1 * a(r0[x1])) + wy1 * (wx0 * a(r1[x0]) + wx1 * a(r1[x1]))) * sc
    };
    if ow == 2 * w && w >= 2 {
        // Exact x2: destination 2j samples j - 0.25 (taps j-1, j at 0.25, 0.75) and 2j+1 samples
        // j + 0.25 (taps j, j+1 at 0.75, 0.25), exactly the weights `taps` gives; only the two
        // border columns are clamped, so they go through `taps`.
        let (a, b) = (taps(0, w, ow), taps(ow - 1, w, ow));
        row[0] = px(a.0, a.1, a.2, a.3);
        row[ow - 1] = px(b.0, b.1, b.2, b.3);
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: AVX-512F was detected; r0, r1 have w floats and the row 2w.
            unsafe { avx512::up2_row(r0, r1, wy0, wy1, sc, slope, row) };
            return;
        }
        for j in 1..w {
            row[2 * j - 1] = px(j - 1, j, 0.75, 0.25);
            row[2 * j] = px(j - 1, j, 0.25, 0.75);
        }
    } else if w == 2 * ow {
        // Exact x0.5: destination x samples 2x + 0.5, taps 2x and 2x+1 at 0.5 each.
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: AVX-512F was detected; r0, r1 have w = 2 ow floats.
            unsafe { avx512::down2_row(r0, r1, wy0, wy1, sc, slope, row) };
            return;
        }
        for (x, o) in row.iter_mut().enumerate() {
            *o = px(2 * x, 2 * x + 1, 0.5, 0.5);
        }
    } else {
        for (x, o) in row.iter_mut().enumerate() {
            let (x0, x1, wx0, wx1) = taps(x, w, ow);
            *o = px(x0, x1, wx0, wx1);
        }
    }
}

/// The ResBlock's skip branch and sum in one pass: `out = leaky_relu(out, slope) + conv1x1(resize(x))`,
/// `x` `[c_in, h, w]` resized (as [`bilinear_fast`]) to `oh x ow`, then the 1x1 convolution `pw` (its
/// bias included). Bit-identical to [`bilinear_fast`], [`crate::conv::conv2d_prepacked`] and
/// [`lrelu_add`] in turn: each output pixel starts from the bias and adds `w[o, i] * x[i]` for
/// `i = 0..c_in` by fused multiply-add, as the AVX-512 SGEMM kernel does. The resized rows exist only in
/// a per-task scratch tile (`c_in * ow` floats), never as a map: at 512x512 that saves writing and
/// re-reading 32 MiB and one more sweep over `out`.
///
/// Returns false, doing nothing, where this path does not apply (no AVX-512F, or `pw` not a 1x1
/// stride-1 convolution); the caller then runs the three passes.
#[allow(clippy::too_many_arguments)]
pub fn resize_conv1x1_lrelu_add(
    s: &mut crate::conv::Scratch,
    pw: &crate::conv::PackedWeights<'_>,
    x: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    slope: f32,
    out: &mut [f32],
) -> bool {
    let spec = pw.spec();
    if !avx512() || spec.kernel != 1 || spec.stride != 1 || spec.pad != 0 {
        return false;
    }
    let (ci, co) = (spec.c_in, spec.c_out);
    assert_eq!(x.len(), ci * h * w, "resize_conv1x1_lrelu_add input length");
    assert_eq!(out.len(), co * oh * ow, "resize_conv1x1_lrelu_add output length");
    if out.is_empty() {
        return true;
    }
    assert!(h > 0 && w > 0, "resize_conv1x1_lrelu_add from an empty {h}x{w} map");
    #[cfg(target_arch = "x86_64")]
    {
        use crate::scratch::{run_tiled_in, tiled_len};
        let tile = ci * ow;
        let buf = s.take(tiled_len(oh, tile));
        let dst = crate::matmul::SyncPtr(out.as_mut_ptr());
        let (panels, bias) = (pw.panels(), pw.bias());
        // One task per output row: resize that row of every input channel, then the 1x1 over it.
        run_tiled_in(buf, oh, tile, |y, rows, _| {
            let rows = &mut rows[..tile];
            for (c, row) in rows.chunks_exact_mut(ow).enumerate() {
                resample_row(&x[c * h * w..(c + 1) * h * w], h, w, oh, y, 1.0, None, true, row);
            }
            // SAFETY: AVX-512F was detected; the panels and bias cover c_out rows of c_in, and task y
            // alone writes row y (ow floats at y * ow) of each of the c_out planes of oh * ow.
            unsafe { avx512::conv1x1_lrelu_add(panels, bias, ci, co, rows, dst.get().add(y * ow), oh * ow, slope) };
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (s, slope);
    true
}

/// `(i0, i1, w0, w1)` of one destination index, by the reference's rule (align_corners = false).
#[inline]
pub(crate) fn taps(dst: usize, in_len: usize, out_len: usize) -> (usize, usize, f32, f32) {
    let src = crate::reference::bilinear_source(dst, in_len, out_len, false);
    let i0 = (src.floor() as usize).min(in_len - 1);
    let i1 = (i0 + 1).min(in_len - 1);
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

#[cfg(test)]
#[path = "fused_tests.rs"]
mod tests;
