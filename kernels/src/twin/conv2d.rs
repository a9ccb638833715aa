//! Twin of `conv2d.comp`: direct convolution, one output element per invocation, summed in the
//! reference's order (bias, then input channel, kernel row, kernel column) without fused multiply-adds.

use half::f16;

use super::SpecValue;
use crate::conv::Conv2d;

/// Workgroup of `conv2d.comp`: 8 x 8 output pixels of one channel (64 invocations, no shared memory).
pub const WORKGROUP: (u32, u32) = (8, 8);

/// Push constants of `conv2d.comp`, in the GLSL block's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Conv2dPush {
    pub c_in: u32,
    pub h: u32,
    pub w: u32,
    pub c_out: u32,
    pub oh: u32,
    pub ow: u32,
    pub pad: u32,
}

/// Compile-time variant of `conv2d.comp` (its specialization constants 2..6).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dVariant {
    pub kernel: u32,
    pub stride: u32,
    pub has_bias: bool,
    /// Negative slope of a fused LeakyReLU, if any.
    pub leaky: Option<f32>,
}

impl Conv2dPush {
    /// Push constants for `spec` on an `h` x `w` input.
    pub fn new(spec: &Conv2d, h: usize, w: usize) -> Self {
        let (oh, ow) = spec.out_size(h, w);
        Conv2dPush {
            c_in: spec.c_in as u32,
            h: h as u32,
            w: w as u32,
            c_out: spec.c_out as u32,
            oh: oh as u32,
            ow: ow as u32,
            pad: spec.pad as u32,
        }
    }
}

impl Conv2dVariant {
    /// Specialization constants in `constant_id` order, workgroup size first.
    pub fn spec_constants(&self) -> Vec<SpecValue> {
        vec![
            SpecValue::U32(WORKGROUP.0),
            SpecValue::U32(WORKGROUP.1),
            SpecValue::U32(self.kernel),
            SpecValue::U32(self.stride),
            SpecValue::Bool(self.has_bias),
            SpecValue::Bool(self.leaky.is_some()),
            SpecValue::F32(self.leaky.unwrap_or(0.2)),
        ]
    }

    /// Workgroup counts (x, y, z) covering the output.
    pub fn dispatch(&self, p: &Conv2dPush) -> (u32, u32, u32) {
        (super::groups(p.ow as usize, WORKGROUP.0), super::groups(p.oh as usize, WORKGROUP.1), p.c_out.max(1))
    }
}

/// What `conv2d.comp` computes. `bias` is read only when `v.has_bias`.
pub fn conv2d(v: &Conv2dVariant, p: &Conv2dPush, x: &[f32], wt: &[f32], bias: &[f32], y: &mut [f32]) {
    conv2d_stored(v, p, x, wt, bias, y, |s| s, |acc| acc);
}

/// What `conv2d_f16.spv` computes: fp16 loads widened to fp32, fp32 arithmetic, one rounding to fp16
/// at the store. This twin rounds to nearest even; Vulkan lets a driver round that store toward zero
/// instead (`shaderRoundingModeRTEFloat16`), so compare with the shader within one fp16 step.
pub fn conv2d_f16(v: &Conv2dVariant, p: &Conv2dPush, x: &[f16], wt: &[f16], bias: &[f16], y: &mut [f16]) {
    conv2d_stored(v, p, x, wt, bias, y, f16::to_f32, f16::from_f32);
}

