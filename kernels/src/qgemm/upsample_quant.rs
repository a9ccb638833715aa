//! int8 convolutions whose input is computed while it is quantised, never stored in f32:
//! - `up2(x) * s` ([`PackedConv::run_upsampled`]): the x2 bilinear upsample (align_corners = false) of a
//!   low-resolution map `x` `[c_in, hl, wl]`, times a per-channel factor `s` (the refiner's modulated
//!   first StyleConv of a level, or with `s = 1` an up ResBlock's convolutions). At 512x512 and 64
//!   channels that saves a 64 MiB f32 map;
//! - `x * s` ([`PackedConv::run_scaled`]): a map times a per-channel factor (the modulated input of a
//!   level's second StyleConv; 32 MiB at 512x512).
//!
//! The values are computed on the fly, once for the range of the dynamic quantiser and once straight into
//! the int8 zero-bordered map that `conv.rs` multiplies. Every value is the materialised map's:
//! `fused::bilinear_scaled`'s taps, weights and operation order
//! (`(wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d)) * s`, no FMA), `fused::scale_channels`'
//! `v * s`, so the quantised bytes, the integers and the output are bit-identical to quantising the
//! materialised map (`tests_upsample.rs`).

use rayon::prelude::*;

use super::conv::{for_each_group, output_geometry, run_i8_with, Geometry};
use super::pack::{Packed, PackedConv};
use super::{ensure, ActQuant, QError, QIsa, QResult, Range};
use crate::elem::Elem;
pub use sources::MAX_F16_UP_WIDTH;
use sources::{Band, Scaled, Source, Up};

#[path = "sources.rs"]
mod sources;

/// [`Source::row_range`] of row `r` of the whole map (channel `r / h`), AVX-512- or AVX2-compiled when the
/// CPU has it (the same IEEE operations in wider lanes).
fn row_range_fast<S: Source>(src: S, r: usize) -> Range {
    let h = src.dims().1;
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected on this CPU.
            return unsafe { row_range_avx512(src, r / h, r % h) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU.
            return unsafe { row_range_avx2(src, r / h, r % h) };
        }
    }
    src.row_range(r / h, r % h)
}

/// [`Source::row_range`] compiled for AVX-512.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_range_avx512<S: Source>(src: S, ch: usize, y: usize) -> Range {
    src.row_range(ch, y)
}

/// [`Source::row_range`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_range_avx2<S: Source>(src: S, ch: usize, y: usize) -> Range {
    src.row_range(ch, y)
}

/// The dynamic activation quantiser of the map `src` computes, without storing it: bitwise
/// [`super::act_quant_for`] of the materialised map (a range is exact in any order). Panics on
/// mismatched lengths (internal).
///
/// A source with cheap per-channel bounds ([`Source::plane_bound`]: an x2 upsample) has its channels
/// visited in decreasing order of bound, a few at a time in parallel, and the visit stops once the next
/// bound lies inside the range found (`b <= min(hi, -lo)`): no later channel can widen it, so the result
/// is the same.
fn source_act_quant<S: Source>(src: S) -> ActQuant {
    /// Most channels sorted on the stack (no allocation); wider maps scan every channel.
    const MAX_SORTED: usize = 1024;
    let (c, h, _) = src.dims();
    let exact = |ch: usize| {
        src.plane_range(ch).unwrap_or_else(|| (0..h).map(|y| row_range_fast(src, ch * h + y)).fold(Range::default(), Range::merge))
    };
    if !src.bounded() || c > MAX_SORTED {
        return ActQuant::for_range((0..c).into_par_iter().map(exact).reduce(Range::default, Range::merge));
    }
    let mut bound = [0f32; MAX_SORTED];
    // A channel without a bound sorts first and is always scanned.
    bound[..c].par_iter_mut().enumerate().for_each(|(ch, b)| *b = src.plane_bound(ch).unwrap_or(f32::INFINITY));
    let mut order = [0u16; MAX_SORTED];
    order[..c].iter_mut().enumerate().for_each(|(i, o)| *o = i as u16);
    order[..c].sort_unstable_by(|&a, &b| bound[b as usize].total_cmp(&bound[a as usize]));
    let mut r = Range::default();
    let inside = |b: f32, r: Range| b <= r.hi && -b >= r.lo;
    for chunk in order[..c].chunks(2 * crate::matmul::threads()) {
        // Sorted: once this bound lies inside the range, every later one does.
        if inside(bound[chunk[0] as usize], r) {
            break;
        }
        let known = r;
        r = chunk
            .par_iter()
            .map(|&ch| if inside(bound[ch as usize], known) { known } else { exact(ch as usize) })
            .reduce(|| known, Range::merge);
    }
    ActQuant::for_range(r)
}

