//! int8 convolutions whose input is computed while it is quantised, never stored in f32:
//! - `up2(x) * s` ([`PackedConv::run_upsampled`]): the x2 bilinear upsample (align_corners = false) of a
//!   low-resolution map `x` `[c_in, hl, wl]`, times a per-channel factor `s` (the refiner's modulated
//!   first StyleConv of a level, or with `s = 1` an up ResBlock's convolutions). At 512x512 and 64
//!   channels that saves a 64 MiB f32 map;
//! - `x * s` ([`PackedConv::run_scaled`]): a map times a per-channel factor (the modulated input of a
//!   level's second StyleConv; 32 MiB at 512x512).
//!
//! The values are computed on the fly, once for the max-abs scale (dynamic mode) and once straight into
//! the int8 zero-bordered map that `conv.rs` multiplies. Every value is the materialised map's:
//! `fused::bilinear_scaled`'s taps, weights and operation order
//! (`(wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d)) * s`, no FMA), `fused::scale_channels`'
//! `v * s`, so the quantised bytes, the integers and the output are bit-identical to quantising the
//! materialised map (`tests_upsample.rs`).

use rayon::prelude::*;

use super::conv::{for_each_group, output_geometry, run_i8_with, Geometry};
use super::pack::{Packed, PackedConv};
use super::{ensure, quantise_lane, QError, QIsa, QResult, KG};
use crate::fused::taps;

/// Output columns computed per step into a stack buffer (4 channels x 256 floats = 4 KiB).
const CHUNK: usize = 256;

/// A map computed on the fly: `[c, h, w]` values, produced a row segment at a time.
trait Source: Copy + Sync {
    /// Channels, rows and columns of the computed map.
    fn dims(&self) -> (usize, usize, usize);
    /// Columns `x0..x0 + dst.len()` of row `y` of channel `ch`.
    fn cols(&self, ch: usize, y: usize, x0: usize, dst: &mut [f32]);
}

/// `x * s` of a map `x` `[c, h, w]` (lengths checked by the caller).
#[derive(Clone, Copy)]
struct Scaled<'a> {
    x: &'a [f32],
    c: usize,
    h: usize,
    w: usize,
    s: &'a [f32],
}

impl Source for Scaled<'_> {
    fn dims(&self) -> (usize, usize, usize) {
        (self.c, self.h, self.w)
    }

    #[inline(always)]
    fn cols(&self, ch: usize, y: usize, x0: usize, dst: &mut [f32]) {
        let start = (ch * self.h + y) * self.w + x0;
        let sc = self.s[ch];
        // `fused::scale_channels`' `v * s`.
        let n = dst.len();
        dst.iter_mut().zip(&self.x[start..start + n]).for_each(|(d, v)| *d = v * sc);
    }
}

/// Rows `y0..y0 + h` of another source (a band of the map, for convolutions run band by band).
#[derive(Clone, Copy)]
struct Rows<S> {
    src: S,
    y0: usize,
    h: usize,
}

impl<S: Source> Source for Rows<S> {
    fn dims(&self) -> (usize, usize, usize) {
        let (c, _, w) = self.src.dims();
        (c, self.h, w)
    }

    #[inline(always)]
    fn cols(&self, ch: usize, y: usize, x0: usize, dst: &mut [f32]) {
        self.src.cols(ch, self.y0 + y, x0, dst);
    }
}

/// The low-resolution input and its per-channel factors (lengths checked by the caller).
#[derive(Clone, Copy)]
struct Up<'a> {
    x: &'a [f32],
    c: usize,
    hl: usize,
    wl: usize,
    s: &'a [f32],
}

impl Source for Up<'_> {
    fn dims(&self) -> (usize, usize, usize) {
        (self.c, 2 * self.hl, 2 * self.wl)
    }

    #[inline(always)]
    fn cols(&self, ch: usize, y: usize, x0: usize, dst: &mut [f32]) {
        self.cols_at(ch, taps(y, self.hl, 2 * self.hl), x0, dst);
    }
}

