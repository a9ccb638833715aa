//! The int8 refiner's low-memory forms of two layers, bit-identical to the plain ones in `layers.rs`
//! (`plan::OnTheFly` says which a level uses; `tests_lowmem.rs` compares them bitwise):
//! - an up ResBlock whose conv2 and skip are int8 quantises their x2-upsampled inputs straight from the
//!   low-resolution maps (`PackedConv::run_upsampled` with unit factors), so its upsampled temporary
//!   (32 MiB at 512x512) does not exist;
//! - an SFT condition branch whose second conv is int8 runs that conv in row bands (each band's quantised
//!   input holds the real rows just outside it), each band combined into the StyleConv output at once, so its `[2c, h, h]` output map
//!   (32 MiB at 512x512) never exists, only one band of it.
//!
//! Integer sums are exact and per pixel, and every call uses the activation scale the whole-map call
//! would (the calibrated one, or the dynamic max-abs of the whole input), so the bits cannot change.

use gaga_kernels::act::leaky_relu;
use gaga_kernels::conv::Scratch;
use gaga_kernels::fused::{add_assign, lrelu_add, mul_assign};
use gaga_kernels::qgemm::{act_scale_for, PackedConv, PackedFormat};
use gaga_kernels::winograd::Epilogue;
use rayon::prelude::*;

use super::layers::{Condition, Conv, ResBlock, SLOPE};
use super::packed::ConvKernel;
use super::plan::{COND_BAND_ROWS, UP_BAND_ROWS};
use crate::error::{Error, Result};

