//! The int8 refiner's low-memory forms of two layers, bit-identical to the plain ones in `layers.rs`
//! (`plan::OnTheFly` says which a level uses; `tests_lowmem.rs` compares them bitwise):
//! - an up ResBlock whose conv2 and skip are int8 quantises their x2-upsampled inputs straight from the
//!   low-resolution maps (`PackedConv::run_upsampled` with unit factors), so its upsampled temporary
//!   (32 MiB at 512x512) does not exist;
//! - an SFT condition branch whose second conv is int8 runs that conv in row bands (each band's quantised
//!   input holds the real rows just outside it), each band combined into the StyleConv output at once, so its `[2c, h, h]` output map
//!   (32 MiB at 512x512) never exists, only one band of it.
//!
//! - the encoder's two full-size steps (`plan::Encoder`): the first (1x1) conv in row bands over its own
//!   input's planes, and the first down block's int8 conv1 in row bands, each band downsampled at once.
//!
//! Integer sums are exact and per pixel, and every call uses the activation quantiser the whole-map call
//! would (the calibrated one, or the dynamic quantiser of the whole input), so the bits cannot change.
//! Both also store f16 maps (`maps.rs`), each band rounded once after its f32 epilogue: the same
//! values as the f32 maps up to that rounding.

use gaga_kernels::act::leaky_relu;
use gaga_kernels::conv::Conv2d;
use gaga_kernels::conv::Scratch;
use gaga_kernels::fused::{bilinear_fast, bilinear_lrelu, lrelu_add};
use gaga_kernels::qgemm::{act_quant_for, ActQuant, PackedConv, PackedFormat, MAX_F16_UP_WIDTH};
use gaga_kernels::winograd::Epilogue;
use rayon::prelude::*;

use super::layers::{Condition, Conv, ResBlock, SLOPE};
use super::maps::{with_map, MapMut, MapRef};
use super::modconv::{StyleConv, ToRgb};
use super::packed::ConvKernel;
use super::plan::{side, MapMemory, OnTheFly, COND_BAND_ROWS, UP_BAND_ROWS};
use crate::error::{Error, Result};

