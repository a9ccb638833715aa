//! An f32 model of an int8 Winograd F(2x2, 3x3) convolution, to measure its accuracy on the whole refiner
//! before anyone writes its kernels (`docs/performance.md`, "int8 Winograd, modelled"), and to be the
//! reference those kernels are tested against.
//!
//! Why: fp32 runs the refiner's 3x3 convs as Winograd F(4x4, 3x3) (2.25 multiplies per output and input
//! channel), int8 as direct convs (9). At int8's 4.3x the fp32 peak that is a draw on the convolutions,
//! so int8 can only be faster through fewer multiplies: F(2x2, 3x3) needs 4.
//!
//! Off unless `GAGA_WINOGRAD_I8_MODEL` is set (comma-separated; empty or `on` = the defaults). Only convs run
//! through `ConvKernel::run` are modelled, so measure with `GAGA_INT8_MAPS=stored` (the on-the-fly forms of
//! the other modes keep their direct kernels):
//! - `min=N`: maps of side >= N (default 32; smaller maps keep their fine activations);
//! - `scales=position|channel|bandR`: one input scale per Winograd position (default), per (position, input
//!   channel) folded into the weights, or per (position, band of R tile rows);
//! - `floor=F`: with `scales=channel`, no channel's scale below 1/F of its position's largest;
//! - `frozen`: with `scales=channel`, each conv keeps its first call's channel ratios (as a calibrated file
//!   would), only the position's largest scale staying dynamic;
//! - `inputs=f32` / `weights=f32`: leave that side unquantised (which error is whose).
//!
//! Int8 (not fine) 3x3 stride-1 convs go through [`conv`]: the int8 weights dequantised, transformed (`G g
//! G^T`) and fake-quantised per (position, output channel); the transformed input (`B^T d B`) fake-quantised
//! with dynamic max-abs scales; products in f32, which equal the int8 sums times both scales up to f32
//! rounding; the output transform `A^T M A` plus the bias.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use gaga_kernels::conv::Conv2d;
use gaga_kernels::matmul::{sgemm, View};
use gaga_kernels::qgemm::{PackedConv, RowMajor};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// How the transformed inputs are scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputScales {
    Position,
    Channel { floor: f32, frozen: bool },
    Band { rows: usize },
}

/// What `GAGA_WINOGRAD_I8_MODEL` asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub min_side: usize,
    pub scales: InputScales,
    pub quantise_inputs: bool,
    pub quantise_weights: bool,
}

impl Options {
    /// Parses the variable's value (see the module doc).
    pub fn parse(text: &str) -> std::result::Result<Options, String> {
        let mut o = Options { min_side: 32, scales: InputScales::Position, quantise_inputs: true, quantise_weights: true };
        let (mut floor, mut frozen, mut channel) = (f32::INFINITY, false, false);
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "on") {
            let number = |v: &str| v.parse::<f32>().ok().filter(|f| *f >= 1.0).ok_or(format!("`{item}`: expected a number >= 1"));
            match item.split_once('=') {
                Some(("min", v)) => o.min_side = number(v)? as usize,
                Some(("floor", v)) => floor = number(v)?,
                Some(("scales", "position")) => {}
                Some(("scales", "channel")) => channel = true,
                Some(("scales", v)) if v.starts_with("band") => o.scales = InputScales::Band { rows: number(&v[4..])? as usize },
                Some(("inputs", "f32")) => o.quantise_inputs = false,
                Some(("weights", "f32")) => o.quantise_weights = false,
                None if item == "frozen" => frozen = true,
                _ => {
                    return Err(format!(
                        "`{item}`: expected min=N, scales=position|channel|bandR, floor=F, frozen, inputs=f32 or weights=f32"
                    ))
                }
            }
        }
        if channel {
            o.scales = InputScales::Channel { floor, frozen };
        }
        Ok(o)
    }

    /// The environment's options, parsed once (`None`: the variable is unset).
    pub fn from_env() -> Result<Option<Options>> {
        static PARSED: OnceLock<std::result::Result<Option<Options>, String>> = OnceLock::new();
        let parsed = PARSED.get_or_init(|| match std::env::var("GAGA_WINOGRAD_I8_MODEL") {
            Err(_) => Ok(None),
            Ok(v) => Options::parse(&v).map(Some).map_err(|e| format!("GAGA_WINOGRAD_I8_MODEL={v}: {e}")),
        });
        parsed.clone().map_err(Error::Other)
    }

    /// Whether this conv runs through the model.
    pub fn applies(&self, weights: &PackedConv, spec: &Conv2d, h: usize, w: usize) -> bool {
        spec.kernel == 3 && spec.stride == 1 && spec.pad == 1 && h.min(w) >= self.min_side && weights.scales().is_some()
    }
}

