//! Twins of the lift's data movers: `lift_maps.comp` (strided copy, accumulate, LayerScale residual add)
//! and `lift_deconv.comp` (transposed convolution with kernel = stride, DPT's upsampling).

use super::SpecValue;

/// Workgroup of `lift_maps.comp` and `lift_deconv.comp`: 8 x 8 (columns x rows, or output pixels).
pub const WORKGROUP: (u32, u32) = (8, 8);

/// `lift_maps.comp`'s `OP` constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// `y[..] = x[..]` through both stride sets.
    Copy = 0,
    /// `y[..] += x[..]`.
    Accumulate = 1,
    /// `y[r, c] += x[r, c] * g[c]` over dense `[rows, cols]` (offsets and strides must be dense).
    ScaleAdd = 2,
}

/// Push constants of `lift_maps.comp`: element `(r, c)` is read at `x_off + r * x_row + c * x_col` and
/// written at `y_off + r * y_row + c * y_col`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MapsPush {
    pub rows: u32,
    pub cols: u32,
    pub x_off: u32,
    pub x_row: u32,
    pub x_col: u32,
    pub y_off: u32,
    pub y_row: u32,
    pub y_col: u32,
}

impl MapsPush {
    /// Dense `[rows, cols]` in and out, no offsets.
    pub fn dense(rows: usize, cols: usize) -> Self {
        let c = cols as u32;
        MapsPush { rows: rows as u32, cols: c, x_off: 0, x_row: c, x_col: 1, y_off: 0, y_row: c, y_col: 1 }
    }

    /// Workgroup counts (x: columns, y: rows).
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.cols as usize, WORKGROUP.0), super::groups(self.rows as usize, WORKGROUP.1), 1)
    }
}

/// Specialization constants of `lift_maps.comp`.
pub fn maps_spec(op: MapOp) -> Vec<SpecValue> {
    vec![SpecValue::U32(WORKGROUP.0), SpecValue::U32(WORKGROUP.1), SpecValue::U32(op as u32)]
}

/// What `lift_maps.comp` computes (`g` is read only by `ScaleAdd`).
pub fn maps(op: MapOp, p: &MapsPush, x: &[f32], g: &[f32], y: &mut [f32]) {
    for r in 0..p.rows as usize {
        for c in 0..p.cols as usize {
            let yi = p.y_off as usize + r * p.y_row as usize + c * p.y_col as usize;
            let v = x[p.x_off as usize + r * p.x_row as usize + c * p.x_col as usize];
            y[yi] = match op {
                MapOp::Copy => v,
                MapOp::Accumulate => y[yi] + v,
                MapOp::ScaleAdd => y[yi] + v * g[c],
            };
        }
    }
}

/// Push constants of `lift_deconv.comp`; the output is `[c_out, h * k, w * k]` from `y_off`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DeconvPush {
    pub c_in: u32,
    pub h: u32,
    pub w: u32,
    pub c_out: u32,
    pub k: u32,
    pub y_off: u32,
}

impl DeconvPush {
    /// Workgroup counts (x, y: output pixels, z: output channels).
    pub fn dispatch(&self) -> (u32, u32, u32) {
        let (oh, ow) = ((self.h * self.k) as usize, (self.w * self.k) as usize);
        (super::groups(ow, WORKGROUP.0), super::groups(oh, WORKGROUP.1), self.c_out.max(1))
    }
}

/// Specialization constants of `lift_deconv.comp`.
pub fn deconv_spec() -> Vec<SpecValue> {
    vec![SpecValue::U32(WORKGROUP.0), SpecValue::U32(WORKGROUP.1)]
}

/// What `lift_deconv.comp` computes, weights `[c_in, c_out, k, k]`.
pub fn deconv(p: &DeconvPush, x: &[f32], wt: &[f32], bias: &[f32], y: &mut [f32]) {
    let (ci, h, w, co, k) = (p.c_in as usize, p.h as usize, p.w as usize, p.c_out as usize, p.k as usize);
    let (oh, ow) = (h * k, w * k);
    for o in 0..co {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias[o];
                for i in 0..ci {
                    acc += x[(i * h + oy / k) * w + ox / k] * wt[((i * co + o) * k + oy % k) * k + ox % k];
                }
                y[p.y_off as usize + (o * oh + oy) * ow + ox] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    #[test]
    fn copy_transposes_broadcasts_and_accumulates() {
        // [2, 3] read transposed from a [3, 2] source, then a broadcast row added.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut y = vec![0.0; 6];
        let t = MapsPush { rows: 2, cols: 3, x_off: 0, x_row: 1, x_col: 2, y_off: 0, y_row: 3, y_col: 1 };
        maps(MapOp::Copy, &t, &x, &[], &mut y);
        assert_eq!(y, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let b = MapsPush { x_row: 0, x_col: 1, ..MapsPush::dense(2, 3) };
        maps(MapOp::Accumulate, &b, &x, &[], &mut y);
        assert_eq!(y, [2.0, 5.0, 8.0, 3.0, 6.0, 9.0]);
    }

    #[test]
    fn scale_add_is_layer_scale_then_the_residual() {
        let (x, g) = (seeded(1, 12), seeded(2, 4));
        let mut y = seeded(3, 12);
        let want: Vec<f32> = y.iter().enumerate().map(|(i, v)| v + x[i] * g[i % 4]).collect();
        maps(MapOp::ScaleAdd, &MapsPush::dense(3, 4), &x, &g, &mut y);
        assert_close("scale_add", &y, &want, Tolerance::Custom { abs: 0.0, rel: 0.0 });
    }

    #[test]
    fn deconv_twin_matches_the_reference_transposed_convolution() {
        for k in [2usize, 4] {
            let (ci, co, h, w) = (5, 3, 4, 3);
            let (x, wt, b) = (seeded(4, ci * h * w), seeded(5, ci * co * k * k), seeded(6, co));
            let p = DeconvPush { c_in: ci as u32, h: h as u32, w: w as u32, c_out: co as u32, k: k as u32, y_off: 2 };
            let mut got = vec![0.0; 2 + co * h * k * w * k];
            deconv(&p, &x, &wt, &b, &mut got);
            let mut want = vec![0.0; co * h * k * w * k];
            crate::reference::conv_transpose2d_patch(ci, co, k, &x, h, w, &wt, Some(&b), &mut want);
            // One product per input channel in another order: the fp32 bound.
            assert_close(&format!("deconv k={k}"), &got[2..], &want, Tolerance::Fp32);
        }
    }

    #[test]
    fn push_structs_match_the_shader_blocks() {
        use crate::twin::layout::push_constant_offsets;
        assert_eq!(push_constant_offsets(crate::twin::LIFT_MAPS_SPV), Some((0..8).map(|i| 4 * i).collect()));
        assert_eq!(push_constant_offsets(crate::twin::LIFT_DECONV_SPV), Some((0..6).map(|i| 4 * i).collect()));
    }
}
