//! Twin of `matvec.comp`: `y = act(W x + b)` for one vector with `W` `[n_out, n_in]` as stored, an
//! optional NormStyleCode prologue and LeakyReLU. Same operations in the same order as the shader;
//! only the prologue's `sqrt` and divisions are not correctly rounded on the GPU.

use super::stored::{stored_weight, WeightType};
use super::SpecValue;

/// Invocations per workgroup (one per output).
pub const WORKGROUP: u32 = 64;

/// Push constants of `matvec.comp`, in the GLSL block's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatvecPush {
    pub n_in: u32,
    pub n_out: u32,
    pub x_off: u32,
    pub bias_off: u32,
    /// Offset of the int8 per-row scales (read only for int8 weights).
    pub wscale_off: u32,
    pub y_off: u32,
}

/// Compile-time variant of `matvec.comp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatvecVariant {
    pub wtype: WeightType,
    /// Apply NormStyleCode to `x` first.
    pub prenorm: bool,
    pub leaky: Option<f32>,
}

impl MatvecVariant {
    /// Specialization constants in `constant_id` order, workgroup size first.
    pub fn spec_constants(&self) -> Vec<SpecValue> {
        vec![
            SpecValue::U32(WORKGROUP),
            SpecValue::U32(self.wtype as u32),
            SpecValue::Bool(self.prenorm),
            SpecValue::Bool(self.leaky.is_some()),
            SpecValue::F32(self.leaky.unwrap_or(0.2)),
        ]
    }
}

impl MatvecPush {
    /// The bytes a dispatch pushes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// Workgroup counts covering the outputs.
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.n_out as usize, WORKGROUP), 1, 1)
    }
}

/// What `matvec.comp` computes: `x` at `x_off`, bias and int8 scales in `vecs`, output into `y` at `y_off`.
pub fn matvec(v: &MatvecVariant, p: &MatvecPush, x: &[f32], wq: &[u32], vecs: &[f32], y: &mut [f32]) {
    let (ni, xo) = (p.n_in as usize, p.x_off as usize);
    let xs = &x[xo..xo + ni];
    let norm = if v.prenorm {
        let mut ss = 0.0f32;
        for &xi in xs {
            ss += xi * xi;
        }
        1.0 / (ss / ni as f32 + 1e-8).sqrt()
    } else {
        1.0
    };
    for o in 0..p.n_out as usize {
        let mut acc = 0.0f32;
        for (i, &xi) in xs.iter().enumerate() {
            let xi = if v.prenorm { xi * norm } else { xi };
            acc += xi * stored_weight(v.wtype, wq, o * ni + i);
        }
        if v.wtype == WeightType::I8 {
            acc *= vecs[p.wscale_off as usize + o];
        }
        acc += vecs[p.bias_off as usize + o];
        if let Some(slope) = v.leaky {
            if acc < 0.0 {
                acc *= slope;
            }
        }
        y[p.y_off as usize + o] = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};
    use crate::twin::stored::{words_from_f16, words_from_f32, words_from_i8};
    use half::f16;

    /// The twin against `reference::linear` on the dequantised weights (and a plainly normalised x).
    fn case(wtype: WeightType, prenorm: bool, leaky: Option<f32>) {
        let (ni, no) = (19, 13);
        let x = seeded(1, 3 + ni);
        let w = seeded(2, no * ni);
        let (words, deq, scales): (Vec<u32>, Vec<f32>, Vec<f32>) = match wtype {
            WeightType::F32 => (words_from_f32(&w), w.clone(), vec![1.0; no]),
            WeightType::F16 => {
                let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                (words_from_f16(&h), h.iter().map(|v| v.to_f32()).collect(), vec![1.0; no])
            }
            WeightType::I8 => {
                let q: Vec<i8> = w.iter().map(|v| (v * 127.0).round() as i8).collect();
                let sc: Vec<f32> = (0..no).map(|o| 0.01 + 0.001 * o as f32).collect();
                (words_from_i8(&q), q.iter().enumerate().map(|(i, &v)| f32::from(v) * sc[i / ni]).collect(), sc)
            }
        };
        let bias = seeded(3, no);
        let mut vecs = bias.clone();
        vecs.extend(&scales);
        let p = MatvecPush { n_in: ni as u32, n_out: no as u32, x_off: 3, bias_off: 0, wscale_off: no as u32, y_off: 2 };
        let v = MatvecVariant { wtype, prenorm, leaky };
        let mut got = vec![0.0; 2 + no];
        matvec(&v, &p, &x, &words, &vecs, &mut got);
        let mut xin = x[3..].to_vec();
        if prenorm {
            let ms = xin.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / ni as f64;
            xin.iter_mut().for_each(|v| *v = (*v as f64 / (ms + 1e-8).sqrt()) as f32);
        }
        let mut want = vec![0.0; no];
        crate::reference::linear(&xin, 1, ni, &deq, Some(&bias), no, &mut want);
        if let Some(s) = leaky {
            crate::act::leaky_relu(&mut want, s);
        }
        // int8 scales multiply the finished sum instead of each weight: a reordering, fp32 bound.
        assert_close(&format!("matvec {v:?}"), &got[2..], &want, Tolerance::Fp32);
    }

    #[test]
    fn twin_matches_the_reference_linear_for_every_weight_type() {
        for wtype in [WeightType::F32, WeightType::F16, WeightType::I8] {
            case(wtype, false, None);
            case(wtype, true, Some(0.2));
        }
    }

    #[test]
    fn push_struct_matches_the_shader_block() {
        let offsets = crate::twin::layout::push_constant_offsets(crate::twin::MATVEC_SPV);
        assert_eq!(offsets, Some((0..6).map(|i| 4 * i).collect()));
    }
}
