//! The refiner's schedule as buffers and steps, recorded in exactly the order `Refiner::run_inner` uses
//! them, and placed once in one arena (`arena.rs`). A step is one call that reads and writes several maps
//! at once (a ResBlock, a modulated conv); every buffer a step touches is alive for the whole step.

use super::arena::{BufId, Plan, Schedule};
use super::maps::arena_len;

mod modes;
use crate::config::RefinerConfig;
use crate::error::{Error, Result};
pub use modes::{settle_half, Encoder, MapMemory, OnTheFly};

/// Side of level `k` (4, 8, ...).
pub fn side(k: usize) -> usize {
    4 << k
}

/// One down block's temporaries (its input is `first` or a skip, its output the next skip).
pub struct DownIds {
    pub t1: BufId,
    pub t2: BufId,
}

/// Rows per band of an SFT condition's second conv computed band by band ([`OnTheFly::cond_bands`]):
/// a 1 MiB output band at 512x512 instead of a 32 MiB map. Each band's quantised input holds the real
/// rows just outside it (`PackedConv::run_rows`), so banding computes no row twice.
pub const COND_BAND_ROWS: usize = 16;

/// Output rows per band of a level's first StyleConv run band by band ([`OnTheFly::up_bands`]): one
/// band's output is 1 MiB at 512x512 and its int8 input map (with a halo row each side) 0.6 MiB, instead
/// of the whole map's 16.1 MiB in the kernels' scratch.
pub const UP_BAND_ROWS: usize = 16;

/// Floats of [`LevelIds::cond_x`] for a banded level `k`: one band's output (`d[k + 1]` channels).
pub fn cond_band_len(r: &RefinerConfig, k: usize) -> usize {
    let h = side(k + 1);
    r.decoder_channels[k + 1] * COND_BAND_ROWS.min(h) * h
}

/// Floats of [`LevelIds::up_band`] (and `mod_band`) for a banded level `k`: one band of a StyleConv's
/// output (`d[k + 1]` channels).
pub fn up_band_len(r: &RefinerConfig, k: usize) -> usize {
    let h = side(k + 1);
    r.decoder_channels[k + 1] * UP_BAND_ROWS.min(h) * h
}

/// Floats of [`LevelIds::rgb_band`] for a banded level `k`: one band of ToRGB's output and, for a float
/// ToRGB (modulated on the band), one of its input (`d[k + 1]` channels).
pub fn rgb_band_len(r: &RefinerConfig, k: usize) -> usize {
    let h = side(k + 1);
    (r.decoder_channels[k + 1] + r.out_channels) * UP_BAND_ROWS.min(h) * h
}

/// Floats of [`LevelIds::block_band`] for a banded level `k`: one band of the up block's conv2 output and
/// one of its skip's (`u[k + 1]` channels each), summed in f32 before the band is stored.
pub fn block_band_len(r: &RefinerConfig, k: usize) -> usize {
    let h = side(k + 1);
    2 * r.unet_channels[k + 1] * UP_BAND_ROWS.min(h) * h
}

/// One decoder level `k` (side(k) -> side(k + 1)), in run order. A map the level computes on the fly
/// ([`OnTheFly`]) has an empty buffer.
pub struct LevelIds {
    /// Up block: temporaries and the UNet feature at side(k + 1).
    pub t1: BufId,
    pub t2: BufId,
    pub feat: BufId,
    /// One output band of the up block when it runs in bands (else empty).
    pub block_band: BufId,
    /// First StyleConv: its modulated, upsampled input (None when an int8 conv quantises it straight
    /// from the previous level's map, see [`schedule`]) and its output (SFT applied later in place).
    pub din_up: Option<BufId>,
    /// One output band of that conv when it runs in bands (else empty).
    pub up_band: BufId,
    pub e: BufId,
    /// SFT condition: the hidden map and the scale, then the shift, map.
    pub cond_t: BufId,
    pub cond_x: BufId,
    /// Second StyleConv: modulated input and the level's decoder output.
    pub din2: BufId,
    pub dec: BufId,
    /// One output band of the second StyleConv when it runs in bands (else empty).
    pub mod_band: BufId,
    /// ToRGB: the upsampled previous RGB, the modulated input, the level's RGB.
    pub rgb_up: BufId,
    pub din3: BufId,
    pub rgb: BufId,
    /// One output band of ToRGB when it runs in bands (else empty).
    pub rgb_band: BufId,
}