/// Writes the quantised, zero-bordered map of `src` in `conv.rs`'s layout: per channel group `cg`
/// a plane of `g.plane` little-endian u32 words holding `[h + 2p][w + 2p]`, byte `t` for channel
/// `4 * cg + t`, every byte `xor 0x80` on offset ISAs, the slack after the last plane zero. The `p`
/// border rows above and below hold the source's rows there when it has them (a [`Band`]'s halo), zeros
/// otherwise.
fn fill_map<S: Source>(src: S, g: &Geometry, a: ActQuant, offset: bool, map: &mut [u8]) {
    for_each_group(g, a, offset, map, |words, cg, dst| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F was detected on this CPU.
                unsafe { fill_group_avx512(src, g, a, words, cg, dst) };
                return;
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected on this CPU.
                unsafe { fill_group_avx2(src, g, a, words, cg, dst) };
                return;
            }
        }
        fill_group(src, g, a, words, cg, dst);
    });
}

/// [`fill_group`] compiled for AVX-512 (the same IEEE operations, wider lanes).
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_group_avx512<S: Source>(src: S, g: &Geometry, a: ActQuant, words: (u32, u32), cg: usize, dst: &mut [u32]) {
    fill_group(src, g, a, words, cg, dst);
}

/// [`fill_group`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_group_avx2<S: Source>(src: S, g: &Geometry, a: ActQuant, words: (u32, u32), cg: usize, dst: &mut [u32]) {
    fill_group(src, g, a, words, cg, dst);
}

/// Channel group `cg` into its plane `dst` (`[h + 2p][w + 2p]` words): each map row with values is a
/// zero-point left border, the packed row, a zero-point right border; every other row is zero points.
/// `words` are `for_each_group`'s zero-point word and xor.
#[inline(always)]
fn fill_group<S: Source>(src: S, g: &Geometry, a: ActQuant, (zero, flip): (u32, u32), cg: usize, dst: &mut [u32]) {
    let w = src.dims().2;
    let mut bufs = src.rows();
    for (my, line) in dst.chunks_mut(g.wp).enumerate() {
        let y = my as isize - g.p as isize;
        if line.len() == g.wp && src.has_row(y) {
            line[..g.p].fill(zero);
            src.pack_row(cg, y, a, flip, &mut line[g.p..g.p + w], &mut bufs);
            line[g.p + w..].fill(zero);
        } else {
            line.fill(zero);
        }
    }
}

