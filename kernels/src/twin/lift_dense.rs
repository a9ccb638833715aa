//! Twins of the lift's token shaders: `lift_linear.comp` (linear layer with optional ReLU or GELU, strided
//! rows), `lift_layernorm.comp` and `lift_attention.comp`. Same loops, same order, no fused multiply-adds;
//! only `exp`, `sqrt` and the divisions may round differently on a GPU.

use super::SpecValue;

/// Workgroup of `lift_linear.comp`: 16 outputs x 4 rows.
pub const LINEAR_WORKGROUP: (u32, u32) = (16, 4);
/// Workgroup of `lift_layernorm.comp` and `lift_attention.comp` (rows along x).
pub const ROW_WORKGROUP: u32 = 32;

/// The activation fused into `lift_linear.comp` (its `ACT` constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None = 0,
    Relu = 1,
    /// Exact (erf) GELU, PyTorch's `nn.GELU()`.
    Gelu = 2,
}

/// Push constants of `lift_linear.comp`, in the GLSL block's order. Row `t` of x starts at
/// `x_off + t * x_row`; output `(t, o)` goes to `y_off + t * y_row + o * y_col`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LinearPush {
    pub n: u32,
    pub n_in: u32,
    pub n_out: u32,
    pub x_off: u32,
    pub x_row: u32,
    pub y_off: u32,
    pub y_row: u32,
    pub y_col: u32,
}

impl LinearPush {
    /// Dense rows in and out: `[n, n_in]` -> `[n, n_out]`.
    pub fn dense(n: usize, n_in: usize, n_out: usize) -> Self {
        LinearPush {
            n: n as u32,
            n_in: n_in as u32,
            n_out: n_out as u32,
            x_off: 0,
            x_row: n_in as u32,
            y_off: 0,
            y_row: n_out as u32,
            y_col: 1,
        }
    }

    /// Workgroup counts (x: outputs, y: rows).
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.n_out as usize, LINEAR_WORKGROUP.0), super::groups(self.n as usize, LINEAR_WORKGROUP.1), 1)
    }
}

/// Specialization constants of `lift_linear.comp` in `constant_id` order.
pub fn linear_spec(act: Act, has_bias: bool) -> Vec<SpecValue> {
    vec![SpecValue::U32(LINEAR_WORKGROUP.0), SpecValue::U32(LINEAR_WORKGROUP.1), SpecValue::U32(act as u32), SpecValue::Bool(has_bias)]
}

/// The shader's erfc: the Chebyshev fit (fractional error < 1.2e-7), Horner from the highest term.
#[allow(clippy::excessive_precision)] // the published coefficients, written as the shader has them
pub fn erfc_cheb(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let mut poly = -0.822_152_23 + t * 0.170_872_77;
    for c in [1.488_515_87, -1.135_203_98, 0.278_868_07, -0.186_288_06, 0.096_784_18, 0.374_091_96, 1.000_023_68, -1.265_512_23] {
        poly = c + t * poly;
    }
    let r = t * (-a * a + poly).exp();
    if z >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The shader's GELU: `0.5 v erfc(-v / sqrt 2)`.
pub fn gelu(v: f32) -> f32 {
    let z = -v * std::f32::consts::FRAC_1_SQRT_2;
    0.5 * v * erfc_cheb(z)
}

/// What `lift_linear.comp` computes. `bias` is read only when `has_bias`.
pub fn linear(act: Act, has_bias: bool, p: &LinearPush, x: &[f32], wt: &[f32], bias: &[f32], y: &mut [f32]) {
    let ni = p.n_in as usize;
    for t in 0..p.n as usize {
        let xb = p.x_off as usize + t * p.x_row as usize;
        for o in 0..p.n_out as usize {
            let mut acc = if has_bias { bias[o] } else { 0.0 };
            for i in 0..ni {
                acc += x[xb + i] * wt[o * ni + i];
            }
            acc = match act {
                Act::None => acc,
                Act::Relu => acc.max(0.0),
                Act::Gelu => gelu(acc),
            };
            y[p.y_off as usize + t * p.y_row as usize + o * p.y_col as usize] = acc;
        }
    }
}

/// Push constants of `lift_layernorm.comp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LayerNormPush {
    pub n: u32,
    pub dim: u32,
    pub eps: f32,
}