/// The schedule of `r` with `fly` placed in one arena, the encoder planned as `enc` where that gives a
/// smaller arena than planning it plainly (the savings cost band buffers, which a small model's encoder
/// does not repay). Returns the plan, its buffers and the encoder plan used.
pub fn place_best(r: &RefinerConfig, enc: Encoder, fly: &[OnTheFly], shared: bool) -> (Plan, Ids, Encoder) {
    let (s, ids) = schedule(r, Encoder::default(), fly);
    let plain = (Plan::place(s, shared), ids, Encoder::default());
    if enc == Encoder::default() {
        return plain;
    }
    let (s, ids) = schedule(r, enc, fly);
    let saving = (Plan::place(s, shared), ids, enc);
    if saving.0.len() < plain.0.len() {
        saving
    } else {
        plain
    }
}

/// Floats of [`Ids::enc_band`]: the most of one band of the first conv's input and output, one of the
/// first down block's conv1 output and its downsampled rows, and one of its skip's input and output.
pub fn enc_band_len(r: &RefinerConfig) -> usize {
    let (h, levels) = (r.size, r.levels());
    let rows = UP_BAND_ROWS.min(h);
    let (u, d) = (r.unet_channels[levels], r.unet_channels[levels.saturating_sub(1)]);
    let first = (r.in_channels + u) * rows * h;
    let down = u * (rows * h + (rows / 2) * (h / 2));
    // The skip's bands on the half-size map: input and output rows.
    let skip = (u + d) * UP_BAND_ROWS.min(h / 2) * (h / 2);
    first.max(down).max(skip)
}

/// Every buffer of a run.
pub struct Ids {
    /// The splat `[in_channels, size, size]` for `Refiner::run_input` (dead after the first conv). With
    /// [`Encoder::first_in_place`] only its first `u[levels]` planes (the first conv's output, `first`),
    /// and `input_tail` the rest, glued after it.
    pub input: BufId,
    pub input_tail: Option<BufId>,
    pub first: BufId,
    /// The encoder's band buffer ([`enc_band_len`]; empty without [`Encoder`] savings).
    pub enc_band: BufId,
    pub down: Vec<DownIds>,
    /// `skips[k]` at side(k): the down blocks' outputs, read again by up level k.
    pub skips: Vec<BufId>,
    /// `final_conv` output at 4x4 (also the UNet feature entering level 0).
    pub head: BufId,
    pub din0: BufId,
    pub dec0: BufId,
    pub din_rgb0: BufId,
    pub rgb0: BufId,
    pub levels: Vec<LevelIds>,
}

/// Checks what the schedule and the layers rely on: levels 4x4 .. size, one UNet and one decoder width
/// per level, and decoder width = 2 x UNet width from level 1 on (the SFT maps).
pub fn validate(r: &RefinerConfig) -> Result<()> {
    // Not `r.levels()`: that underflows on an empty list.
    let (u, d) = (&r.unet_channels, &r.decoder_channels);
    let levels = u.len().saturating_sub(1);
    if levels == 0 || d.len() != levels + 1 || u.len() != levels + 1 || side(levels) != r.size {
        return Err(Error::Config(format!(
            "refiner: size {} needs {} UNet and decoder channel entries (4x4 .. size), found {} and {}",
            r.size,
            (r.size.max(4) / 4).trailing_zeros() + 1,
            u.len(),
            d.len()
        )));
    }
    if let Some(k) = (1..=levels).find(|&k| d[k] != 2 * u[k]) {
        return Err(Error::Config(format!(
            "refiner level {k}: SFT needs decoder channels = 2 x UNet channels, found {} and {}",
            d[k], u[k]
        )));
    }
    Ok(())
}

