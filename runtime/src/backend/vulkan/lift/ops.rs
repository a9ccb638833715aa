//! Typed helpers that append one shader dispatch to a `Graph`: the existing `conv2d`, `bilinear` and
//! `elementwise` shaders and the lift's own (`lift_linear`, `lift_layernorm`, `lift_attention`,
//! `lift_maps`, `lift_deconv`). Push constants and dispatch sizes come from the twins in
//! `gaga_kernels::twin`, so the layout is written once.

use gaga_kernels::conv::Conv2d;
use gaga_kernels::twin::{self, bilinear as bl, conv2d as cv, elementwise as ew, lift_dense as ld, lift_maps as lm};

use super::graph::{Buf, Graph};
use crate::error::Result;

impl Graph<'_, '_> {
    /// `conv2d.comp` on an `h` x `w` map; `relu` fuses a ReLU (LeakyReLU of slope 0). `bias` is the
    /// buffer and whether to read it (the shader binds one in every variant).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        label: String,
        spec: &Conv2d,
        h: usize,
        w: usize,
        x: Buf,
        wt: Buf,
        bias: (Buf, bool),
        relu: bool,
        y: Buf,
    ) -> Result<()> {
        let p = cv::Conv2dPush::new(spec, h, w);
        let (b, has_bias) = bias;
        let v = cv::Conv2dVariant { kernel: spec.kernel as u32, stride: spec.stride as u32, has_bias, leaky: relu.then_some(0.0) };
        let groups = v.dispatch(&p);
        self.op(label, "conv2d", twin::CONV2D_SPV, v.spec_constants(), vec![x, wt, b, y], bytemuck::bytes_of(&p), groups)
    }

    /// `lift_linear.comp`: rows of `x` times `wt`^T plus `bias`, then `act`, written through `p`'s strides.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(&mut self, label: String, p: ld::LinearPush, act: ld::Act, x: Buf, wt: Buf, bias: Buf, y: Buf) -> Result<()> {
        self.op(
            label,
            "lift_linear",
            twin::LIFT_LINEAR_SPV,
            ld::linear_spec(act, true),
            vec![x, wt, bias, y],
            bytemuck::bytes_of(&p),
            p.dispatch(),
        )
    }

    /// `lift_layernorm.comp` over `n` rows of `dim`.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(&mut self, label: String, n: usize, dim: usize, eps: f32, x: Buf, g: Buf, b: Buf, y: Buf) -> Result<()> {
        let p = ld::LayerNormPush { n: n as u32, dim: dim as u32, eps };
        self.op(label, "lift_layernorm", twin::LIFT_LAYERNORM_SPV, ld::row_spec(), vec![x, g, b, y], bytemuck::bytes_of(&p), p.dispatch())
    }

    /// `lift_attention.comp` on packed `qkv`.
    pub fn attention(&mut self, label: String, n: usize, heads: usize, head_dim: usize, qkv: Buf, y: Buf) -> Result<()> {
        let p = ld::AttentionPush::new(n, heads, head_dim);
        self.op(
            label,
            "lift_attention",
            twin::LIFT_ATTENTION_SPV,
            ld::attention_spec(head_dim),
            vec![qkv, y],
            bytemuck::bytes_of(&p),
            p.dispatch(),
        )
    }

    /// `lift_maps.comp`: copy, accumulate or scale-add through `p`'s strides (`g` only read by `ScaleAdd`).
    pub fn maps(&mut self, label: String, op: lm::MapOp, p: lm::MapsPush, x: Buf, g: Buf, y: Buf) -> Result<()> {
        self.op(label, "lift_maps", twin::LIFT_MAPS_SPV, lm::maps_spec(op), vec![x, g, y], bytemuck::bytes_of(&p), p.dispatch())
    }

    /// `lift_deconv.comp`: transposed convolution with kernel = stride.
    pub fn deconv(&mut self, label: String, p: lm::DeconvPush, x: Buf, wt: Buf, bias: Buf, y: Buf) -> Result<()> {
        self.op(label, "lift_deconv", twin::LIFT_DECONV_SPV, lm::deconv_spec(), vec![x, wt, bias, y], bytemuck::bytes_of(&p), p.dispatch())
    }

    /// `bilinear.comp` with `align_corners`.
    #[allow(clippy::too_many_arguments)]
    pub fn resize(&mut self, label: String, c: usize, h: usize, w: usize, oh: usize, ow: usize, x: Buf, y: Buf) -> Result<()> {
        let p = bl::BilinearPush::new(c, h, w, oh, ow, true);
        self.op(label, "bilinear", twin::BILINEAR_SPV, bl::spec_constants(true), vec![x, y], bytemuck::bytes_of(&p), p.dispatch())
    }

    /// `elementwise.comp` over the first `n` values: ReLU (`b` unread) or `a + b`.
    pub fn elementwise(&mut self, label: String, op: ew::ElementwiseOp, n: usize, a: Buf, b: Buf, y: Buf) -> Result<()> {
        let p = ew::ElementwisePush { n: n as u32 };
        self.op(
            label,
            "elementwise",
            twin::ELEMENTWISE_SPV,
            op.spec_constants(),
            vec![a, b, y],
            bytemuck::bytes_of(&p),
            (ew::dispatch(n), 1, 1),
        )
    }
}