impl LayerNormPush {
    /// Workgroup counts (rows along x).
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.n as usize, ROW_WORKGROUP), 1, 1)
    }
}

/// Specialization constants of `lift_layernorm.comp`.
pub fn row_spec() -> Vec<SpecValue> {
    vec![SpecValue::U32(ROW_WORKGROUP)]
}

/// What `lift_layernorm.comp` computes.
pub fn layer_norm(p: &LayerNormPush, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32]) {
    let dim = p.dim as usize;
    for r in 0..p.n as usize {
        let row = &x[r * dim..(r + 1) * dim];
        let mut sum = 0.0f32;
        row.iter().for_each(|v| sum += v);
        let mean = sum / dim as f32;
        let mut sq = 0.0f32;
        row.iter().for_each(|v| sq += (v - mean) * (v - mean));
        let inv = 1.0 / (sq / dim as f32 + p.eps).sqrt();
        for i in 0..dim {
            y[r * dim + i] = (row[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}

/// Push constants of `lift_attention.comp`; `scale` is `head_dim^-0.5`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionPush {
    pub n: u32,
    pub heads: u32,
    pub scale: f32,
}

impl AttentionPush {
    /// Push constants for `n` tokens of `heads` heads of `head_dim`.
    pub fn new(n: usize, heads: usize, head_dim: usize) -> Self {
        AttentionPush { n: n as u32, heads: heads as u32, scale: (head_dim as f32).powf(-0.5) }
    }

    /// Workgroup counts (x: query rows, y: heads).
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.n as usize, ROW_WORKGROUP), self.heads.max(1), 1)
    }
}

/// Specialization constants of `lift_attention.comp`: workgroup, head size (sizes the accumulator).
pub fn attention_spec(head_dim: usize) -> Vec<SpecValue> {
    vec![SpecValue::U32(ROW_WORKGROUP), SpecValue::U32(head_dim as u32)]
}