/// Records the run of a refiner with config `r` (checked by [`validate`]). `fly[k]` says which of level
/// k's maps are computed on the fly (missing entries: none), and those buffers are empty. One schedule
/// serves every precision: only those buffers' sizes differ.
pub fn schedule(r: &RefinerConfig, enc: Encoder, fly: &[OnTheFly]) -> (Schedule, Ids) {
    let (u, d, oc, levels) = (&r.unet_channels, &r.decoder_channels, r.out_channels, r.levels());
    let area = |k: usize| side(k) * side(k);
    let mut s = Schedule::default();
    let (input, input_tail, first) = if enc.first_in_place {
        let first = s.buf(u[levels] * area(levels));
        let tail = s.buf(r.in_channels.saturating_sub(u[levels]) * area(levels));
        s.glue(first, tail);
        (first, Some(tail), first)
    } else {
        (s.buf(r.in_channels * area(levels)), None, s.buf(u[levels] * area(levels)))
    };
    let enc_band = s.buf(if enc.first_in_place || enc.down_bands { enc_band_len(r) } else { 0 });
    let mut skips = vec![0; levels];
    let mut down = Vec::with_capacity(levels);
    for i in 0..levels {
        let lo = levels - 1 - i;
        let (ci, co) = (u[lo + 1], u[lo]);
        s.step();
        s.touch(if i == 0 { first } else { skips[lo + 1] });
        let banded = i == 0 && enc.down_bands;
        if banded {
            s.touch(enc_band);
        }
        // A banded block needs no `t1` (its bands are in `enc_band`).
        let t1 = s.buf(if banded { 0 } else { (ci * area(lo + 1)).max(co * area(lo)) });
        let t2 = s.buf(ci * area(lo));
        skips[lo] = s.buf(co * area(lo));
        down.push(DownIds { t1, t2 });
    }
    s.step();
    s.touch(skips[0]);
    let head = s.buf(u[0] * 16);
    s.step();
    let (din0, dec0) = (s.buf(d[0] * 16), s.buf(d[0] * 16));
    s.step();
    s.touch(dec0);
    let (din_rgb0, rgb0) = (s.buf(d[0] * 16), s.buf(oc * 16));
    let (mut feat, mut dec, mut rgb) = (head, dec0, rgb0);
    let mut lv = Vec::with_capacity(levels);
    for k in 0..levels {
        let a2 = area(k + 1);
        // The skip is added into the UNet feature in a step of its own, so it is free for the up block.
        s.step();
        s.touch(feat);
        s.touch(skips[k]);
        s.step();
        s.touch(feat);
        let fk = fly.get(k).copied().unwrap_or_default();
        let unless = |on: bool, len: usize| if on { 0 } else { len };
        let banded_block = fk.up_block && fk.block_bands;
        let t1 = s.buf(if banded_block { u[k] * area(k) } else { (u[k] * area(k)).max(u[k + 1] * a2) });
        let t2 = s.buf(unless(fk.up_block, u[k] * a2));
        let f = s.buf(arena_len(u[k + 1] * a2, fk.half_feat));
        let block_band = s.buf(if banded_block { block_band_len(r, k) } else { 0 });
        s.step();
        s.touch(dec);
        let din_up = (!fk.up_input).then(|| s.buf(d[k] * a2));
        let up_band = s.buf(if fk.up_input && fk.up_bands { up_band_len(r, k) } else { 0 });
        let e = s.buf(arena_len(d[k + 1] * a2, fk.half));
        s.step();
        s.touch(f);
        s.touch(e);
        let cond_t = s.buf(arena_len(u[k + 1] * a2, fk.half));
        let cond_x = s.buf(if fk.cond_bands { cond_band_len(r, k) } else { d[k + 1] * a2 });
        s.step();
        s.touch(e);
        let din2 = s.buf(unless(fk.mod_input, d[k + 1] * a2));
        let dk = s.buf(arena_len(d[k + 1] * a2, fk.half));
        let mod_band = s.buf(if fk.mod_input && fk.mod_bands { up_band_len(r, k) } else { 0 });
        s.step();
        s.touch(rgb);
        s.touch(dk);
        let rgb_up = s.buf(oc * a2);
        let din3 = s.buf(unless(fk.rgb_in_place || fk.rgb_bands, d[k + 1] * a2));
        let rk = s.buf(oc * a2);
        let rgb_band = s.buf(if fk.rgb_bands { rgb_band_len(r, k) } else { 0 });
        lv.push(LevelIds {
            t1,
            t2,
            feat: f,
            block_band,
            din_up,
            up_band,
            e,
            cond_t,
            cond_x,
            din2,
            dec: dk,
            mod_band,
            rgb_up,
            din3,
            rgb: rk,
            rgb_band,
        });
        (feat, dec, rgb) = (f, dk, rk);
    }
    s.step();
    s.touch(rgb);
    (s, Ids { input, input_tail, first, enc_band, down, skips, head, din0, dec0, din_rgb0, rgb0, levels: lv })
}