/// An int8 conv's weights, bias and calibrated activation quantiser.
type Int8Conv<'a, 'w> = (&'a PackedConv<'w>, Option<&'a [f32]>, Option<ActQuant>);

/// The int8 weights, bias and calibrated activation quantiser of `c`, when it runs on int8 weights.
fn int8<'a, 'w>(c: &'a Conv<'w>) -> Option<Int8Conv<'a, 'w>> {
    match &c.kernel {
        ConvKernel::Quant { w, bias, act, fine: false } if w.format() == PackedFormat::I8 => Some((w, bias.as_deref(), *act)),
        _ => None,
    }
}

fn conv_err(c: &Conv<'_>, e: gaga_kernels::qgemm::QError) -> Error {
    Error::Other(format!("refiner conv `{}`: {}", c.name, e.0))
}

/// Which maps int8 level `k` of `levels` computes on the fly: what an all-int8 level would do (bands only
/// where the int8 inputs are the largest kernel scratch), cut down to what this level's convs can, then
/// to what `maps` allows. `styles` are the level's two StyleConvs, `rgb` its ToRGB.
pub fn level_plan(
    k: usize,
    levels: usize,
    up: &ResBlock<'_>,
    cond: &(Condition<'_>, Condition<'_>),
    styles: [&StyleConv<'_>; 2],
    rgb: &ToRgb<'_>,
    maps: MapMemory,
) -> OnTheFly {
    let mod_input = styles[1].mc.fuses_upsample();
    let up_input = styles[0].mc.fuses_upsample();
    let all = OnTheFly::int8(k, levels);
    let up_block = up_block_fits(up);
    let f = OnTheFly {
        up_block,
        block_bands: up_block && all.block_bands,
        up_input,
        up_bands: up_input && all.up_bands,
        cond_bands: cond_fits(&cond.0) && cond_fits(&cond.1),
        mod_input,
        mod_bands: mod_input && all.mod_bands,
        // The last level's decoder output is read by nothing after its ToRGB.
        rgb_in_place: mod_input && all.rgb_in_place,
        rgb_bands: mod_input && all.rgb_bands && rgb.mc.k == 1,
        half: false,
        half_feat: false,
    };
    // f16 maps need every conv of the level banded, the SFT's first convs int8 too, and (unless last)
    // rows the f16 upsampling source can widen on its stack: the next level upsamples this one's `dec`.
    let banded = f.up_bands && f.cond_bands && f.mod_bands && f.rgb_bands;
    let conds_int8 = cond_half_fits(&cond.0) && cond_half_fits(&cond.1);
    let half = all.half && banded && conds_int8 && (k + 1 == levels || side(k + 1) <= MAX_F16_UP_WIDTH);
    maps.restrict(OnTheFly { half, half_feat: half && all.half_feat, ..f }, k, levels)
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
/// `bilinear_fast`'s values). With `band` (at least `plan::block_band_len` floats per band, two bands)
/// both convs run in row bands of [`UP_BAND_ROWS`] with the whole maps' activation quantisers, each band's
/// sum stored into `out` at once (f32, or f16 rounded once), so `t1` needs `c_in h^2` floats and the
/// kernels' scratch one band's int8 input; without it (`out` f32 only) the skip's output goes to `t1`
/// (`max(c_in h^2, c_out 4h^2)` floats). No observation hook: a caller that observes uses the plain block.
#[allow(clippy::too_many_arguments)]
pub fn up_block(
    b: &ResBlock<'_>,
    s: &mut Scratch,
    x: &[f32],
    h: usize,
    ones: &[f32],
    t1: &mut [f32],
    band: Option<&mut [f32]>,
    mut out: MapMut,
) -> Result<()> {
    let [conv1, conv2, skip] = b.convs();
    let (ci, co, h2) = (conv1.spec.c_in, conv2.spec.c_out, 2 * h);
    let (n_in, n_out) = (ci * h * h, co * h2 * h2);
    let rows = UP_BAND_ROWS.min(h2);
    let (t1_len, band_len) = if band.is_some() { (n_in, 2 * co * rows * h2) } else { (n_in.max(n_out), 0) };
    let f16_unbanded = || Error::Other(format!("refiner up block `{}`: an f16 output needs the banded path", conv1.name));
    if band.is_none() && out.as_f32().is_none() {
        return Err(f16_unbanded());
    }
    let found = band.as_ref().map_or(0, |v| v.len());
    for (what, found, want) in [("ones", ones.len(), ci), ("t1", t1.len(), t1_len), ("output", out.len(), n_out), ("band", found, band_len)]
    {
        if found < want {
            return Err(Error::Other(format!("refiner up block `{}` {what}: {found} values, needs {want}", conv1.name)));
        }
    }
    let (Some((w2, b2, a2)), Some((ws, bs, a_s))) = (int8(conv2), int8(skip)) else {
        return Err(Error::Other(format!("refiner up block `{}`: conv2 and skip must be int8 for the fused path", conv1.name)));
    };
    conv1.run(s, x, h, h, t1, &mut |_, _| {})?;
    leaky_relu(&mut t1[..n_in], SLOPE);
    let (x, t, ones) = (&x[..n_in], &t1[..n_in], &ones[..ci]);
    let Some(band) = band else {
        let Some(out) = out.as_f32() else { return Err(f16_unbanded()) };
        w2.run_upsampled(s, t, h, h, ones, a2, b2, &mut out[..n_out]).map_err(|e| conv_err(conv2, e))?;
        ws.run_upsampled(s, x, h, h, ones, a_s, bs, &mut t1[..n_out]).map_err(|e| conv_err(skip, e))?;
        lrelu_add(&mut out[..n_out], &t1[..n_out], SLOPE);
        return Ok(());
    };
    // The whole maps' quantisers, as the unbanded calls would use.
    let quant2 = a2.map_or_else(|| w2.upsampled_act_quant(t, h, h, ones), Ok).map_err(|e| conv_err(conv2, e))?;
    let quant_s = a_s.map_or_else(|| ws.upsampled_act_quant(x, h, h, ones), Ok).map_err(|e| conv_err(skip, e))?;
    let (conv_band, skip_band) = band.split_at_mut(co * rows * h2);
    for y0 in (0..h2).step_by(rows) {
        let y1 = (y0 + rows).min(h2);
        let n = co * (y1 - y0) * h2;
        let (a, b) = (&mut conv_band[..n], &mut skip_band[..n]);
        w2.run_upsampled_rows(s, t, h, h, ones, quant2, (y0, y1 - y0), b2, a).map_err(|e| conv_err(conv2, e))?;
        ws.run_upsampled_rows(s, x, h, h, ones, quant_s, (y0, y1 - y0), bs, b).map_err(|e| conv_err(skip, e))?;
        lrelu_add(a, b, SLOPE);
        out.put_rows((h2, h2), (y0, y1), a, Epilogue::Store);
    }
    Ok(())
}

/// True when [`cond_banded`] can run `c`: its second conv is int8.
pub fn cond_fits(c: &Condition<'_>) -> bool {
    int8(c.convs()[1]).is_some()
}

/// True when [`cond_banded`] can store `c`'s hidden map in f16: both convs are int8.
pub fn cond_half_fits(c: &Condition<'_>) -> bool {
    c.convs().iter().all(|conv| int8(conv).is_some())
}

/// [`Condition::apply`] with its second conv run in row bands of [`COND_BAND_ROWS`]: `f` `[c, h, h]`,
/// `tmp` `[c, h, h]` (the hidden map), `band` at least `plan::cond_band_len` floats (one band's output),
/// `e` `[2c, h, h]` combined by `epi` (`MulInto` or `AddInto`). Each band quantises its rows of the
/// hidden map and the real rows just outside it (`PackedConv::run_rows`), so no output row is computed
/// twice and no input row is copied. An f16 hidden map (or `f`) needs the first conv int8 too
/// ([`cond_half_fits`]): it then runs in bands as well, each band's LeakyReLU output rounded once into
/// `tmp`.
#[allow(clippy::too_many_arguments)]
pub fn cond_banded(
    c: &Condition<'_>,
    s: &mut Scratch,
    f: MapRef,
    h: usize,
    mut tmp: MapMut,
    band: &mut [f32],
    mut e: MapMut,
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
            return Err(Error::Other(format!("refiner condition `{}` {what}: {found} values, needs {want}", conv2.name)));
        }
    }
    if !matches!(epi, Epilogue::MulInto | Epilogue::AddInto) {
        return Err(Error::Other(format!("refiner condition `{}`: banded epilogue {epi:?}", conv2.name)));
    }
    match (f, &mut tmp) {
        (MapRef::F32(f), MapMut::F32(t)) => conv0.run_then(s, f, h, h, t, Epilogue::LeakyRelu(SLOPE), &mut [], &mut |_, _| {})?,
        (f, tmp) => {
            let Some((w0, bias0, act0)) = int8(conv0) else {
                return Err(Error::Other(format!("refiner condition `{}`: an f16 map needs an int8 first conv", conv0.name)));
            };
            let c0 = conv0.spec.c_out;
            let quant0 = act0.unwrap_or_else(|| with_map!(f, x => act_quant_for(&x[..ci * hw])));
            for y0 in (0..h).step_by(rows) {
                let y1 = (y0 + rows).min(h);
                let out = &mut band[..c0 * (y1 - y0) * h];
                with_map!(f, x => w0.run_rows(s, &x[..ci * hw], (h, h), None, quant0, (y0, y1 - y0), bias0, out))
                    .map_err(|e| conv_err(conv0, e))?;
                leaky_relu(out, SLOPE);
                tmp.put_rows((h, h), (y0, y1), out, Epilogue::Store);
            }
        }
    }
    let hidden = tmp.as_ref();
    // The whole map's quantiser, as the unbanded call would use.
    let quant = act.unwrap_or_else(|| with_map!(hidden, x => act_quant_for(&x[..ci * hw])));
    for y0 in (0..h).step_by(rows) {
        let y1 = (y0 + rows).min(h);
        let out = &mut band[..co * (y1 - y0) * h];
        with_map!(hidden, x => w.run_rows(s, &x[..ci * hw], (h, h), None, quant, (y0, y1 - y0), bias, out))
            .map_err(|e| conv_err(conv2, e))?;
        e.put_rows((h, h), (y0, y1), out, epi);
    }
    Ok(())
}

/// The first conv (1x1, `c_out <= c_in`) of the splat `[c_in, h, h]` in row bands of [`UP_BAND_ROWS`],
/// its output `[c_out, h, h]` written over `input`'s first `c_out` planes: each band's input rows (from
/// `splat`, or from `input` itself) are read ([`conv1x1_rows`]) before its output rows replace them, and
/// no later band reads those rows. `band` holds one band of output and, for a conv that cannot read its
/// rows in place, of input (`plan::enc_band_len`). A 1x1 conv reads no halo and sums each pixel's
/// channels the same way at any width, so the bits are [`Conv::run`]'s on the whole map (tested).
pub fn first_in_place(
    conv: &Conv<'_>,
    s: &mut Scratch,
    splat: Option<&[f32]>,
    input: &mut [f32],
    h: usize,
    band: &mut [f32],
) -> Result<()> {
    let (ci, co, hw) = (conv.spec.c_in, conv.spec.c_out, h * h);
    let rows = UP_BAND_ROWS.min(h);
    let need = (ci + co) * rows * h;
    let found = splat.map_or(input.len(), <[f32]>::len);
    if conv.spec.kernel != 1 || co > ci || found < ci * hw || input.len() < co * hw || band.len() < need {
        return Err(Error::Other(format!(
            "refiner conv `{}` in place: {}x{} conv {ci} -> {co} (needs 1x1, no more outputs than inputs), input {found} floats (needs {}), band {} (needs {need})",
            conv.name,
            conv.spec.kernel,
            conv.spec.kernel,
            ci * hw,
            band.len()
        )));
    }
    let (bin, bout) = band.split_at_mut(ci * rows * h);
    // An int8 conv quantises each band straight from the map with the whole map's quantiser, taken before
    // any row is overwritten (a 1x1 band reads only its own rows).
    let quant = int8(conv).map(|(_, _, act)| act.unwrap_or_else(|| act_quant_for(&splat.unwrap_or(input)[..ci * hw])));
    for y0 in (0..h).step_by(rows) {
        let y1 = (y0 + rows).min(h);
        let out = &mut bout[..co * (y1 - y0) * h];
        conv1x1_rows(conv, s, &splat.unwrap_or(input)[..ci * hw], h, (y0, y1), quant, bin, out)?;
        MapMut::F32(&mut input[..co * hw]).put_rows((h, h), (y0, y1), out, Epilogue::Store);
    }
    Ok(())
}

/// Rows `y0..y1` of the 1x1 conv `conv` of `x` `[c_in, h, h]` into `out` `[c_out, y1 - y0, h]`: an int8
/// conv quantises them straight from `x` with the whole map's quantiser `quant` (`PackedConv::run_rows`), a packed
/// float one reads them in place when they fill its strips (`PackedConv::run_float_rows`), any other
/// copies them into `tmp` and runs on that (a 1x1 conv reads no halo and sums each pixel's channels the
/// same way at any width: the whole map's bits).
#[allow(clippy::too_many_arguments)]
fn conv1x1_rows(
    conv: &Conv<'_>,
    s: &mut Scratch,
    x: &[f32],
    h: usize,
    (y0, y1): (usize, usize),
    quant: Option<ActQuant>,
    tmp: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let (ci, co, hw, n) = (conv.spec.c_in, conv.spec.c_out, h * h, (y1 - y0) * h);
    if let (Some((w, bias, _)), Some(quant)) = (int8(conv), quant) {
        return w.run_rows(s, x, (h, h), None, quant, (y0, y1 - y0), bias, out).map_err(|e| conv_err(conv, e));
    }
    // A float packed 1x1 conv reads the band's rows in place where they fill its strips.
    if let ConvKernel::Quant { w, bias, .. } = &conv.kernel {
        if w.run_float_rows(s, x, (h, h), (y0, y1 - y0), bias.as_deref(), &mut out[..co * n]).map_err(|e| conv_err(conv, e))? {
            return Ok(());
        }
    }
    for (c, dst) in tmp[..ci * n].chunks_mut(n).enumerate() {
        dst.copy_from_slice(&x[c * hw + y0 * h..c * hw + y1 * h]);
    }
    let spec = Conv2d { c_in: ci, c_out: co, kernel: 1, stride: 1, pad: 0 };
    conv.kernel.run(s, &spec, &tmp[..ci * n], y1 - y0, h, &mut out[..co * n])
}

/// True when [`down_block_banded`] can run `b`: a down block whose conv1 is int8.
pub fn down_fits(b: &ResBlock<'_>) -> bool {
    int8(b.convs()[0]).is_some()
}

/// [`ResBlock::run`] of a down block (`x` `[c, h, h]` -> `out` `[c_out, h/2, h/2]`, `h` even) without its
/// full-size temporaries: conv1 (int8) in row bands of [`UP_BAND_ROWS`] (its whole input's activation
/// quantiser; each band quantises the real rows just outside it), each band activated and downsampled at once
/// (an exact x0.5 of rows `2y`, `2y + 1`, which a band holds both of) into `t2`; conv2 on `t2` into `out`;
/// then `t2` holds the downsampled input and the 1x1 skip runs on it in row bands ([`conv1x1_rows`], the
/// whole map's quantiser), each band summed into `out` at once. `band` holds `plan::enc_band_len` floats. The
/// same bits as [`ResBlock::run`] (tested). No observation hook.
pub fn down_block_banded(
    b: &ResBlock<'_>,
    s: &mut Scratch,
    x: &[f32],
    h: usize,
    band: &mut [f32],
    t2: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let [conv1, conv2, skip] = b.convs();
    let (ci, co, h2) = (conv1.spec.c_in, conv2.spec.c_out, h / 2);
    let rows = UP_BAND_ROWS.min(h);
    let (n_in, n_lo, n_out) = (ci * h * h, ci * h2 * h2, co * h2 * h2);
    let band_len = (ci * (rows * h + (rows / 2) * h2)).max((ci + co) * rows.min(h2) * h2);
    let checks = [("input", x.len(), n_in), ("band", band.len(), band_len), ("t2", t2.len(), n_lo), ("output", out.len(), n_out)];
    for (what, found, want) in checks {
        if found < want {
            return Err(Error::Other(format!("refiner down block `{}` {what}: {found} floats, needs {want}", conv1.name)));
        }
    }
    let Some((w1, b1, a1)) = int8(conv1) else {
        return Err(Error::Other(format!("refiner down block `{}`: conv1 must be int8 for the banded path", conv1.name)));
    };
    if !h.is_multiple_of(2) || !rows.is_multiple_of(2) || b.out_side(h) != h2 || skip.spec.kernel != 1 {
        return Err(Error::Other(format!(
            "refiner down block `{}`: banded path needs an even {h}x{h} map halved and a 1x1 skip",
            conv1.name
        )));
    }
    let x = &x[..n_in];
    let quant = a1.unwrap_or_else(|| act_quant_for(x));
    {
        let (conv_band, low) = band.split_at_mut(ci * rows * h);
        let mut dst = MapMut::F32(&mut t2[..n_lo]);
        for y0 in (0..h).step_by(rows) {
            let y1 = (y0 + rows).min(h);
            let part = &mut conv_band[..ci * (y1 - y0) * h];
            w1.run_rows(s, x, (h, h), None, quant, (y0, y1 - y0), b1, part).map_err(|e| conv_err(conv1, e))?;
            let lo_rows = (y1 - y0) / 2;
            let down = &mut low[..ci * lo_rows * h2];
            bilinear_lrelu(part, ci, y1 - y0, h, lo_rows, h2, SLOPE, down);
            dst.put_rows((h2, h2), (y0 / 2, y1 / 2), down, Epilogue::Store);
        }
    }
    conv2.run(s, &t2[..n_lo], h2, h2, out, &mut |_, _| {})?;
    bilinear_fast(x, ci, h, h, h2, h2, &mut t2[..n_lo]);
    let t2 = &t2[..n_lo];
    let skip_quant = int8(skip).map(|(_, _, act)| act.unwrap_or_else(|| act_quant_for(t2)));
    let rows2 = UP_BAND_ROWS.min(h2);
    let (tmp, part) = band.split_at_mut(ci * rows2 * h2);
    let hw2 = h2 * h2;
    for y0 in (0..h2).step_by(rows2) {
        let y1 = (y0 + rows2).min(h2);
        let n = (y1 - y0) * h2;
        let part = &mut part[..co * n];
        conv1x1_rows(skip, s, t2, h2, (y0, y1), skip_quant, tmp, part)?;
        // `out = lrelu(conv2) + skip`, per channel in parallel (a memory-bound pass).
        let dst = out[..n_out].par_chunks_mut(hw2).map(|p| &mut p[y0 * h2..y1 * h2]);
        dst.zip(part.par_chunks(n)).for_each(|(d, v)| lrelu_add(d, v, SLOPE));
    }
    Ok(())
}
