//! Twin of `demod.comp`: StyleGAN2 demodulation factors from precomputed per-(out, in) sums of
//! squared weights and this frame's modulation, `f_o = gain / sqrt(sum_i q[o, i] s_i s_i + 1e-8)`.
//! The sum matches the shader to the bit; the shader's `sqrt` and division are not correctly
//! rounded (Vulkan allows a few ulp), so compare shader and twin within 1e-6 relative.

use super::SpecValue;

/// Invocations per workgroup (one per output channel).
pub const WORKGROUP: u32 = 64;

/// Push constants of `demod.comp`, in the GLSL block's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DemodPush {
    pub c_in: u32,
    pub c_out: u32,
    /// Offset of `s` (c_in values) in the vectors buffer.
    pub s_off: u32,
    /// Offset where `f` (c_out values) is written.
    pub f_off: u32,
    pub gain: f32,
}

impl DemodPush {
    /// The bytes a dispatch pushes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// Specialization constants in `constant_id` order.
    pub fn spec_constants() -> Vec<SpecValue> {
        vec![SpecValue::U32(WORKGROUP)]
    }

    /// Workgroup counts covering the output channels.
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.c_out as usize, WORKGROUP), 1, 1)
    }
}

/// What `demod.comp` computes: reads `s` from `vecs[s_off..]`, writes `f` into `vecs[f_off..]`.
pub fn demod(p: &DemodPush, q: &[f32], vecs: &mut [f32]) {
    let (ci, so, fo) = (p.c_in as usize, p.s_off as usize, p.f_off as usize);
    for o in 0..p.c_out as usize {
        let mut sum = 0.0f32;
        for i in 0..ci {
            let s = vecs[so + i];
            sum += q[o * ci + i] * s * s;
        }
        vecs[fo + o] = p.gain / (sum + 1e-8).sqrt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    #[test]
    fn factors_match_a_double_precision_demodulation() {
        let (ci, co) = (37, 11);
        let q: Vec<f32> = seeded(1, co * ci).iter().map(|v| v.abs() * 3.0).collect();
        let s: Vec<f32> = seeded(2, ci).iter().map(|v| 1.0 + 0.2 * v).collect();
        let mut vecs = vec![0.0; 5 + ci + co];
        vecs[5..5 + ci].copy_from_slice(&s);
        let p = DemodPush { c_in: ci as u32, c_out: co as u32, s_off: 5, f_off: (5 + ci) as u32, gain: std::f32::consts::SQRT_2 };
        demod(&p, &q, &mut vecs);
        let want: Vec<f32> = (0..co)
            .map(|o| {
                let sum: f64 = (0..ci).map(|i| q[o * ci + i] as f64 * (s[i] as f64).powi(2)).sum();
                (2f64.sqrt() / (sum + 1e-8).sqrt()) as f32
            })
            .collect();
        // fp32 sums of 37 positive terms: a few ulp from the f64 value, far inside the fp32 bound.
        assert_close("demod", &vecs[5 + ci..], &want, Tolerance::Fp32);
        assert!(vecs[..5].iter().all(|&v| v == 0.0), "demod wrote outside its output range");
    }

    #[test]
    fn push_struct_matches_the_shader_block() {
        let offsets = crate::twin::layout::push_constant_offsets(crate::twin::DEMOD_SPV);
        assert_eq!(offsets, Some((0..5).map(|i| 4 * i).collect()));
    }
}
