//! The lift's dispatches, stage by stage, in the CPU lift's order (`crate::lift::{dino, dpt, generators}`):
//! DINOv2 blocks on `[N, dim]` tokens, the DPT head on `[C, H, W]` maps, the generators' layers. Only the
//! inputs (`dino_input`, the image channels of the four `layer_rn` inputs, the direction code) are
//! written by the host and only the generators' raw outputs are read back.

use gaga_kernels::conv::Conv2d;
use gaga_kernels::twin::elementwise::ElementwiseOp;
use gaga_kernels::twin::lift_dense::{Act, LinearPush};
use gaga_kernels::twin::lift_maps::{DeconvPush, MapOp, MapsPush};

use super::super::memory::MemoryLocation::{CpuToGpu, GpuOnly, GpuToCpu};
use super::graph::{Buf, Graph};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::lift::dpt::level_sizes;

const DINO: &str = "base_model.dino_model";
const BASE: &str = "base_model";

/// The buffers the host touches.
pub struct Io {
    /// `[3, Din, Din]`, preprocessed on the host.
    pub dino_input: Buf,
    /// `[3 + c_i, s_i, s_i]`: the host writes the resized image into the first 3 channels.
    pub cats: [Buf; 4],
    /// `[direnc]`.
    pub direnc: Buf,
    /// One 0.0, bound where a shader needs a bias binding it does not read.
    pub zero: Buf,
    /// `[V, C + 8]`: raw colour, opacity, scale, rotation per vertex.
    pub vertex_raw: Buf,
    /// `[C + 9, P, P]` per plane.
    pub plane_raw: [Buf; 2],
}

/// Appends the whole lift to `g`.
pub fn build(g: &mut Graph, cfg: &ModelConfig) -> Result<Io> {
    crate::lift::check_config(cfg)?;
    let d = &cfg.dino;
    let din = d.input_size;
    let sizes = level_sizes(d.grid());
    let dino_input = g.act("lift dino input", 3 * din * din, CpuToGpu)?;
    let zero = g.act("lift zero", 1, CpuToGpu)?;
    let mut cats = [zero; 4];
    for (i, cat) in cats.iter_mut().enumerate() {
        let s = sizes[i];
        *cat = g.act(&format!("lift dpt.{i} input"), (3 + cfg.dpt.project_channels[i]) * s * s, CpuToGpu)?;
    }
    let direnc = g.act("lift direnc", cfg.direnc_dim(), CpuToGpu)?;
    let layers = dino(g, cfg, dino_input)?;
    let pp = cfg.plane_size * cfg.plane_size;
    let gen_input = g.act("lift generator input", (cfg.feature_dim + cfg.direnc_dim()) * pp, GpuOnly)?;
    dpt(g, cfg, &layers, cats, zero, gen_input)?;
    let vertex_raw = vertex(g, cfg, layers[3], direnc)?;
    let plane_raw = planes(g, cfg, gen_input, direnc)?;
    Ok(Io { dino_input, cats, direnc, zero, vertex_raw, plane_raw })
}