impl Up<'_> {
    /// Columns `x0..x0 + dst.len()` of output row `y` of channel `ch` (`ty` = that row's taps), by
    /// `fused::resample`'s rules: with `wl >= 2` the exact-x2 fast path (columns `2j - 1` and `2j` from
    /// inputs `j - 1` and `j` at weights 0.75 / 0.25 and 0.25 / 0.75), `taps` at the two border
    /// columns; `taps` everywhere for a 1-wide input. Interior pairs run as one loop the compiler vectorises.
    #[inline(always)]
    fn cols_at(&self, ch: usize, ty: (usize, usize, f32, f32), x0: usize, dst: &mut [f32]) {
        let (w, ow) = (self.wl, 2 * self.wl);
        let plane = &self.x[ch * self.hl * w..(ch + 1) * self.hl * w];
        let (r0, r1) = (&plane[ty.0 * w..(ty.0 + 1) * w], &plane[ty.1 * w..(ty.1 + 1) * w]);
        let (wy0, wy1, sc) = (ty.2, ty.3, self.s[ch]);
        let px = |a: usize, b: usize, wa: f32, wb: f32| (wy0 * (wa * r0[a] + wb * r0[b]) + wy1 * (wa * r1[a] + wb * r1[b])) * sc;
        let one = |x: usize| {
            if w < 2 || x == 0 || x == ow - 1 {
                let t = taps(x, w, ow);
                px(t.0, t.1, t.2, t.3)
            } else if x % 2 == 1 {
                px(x / 2, x.div_ceil(2), 0.75, 0.25)
            } else {
                px(x / 2 - 1, x / 2, 0.25, 0.75)
            }
        };
        let n = dst.len();
        // Columns before the first whole interior pair (2j - 1, 2j), 1 <= j < w.
        let starts_pair = |x: usize| w >= 2 && x % 2 == 1 && x + 1 < ow - 1;
        let mut i = 0;
        while i < n && !starts_pair(x0 + i) {
            dst[i] = one(x0 + i);
            i += 1;
        }
        if i >= n {
            return;
        }
        // Whole pairs: columns x0 + i .. x0 + i + 2 * pairs, inputs j - 1, j for j = j0 .. j0 + pairs.
        let j0 = (x0 + i).div_ceil(2);
        let pairs = ((n - i) / 2).min(w - j0);
        let (a0, a1, b0, b1) = (&r0[j0 - 1..j0 - 1 + pairs], &r0[j0..j0 + pairs], &r1[j0 - 1..j0 - 1 + pairs], &r1[j0..j0 + pairs]);
        for ((((d, &p), &q), &u), &v) in dst[i..i + 2 * pairs].chunks_exact_mut(2).zip(a0).zip(a1).zip(b0).zip(b1) {
            d[0] = (wy0 * (0.75 * p + 0.25 * q) + wy1 * (0.75 * u + 0.25 * v)) * sc;
            d[1] = (wy0 * (0.25 * p + 0.75 * q) + wy1 * (0.25 * u + 0.75 * v)) * sc;
        }
        for (k, d) in dst.iter_mut().enumerate().skip(i + 2 * pairs) {
            *d = one(x0 + k);
        }
    }
}

/// Largest finite `|value|` of row `r` (channel `r / h`) of `src`, 0 for none.
#[inline(always)]
fn row_max<S: Source>(src: S, r: usize) -> f32 {
    let (_, h, w) = src.dims();
    let mut buf = [0f32; CHUNK];
    let mut m = 0f32;
    for x0 in (0..w).step_by(CHUNK) {
        let n = CHUNK.min(w - x0);
        src.cols(r / h, r % h, x0, &mut buf[..n]);
        // A maximum is exact in any order, so chunk by chunk equals `max_abs` of the whole row.
        let c = super::max_abs_plain(&buf[..n]);
        m = if c > m { c } else { m };
    }
    m
}

/// [`row_max`], AVX2-compiled when the CPU has it.
fn row_max_fast<S: Source>(src: S, r: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected on this CPU.
        return unsafe { row_max_avx2(src, r) };
    }
    row_max(src, r)
}

/// [`row_max`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_max_avx2<S: Source>(src: S, r: usize) -> f32 {
    row_max(src, r)
}

/// The dynamic activation scale of the map `src` computes, without storing it: bitwise
/// [`super::act_scale_for`] of the materialised map. Panics on mismatched lengths (internal).
fn source_act_scale<S: Source>(src: S) -> f32 {
    let (c, h, _) = src.dims();
    let m = (0..c * h).into_par_iter().with_min_len(8).map(|r| row_max_fast(src, r)).reduce(|| 0.0, |a, b| if b > a { b } else { a });
    super::scale_of_max(m)
}

/// Writes the quantised, zero-bordered map of `src` in `conv.rs`'s layout: per channel group `cg`
/// a plane of `g.plane` little-endian u32 words holding `[h + 2p][w + 2p]` (any padding after it zero),
/// byte `t` for channel `4 * cg + t`, every byte `xor 0x80` on offset ISAs, the slack after the last
/// plane zero.
fn fill_map<S: Source>(up: S, g: &Geometry, s: f32, offset: bool, map: &mut [u8]) {
    for_each_group(g, offset, map, |zero, cg, dst| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU.
            unsafe { fill_group_avx2(up, g, s, zero, cg, dst) };
            return;
        }
        fill_group(up, g, s, zero, cg, dst);
    });
}