/// An int8 conv's weights, bias and calibrated activation scale.
type Int8Conv<'a, 'w> = (&'a PackedConv<'w>, Option<&'a [f32]>, Option<f32>);

/// The int8 weights, bias and calibrated activation scale of `c`, when it runs on int8 weights.
fn int8<'a, 'w>(c: &'a Conv<'w>) -> Option<Int8Conv<'a, 'w>> {
    match &c.kernel {
        ConvKernel::Quant { w, bias, act_scale } if w.format() == PackedFormat::I8 => Some((w, bias.as_deref(), *act_scale)),
        _ => None,
    }
}

fn conv_err(c: &Conv<'_>, e: gaga_kernels::qgemm::QError) -> Error {
    Error::Other(format!("refiner conv `{}`: {}", c.name, e.0))
}

/// True when [`up_block`] can run `b`: its conv2 and skip are int8 (conv1 may be anything).
pub fn up_block_fits(b: &ResBlock<'_>) -> bool {
    let [_, conv2, skip] = b.convs();
    int8(conv2).is_some() && int8(skip).is_some()
}

/// [`ResBlock::run`] of an up block (`x` `[c_in, h, h]` -> `out` `[c_out, 2h, 2h]`) without the upsampled
/// temporary: conv1 into `t1`, its LeakyReLU in place (the same `v < 0 ? v * slope : v` that
/// `bilinear_lrelu` applies on read), conv2 quantising `up2(t1) * 1`, the skip quantising `up2(x) * 1`,
/// then the sum. `ones` has at least `c_in` ones (multiplying by 1 is exact, so these are
/// `bilinear_fast`'s values). With `band` (at least `plan::block_band_len` floats) both convs run in row
/// bands of [`UP_BAND_ROWS`] with the whole maps' activation scales, each skip band summed into `out` at
/// once, so `t1` needs `c_in h^2` floats and the kernels' scratch one band's int8 input; without it the
/// skip's output goes to `t1` (`max(c_in h^2, c_out 4h^2)` floats). No observation hook: a caller that
/// observes uses the plain block.
#[allow(clippy::too_many_arguments)]
pub fn up_block(
    b: &ResBlock<'_>,
    s: &mut Scratch,
    x: &[f32],
    h: usize,
    ones: &[f32],
    t1: &mut [f32],
    band: Option<&mut [f32]>,
    out: &mut [f32],
) -> Result<()> {
    let [conv1, conv2, skip] = b.convs();
    let (ci, co, h2) = (conv1.spec.c_in, conv2.spec.c_out, 2 * h);
    let (n_in, n_out) = (ci * h * h, co * h2 * h2);
    let rows = UP_BAND_ROWS.min(h2);
    let (t1_len, band_len) = if band.is_some() { (n_in, co * rows * h2) } else { (n_in.max(n_out), 0) };
    let found = band.as_ref().map_or(0, |v| v.len());
    for (what, found, want) in [("ones", ones.len(), ci), ("t1", t1.len(), t1_len), ("output", out.len(), n_out), ("band", found, band_len)]
    {
        if found < want {
            return Err(Error::Other(format!("refiner up block `{}` {what}: {found} floats, needs {want}", conv1.name)));
        }
    }
    let (Some((w2, b2, a2)), Some((ws, bs, a_s))) = (int8(conv2), int8(skip)) else {
        return Err(Error::Other(format!("refiner up block `{}`: conv2 and skip must be int8 for the fused path", conv1.name)));
    };
    conv1.run(s, x, h, h, t1, &mut |_, _| {})?;
    leaky_relu(&mut t1[..n_in], SLOPE);
    let (x, t, ones) = (&x[..n_in], &t1[..n_in], &ones[..ci]);
    let Some(band) = band else {
        w2.run_upsampled(s, t, h, h, ones, a2, b2, &mut out[..n_out]).map_err(|e| conv_err(conv2, e))?;
        ws.run_upsampled(s, x, h, h, ones, a_s, bs, &mut t1[..n_out]).map_err(|e| conv_err(skip, e))?;
        lrelu_add(&mut out[..n_out], &t1[..n_out], SLOPE);
        return Ok(());
    };
    // The whole maps' scales, as the unbanded calls would use.
    let scale2 = a2.map_or_else(|| w2.upsampled_act_scale(t, h, h, ones), Ok).map_err(|e| conv_err(conv2, e))?;
    let scale_s = a_s.map_or_else(|| ws.upsampled_act_scale(x, h, h, ones), Ok).map_err(|e| conv_err(skip, e))?;
    let hw = h2 * h2;
    for y0 in (0..h2).step_by(rows) {
        let y1 = (y0 + rows).min(h2);
        let n = (y1 - y0) * h2;
        let part = &mut band[..co * n];
        w2.run_upsampled_rows(s, t, h, h, ones, scale2, (y0, y1 - y0), b2, part).map_err(|e| conv_err(conv2, e))?;
        // Per channel in parallel: these passes are memory-bound, and serial they cost the 2-thread frame.
        let rows = (y0 * h2, y1 * h2);
        out[..co * hw].par_chunks_mut(hw).zip(part.par_chunks(n)).for_each(|(d, v)| d[rows.0..rows.1].copy_from_slice(v));
        ws.run_upsampled_rows(s, x, h, h, ones, scale_s, (y0, y1 - y0), bs, part).map_err(|e| conv_err(skip, e))?;
        out[..co * hw].par_chunks_mut(hw).zip(part.par_chunks(n)).for_each(|(d, v)| lrelu_add(&mut d[rows.0..rows.1], v, SLOPE));
    }
    Ok(())
}

/// True when [`cond_banded`] can run `c`: its second conv is int8.
pub fn cond_fits(c: &Condition<'_>) -> bool {
    int8(c.convs()[1]).is_some()
}

/// [`Condition::apply`] with its second conv run in row bands of [`COND_BAND_ROWS`]: `f` `[c, h, h]`,
/// `tmp` `[c, h, h]` (the hidden map), `band` at least `plan::cond_band_len` floats (one band's output),
/// `e` `[2c, h, h]` combined by `epi` (`MulInto` or `AddInto`). Each band quantises its rows of the
/// hidden map and the real rows just outside it (`PackedConv::run_rows`), so no output row is computed
/// twice and no input row is copied.
#[allow(clippy::too_many_arguments)]
pub fn cond_banded(
    c: &Condition<'_>,
    s: &mut Scratch,
    f: &[f32],
    h: usize,
    tmp: &mut [f32],
    band: &mut [f32],
    e: &mut [f32],
    epi: Epilogue,
) -> Result<()> {
    let [conv0, conv2] = c.convs();
    let Some((w, bias, act)) = int8(conv2) else {
        return Err(Error::Other(format!("refiner condition `{}`: must be int8 for the banded path", conv2.name)));
    };
    let (ci, co, hw) = (conv2.spec.c_in, conv2.spec.c_out, h * h);
    let rows = COND_BAND_ROWS.min(h);
    for (what, found, want) in [("band", band.len(), co * rows * h), ("output", e.len(), co * hw), ("hidden map", tmp.len(), ci * hw)] {
        if found < want {
            return Err(Error::Other(format!("refiner condition `{}` {what}: {found} floats, needs {want}", conv2.name)));
        }
    }
    if !matches!(epi, Epilogue::MulInto | Epilogue::AddInto) {
        return Err(Error::Other(format!("refiner condition `{}`: banded epilogue {epi:?}", conv2.name)));
    }
    conv0.run_then(s, f, h, h, tmp, Epilogue::LeakyRelu(SLOPE), &mut [], &mut |_, _| {})?;
    let tmp = &tmp[..ci * hw];
    // The whole map's scale, as the unbanded call would use.
    let scale = act.unwrap_or_else(|| act_scale_for(tmp));
    for y0 in (0..h).step_by(COND_BAND_ROWS) {
        let y1 = (y0 + COND_BAND_ROWS).min(h);
        let n = (y1 - y0) * h;
        w.run_rows(s, tmp, (h, h), None, scale, (y0, y1 - y0), bias, &mut band[..co * n]).map_err(|e| conv_err(conv2, e))?;
        // Per channel in parallel (memory-bound; the whole-map call does this in its parallel epilogue).
        let rows = e[..co * hw].par_chunks_mut(hw).map(|p| &mut p[y0 * h..y1 * h]);
        rows.zip(band[..co * n].par_chunks(n)).for_each(|(dst, got)| {
            if epi == Epilogue::MulInto {
                mul_assign(dst, got);
            } else {
                add_assign(dst, got);
            }
        });
    }
    Ok(())
}
