//! Plain, obviously-correct implementations of every kernel: the oracle the fast paths are tested against.
//! They use the same argument conventions as the public kernels but do not check shapes.

#![allow(clippy::too_many_arguments)]

use crate::conv::Conv2d;

pub fn conv2d(spec: &Conv2d, input: &[f32], h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let (oh, ow) = spec.out_size(h, w);
    let k = spec.kernel;
    for o in 0..spec.c_out {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias.map_or(0.0, |b| b[o]);
                for i in 0..spec.c_in {
                    for ky in 0..k {
                        let iy = (oy * spec.stride + ky) as isize - spec.pad as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * spec.stride + kx) as isize - spec.pad as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            acc += input[(i * h + iy as usize) * w + ix as usize] * weight[((o * spec.c_in + i) * k + ky) * k + kx];
                        }
                    }
                }
                out[(o * oh + oy) * ow + ox] = acc;
            }
        }
    }
}

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
    let (oh, ow) = (h * k, w * k);
    for o in 0..c_out {
        for y in 0..h {
            for x in 0..w {
                for ky in 0..k {
                    for kx in 0..k {
                        let mut acc = bias.map_or(0.0, |b| b[o]);
                        for i in 0..c_in {
                            acc += input[(i * h + y) * w + x] * weight[((i * c_out + o) * k + ky) * k + kx];
                        }
                        out[(o * oh + y * k + ky) * ow + x * k + kx] = acc;
                    }
                }
            }
        }
    }
}

pub fn linear(x: &[f32], n: usize, in_f: usize, weight: &[f32], bias: Option<&[f32]>, out_f: usize, out: &mut [f32]) {
    for r in 0..n {
        let row = &x[r * in_f..(r + 1) * in_f];
        for o in 0..out_f {
            let wrow = &weight[o * in_f..(o + 1) * in_f];
            let dot: f32 = row.iter().zip(wrow).map(|(a, b)| a * b).sum();
            out[r * out_f + o] = dot + bias.map_or(0.0, |b| b[o]);
        }
    }
}

pub fn layer_norm(x: &[f32], n: usize, dim: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    for r in 0..n {
        let row = &x[r * dim..(r + 1) * dim];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for c in 0..dim {
            out[r * dim + c] = ((row[c] as f64 - mean) * inv) as f32 * gamma[c] + beta[c];
        }
    }
}

pub fn self_attention(qkv: &[f32], n: usize, heads: usize, head_dim: usize, out: &mut [f32]) {
    let dim = heads * head_dim;
    let scale = (head_dim as f32).powf(-0.5);
    let at = |t: usize, which: usize, hd: usize, d: usize| qkv[t * 3 * dim + which * dim + hd * head_dim + d];
    let mut scores = vec![0f32; n];
    for hd in 0..heads {
        for i in 0..n {
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                let mut dot = 0f32;
                for d in 0..head_dim {
                    dot += at(i, 0, hd, d) * scale * at(j, 1, hd, d);
                }
                *s = dot;
                max = max.max(dot);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for d in 0..head_dim {
                let mut acc = 0f32;
                for (j, s) in scores.iter().enumerate() {
                    acc += s * at(j, 2, hd, d);
                }
                out[i * dim + hd * head_dim + d] = acc / sum;
            }
        }
    }
}

/// Source coordinate of destination index `dst` for PyTorch's linear interpolation.
pub fn bilinear_source(dst: usize, in_len: usize, out_len: usize, align_corners: bool) -> f32 {
    if align_corners {
        if out_len > 1 {
            dst as f32 * (in_len - 1) as f32 / (out_len - 1) as f32
        } else {
            0.0
        }
    } else {
        let scale = in_len as f32 / out_len as f32;
        ((dst as f32 + 0.5) * scale - 0.5).max(0.0)
    }
}

pub fn bilinear(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, align_corners: bool, out: &mut [f32]) {
    let taps = |dst: usize, in_len: usize, out_len: usize| {
        let src = bilinear_source(dst, in_len, out_len, align_corners);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        let l1 = src - i0 as f32;
        (i0, i1, 1.0 - l1, l1)
    };
    for ch in 0..c {
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            let (y0, y1, wy0, wy1) = taps(y, h, oh);
            for x in 0..ow {
                let (x0, x1, wx0, wx1) = taps(x, w, ow);
                let v = wy0 * (wx0 * plane[y0 * w + x0] + wx1 * plane[y0 * w + x1])
                    + wy1 * (wx0 * plane[y1 * w + x0] + wx1 * plane[y1 * w + x1]);
                out[(ch * oh + y) * ow + x] = v;
            }
        }
    }
}

/// PyTorch's antialiased linear filter taps for one axis: for each output index, the first input index
/// and the normalised weights (`_compute_index_ranges_weights` with the triangle filter).
pub fn antialias_taps(in_len: usize, out_len: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = in_len as f32 / out_len as f32;
    let support = if scale >= 1.0 { scale } else { 1.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..out_len)
        .map(|i| {
            let center = scale * (i as f32 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_len as i64) as usize;
            let mut weights: Vec<f32> = (xmin..xmax)
                .map(|j| {
                    let x = ((j as f32 - center + 0.5) * invscale).abs();
                    if x < 1.0 {
                        1.0 - x
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f32 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|v| *v /= total);
            }
            (xmin, weights)
        })
        .collect()
}

pub fn bilinear_antialias(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
    // Horizontal pass first, then vertical, as PyTorch's separable CPU kernel does.
    let tx = antialias_taps(w, ow);
    let ty = antialias_taps(h, oh);
    let mut tmp = vec![0f32; h * ow];
    for ch in 0..c {
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for (x, (x0, wts)) in tx.iter().enumerate() {
                tmp[y * ow + x] = wts.iter().enumerate().map(|(j, wt)| wt * plane[y * w + x0 + j]).sum();
            }
        }
        for (y, (y0, wts)) in ty.iter().enumerate() {
            for x in 0..ow {
                out[(ch * oh + y) * ow + x] = wts.iter().enumerate().map(|(j, wt)| wt * tmp[(y0 + j) * ow + x]).sum();
            }
        }
    }
}