/// Patch embedding, the blocks up to the last used one, the final norm of each used block. Returns the
/// four normed `[N, dim]` token matrices (CLS still in row 0).
fn dino(g: &mut Graph, cfg: &ModelConfig, input: Buf) -> Result<[Buf; 4]> {
    let d = &cfg.dino;
    let (dim, gr, p, n, mlp) = (d.dim, d.grid(), d.patch_size, d.tokens(), d.mlp_dim);
    if d.heads == 0 || dim % d.heads != 0 {
        return Err(Error::Config(format!("dino.dim {dim} does not split into {} heads", d.heads)));
    }
    let hd = dim / d.heads;
    let w = |g: &mut Graph, name: &str, shape: &[usize]| g.weight(&format!("{DINO}.{name}"), shape);
    let pw = w(g, "patch_embed.proj.weight", &[dim, 3, p, p])?;
    let pb = w(g, "patch_embed.proj.bias", &[dim])?;
    let cls = w(g, "cls_token", &[1, 1, dim])?;
    let pos = w(g, "pos_embed", &[1, n, dim])?;
    let patches = g.act("lift dino patches", dim * gr * gr, GpuOnly)?;
    let x = g.act("lift dino tokens", n * dim, GpuOnly)?;
    let spec = Conv2d { c_in: 3, c_out: dim, kernel: p, stride: p, pad: 0 };
    g.conv("lift.dino.patch_embed".into(), &spec, d.input_size, d.input_size, input, pw, (pb, true), false, patches)?;
    g.maps("lift.dino.cls".into(), MapOp::Copy, MapsPush::dense(1, dim), cls, cls, x)?;
    // [dim, G*G] -> rows 1.. of [N, dim].
    let t = MapsPush {
        rows: (gr * gr) as u32,
        cols: dim as u32,
        x_off: 0,
        x_row: 1,
        x_col: (gr * gr) as u32,
        y_off: dim as u32,
        y_row: dim as u32,
        y_col: 1,
    };
    g.maps("lift.dino.tokens".into(), MapOp::Copy, t, patches, patches, x)?;
    g.maps("lift.dino.pos_embed".into(), MapOp::Accumulate, MapsPush::dense(n, dim), pos, pos, x)?;

    let normed = g.act("lift dino normed", n * dim, GpuOnly)?;
    let qkv = g.act("lift dino qkv", n * 3 * dim, GpuOnly)?;
    let attn = g.act("lift dino attn", n * dim, GpuOnly)?;
    let proj = g.act("lift dino proj", n * dim, GpuOnly)?;
    let hidden = g.act("lift dino hidden", n * mlp, GpuOnly)?;
    let nw = w(g, "norm.weight", &[dim])?;
    let nb = w(g, "norm.bias", &[dim])?;
    let mut outs = [x; 4];
    let last = d.out_layers.iter().copied().max().unwrap_or(0);
    for b in 0..=last {
        let l = |s: &str| format!("lift.dino.block{b}.{s}");
        let t = |g: &mut Graph, s: &str, shape: &[usize]| g.weight(&format!("{DINO}.blocks.{b}.{s}"), shape);
        let (n1w, n1b) = (t(g, "norm1.weight", &[dim])?, t(g, "norm1.bias", &[dim])?);
        g.layer_norm(l("norm1"), n, dim, d.ln_eps, x, n1w, n1b, normed)?;
        let (qw, qb) = (t(g, "attn.qkv.weight", &[3 * dim, dim])?, t(g, "attn.qkv.bias", &[3 * dim])?);
        g.linear(l("qkv"), LinearPush::dense(n, dim, 3 * dim), Act::None, normed, qw, qb, qkv)?;
        g.attention(l("attention"), n, d.heads, hd, qkv, attn)?;
        let (aw, ab) = (t(g, "attn.proj.weight", &[dim, dim])?, t(g, "attn.proj.bias", &[dim])?);
        g.linear(l("proj"), LinearPush::dense(n, dim, dim), Act::None, attn, aw, ab, proj)?;
        let ls1 = t(g, "ls1.gamma", &[dim])?;
        g.maps(l("ls1"), MapOp::ScaleAdd, MapsPush::dense(n, dim), proj, ls1, x)?;
        let (n2w, n2b) = (t(g, "norm2.weight", &[dim])?, t(g, "norm2.bias", &[dim])?);
        g.layer_norm(l("norm2"), n, dim, d.ln_eps, x, n2w, n2b, normed)?;
        let (w1, b1) = (t(g, "mlp.fc1.weight", &[mlp, dim])?, t(g, "mlp.fc1.bias", &[mlp])?);
        g.linear(l("fc1"), LinearPush::dense(n, dim, mlp), Act::Gelu, normed, w1, b1, hidden)?;
        let (w2, b2) = (t(g, "mlp.fc2.weight", &[dim, mlp])?, t(g, "mlp.fc2.bias", &[dim])?);
        g.linear(l("fc2"), LinearPush::dense(n, mlp, dim), Act::None, hidden, w2, b2, proj)?;
        let ls2 = t(g, "ls2.gamma", &[dim])?;
        g.maps(l("ls2"), MapOp::ScaleAdd, MapsPush::dense(n, dim), proj, ls2, x)?;
        for (slot, _) in d.out_layers.iter().enumerate().filter(|(_, &o)| o == b) {
            outs[slot] = g.act(&format!("lift dino layer {slot}"), n * dim, GpuOnly)?;
            g.layer_norm(l("final_norm"), n, dim, d.ln_eps, x, nw, nb, outs[slot])?;
        }
    }
    Ok(outs)
}