/// Rounds `v` to the int8 grid of step `s` (no-op for a zero scale).
fn fake_quant(v: &mut [f32], s: f32) {
    if s > 0.0 {
        for x in v {
            *x = (*x / s).round_ties_even().clamp(-127.0, 127.0) * s;
        }
    }
}

fn max_abs<'a>(v: impl IntoIterator<Item = &'a f32>) -> f32 {
    v.into_iter().fold(0f32, |a, &x| a.max(x.abs()))
}

/// `G g G^T` of every `(o, c)` 3x3 kernel of the dequantised int8 weights, as `U[pos][o][c]`.
fn transformed_weights(weights: &PackedConv, co: usize, ci: usize) -> Vec<f32> {
    let RowMajor::I8 { q, scales } = weights.unpack_to_row_major() else { unreachable!("Options::applies takes int8 weights only") };
    // G rows: g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2.
    let g_rows = |a: f32, b: f32, d: f32| [a, (a + b + d) * 0.5, (a - b + d) * 0.5, d];
    let mut u = vec![0f32; 16 * co * ci];
    for o in 0..co {
        for c in 0..ci {
            let g = |t: usize| q[(o * ci + c) * 9 + t] as f32 * scales[o];
            let cols = [0, 1, 2].map(|j| g_rows(g(j), g(3 + j), g(6 + j)));
            for i in 0..4 {
                for (j, v) in g_rows(cols[0][i], cols[1][i], cols[2][i]).into_iter().enumerate() {
                    u[((i * 4 + j) * co + o) * ci + c] = v;
                }
            }
        }
    }
    u
}

/// `B^T d B` of every 4x4 input tile (stride 2, padding 1), as `V[pos][c][tile]`.
fn transformed_inputs(x: &[f32], ci: usize, h: usize, w: usize) -> Vec<f32> {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let t = th * tw;
    // B^T rows: d0 - d2, d1 + d2, d2 - d1, d1 - d3.
    let b_rows = |d: [f32; 4]| [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]];
    let per_channel: Vec<Vec<f32>> = (0..ci)
        .into_par_iter()
        .map(|c| {
            let plane = &x[c * h * w..(c + 1) * h * w];
            let at = |y: usize, xx: usize| if (1..=h).contains(&y) && (1..=w).contains(&xx) { plane[(y - 1) * w + xx - 1] } else { 0.0 };
            let mut vc = vec![0f32; 16 * t];
            for ty in 0..th {
                for tx in 0..tw {
                    // Padded coordinates: tile (ty, tx) reads rows 2ty..2ty+4 of the map padded by one.
                    let rows = [0, 1, 2, 3].map(|i| b_rows([0, 1, 2, 3].map(|j| at(2 * ty + i, 2 * tx + j))));
                    for j in 0..4 {
                        for (i, v) in b_rows(rows.map(|r| r[j])).into_iter().enumerate() {
                            vc[(i * 4 + j) * t + ty * tw + tx] = v;
                        }
                    }
                }
            }
            vc
        })
        .collect();
    let mut v = vec![0f32; 16 * ci * t];
    for (c, vc) in per_channel.iter().enumerate() {
        for pos in 0..16 {
            v[(pos * ci + c) * t..(pos * ci + c + 1) * t].copy_from_slice(&vc[pos * t..(pos + 1) * t]);
        }
    }
    v
}

