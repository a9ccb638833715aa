//! Bilinear resampling of `[C, H, W]` maps with PyTorch's exact index rules.

/// `F.interpolate(mode='bilinear', antialias=False)` to `oh x ow`.
/// With `align_corners = false`, source = (dst + 0.5) * in/out - 0.5, clamped at 0 (PyTorch's rule);
/// with `align_corners = true`, source = dst * (in - 1) / (out - 1).
pub fn bilinear(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, align_corners: bool, out: &mut [f32]) {
    assert_eq!(input.len(), c * h * w, "bilinear input length");
    assert_eq!(out.len(), c * oh * ow, "bilinear output length");
    crate::reference::bilinear(input, c, h, w, oh, ow, align_corners, out);
}

/// `F.interpolate(mode='bilinear', align_corners=False, antialias=True)` (also what torchvision's tensor
/// `resize` does): a separable triangle filter whose support widens with the downscale factor.
pub fn bilinear_antialias(input: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
    assert_eq!(input.len(), c * h * w, "bilinear_antialias input length");
    assert_eq!(out.len(), c * oh * ow, "bilinear_antialias output length");
    crate::reference::bilinear_antialias(input, c, h, w, oh, ow, out);
}