/// [`fill_group`] compiled for AVX2 (the same IEEE operations, wider lanes).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_group_avx2<S: Source>(up: S, g: &Geometry, s: f32, zero: u32, cg: usize, dst: &mut [u32]) {
    fill_group(up, g, s, zero, cg, dst);
}

/// Channel group `cg` into its plane `dst`: borders as `conv.rs` lays them out, then each row's pixels
/// as one word of four quantised channels (missing channels of a partial group quantise to 0).
#[inline(always)]
fn fill_group<S: Source>(up: S, g: &Geometry, s: f32, zero: u32, cg: usize, dst: &mut [u32]) {
    let (c, h, w) = up.dims();
    let first = (g.p * g.wp + g.p).min(dst.len());
    dst[..first].fill(zero);
    let mut buf = [[0f32; CHUNK]; KG];
    for y in 0..h {
        let base = (y + g.p) * g.wp + g.p;
        for x0 in (0..w).step_by(CHUNK) {
            let n = CHUNK.min(w - x0);
            let mut have = [false; KG];
            for (t, (b, hv)) in buf.iter_mut().zip(&mut have).enumerate() {
                let ch = cg * KG + t;
                if ch < c {
                    up.cols(ch, y, x0, &mut b[..n]);
                    *hv = true;
                }
            }
            let row = &mut dst[base + x0..base + x0 + n];
            if have == [true; KG] {
                let [a, b, c, d] = &buf;
                for (i, px) in row.iter_mut().enumerate() {
                    let q = (quantise_lane(a[i], s) & 0xff)
                        | (quantise_lane(b[i], s) & 0xff) << 8
                        | (quantise_lane(c[i], s) & 0xff) << 16
                        | quantise_lane(d[i], s) << 24;
                    *px = q ^ zero;
                }
            } else {
                for (i, px) in row.iter_mut().enumerate() {
                    let lane = |t: usize| if have[t] { quantise_lane(buf[t][i], s) & 0xff } else { 0 };
                    *px = (lane(0) | lane(1) << 8 | lane(2) << 16 | lane(3) << 24) ^ zero;
                }
            }
        }
        // Right border of this row and left border of the next (or the bottom border after the last).
        let end = if y + 1 < h { base + g.wp } else { dst.len() };
        dst[base + w..end].fill(zero);
    }
}

