//! The int8 refiner's low-memory forms of two layers, bit-identical to the plain ones in `layers.rs`
//! (`plan::OnTheFly` says which a level uses; `tests_lowmem.rs` compares them bitwise):
//! - an up ResBlock whose conv2 and skip are int8 quantises their x2-upsampled inputs straight from the
//!   low-resolution maps (`PackedConv::run_upsampled` with unit factors), so its upsampled temporary
//!   (32 MiB at 512x512) does not exist;
//! - an SFT condition branch whose second conv is int8 runs that conv in row bands with a one-row halo
//!   (dropped), each band combined into the StyleConv output at once, so its `[2c, h, h]` output map
//!   (32 MiB at 512x512) never exists, only one band of it.
//!
//! Integer sums are exact and per pixel, and every call uses the activation scale the whole-map call
//! would (the calibrated one, or the dynamic max-abs of the whole input), so the bits cannot change.

use gaga_kernels::act::leaky_relu;
use gaga_kernels::conv::Scratch;
use gaga_kernels::fused::{add_assign, lrelu_add, mul_assign};
use gaga_kernels::qgemm::{act_scale_for, PackedConv, PackedFormat};
use gaga_kernels::winograd::Epilogue;

use super::layers::{Condition, Conv, ResBlock, SLOPE};
use super::packed::ConvKernel;
use super::plan::COND_BAND_ROWS;
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
/// `bilinear_lrelu` applies on read), conv2 quantising `up2(t1) * 1`, the skip quantising `up2(x) * 1`
/// into `t1` (`max(c_in h^2, c_out 4h^2)` floats), then the sum. `ones` has at least `c_in` ones
/// (multiplying by 1 is exact, so these are `bilinear_fast`'s values). No observation hook: a caller that
/// observes uses the plain block.
pub fn up_block(b: &ResBlock<'_>, s: &mut Scratch, x: &[f32], h: usize, ones: &[f32], t1: &mut [f32], out: &mut [f32]) -> Result<()> {
    let [conv1, conv2, skip] = b.convs();
    let (ci, co, h2) = (conv1.spec.c_in, conv2.spec.c_out, 2 * h);
    let (n_in, n_out) = (ci * h * h, co * h2 * h2);
    for (what, found, want) in [("ones", ones.len(), ci), ("t1", t1.len(), n_in.max(n_out)), ("output", out.len(), n_out)] {
        if found < want {
            return Err(Error::Other(format!("refiner up block `{}` {what}: {found} floats, needs {want}", conv1.name)));
        }
    }
    let (Some((w2, b2, a2)), Some((ws, bs, a_s))) = (int8(conv2), int8(skip)) else {
        return Err(Error::Other(format!("refiner up block `{}`: conv2 and skip must be int8 for the fused path", conv1.name)));
    };
    conv1.run(s, x, h, h, t1, &mut |_, _| {})?;
    leaky_relu(&mut t1[..n_in], SLOPE);
    w2.run_upsampled(s, &t1[..n_in], h, h, &ones[..ci], a2, b2, &mut out[..n_out]).map_err(|e| conv_err(conv2, e))?;
    ws.run_upsampled(s, &x[..n_in], h, h, &ones[..ci], a_s, bs, &mut t1[..n_out]).map_err(|e| conv_err(skip, e))?;
    lrelu_add(&mut out[..n_out], &t1[..n_out], SLOPE);
    Ok(())
}

/// True when [`cond_banded`] can run `c`: its second conv is int8.
pub fn cond_fits(c: &Condition<'_>) -> bool {
    int8(c.convs()[1]).is_some()
}

/// [`Condition::apply`] with its second conv run in row bands of [`COND_BAND_ROWS`]: `f` `[c, h, h]`,
/// `tmp` `[c, h, h]` (the hidden map), `band` at least `plan::cond_band_len` floats (one band's input
/// and output with the halo rows), `e` `[2c, h, h]` combined by `epi` (`MulInto` or `AddInto`).
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
    let rows = (COND_BAND_ROWS + 2).min(h);
    for (what, found, want) in
        [("band", band.len(), (ci + co) * rows * h), ("output", e.len(), co * hw), ("hidden map", tmp.len(), ci * hw)]
    {
        if found < want {
            return Err(Error::Other(format!("refiner condition `{}` {what}: {found} floats, needs {want}", conv2.name)));
        }
    }
    conv0.run_then(s, f, h, h, tmp, Epilogue::LeakyRelu(SLOPE), &mut [], &mut |_, _| {})?;
    let tmp = &tmp[..ci * hw];
    // The whole map's scale, as the unbanded call would use.
    let scale = act.unwrap_or_else(|| act_scale_for(tmp));
    let (bin, bout) = band.split_at_mut(ci * rows * h);
    for y0 in (0..h).step_by(COND_BAND_ROWS) {
        let y1 = (y0 + COND_BAND_ROWS).min(h);
        // Input rows a..b: the band and one real row each side where there is one (zero padding at the
        // map's edges, as in the whole-map call); output rows a..b, of which y0..y1 are exact.
        let (a, b) = (y0.saturating_sub(1), (y1 + 1).min(h));
        let n = (b - a) * h;
        for ch in 0..ci {
            bin[ch * n..(ch + 1) * n].copy_from_slice(&tmp[ch * hw + a * h..ch * hw + b * h]);
        }
        w.run(s, &bin[..ci * n], b - a, h, Some(scale), bias, &mut bout[..co * n]).map_err(|e| conv_err(conv2, e))?;
        for o in 0..co {
            let got = &bout[o * n + (y0 - a) * h..o * n + (y1 - a) * h];
            let dst = &mut e[o * hw + y0 * h..o * hw + y1 * h];
            match epi {
                Epilogue::MulInto => mul_assign(dst, got),
                Epilogue::AddInto => add_assign(dst, got),
                other => return Err(Error::Other(format!("refiner condition `{}`: banded epilogue {other:?}", conv2.name))),
            }
        }
    }
    Ok(())
}
