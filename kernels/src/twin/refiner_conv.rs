//! Twin of `refiner_conv.comp`: the StyleUNet's stride-1 "same" convolutions with weights as stored
//! and the refiner's fused epilogues (modulation on activations, int8 scale, demodulation, noise,
//! bias, residual / to-RGB skip, LeakyReLU, SFT, final sigmoid + clamp). Same operations in the same
//! order as the shader, so results agree to the bit except the final sigmoid (GPU `exp` is not
//! correctly rounded).

use super::stored::{stored_weight, WeightType};
use super::SpecValue;

/// Workgroup of `refiner_conv.comp`: 8 x 8 output pixels of one channel.
pub const WORKGROUP: (u32, u32) = (8, 8);

/// Push constants of `refiner_conv.comp`, in the GLSL block's order. Offsets index the vectors,
/// noise, aux and output buffers, so several layers share one buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RefinerConvPush {
    pub c_in: u32,
    /// Side of the input and output maps (stride 1, "same" padding).
    pub h: u32,
    pub w: u32,
    pub c_out: u32,
    pub bias_off: u32,
    pub wscale_off: u32,
    /// Modulation `s` (c_in values), read when `modulated`.
    pub s_off: u32,
    /// Demodulation factors (c_out values), read when `demod`.
    pub f_off: u32,
    pub noise_off: u32,
    pub strength: f32,
    pub aux_off: u32,
    pub y_off: u32,
}

impl RefinerConvPush {
    /// The bytes a dispatch pushes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

/// What follows the bias and activation (the shader's `EPILOGUE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// Nothing.
    Plain = 0,
    /// SFT: `v * aux[i] + aux[n + i]` after the activation (`aux` = `[scale | shift]`, n = c_out h w).
    Sft = 1,
    /// `v + (bias + aux[i])` in place of the bias (a ResBlock skip or the to-RGB skip).
    Residual = 2,
    /// `Residual`, then `clamp(sigmoid(v), 0, 1)`: the refiner's RGB output.
    ResidualSigmoid = 3,
}

/// Compile-time variant of `refiner_conv.comp` (its specialization constants 2..10).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefinerConvVariant {
    /// 1 or 3.
    pub kernel: u32,
    pub wtype: WeightType,
    pub has_bias: bool,
    pub modulated: bool,
    pub demod: bool,
    pub noise: bool,
    pub leaky: Option<f32>,
    pub epilogue: Epilogue,
}

impl RefinerConvVariant {
    /// Specialization constants in `constant_id` order, workgroup size first.
    pub fn spec_constants(&self) -> Vec<SpecValue> {
        vec![
            SpecValue::U32(WORKGROUP.0),
            SpecValue::U32(WORKGROUP.1),
            SpecValue::U32(self.kernel),
            SpecValue::U32(self.wtype as u32),
            SpecValue::Bool(self.has_bias),
            SpecValue::Bool(self.modulated),
            SpecValue::Bool(self.demod),
            SpecValue::Bool(self.noise),
            SpecValue::Bool(self.leaky.is_some()),
            SpecValue::F32(self.leaky.unwrap_or(0.2)),
            SpecValue::U32(self.epilogue as u32),
        ]
    }

    /// Workgroup counts (x, y, z) covering the output.
    pub fn dispatch(&self, p: &RefinerConvPush) -> (u32, u32, u32) {
        (super::groups(p.w as usize, WORKGROUP.0), super::groups(p.h as usize, WORKGROUP.1), p.c_out.max(1))
    }
}

/// The buffers one `refiner_conv.comp` dispatch reads.
pub struct ConvInputs<'a> {
    pub x: &'a [f32],
    pub wq: &'a [u32],
    pub vecs: &'a [f32],
    pub noise: &'a [f32],
    pub aux: &'a [f32],
}