/// The DPT head: four levels into `cats`, four fusion blocks, `output_conv` into the first
/// `feature_dim` channels of `out`.
fn dpt(g: &mut Graph, cfg: &ModelConfig, layers: &[Buf; 4], cats: [Buf; 4], zero: Buf, out: Buf) -> Result<()> {
    let (dim, gr, f) = (cfg.dino.dim, cfg.dino.grid(), cfg.dpt.features);
    let sizes = level_sizes(gr);
    let mut rn = Vec::with_capacity(4);
    for i in 0..4 {
        let (c, s) = (cfg.dpt.project_channels[i], sizes[i]);
        let l = |s: &str| format!("lift.dpt.level{i}.{s}");
        let pw = g.weight(&format!("{BASE}.projects.{i}.weight"), &[c, dim, 1, 1])?;
        let pb = g.weight(&format!("{BASE}.projects.{i}.bias"), &[c])?;
        // Patch tokens (rows 1..) projected and written transposed: [c, G*G].
        let mut p = LinearPush { x_off: dim as u32, y_row: 1, y_col: (gr * gr) as u32, ..LinearPush::dense(gr * gr, dim, c) };
        let feat_off = (3 * s * s) as u32;
        if i == 2 {
            p.y_off = feat_off;
            g.linear(l("project"), p, Act::None, layers[i], pw, pb, cats[i])?;
        } else {
            let projected = g.act(&format!("lift dpt.{i} projected"), c * gr * gr, GpuOnly)?;
            g.linear(l("project"), p, Act::None, layers[i], pw, pb, projected)?;
            if i < 2 {
                let k = if i == 0 { 4 } else { 2 };
                let rw = g.weight(&format!("{BASE}.resize_layers.{i}.weight"), &[c, c, k, k])?;
                let rb = g.weight(&format!("{BASE}.resize_layers.{i}.bias"), &[c])?;
                let dp = DeconvPush { c_in: c as u32, h: gr as u32, w: gr as u32, c_out: c as u32, k: k as u32, y_off: feat_off };
                g.deconv(l("resize"), dp, projected, rw, rb, cats[i])?;
            } else {
                let rw = g.weight(&format!("{BASE}.resize_layers.{i}.weight"), &[c, c, 3, 3])?;
                let rb = g.weight(&format!("{BASE}.resize_layers.{i}.bias"), &[c])?;
                let down = g.act(&format!("lift dpt.{i} resized"), c * s * s, GpuOnly)?;
                let spec = Conv2d { c_in: c, c_out: c, kernel: 3, stride: 2, pad: 1 };
                g.conv(l("resize"), &spec, gr, gr, projected, rw, (rb, true), false, down)?;
                let cp = MapsPush { y_off: feat_off, ..MapsPush::dense(c, s * s) };
                g.maps(l("concat"), MapOp::Copy, cp, down, down, cats[i])?;
            }
        }
        let lw = g.weight(&format!("{BASE}.layer_rn.{i}.weight"), &[f, c + 3, 3, 3])?;
        let level = g.act(&format!("lift dpt.{i} layer_rn"), f * s * s, GpuOnly)?;
        let spec = Conv2d { c_in: c + 3, c_out: f, kernel: 3, stride: 1, pad: 1 };
        g.conv(l("layer_rn"), &spec, s, s, cats[i], lw, (zero, false), false, level)?;
        rn.push((level, s));
    }
    let p = 2 * sizes[0];
    let (mut path, mut at) = (rn[3].0, sizes[3]);
    for (block, skip, size) in [(0, None, sizes[2]), (1, Some(rn[2]), sizes[1]), (2, Some(rn[1]), sizes[0]), (3, Some(rn[0]), p)] {
        let pre = format!("{BASE}.refinenet.{block}");
        let l = |s: &str| format!("lift.dpt.refinenet{block}.{s}");
        let len = f * at * at;
        if let Some((skip, s)) = skip {
            if s != at {
                return Err(Error::Config(format!("refinenet.{block}: path is {at}x{at}, skip is {s}x{s}")));
            }
            let res = residual_unit(g, cfg, &format!("{pre}.resConfUnit1"), &l("unit1"), skip, at)?;
            let sum = g.act(&format!("lift dpt.refinenet{block} sum"), len, GpuOnly)?;
            g.elementwise(l("skip_add"), ElementwiseOp::Add, len, path, res, sum)?;
            path = sum;
        }
        let x = residual_unit(g, cfg, &format!("{pre}.resConfUnit2"), &l("unit2"), path, at)?;
        let up = g.act(&format!("lift dpt.refinenet{block} upsampled"), f * size * size, GpuOnly)?;
        g.resize(l("upsample"), f, at, at, size, size, x, up)?;
        let ow = g.weight(&format!("{pre}.out_conv.weight"), &[f, f, 1, 1])?;
        let ob = g.weight(&format!("{pre}.out_conv.bias"), &[f])?;
        let next = g.act(&format!("lift dpt.refinenet{block} out"), f * size * size, GpuOnly)?;
        let spec = Conv2d { c_in: f, c_out: f, kernel: 1, stride: 1, pad: 0 };
        g.conv(l("out_conv"), &spec, size, size, up, ow, (ob, true), false, next)?;
        (path, at) = (next, size);
    }
    let fd = cfg.feature_dim;
    let wt = g.weight(&format!("{BASE}.output_conv.weight"), &[fd, f, 3, 3])?;
    let b = g.weight(&format!("{BASE}.output_conv.bias"), &[fd])?;
    let spec = Conv2d { c_in: f, c_out: fd, kernel: 3, stride: 1, pad: 1 };
    g.conv("lift.dpt.output_conv".into(), &spec, p, p, path, wt, (b, true), false, out)
}