impl PackedConv<'_> {
    /// `up2(x) * s` for this conv's input channels (`x` `[c_in, hl, wl]`, `s` `[c_in]`), lengths checked
    /// (and an f16 map's width, see [`MAX_F16_UP_WIDTH`]).
    fn up_source<'a, E: Elem>(&self, what: &str, x: &'a [E], (hl, wl): (usize, usize), s: &'a [f32]) -> QResult<Up<'a, E>> {
        let c = self.c_in;
        ensure!(x.len() == c * hl * wl, "{what} input: {} values, [{c}, {hl}, {wl}] needs {}", x.len(), c * hl * wl);
        ensure!(!E::HALF || wl <= MAX_F16_UP_WIDTH, "{what}: an f16 input {wl} wide, at most {MAX_F16_UP_WIDTH}");
        ensure!(s.len() == c, "{what} channel factors: {} values, c_in is {c}", s.len());
        Ok(Up { x, c, hl, wl, s })
    }

    /// `x * s` (or `x` itself without `s`) for this conv's input channels (`x` `[c_in, h, w]`), lengths
    /// checked.
    fn scaled_source<'a, E: Elem>(&self, what: &str, x: &'a [E], (h, w): (usize, usize), s: Option<&'a [f32]>) -> QResult<Scaled<'a, E>> {
        let c = self.c_in;
        ensure!(x.len() == c * h * w, "{what} input: {} values, [{c}, {h}, {w}] needs {}", x.len(), c * h * w);
        ensure!(s.is_none_or(|s| s.len() == c), "{what} channel factors: {} values, c_in is {c}", s.map_or(0, <[f32]>::len));
        Ok(Scaled { x, c, h, w, s })
    }

    /// Output rows `y0..y0 + rows` of `src` (of `h` rows) as a band source, checked.
    fn band_of<S: Source>(what: &str, src: S, h: usize, (y0, rows): (usize, usize)) -> QResult<Band<S>> {
        ensure!(y0 + rows <= h, "{what}: rows {y0}..{} of a {h}-row map", y0 + rows);
        Ok(Band { src, y0, h: rows })
    }

    /// The one int8 conv driver of every entry point below: `out` `[c_out, h, w]` = conv of the map `src`
    /// computes (quantised straight from it, never stored) + bias, with `act` or the map's dynamic
    /// quantiser. Errors name the entry point (`what`).
    #[allow(clippy::too_many_arguments)]
    fn run_source<S: Source>(
        &self,
        what: &str,
        isa: QIsa,
        scratch: &mut crate::scratch::Scratch,
        src: S,
        (h, w): (usize, usize),
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        ensure!(isa.runs(), "{what}: kernel {isa:?} does not run on this CPU");
        ensure!(matches!(self.w, Packed::I8 { .. }), "{what}: weight is {:?}, not I8", self.format());
        output_geometry(self, h, w, bias, out)?;
        if out.is_empty() {
            return Ok(());
        }
        let quant = || act.unwrap_or_else(|| source_act_quant(src));
        run_i8_with(isa, self, scratch, h, w, bias, out, quant, |g, a, map| fill_map(src, g, a, isa.offset(), map))
            .map_err(|e| QError(format!("{what}: {}", e.0)))
    }

    /// `out = conv(up2(x) * s) + bias`: `x` `[c_in, hl, wl]` is bilinearly upsampled x2
    /// (align_corners = false) and multiplied per channel by `s` `[c_in]` while it is quantised, so no
    /// f32 map of the upsampled input exists; `out` is `[c_out, 2 hl, 2 wl]`. int8 weights only.
    /// Bit-identical to `fused::bilinear_scaled` followed by [`PackedConv::run`] with the same
    /// `act` (`None`: the dynamic quantiser of the upsampled, scaled input).
    #[allow(clippy::too_many_arguments)]
    pub fn run_upsampled<E: Elem>(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[E],
        hl: usize,
        wl: usize,
        s: &[f32],
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.run_upsampled_on(QIsa::detect(), scratch, x, hl, wl, s, act, bias, out)
    }

    /// [`PackedConv::run_upsampled`] on a chosen int8 kernel (tests force each one).
    #[allow(clippy::too_many_arguments)]
    pub fn run_upsampled_on<E: Elem>(
        &self,
        isa: QIsa,
        scratch: &mut crate::scratch::Scratch,
        x: &[E],
        hl: usize,
        wl: usize,
        s: &[f32],
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        const WHAT: &str = "upsampling int8 conv";
        let up = self.up_source(WHAT, x, (hl, wl), s)?;
        self.run_source(WHAT, isa, scratch, up, (2 * hl, 2 * wl), act, bias, out)
    }

    /// The dynamic activation quantiser [`PackedConv::run_upsampled`] uses for `up2(x) * s` (`x` `[c_in, hl,
    /// wl]`), without storing the map: for callers that run the conv band by band
    /// ([`PackedConv::run_upsampled_rows`]) with the whole map's quantiser.
    pub fn upsampled_act_quant<E: Elem>(&self, x: &[E], hl: usize, wl: usize, s: &[f32]) -> QResult<ActQuant> {
        Ok(source_act_quant(self.up_source("upsampling int8 conv", x, (hl, wl), s)?))
    }

    /// Output rows `y0..y0 + rows` of [`PackedConv::run_upsampled`] with the activation quantiser
    /// `act` into `out` `[c_out, rows, 2 wl]`, bit for bit: the band's quantised input holds its
    /// `k / 2` halo rows of `up2(x) * s` (zero padding only at the map's edges), and integer sums are exact
    /// and per pixel. The kernels' scratch holds one band's int8 input instead of the whole map's.
    #[allow(clippy::too_many_arguments)]
    pub fn run_upsampled_rows<E: Elem>(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[E],
        hl: usize,
        wl: usize,
        s: &[f32],
        act: ActQuant,
        rows: (usize, usize),
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        const WHAT: &str = "upsampling int8 conv band";
        let band = Self::band_of(WHAT, self.up_source(WHAT, x, (hl, wl), s)?, 2 * hl, rows)?;
        self.run_source(WHAT, QIsa::detect(), scratch, band, (rows.1, 2 * wl), Some(act), bias, out)
    }

    /// `out = conv(x * s) + bias`: `x` `[c_in, h, w]` is multiplied per channel by `s` `[c_in]` while it
    /// is quantised, so no f32 map of the scaled input exists. int8 weights only. Bit-identical to
    /// `fused::scale_channels` followed by [`PackedConv::run`] with the same `act` (`None`: the
    /// dynamic quantiser of the scaled input).
    #[allow(clippy::too_many_arguments)]
    pub fn run_scaled<E: Elem>(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[E],
        h: usize,
        w: usize,
        s: &[f32],
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        self.run_scaled_on(QIsa::detect(), scratch, x, h, w, s, act, bias, out)
    }

    /// [`PackedConv::run_scaled`] on a chosen int8 kernel (tests force each one).
    #[allow(clippy::too_many_arguments)]
    pub fn run_scaled_on<E: Elem>(
        &self,
        isa: QIsa,
        scratch: &mut crate::scratch::Scratch,
        x: &[E],
        h: usize,
        w: usize,
        s: &[f32],
        act: Option<ActQuant>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        const WHAT: &str = "scaling int8 conv";
        let src = self.scaled_source(WHAT, x, (h, w), Some(s))?;
        self.run_source(WHAT, isa, scratch, src, (h, w), act, bias, out)
    }

    /// Output rows `y0..y0 + rows` of [`PackedConv::run`] on `x * s` (`x` `[c_in, h, w]`, `s` `[c_in]`
    /// per-channel factors, `None` for `x` itself) with the activation quantiser `act` into `out`
    /// `[c_out, rows, w]`, bit for bit: only the band and its `k / 2` halo rows are quantised (straight
    /// from `x`, no copy), and integer sums are exact and per pixel.
    #[allow(clippy::too_many_arguments)]
    pub fn run_rows<E: Elem>(
        &self,
        scratch: &mut crate::scratch::Scratch,
        x: &[E],
        (h, w): (usize, usize),
        s: Option<&[f32]>,
        act: ActQuant,
        rows: (usize, usize),
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> QResult<()> {
        const WHAT: &str = "int8 conv band";
        let band = Self::band_of(WHAT, self.scaled_source(WHAT, x, (h, w), s)?, h, rows)?;
        self.run_source(WHAT, QIsa::detect(), scratch, band, (rows.1, w), Some(act), bias, out)
    }

    /// The dynamic activation quantiser [`PackedConv::run_scaled`] uses for `x * s` (`x` `[c_in, h, w]`),
    /// without storing the map: for callers that run the conv band by band ([`PackedConv::run_rows`]).
    pub fn scaled_act_quant<E: Elem>(&self, x: &[E], h: usize, w: usize, s: &[f32]) -> QResult<ActQuant> {
        Ok(source_act_quant(self.scaled_source("scaling int8 conv", x, (h, w), Some(s))?))
    }
}

#[cfg(test)]
#[path = "tests_upsample.rs"]
mod tests;

#[cfg(test)]
#[path = "tests_lean_timing.rs"]
mod tests_lean_timing;

#[cfg(test)]
#[path = "tests_f16_maps.rs"]
mod tests_f16_maps;