/// What `lift_attention.comp` computes on packed `qkv` `[n, 3 * dim]`.
pub fn attention(p: &AttentionPush, head_dim: usize, qkv: &[f32], y: &mut [f32]) {
    let (n, heads) = (p.n as usize, p.heads as usize);
    let dim = heads * head_dim;
    let score = |i: usize, j: usize, h: usize| {
        let (qb, kb) = (i * 3 * dim + h * head_dim, j * 3 * dim + dim + h * head_dim);
        let mut s = 0.0f32;
        (0..head_dim).for_each(|e| s += qkv[qb + e] * qkv[kb + e]);
        s * p.scale
    };
    for h in 0..heads {
        for i in 0..n {
            let m = (0..n).map(|j| score(i, j, h)).fold(f32::MIN, f32::max);
            let mut acc = vec![0.0f32; head_dim];
            let mut sum = 0.0f32;
            for j in 0..n {
                let pj = (score(i, j, h) - m).exp();
                sum += pj;
                let vb = j * 3 * dim + 2 * dim + h * head_dim;
                acc.iter_mut().enumerate().for_each(|(e, a)| *a += pj * qkv[vb + e]);
            }
            for (e, a) in acc.iter().enumerate() {
                y[i * dim + h * head_dim + e] = a / sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    #[test]
    fn gelu_twin_follows_the_erf_gelu_within_its_fit_error() {
        let xs: Vec<f32> = seeded(7, 4001).iter().map(|v| v * 12.0).collect();
        let got: Vec<f32> = xs.iter().map(|&v| gelu(v)).collect();
        let want: Vec<f32> = xs.iter().map(|&v| crate::act::gelu_scalar(v)).collect();
        // erfc's fit is within 1.2e-7 relative, so gelu is within ~1.2e-7 |v| plus a few ulps.
        assert_close("gelu", &got, &want, Tolerance::Custom { abs: 1e-6, rel: 1e-6 });
    }

    #[test]
    fn linear_twin_matches_the_reference_with_strided_rows_and_a_transposed_output() {
        let (n, ni, no) = (7, 19, 13);
        let x = seeded(1, 3 + n * (ni + 2));
        let (w, b) = (seeded(2, no * ni), seeded(3, no));
        let dense: Vec<f32> = (0..n).flat_map(|t| x[3 + t * (ni + 2)..3 + t * (ni + 2) + ni].to_vec()).collect();
        let mut want = vec![0.0; n * no];
        crate::reference::linear(&dense, n, ni, &w, Some(&b), no, &mut want);
        for act in [Act::None, Act::Relu, Act::Gelu] {
            // Transposed: y[o * n + t] after a 5-value offset.
            let p = LinearPush {
                n: n as u32,
                n_in: ni as u32,
                n_out: no as u32,
                x_off: 3,
                x_row: (ni + 2) as u32,
                y_off: 5,
                y_row: 1,
                y_col: n as u32,
            };
            let mut got = vec![0.0; 5 + n * no];
            linear(act, true, &p, &x, &w, &b, &mut got);
            let back: Vec<f32> = (0..n * no).map(|k| got[5 + (k % no) * n + k / no]).collect();
            let expect: Vec<f32> = want
                .iter()
                .map(|&v| match act {
                    Act::None => v,
                    Act::Relu => v.max(0.0),
                    Act::Gelu => crate::act::gelu_scalar(v),
                })
                .collect();
            // Same products, another summation order than the reference: the fp32 bound (GELU adds 1.2e-7).
            assert_close(&format!("linear {act:?}"), &back, &expect, Tolerance::Fp32);
        }
    }

    #[test]
    fn layer_norm_twin_matches_the_reference() {
        let (n, dim) = (5, 48);
        let x: Vec<f32> = seeded(4, n * dim).iter().map(|v| v * 3.0 + 1.0).collect();
        let (g, b) = (seeded(5, dim), seeded(6, dim));
        let p = LayerNormPush { n: n as u32, dim: dim as u32, eps: 1e-6 };
        let mut got = vec![0.0; n * dim];
        layer_norm(&p, &x, &g, &b, &mut got);
        let mut want = vec![0.0; n * dim];
        crate::reference::layer_norm(&x, n, dim, &g, &b, 1e-6, &mut want);
        // Sequential fp32 sums of 48 values vs the reference's: a few ulps of the row scale.
        assert_close("layer_norm", &got, &want, Tolerance::Fp32);
    }

    #[test]
    fn attention_twin_matches_the_reference() {
        let (n, heads, hd) = (11, 3, 8);
        let qkv: Vec<f32> = seeded(8, n * 3 * heads * hd).iter().map(|v| v * 2.0).collect();
        let p = AttentionPush::new(n, heads, hd);
        let mut got = vec![0.0; n * heads * hd];
        attention(&p, hd, &qkv, &mut got);
        let mut want = vec![0.0; got.len()];
        crate::reference::self_attention(&qkv, n, heads, hd, &mut want);
        // Softmax of scores in [-8, 8]: exp and the division round once each, sums of 11 terms: fp32 bound.
        assert_close("attention", &got, &want, Tolerance::Fp32);
    }

    #[test]
    fn push_structs_match_the_shader_blocks() {
        use crate::twin::layout::push_constant_offsets;
        assert_eq!(push_constant_offsets(crate::twin::LIFT_LINEAR_SPV), Some((0..8).map(|i| 4 * i).collect()));
        assert_eq!(push_constant_offsets(crate::twin::LIFT_LAYERNORM_SPV), Some(vec![0, 4, 8]));
        assert_eq!(push_constant_offsets(crate::twin::LIFT_ATTENTION_SPV), Some(vec![0, 4, 8]));
    }
}