/// `ResidualConvUnit` on `[f, s, s]`: ReLU (into a new buffer) -> conv+ReLU -> conv -> + input.
fn residual_unit(g: &mut Graph, cfg: &ModelConfig, prefix: &str, label: &str, x: Buf, s: usize) -> Result<Buf> {
    let f = cfg.dpt.features;
    let len = f * s * s;
    let a = g.act(&format!("{label} relu"), len, GpuOnly)?;
    let b = g.act(&format!("{label} conv1"), len, GpuOnly)?;
    let c = g.act(&format!("{label} conv2"), len, GpuOnly)?;
    let out = g.act(&format!("{label} out"), len, GpuOnly)?;
    g.elementwise(format!("{label}.relu"), ElementwiseOp::LeakyRelu { slope: 0.0 }, len, x, x, a)?;
    let spec = Conv2d { c_in: f, c_out: f, kernel: 3, stride: 1, pad: 1 };
    let (w1, b1) = (g.weight(&format!("{prefix}.conv1.weight"), &[f, f, 3, 3])?, g.weight(&format!("{prefix}.conv1.bias"), &[f])?);
    g.conv(format!("{label}.conv1"), &spec, s, s, a, w1, (b1, true), true, b)?;
    let (w2, b2) = (g.weight(&format!("{prefix}.conv2.weight"), &[f, f, 3, 3])?, g.weight(&format!("{prefix}.conv2.bias"), &[f])?);
    g.conv(format!("{label}.conv2"), &spec, s, s, b, w2, (b2, true), false, c)?;
    g.elementwise(format!("{label}.add"), ElementwiseOp::Add, len, c, x, out)?;
    Ok(out)
}

