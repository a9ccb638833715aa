//! Twin of `bilinear.comp`: PyTorch's bilinear rule with axis scales computed once on the host
//! (the shader cannot divide with correct rounding) and no fused multiply-adds.

use super::SpecValue;

/// Workgroup of `bilinear.comp`: 8 x 8 output pixels of one channel.
pub const WORKGROUP: (u32, u32) = (8, 8);

/// Push constants of `bilinear.comp`, in the GLSL block's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BilinearPush {
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub scale_y: f32,
    pub scale_x: f32,
}

/// The scale of one axis: `in / out`, or `(in - 1) / (out - 1)` with `align_corners` (0 for one output).
pub fn axis_scale(in_len: usize, out_len: usize, align_corners: bool) -> f32 {
    if align_corners {
        if out_len > 1 {
            (in_len - 1) as f32 / (out_len - 1) as f32
        } else {
            0.0
        }
    } else {
        in_len as f32 / out_len as f32
    }
}

impl BilinearPush {
    /// Push constants for resizing `c` channels from `h` x `w` to `oh` x `ow`.
    pub fn new(c: usize, h: usize, w: usize, oh: usize, ow: usize, align_corners: bool) -> Self {
        BilinearPush {
            c: c as u32,
            h: h as u32,
            w: w as u32,
            oh: oh as u32,
            ow: ow as u32,
            scale_y: axis_scale(h, oh, align_corners),
            scale_x: axis_scale(w, ow, align_corners),
        }
    }

    /// Workgroup counts (x, y, z) covering the output.
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.ow as usize, WORKGROUP.0), super::groups(self.oh as usize, WORKGROUP.1), self.c.max(1))
    }
}

/// Specialization constants of `bilinear.comp` in `constant_id` order.
pub fn spec_constants(align_corners: bool) -> Vec<SpecValue> {
    vec![SpecValue::U32(WORKGROUP.0), SpecValue::U32(WORKGROUP.1), SpecValue::Bool(align_corners)]
}

fn taps(dst: u32, in_len: u32, scale: f32, align_corners: bool) -> (usize, usize, f32) {
    let src = if align_corners { dst as f32 * scale } else { ((dst as f32 + 0.5) * scale - 0.5).max(0.0) };
    let i0 = (src.floor() as u32).min(in_len - 1);
    let i1 = (i0 + 1).min(in_len - 1);
    (i0 as usize, i1 as usize, src - i0 as f32)
}

/// What `bilinear.comp` computes.
pub fn bilinear(p: &BilinearPush, align_corners: bool, x: &[f32], y: &mut [f32]) {
    let (h, w, oh, ow) = (p.h as usize, p.w as usize, p.oh as usize, p.ow as usize);
    assert_eq!(x.len(), p.c as usize * h * w, "bilinear twin input length");
    assert_eq!(y.len(), p.c as usize * oh * ow, "bilinear twin output length");
    for ch in 0..p.c as usize {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            let (y0, y1, ly1) = taps(oy as u32, p.h, p.scale_y, align_corners);
            for ox in 0..ow {
                let (x0, x1, lx1) = taps(ox as u32, p.w, p.scale_x, align_corners);
                let (ly0, lx0) = (1.0 - ly1, 1.0 - lx1);
                let top = lx0 * plane[y0 * w + x0] + lx1 * plane[y0 * w + x1];
                let bottom = lx0 * plane[y1 * w + x0] + lx1 * plane[y1 * w + x1];
                y[(ch * oh + oy) * ow + ox] = ly0 * top + ly1 * bottom;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    #[test]
    fn twin_matches_reference_for_both_corner_rules() {
        for &(h, w, oh, ow) in &[(7, 9, 13, 5), (8, 8, 4, 4), (5, 3, 10, 6), (9, 11, 1, 1)] {
            for align in [false, true] {
                let x = seeded(4, 3 * h * w);
                let p = BilinearPush::new(3, h, w, oh, ow, align);
                let mut got = vec![0.0; 3 * oh * ow];
                bilinear(&p, align, &x, &mut got);
                let mut want = vec![0.0; got.len()];
                crate::reference::bilinear(&x, 3, h, w, oh, ow, align, &mut want);
                // align_corners rounds dst * ((in-1)/(out-1)) instead of (dst * (in-1)) / (out-1): a few ulps
                // of the source coordinate, which moves the result by at most that times the local slope (< 2).
                assert_close(&format!("{h}x{w} -> {oh}x{ow} align {align}"), &got, &want, Tolerance::Fp32);
            }
        }
    }
}