/// What `refiner_conv.comp` computes, writing `y[y_off..y_off + c_out h w]`.
pub fn refiner_conv(v: &RefinerConvVariant, p: &RefinerConvPush, b: &ConvInputs<'_>, y: &mut [f32]) {
    let k = v.kernel as usize;
    let pad = (k / 2) as isize;
    let (ci, h, w) = (p.c_in as usize, p.h as usize, p.w as usize);
    let n = p.c_out as usize * h * w;
    let vec_at = |off: u32, i: usize| b.vecs[off as usize + i];
    for o in 0..p.c_out as usize {
        for oy in 0..h {
            for ox in 0..w {
                let mut acc = 0.0f32;
                for i in 0..ci {
                    let mut part = 0.0f32;
                    for ky in 0..k {
                        let iy = (oy + ky) as isize - pad;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox + kx) as isize - pad;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let xv = b.x[(i * h + iy as usize) * w + ix as usize];
                            part += xv * stored_weight(v.wtype, b.wq, ((o * ci + i) * k + ky) * k + kx);
                        }
                    }
                    if v.modulated {
                        part *= vec_at(p.s_off, i);
                    }
                    acc += part;
                }
                let pix = oy * w + ox;
                let idx = o * h * w + pix;
                let aux = |i: usize| b.aux[p.aux_off as usize + i];
                let mut val = acc;
                if v.wtype == WeightType::I8 {
                    val *= vec_at(p.wscale_off, o);
                }
                if v.demod {
                    val *= vec_at(p.f_off, o);
                }
                if v.noise {
                    val += p.strength * b.noise[p.noise_off as usize + pix];
                }
                match v.epilogue {
                    Epilogue::Residual | Epilogue::ResidualSigmoid => {
                        val += if v.has_bias { vec_at(p.bias_off, o) + aux(idx) } else { aux(idx) };
                    }
                    _ if v.has_bias => val += vec_at(p.bias_off, o),
                    _ => {}
                }
                if let Some(slope) = v.leaky {
                    if val < 0.0 {
                        val *= slope;
                    }
                }
                match v.epilogue {
                    Epilogue::Sft => val = val * aux(idx) + aux(n + idx),
                    Epilogue::ResidualSigmoid => val = (1.0 / (1.0 + (-val).exp())).clamp(0.0, 1.0),
                    _ => {}
                }
                y[p.y_off as usize + idx] = val;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Conv2d;
    use crate::testing::{assert_close, seeded, Tolerance};
    use crate::twin::stored::{words_from_f16, words_from_f32, words_from_i8};
    use half::f16;

    /// A weight of `n` values in `wtype`: its words, its dequantised values, per-row scales.
    fn stored(wtype: WeightType, w: &[f32], rows: usize) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let per = w.len() / rows;
        match wtype {
            WeightType::F32 => (words_from_f32(w), w.to_vec(), vec![1.0; rows]),
            WeightType::F16 => {
                let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                (words_from_f16(&h), h.iter().map(|v| v.to_f32()).collect(), vec![1.0; rows])
            }
            WeightType::I8 => {
                let q: Vec<i8> = w.iter().map(|v| (v * 127.0).round() as i8).collect();
                let sc: Vec<f32> = (0..rows).map(|o| 0.008 + 0.001 * o as f32).collect();
                (words_from_i8(&q), q.iter().enumerate().map(|(i, &v)| f32::from(v) * sc[i / per]).collect(), sc)
            }
        }
    }

    /// The twin against the plain reference: scale the input channels, `reference::conv2d` with the
    /// dequantised weight, then the epilogue written out step by step.
    fn case(v: RefinerConvVariant, ci: usize, co: usize, h: usize) {
        let k = v.kernel as usize;
        let x = seeded(1, ci * h * h);
        let (wq, deq, scales) = stored(v.wtype, &seeded(2, co * ci * k * k), co);
        let bias = seeded(3, co);
        let s: Vec<f32> = seeded(4, ci).iter().map(|v| 1.0 + 0.3 * v).collect();
        let f: Vec<f32> = seeded(5, co).iter().map(|v| 0.5 + 0.2 * v).collect();
        let noise = seeded(6, 7 + h * h);
        let aux = seeded(7, 3 + 2 * co * h * h);
        // vecs = [pad 2 | bias | scales | s | f]
        let mut vecs = vec![0.0, 0.0];
        for part in [&bias, &scales, &s, &f] {
            vecs.extend_from_slice(part);
        }
        let (co32, ci32) = (co as u32, ci as u32);
        let p = RefinerConvPush {
            c_in: ci32,
            h: h as u32,
            w: h as u32,
            c_out: co32,
            bias_off: 2,
            wscale_off: 2 + co32,
            s_off: 2 + 2 * co32,
            f_off: 2 + 2 * co32 + ci32,
            noise_off: 7,
            strength: 0.1,
            aux_off: 3,
            y_off: 1,
        };
        let mut got = vec![0.0; 1 + co * h * h];
        refiner_conv(&v, &p, &ConvInputs { x: &x, wq: &wq, vecs: &vecs, noise: &noise, aux: &aux }, &mut got);

        let hw = h * h;
        let xin: Vec<f32> = x.iter().enumerate().map(|(j, &xv)| if v.modulated { xv * s[j / hw] } else { xv }).collect();
        let mut want = vec![0.0; co * hw];
        let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
        crate::reference::conv2d(&spec, &xin, h, h, &deq, None, &mut want);
        let n = co * hw;
        for (idx, val) in want.iter_mut().enumerate() {
            let (o, pix) = (idx / hw, idx % hw);
            if v.demod {
                *val *= f[o];
            }
            if v.noise {
                *val += 0.1 * noise[7 + pix];
            }
            if v.has_bias {
                *val += bias[o];
            }
            if matches!(v.epilogue, Epilogue::Residual | Epilogue::ResidualSigmoid) {
                *val += aux[3 + idx];
            }
            if let Some(sl) = v.leaky {
                *val = if *val < 0.0 { *val * sl } else { *val };
            }
            match v.epilogue {
                Epilogue::Sft => *val = *val * aux[3 + idx] + aux[3 + n + idx],
                Epilogue::ResidualSigmoid => *val = crate::act::sigmoid_scalar(*val).clamp(0.0, 1.0),
                _ => {}
            }
        }
        // The twin applies s and the int8 scale to partial sums instead of to each product, and
        // adds the bias last: a reordering of fp32 sums, within the fp32 bound.
        assert_close(&format!("{v:?} {ci}->{co} at {h}x{h}"), &got[1..], &want, Tolerance::Fp32);
        assert_eq!(got[0], 0.0, "wrote before y_off");
    }

    #[test]
    fn twin_matches_the_reference_for_every_layer_kind_and_weight_type() {
        let plain = RefinerConvVariant {
            kernel: 3,
            wtype: WeightType::F32,
            has_bias: true,
            modulated: false,
            demod: false,
            noise: false,
            leaky: Some(0.2),
            epilogue: Epilogue::Plain,
        };
        let style = RefinerConvVariant { modulated: true, demod: true, noise: true, ..plain };
        for wtype in [WeightType::F32, WeightType::F16, WeightType::I8] {
            case(RefinerConvVariant { wtype, ..plain }, 3, 4, 5);
            case(RefinerConvVariant { wtype, kernel: 1, has_bias: false, leaky: None, epilogue: Epilogue::Residual, ..plain }, 4, 3, 3);
            case(RefinerConvVariant { wtype, ..style }, 5, 3, 4);
            case(RefinerConvVariant { wtype, epilogue: Epilogue::Sft, ..style }, 2, 3, 5);
            let to_rgb =
                RefinerConvVariant { wtype, kernel: 1, modulated: true, leaky: None, epilogue: Epilogue::ResidualSigmoid, ..plain };
            case(to_rgb, 4, 3, 3);
        }
    }

    #[test]
    fn push_struct_matches_the_shader_block() {
        let offsets = crate::twin::layout::push_constant_offsets(crate::twin::REFINER_CONV_SPV);
        assert_eq!(offsets, Some((0..12).map(|i| 4 * i).collect()));
    }
}