impl PackedConv<'_> {
    /// `out = conv(up2(x) * s) + bias`: `x` `[c_in, hl, wl]` is bilinearly upsampled x2
    /// (align_corners = false) and multiplied per channel by `s` `[c_in]` while it is quantised, so no
    /// f32 map of the upsampled input exists; `out` is `[c_out, 2 hl, 2 wl]`. int8 weights only.
    /// Bit-identical to `fused::bilinear_scaled` followed by [`PackedConv::run`] with the same
    /// `act_scale` (`None`: the dynamic max-abs scale of the upsampled, scaled input).
    #[allow(clippy::too_many_arguments)]
    pub fn run_upsampled(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[f32],
        hl: usize,
        wl: usize,
        s: &[f32],
        act_scale: Option<f32>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.run_upsampled_on(QIsa::detect(), scratch, x, hl, wl, s, act_scale, bias, out)
    }

    /// [`PackedConv::run_upsampled`] on a chosen int8 kernel (tests force each one).
    #[allow(clippy::too_many_arguments)]
    pub fn run_upsampled_on(
        &self,
        isa: QIsa,
        scratch: &mut crate::scratch::Scratch,
        x: &[f32],
        hl: usize,
        wl: usize,
        s: &[f32],
        act_scale: Option<f32>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        ensure!(isa.runs(), "upsampling int8 conv: kernel {isa:?} does not run on this CPU");
        let c = self.c_in;
        ensure!(matches!(self.w, Packed::I8 { .. }), "upsampling int8 conv: weight is {:?}, not I8", self.format());
        ensure!(x.len() == c * hl * wl, "upsampling int8 conv input: {} floats, [{c}, {hl}, {wl}] needs {}", x.len(), c * hl * wl);
        ensure!(s.len() == c, "upsampling int8 conv channel factors: {} values, c_in is {c}", s.len());
        let (h, w) = (2 * hl, 2 * wl);
        output_geometry(self, h, w, bias, out)?;
        if out.is_empty() {
            return Ok(());
        }
        let up = Up { x, c, hl, wl, s };
        let scale = || act_scale.unwrap_or_else(|| source_act_scale(up));
        run_i8_with(isa, self, scratch, h, w, bias, out, scale, |g, s, map| fill_map(up, g, s, isa.offset(), map))
            .map_err(|e| QError(format!("upsampling int8 conv: {}", e.0)))
    }

    /// The dynamic activation scale [`PackedConv::run_upsampled`] uses for `up2(x) * s` (`x` `[c_in, hl,
    /// wl]`), without storing the map: for callers that run the conv band by band
    /// ([`PackedConv::run_upsampled_rows`]) with the whole map's scale.
    pub fn upsampled_act_scale(&self, x: &[f32], hl: usize, wl: usize, s: &[f32]) -> QResult<f32> {
        let c = self.c_in;
        ensure!(x.len() == c * hl * wl, "upsampling int8 conv input: {} floats, [{c}, {hl}, {wl}] needs {}", x.len(), c * hl * wl);
        ensure!(s.len() == c, "upsampling int8 conv channel factors: {} values, c_in is {c}", s.len());
        Ok(source_act_scale(Up { x, c, hl, wl, s }))
    }

    /// The convolution of rows `y0..y0 + rows` of `up2(x) * s` taken as a map of its own (zero padding
    /// at the band's edges too) into `out` `[c_out, rows, 2 wl]`, quantised with `act_scale`. A caller
    /// that wants output rows `a..b` of the whole map passes the band `a - 1..b + 1` (clipped to the map)
    /// and drops the first and last rows where it added one: integer sums are exact and per pixel, so
    /// those rows are bit-identical to [`PackedConv::run_upsampled`]'s with the same scale.
    #[allow(clippy::too_many_arguments)]
    pub fn run_upsampled_rows(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[f32],
        hl: usize,
        wl: usize,
        s: &[f32],
        act_scale: f32,
        (y0, rows): (usize, usize),
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        let isa = QIsa::detect();
        let c = self.c_in;
        ensure!(matches!(self.w, Packed::I8 { .. }), "upsampling int8 conv: weight is {:?}, not I8", self.format());
        ensure!(x.len() == c * hl * wl, "upsampling int8 conv input: {} floats, [{c}, {hl}, {wl}] needs {}", x.len(), c * hl * wl);
        ensure!(s.len() == c, "upsampling int8 conv channel factors: {} values, c_in is {c}", s.len());
        ensure!(y0 + rows <= 2 * hl, "upsampling int8 conv band: rows {y0}..{} of a {}-row map", y0 + rows, 2 * hl);
        let w = 2 * wl;
        output_geometry(self, rows, w, bias, out)?;
        if out.is_empty() {
            return Ok(());
        }
        let band = Rows { src: Up { x, c, hl, wl, s }, y0, h: rows };
        run_i8_with(isa, self, scratch, rows, w, bias, out, || act_scale, |g, s, map| fill_map(band, g, s, isa.offset(), map))
            .map_err(|e| QError(format!("upsampling int8 conv band: {}", e.0)))
    }

    /// `out = conv(x * s) + bias`: `x` `[c_in, h, w]` is multiplied per channel by `s` `[c_in]` while it
    /// is quantised, so no f32 map of the scaled input exists. int8 weights only. Bit-identical to
    /// `fused::scale_channels` followed by [`PackedConv::run`] with the same `act_scale` (`None`: the
    /// dynamic max-abs scale of the scaled input).
    #[allow(clippy::too_many_arguments)]
    pub fn run_scaled(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        s: &[f32],
        act_scale: Option<f32>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.run_scaled_on(QIsa::detect(), scratch, x, h, w, s, act_scale, bias, out)
    }

    /// [`PackedConv::run_scaled`] on a chosen int8 kernel (tests force each one).
    #[allow(clippy::too_many_arguments)]
    pub fn run_scaled_on(
        &self,
        isa: QIsa,
        scratch: &mut crate::scratch::Scratch,
        x: &[f32],
        h: usize,
        w: usize,
        s: &[f32],
        act_scale: Option<f32>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        ensure!(isa.runs(), "scaling int8 conv: kernel {isa:?} does not run on this CPU");
        let c = self.c_in;
        ensure!(matches!(self.w, Packed::I8 { .. }), "scaling int8 conv: weight is {:?}, not I8", self.format());
        ensure!(x.len() == c * h * w, "scaling int8 conv input: {} floats, [{c}, {h}, {w}] needs {}", x.len(), c * h * w);
        ensure!(s.len() == c, "scaling int8 conv channel factors: {} values, c_in is {c}", s.len());
        output_geometry(self, h, w, bias, out)?;
        if out.is_empty() {
            return Ok(());
        }
        let src = Scaled { x, c, h, w, s };
        let scale = || act_scale.unwrap_or_else(|| source_act_scale(src));
        run_i8_with(isa, self, scratch, h, w, bias, out, scale, |g, s, map| fill_map(src, g, s, isa.offset(), map))
            .map_err(|e| QError(format!("scaling int8 conv: {}", e.0)))
    }
}

#[cfg(test)]
#[path = "tests_upsample.rs"]
mod tests;