/// Per (position, input channel) scales for `scales=channel`, floored and optionally frozen per conv.
fn channel_scales(v: &[f32], ci: usize, t: usize, floor: f32, frozen: Option<usize>) -> Vec<f32> {
    let mut sx = vec![0f32; 16 * ci];
    for (pos_v, pos_s) in v.chunks(ci * t).zip(sx.chunks_mut(ci)) {
        let ms: Vec<f32> = pos_v.chunks(t).map(max_abs).collect();
        let top = ms.iter().fold(0f32, |a, &m| a.max(m));
        for (s, &m) in pos_s.iter_mut().zip(&ms) {
            *s = m.max(top / floor) / 127.0;
        }
    }
    if let Some(key) = frozen {
        static RATIOS: OnceLock<Mutex<HashMap<usize, Vec<f32>>>> = OnceLock::new();
        let tops: Vec<f32> = sx.chunks(ci).map(|p| p.iter().fold(0f32, |a, &x| a.max(x))).collect();
        let mut map = RATIOS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        let ratios =
            map.entry(key).or_insert_with(|| sx.iter().enumerate().map(|(i, &s)| if s > 0.0 { s / tops[i / ci] } else { 0.0 }).collect());
        for (i, s) in sx.iter_mut().enumerate() {
            *s = ratios[i] * tops[i / ci];
        }
    }
    sx
}

