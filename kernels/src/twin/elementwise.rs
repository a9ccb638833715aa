//! Twin of `elementwise.comp`: LeakyReLU or addition over flat fp32 buffers.

use super::SpecValue;

/// Workgroup of `elementwise.comp` (invocations along x).
pub const WORKGROUP: u32 = 64;
/// Most workgroups one dispatch uses; the shader's grid-stride loop covers the rest
/// (65535 is the guaranteed minimum of maxComputeWorkGroupCount).
pub const MAX_GROUPS: u32 = 65535;

/// The shader's `OP` specialization constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ElementwiseOp {
    /// `y = a < 0 ? a * slope : a`.
    LeakyRelu { slope: f32 },
    /// `y = a + b`.
    Add,
}

/// Push constants of `elementwise.comp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ElementwisePush {
    pub n: u32,
}

impl ElementwiseOp {
    /// Specialization constants in `constant_id` order.
    pub fn spec_constants(self) -> Vec<SpecValue> {
        let (op, slope) = match self {
            ElementwiseOp::LeakyRelu { slope } => (0, slope),
            ElementwiseOp::Add => (1, 0.2),
        };
        vec![SpecValue::U32(WORKGROUP), SpecValue::U32(op), SpecValue::F32(slope)]
    }
}

/// Workgroups along x for `n` elements.
pub fn dispatch(n: usize) -> u32 {
    super::groups(n, WORKGROUP).min(MAX_GROUPS)
}

/// What `elementwise.comp` computes; `b` is read only by `Add`.
pub fn elementwise(op: ElementwiseOp, a: &[f32], b: &[f32], y: &mut [f32]) {
    assert_eq!(a.len(), y.len(), "elementwise twin lengths");
    match op {
        ElementwiseOp::LeakyRelu { slope } => {
            for (o, &v) in y.iter_mut().zip(a) {
                *o = if v < 0.0 { v * slope } else { v };
            }
        }
        ElementwiseOp::Add => {
            assert_eq!(b.len(), y.len(), "elementwise twin lengths");
            for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                *o = u + v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    #[test]
    fn leaky_relu_twin_equals_the_activation_kernel() {
        let a = seeded(5, 1001);
        let mut got = vec![0.0; a.len()];
        elementwise(ElementwiseOp::LeakyRelu { slope: 0.2 }, &a, &[], &mut got);
        let mut want = a.clone();
        crate::act::leaky_relu(&mut want, 0.2);
        assert_close("leaky_relu", &got, &want, Tolerance::Custom { abs: 0.0, rel: 0.0 });
    }

    #[test]
    fn dispatch_never_exceeds_the_portable_group_count() {
        assert_eq!(dispatch(0), 1);
        assert_eq!(dispatch(65), 2);
        assert_eq!(dispatch(1 << 30), MAX_GROUPS);
    }
}