/// The planned arena of a refiner with config `r`, and the same buffers without sharing.
pub struct ArenaReport {
    /// Bytes of the planned arena.
    pub planned_bytes: usize,
    /// Bytes alive together at the busiest step (a lower bound for any placement).
    pub peak_live_bytes: usize,
    /// Bytes with one region per buffer (no reuse at all).
    pub unshared_bytes: usize,
}

/// Plans the arena for `r` with every map in f32 (fp32 and fp16 layers), without loading weights (for
/// `gaga bench` and memory budgets).
pub fn report(r: &RefinerConfig) -> Result<ArenaReport> {
    report_levels(r, Encoder::default(), &[])
}

/// [`report`] for a refiner whose levels `k` with `int8[k]` are all-int8 and compute on the fly what
/// `mode` allows of [`OnTheFly::int8`] (an all-int8 refiner: `vec![true; r.levels()]`), as `Refiner::new`
/// plans them (the encoder as [`Encoder::for_mode`] when some level keeps f16 maps).
pub fn report_int8(r: &RefinerConfig, int8: &[bool], mode: MapMemory) -> Result<ArenaReport> {
    let levels = r.unet_channels.len().saturating_sub(1);
    let fly: Vec<OnTheFly> = int8
        .iter()
        .enumerate()
        .map(|(k, &on)| if on { mode.restrict(OnTheFly::int8(k, levels), k, levels) } else { OnTheFly::default() })
        .collect();
    let fly = settle_half(fly);
    // As `Refiner::new`: the encoder's savings come with f16 maps in some level.
    let enc = if fly.iter().any(|f| f.half) { Encoder::for_mode(mode) } else { Encoder::default() };
    report_levels(r, enc, &fly)
}

/// [`report`] with the encoder planned as `enc` says and level k's maps computed on the fly as `fly[k]`.
pub fn report_levels(r: &RefinerConfig, enc: Encoder, fly: &[OnTheFly]) -> Result<ArenaReport> {
    validate(r)?;
    let (planned, _, enc) = place_best(r, enc, fly, true);
    let unshared = Plan::place(schedule(r, enc, fly).0, false);
    Ok(ArenaReport { planned_bytes: 4 * planned.len(), peak_live_bytes: 4 * planned.peak_live(), unshared_bytes: 4 * unshared.len() })
}

#[cfg(test)]
#[path = "tests_plan.rs"]
mod tests;