/// `out[..c_out*h*w] = conv(x) + bias` through the model (see the module doc); `ConvKernel::run`'s arguments.
#[allow(clippy::too_many_arguments)]
pub fn conv(opts: &Options, weights: &PackedConv, spec: &Conv2d, x: &[f32], h: usize, w: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    let (ci, co) = (spec.c_in, spec.c_out);
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let t = th * tw;
    let mut v = transformed_inputs(x, ci, h, w);
    // One scale per (position, input channel); Position and Band use a shared one, set below.
    let mut sx = vec![1f32; 16 * ci];
    match opts.scales {
        InputScales::Position if opts.quantise_inputs => v.par_chunks_mut(ci * t).for_each(|p| {
            let s = max_abs(p.iter()) / 127.0;
            fake_quant(p, s)
        }),
        InputScales::Band { rows } if opts.quantise_inputs => v.par_chunks_mut(ci * t).for_each(|p| {
            for b0 in (0..t).step_by(rows * tw) {
                let b1 = (b0 + rows * tw).min(t);
                let s = max_abs((0..ci).flat_map(|c| &p[c * t + b0..c * t + b1])) / 127.0;
                (0..ci).for_each(|c| fake_quant(&mut p[c * t + b0..c * t + b1], s));
            }
        }),
        InputScales::Channel { floor, frozen } => {
            sx = channel_scales(&v, ci, t, floor, frozen.then_some(weights as *const PackedConv as usize));
            if opts.quantise_inputs {
                v.par_chunks_mut(t).zip(sx.par_iter()).for_each(|(row, &s)| fake_quant(row, s));
            }
        }
        _ => {}
    }
    // The weights, with the channel scales folded in (int8 rows per (position, output channel)).
    let mut u = transformed_weights(weights, co, ci);
    if opts.quantise_weights {
        u.par_chunks_mut(co * ci).zip(sx.par_chunks(ci)).for_each(|(pos_u, pos_s)| {
            for row in pos_u.chunks_mut(ci) {
                let scaled: Vec<f32> = row.iter().zip(pos_s).map(|(u, s)| u * s).collect();
                let step = max_abs(&scaled) / 127.0;
                for ((u, s), mut q) in row.iter_mut().zip(pos_s).zip(scaled) {
                    fake_quant(std::slice::from_mut(&mut q), step);
                    *u = if *s > 0.0 { q / s } else { 0.0 };
                }
            }
        });
    }
    let mut m = vec![0f32; 16 * co * t];
    for pos in 0..16 {
        let lhs = View { data: &u[pos * co * ci..(pos + 1) * co * ci], rs: ci, cs: 1 };
        let rhs = View { data: &v[pos * ci * t..(pos + 1) * ci * t], rs: t, cs: 1 };
        sgemm(co, t, ci, &mut m[pos * co * t..(pos + 1) * co * t], t, 1, false, lhs, rhs, 1.0, rayon::current_num_threads());
    }
    // A^T rows: m0 + m1 + m2, m1 - m2 - m3.
    let a_rows = |m: [f32; 4]| [m[0] + m[1] + m[2], m[1] - m[2] - m[3]];
    out[..co * h * w].par_chunks_mut(h * w).enumerate().for_each(|(o, plane)| {
        let b = bias.map_or(0.0, |b| b[o]);
        for ty in 0..th {
            for tx in 0..tw {
                let mm = |i: usize, j: usize| m[((i * 4 + j) * co + o) * t + ty * tw + tx];
                let cols = [0, 1, 2, 3].map(|j| a_rows([mm(0, j), mm(1, j), mm(2, j), mm(3, j)]));
                for i in 0..2 {
                    for (j, y) in a_rows(cols.map(|c| c[i])).into_iter().enumerate() {
                        let (oy, ox) = (2 * ty + i, 2 * tx + j);
                        if oy < h && ox < w {
                            plane[oy * w + ox] = y + b;
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn direct(q: &[i8], scales: &[f32], x: &[f32], ci: usize, h: usize, w: usize, o: usize, y: usize, xx: usize) -> f32 {
        let mut s = 0f32;
        for c in 0..ci {
            for ky in 0..3 {
                for kx in 0..3 {
                    let (iy, ix) = ((y + ky).wrapping_sub(1), (xx + kx).wrapping_sub(1));
                    if iy < h && ix < w {
                        s += q[((o * ci + c) * 3 + ky) * 3 + kx] as f32 * scales[o] * x[(c * h + iy) * w + ix];
                    }
                }
            }
        }
        s
    }

    /// Unquantised, the model is the convolution (an odd height: partial tiles); quantised, in every scale
    /// form, it is off by about an int8 step of the outputs' range, never more than 2.5 % of it.
    #[test]
    fn the_model_is_a_convolution_and_its_quantisation_error_is_int8_sized() {
        let (ci, co, h, w) = (5, 7, 9, 6);
        let wts: Vec<f32> = (0..co * ci * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let x: Vec<f32> = (0..ci * h * w).map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0).collect();
        let pc = PackedConv::from_f32_as_i8(&wts, co, ci, 3).expect("weights");
        let RowMajor::I8 { q, scales } = pc.unpack_to_row_major() else { panic!("int8") };
        let spec = Conv2d { c_in: ci, c_out: co, kernel: 3, stride: 1, pad: 1 };
        let want: Vec<f32> = (0..co * h * w).map(|i| direct(&q, &scales, &x, ci, h, w, i / (h * w), i / w % h, i % w)).collect();
        let range = max_abs(&want);
        for (text, tol) in [("inputs=f32,weights=f32", 1e-6), ("", 0.025), ("scales=channel,floor=8", 0.025), ("scales=band2", 0.025)] {
            let opts = Options::parse(text).expect("options");
            let mut out = vec![0f32; co * h * w];
            conv(&opts, &pc, &spec, &x, h, w, None, &mut out);
            let err = out.iter().zip(&want).fold(0f32, |a, (o, w)| a.max((o - w).abs()));
            assert!(err <= tol * range, "{text:?}: worst error {err} against outputs up to {range}");
            // (Measured: 3e-7 exact; 1.3e-2 of the range for each quantised form.)
            if tol > 1e-6 {
                assert!(err > 1e-3 * range, "{text:?}: quantisation changed nothing");
            }
        }
    }

    #[test]
    fn options_name_what_is_wrong() {
        assert_eq!(Options::parse("on").expect("on").scales, InputScales::Position);
        let o = Options::parse("min=64,scales=channel,floor=8,frozen").expect("channel");
        assert_eq!((o.min_side, o.scales), (64, InputScales::Channel { floor: 8.0, frozen: true }));
        assert_eq!(Options::parse("scales=band4").expect("band").scales, InputScales::Band { rows: 4 });
        let e = Options::parse("scales=tile").expect_err("unknown");
        assert!(e.contains("`scales=tile`"), "{e}");
        assert!(Options::parse("min=0").expect_err("zero").contains("min=0"));
    }
}