/// `gs_generator_g` up to its raw heads: `[V, C + 8]` (colour, opacity, scale xyz, rotation wxyz).
fn vertex(g: &mut Graph, cfg: &ModelConfig, last_layer: Buf, direnc: Buf) -> Result<Buf> {
    let pre = "gs_generator_g";
    let (v, hb, dim, trunk, de) = (cfg.flame.vertices, cfg.head_base_dim, cfg.dino.dim, cfg.vertex_trunk_dim, cfg.direnc_dim());
    let (ch, hid) = (cfg.gaussian_channels, cfg.vertex_head_hidden);
    let l = |s: &str| format!("lift.vertex.{s}");
    let head_base = g.weight("head_base", &[v, hb])?;
    let x0 = g.act("lift vertex input", v * (hb + dim), GpuOnly)?;
    let wide = (hb + dim) as u32;
    g.maps(l("head_base"), MapOp::Copy, MapsPush { y_row: wide, ..MapsPush::dense(v, hb) }, head_base, head_base, x0)?;
    // The global feature: row 1 (the first patch token) of the last used block, on every vertex row.
    let gp = MapsPush { x_off: dim as u32, x_row: 0, y_off: hb as u32, y_row: wide, ..MapsPush::dense(v, dim) };
    g.maps(l("global"), MapOp::Copy, gp, last_layer, last_layer, x0)?;
    let t1 = g.act("lift vertex trunk a", v * trunk, GpuOnly)?;
    let t2 = g.act("lift vertex trunk b", v * trunk, GpuOnly)?;
    let h = g.act("lift vertex head input", v * (trunk + de), GpuOnly)?;
    let mut inp = (x0, hb + dim);
    for (i, layer) in [0, 2, 4, 6].into_iter().enumerate() {
        let wt = g.weight(&format!("{pre}.feature_layers.{layer}.weight"), &[trunk, inp.1])?;
        let b = g.weight(&format!("{pre}.feature_layers.{layer}.bias"), &[trunk])?;
        let (out, p) = match i {
            3 => (h, LinearPush { y_row: (trunk + de) as u32, ..LinearPush::dense(v, inp.1, trunk) }),
            _ => (if i % 2 == 0 { t1 } else { t2 }, LinearPush::dense(v, inp.1, trunk)),
        };
        g.linear(l(&format!("feature{layer}")), p, if i < 3 { Act::Relu } else { Act::None }, inp.0, wt, b, out)?;
        inp = (out, trunk);
    }
    let dp = MapsPush { x_row: 0, y_off: trunk as u32, y_row: (trunk + de) as u32, ..MapsPush::dense(v, de) };
    g.maps(l("direnc"), MapOp::Copy, dp, direnc, direnc, h)?;
    let hidden = g.act("lift vertex head hidden", v * hid, GpuOnly)?;
    let raw = g.act("lift vertex raw", v * (ch + 8), GpuToCpu)?;
    for (name, out, col) in [("color", ch, 0), ("opacity", 1, ch), ("scale", 3, ch + 1), ("rotation", 4, ch + 4)] {
        let w0 = g.weight(&format!("{pre}.{name}_layers.0.weight"), &[hid, trunk + de])?;
        let b0 = g.weight(&format!("{pre}.{name}_layers.0.bias"), &[hid])?;
        g.linear(l(&format!("{name}0")), LinearPush::dense(v, trunk + de, hid), Act::Relu, h, w0, b0, hidden)?;
        let w2 = g.weight(&format!("{pre}.{name}_layers.2.weight"), &[out, hid])?;
        let b2 = g.weight(&format!("{pre}.{name}_layers.2.bias"), &[out])?;
        let p = LinearPush { y_off: col as u32, y_row: (ch + 8) as u32, ..LinearPush::dense(v, hid, out) };
        g.linear(l(&format!("{name}2")), p, Act::None, hidden, w2, b2, raw)?;
    }
    Ok(raw)
}

/// The direction code broadcast into the generators' input, then both `gs_generator_l*` conv stacks.
fn planes(g: &mut Graph, cfg: &ModelConfig, input: Buf, direnc: Buf) -> Result<[Buf; 2]> {
    let (p, fd, de, hid) = (cfg.plane_size, cfg.feature_dim, cfg.direnc_dim(), cfg.lift_hidden);
    let pp = p * p;
    let raw_c = cfg.gaussian_channels + 9;
    let dp = MapsPush { x_row: 1, x_col: 0, y_off: (fd * pp) as u32, ..MapsPush::dense(de, pp) };
    g.maps("lift.plane.direnc".into(), MapOp::Copy, dp, direnc, direnc, input)?;
    let a = g.act("lift plane hidden a", hid * pp, GpuOnly)?;
    let b = g.act("lift plane hidden b", hid * pp, GpuOnly)?;
    let mut raws = [a; 2];
    for (index, raw) in raws.iter_mut().enumerate() {
        *raw = g.act(&format!("lift plane {index} raw"), raw_c * pp, GpuToCpu)?;
        let mut x = input;
        for (layer, ci, co, k, out) in [(0, fd + de, hid, 3, a), (2, hid, hid, 3, b), (4, hid, hid, 3, a), (6, hid, raw_c, 1, *raw)] {
            let pre = format!("gs_generator_l{index}.gaussian_conv.{layer}");
            let wt = g.weight(&format!("{pre}.weight"), &[co, ci, k, k])?;
            let bias = g.weight(&format!("{pre}.bias"), &[co])?;
            let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
            g.conv(format!("lift.plane.l{index}.conv{layer}"), &spec, p, p, x, wt, (bias, true), layer != 6, out)?;
            x = out;
        }
    }
    Ok(raws)
}