/// The shader's loop for any storage type: `load` widens a stored value, `store` narrows the result.
#[allow(clippy::too_many_arguments)]
fn conv2d_stored<T: Copy>(
    v: &Conv2dVariant,
    p: &Conv2dPush,
    x: &[T],
    wt: &[T],
    bias: &[T],
    y: &mut [T],
    load: impl Fn(T) -> f32,
    store: impl Fn(f32) -> T,
) {
    let k = v.kernel as usize;
    let (c_in, h, w) = (p.c_in as usize, p.h as isize, p.w as usize);
    let (oh, ow) = (p.oh as usize, p.ow as usize);
    assert_eq!(x.len(), c_in * h as usize * w, "conv2d twin input length");
    assert_eq!(wt.len(), p.c_out as usize * c_in * k * k, "conv2d twin weight length");
    assert_eq!(y.len(), p.c_out as usize * oh * ow, "conv2d twin output length");
    for o in 0..p.c_out as usize {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = if v.has_bias { load(bias[o]) } else { 0.0 };
                for i in 0..c_in {
                    for ky in 0..k {
                        let iy = (oy * v.stride as usize + ky) as isize - p.pad as isize;
                        if iy < 0 || iy >= h {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * v.stride as usize + kx) as isize - p.pad as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            acc += load(x[(i * h as usize + iy as usize) * w + ix as usize]) * load(wt[((o * c_in + i) * k + ky) * k + kx]);
                        }
                    }
                }
                if let Some(slope) = v.leaky {
                    if acc < 0.0 {
                        acc *= slope;
                    }
                }
                y[(o * oh + oy) * ow + ox] = store(acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    fn case(spec: Conv2d, h: usize, w: usize, leaky: Option<f32>) {
        let x = seeded(1, spec.c_in * h * w);
        let wt = seeded(2, spec.c_out * spec.c_in * spec.kernel * spec.kernel);
        let b = seeded(3, spec.c_out);
        let p = Conv2dPush::new(&spec, h, w);
        let v = Conv2dVariant { kernel: spec.kernel as u32, stride: spec.stride as u32, has_bias: true, leaky };
        let mut got = vec![0.0; (p.c_out * p.oh * p.ow) as usize];
        conv2d(&v, &p, &x, &wt, &b, &mut got);
        let mut want = vec![0.0; got.len()];
        crate::reference::conv2d(&spec, &x, h, w, &wt, Some(&b), &mut want);
        if let Some(s) = leaky {
            crate::act::leaky_relu(&mut want, s);
        }
        // Same summation order as the reference, no fma on either side: identical bits expected.
        assert_close(&format!("{spec:?} {h}x{w}"), &got, &want, Tolerance::Custom { abs: 0.0, rel: 0.0 });
    }

    #[test]
    fn twin_matches_reference_bit_for_bit_on_odd_sizes() {
        case(Conv2d { c_in: 3, c_out: 5, kernel: 3, stride: 1, pad: 1 }, 7, 9, None);
        case(Conv2d { c_in: 5, c_out: 3, kernel: 3, stride: 2, pad: 1 }, 9, 7, Some(0.2));
        case(Conv2d { c_in: 4, c_out: 6, kernel: 1, stride: 1, pad: 0 }, 5, 3, Some(0.2));
    }

    #[test]
    fn fp16_twin_equals_the_fp32_twin_on_fp16_rounded_inputs_then_rounded() {
        let spec = Conv2d { c_in: 3, c_out: 4, kernel: 3, stride: 2, pad: 1 };
        let (h, w) = (7, 5);
        let half = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<_>>();
        let (x, wt, b) = (half(seeded(6, 3 * h * w)), half(seeded(7, 4 * 3 * 9)), half(seeded(8, 4)));
        let wide = |v: &[f16]| v.iter().map(|s| s.to_f32()).collect::<Vec<_>>();
        let p = Conv2dPush::new(&spec, h, w);
        let v = Conv2dVariant { kernel: 3, stride: 2, has_bias: true, leaky: Some(0.2) };
        let mut got = vec![f16::ZERO; (p.c_out * p.oh * p.ow) as usize];
        conv2d_f16(&v, &p, &x, &wt, &b, &mut got);
        let mut want = vec![0.0; got.len()];
        conv2d(&v, &p, &wide(&x), &wide(&wt), &wide(&b), &mut want);
        // fp16 -> fp32 widening is exact, so the only difference is the final rounding, done the same way.
        assert_eq!(wide(&got), half(want).iter().map(|s| s.to_f32()).collect::<Vec<_>>());
    }
}
