//! Fully connected layers on row-major token matrices.

/// `out[n, o] = sum_i x[n, i] * weight[o, i] + bias[o]`; x `[n, in_f]`, weight `[out_f, in_f]`, out `[n, out_f]`.
pub fn linear(x: &[f32], n: usize, in_f: usize, weight: &[f32], bias: Option<&[f32]>, out_f: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n * in_f, "linear input length");
    assert_eq!(weight.len(), out_f * in_f, "linear weight length");
    if let Some(b) = bias {
        assert_eq!(b.len(), out_f, "linear bias length");
    }
    assert_eq!(out.len(), n * out_f, "linear output length");
    crate::reference::linear(x, n, in_f, weight, bias, out_f, out);
}
