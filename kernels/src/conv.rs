//! 2-D convolutions on `[C, H, W]` maps with PyTorch weight layouts.

/// Shape of a 2-D convolution: square kernel, symmetric zero padding, no dilation, no groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2d {
    /// Output height and width for an input of `h` x `w` (PyTorch's floor rule).
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let oh = (h + 2 * self.pad - self.kernel) / self.stride + 1;
        let ow = (w + 2 * self.pad - self.kernel) / self.stride + 1;
        (oh, ow)
    }

    /// Multiply-accumulate count for an input of `h` x `w`.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (oh, ow) = self.out_size(h, w);
        (self.c_out * oh * ow * self.c_in * self.kernel * self.kernel) as u64
    }

    fn check(&self, input: &[f32], h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, out: &[f32]) {
        let (oh, ow) = self.out_size(h, w);
        assert_eq!(input.len(), self.c_in * h * w, "conv2d input length");
        assert_eq!(weight.len(), self.c_out * self.c_in * self.kernel * self.kernel, "conv2d weight length");
        if let Some(b) = bias {
            assert_eq!(b.len(), self.c_out, "conv2d bias length");
        }
        assert_eq!(out.len(), self.c_out * oh * ow, "conv2d output length");
    }
}

/// `out = conv(input, weight) + bias`; weight `[c_out, c_in, k, k]`, input `[c_in, h, w]`, out `[c_out, oh, ow]`.
pub fn conv2d(spec: &Conv2d, input: &[f32], h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    spec.check(input, h, w, weight, bias, out);
    crate::reference::conv2d(spec, input, h, w, weight, bias, out);
}

/// Transposed convolution whose kernel equals its stride and has no padding (DPT's k4s4 and k2s2 layers):
/// every input pixel writes its own `k x k` output block. Weight `[c_in, c_out, k, k]`, out `[c_out, h*k, w*k]`.
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
    assert_eq!(input.len(), c_in * h * w, "conv_transpose2d input length");
    assert_eq!(weight.len(), c_in * c_out * k * k, "conv_transpose2d weight length");
    assert_eq!(out.len(), c_out * h * k * w * k, "conv_transpose2d output length");
    crate::reference::conv_transpose2d_patch(c_in, c_out, k, input, h, w, weight, bias, out);
}
