//! The maps the on-the-fly int8 convolutions (`upsample_quant.rs`) quantise without storing them in f32,
//! produced a row at a time straight into `conv.rs`'s packed words (four channels' bytes per pixel), and
//! their per-row ranges for the dynamic activation quantiser.
//!
//! Every value is the materialised map's, computed with the same IEEE operations in the same order
//! (`fused::bilinear_scaled`: `(wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d)) * s`;
//! `fused::scale_channels`: `v * s`; no FMA), and quantised by `quantise_lane`, so the words are the
//! bytes `conv::quantise_map` writes for the materialised map. The loops run over fixed blocks of [`L`]
//! pixels so that LLVM vectorises them for any target (x86-64 builds them again for AVX2 / AVX-512 in
//! `upsample_quant.rs`; aarch64 gets NEON from the same code): lanes are independent, so the vector
//! code computes each value with the scalar code's operations.

use crate::elem::Elem;
use crate::fused::taps;
use crate::qgemm::{lane_range, lanes_merged, quantise_lane, ActQuant, Range, KG};

/// Pixels (or x2 pixel pairs) per vector block: one AVX-512 register of f32, two AVX2 ones.
const L: usize = 16;

/// Columns of an f16 map widened at a time into a stack buffer (f32 maps are read in place).
const WIDEN: usize = 256;

/// Widest low-resolution row an f16 [`Up`] source takes (its rows are widened whole onto the stack: 8
/// rows of this many floats, 8 KiB; the official refiner's widest is 256); `PackedConv::up_source`
/// checks it.
pub const MAX_F16_UP_WIDTH: usize = 256;

/// A map computed on the fly: `[c, h, w]` values.
pub(super) trait Source: Copy + Sync {
    /// Channels, rows and columns of the computed map.
    fn dims(&self) -> (usize, usize, usize);

    /// Whether row `y` has values: `0..h`, and for a band of a larger map ([`Band`]) also the rows of
    /// that map just outside the band (a convolution reads them as its halo).
    fn has_row(&self, y: isize) -> bool {
        y >= 0 && (y as usize) < self.dims().1
    }

    /// Stack space [`Source::pack_row`] widens an f16 map's rows into: made once per channel group's
    /// plane ([`Source::rows`]), not per row.
    type Rows;

    /// Fresh [`Source::Rows`].
    fn rows(&self) -> Self::Rows;

    /// Row `y` (one with [`Source::has_row`]) of channel group `cg`, quantised with `a`, into the `w`
    /// words of `row`: byte `t` of a word is channel `KG * cg + t` (0 for a channel past `c`, whose
    /// weights are 0), every word `xor flip`. `bufs` is scratch (unused for f32 maps).
    fn pack_row(&self, cg: usize, y: isize, a: ActQuant, flip: u32, row: &mut [u32], bufs: &mut Self::Rows);

    /// The [`Range`] of row `y` of channel `ch`.
    fn row_range(&self, ch: usize, y: usize) -> Range;

    /// The [`Range`] of channel `ch` when a whole-plane shortcut gives it exactly (else None: the caller
    /// merges [`Source::row_range`]).
    fn plane_range(&self, _ch: usize) -> Option<Range> {
        None
    }

    /// Whether [`Source::plane_bound`] can give bounds (a cheap pass that lets the scale skip channels).
    fn bounded(&self) -> bool {
        false
    }

    /// An upper bound of channel `ch`'s finite `|values|` when a cheap one is known.
    fn plane_bound(&self, _ch: usize) -> Option<f32> {
        None
    }
}

/// Byte masks of a group's four channels: `0xff` for a channel that exists, 0 past `c`.
#[inline(always)]
fn masks(c: usize, cg: usize) -> [u32; KG] {
    std::array::from_fn(|t| if cg * KG + t < c { 0xff } else { 0 })
}

/// `x * s` of a map `x` `[c, h, w]` (lengths checked by the caller); `s: None` is `x` itself (every
/// factor 1, and `v * 1 = v` exactly for every float). An f16 `x` is widened as it is read (exact).
#[derive(Clone, Copy)]
pub(super) struct Scaled<'a, E> {
    pub x: &'a [E],
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub s: Option<&'a [f32]>,
}

impl<E: Elem> Scaled<'_, E> {
    fn factor(&self, ch: usize) -> f32 {
        self.s.map_or(1.0, |s| s[ch])
    }

    fn row(&self, ch: usize, y: usize) -> &[E] {
        &self.x[(ch * self.h + y) * self.w..][..self.w]
    }
}

/// Packs `x0..x0 + a.len()` of one row from four channels' f32 values `a`..`d` (equal lengths).
#[inline(always)]
fn pack_four(abcd: [&[f32]; KG], f: [f32; KG], m: [u32; KG], q: ActQuant, flip: u32, row: &mut [u32]) {
    let [a, b, c, d] = abcd;
    let (s, z) = (q.scale, q.zero as f32);
    for ((((px, &va), &vb), &vc), &vd) in row.iter_mut().zip(a).zip(b).zip(c).zip(d) {
        let q = (quantise_lane(va * f[0], s, z) & m[0])
            | (quantise_lane(vb * f[1], s, z) & m[1]) << 8
            | (quantise_lane(vc * f[2], s, z) & m[2]) << 16
            | (quantise_lane(vd * f[3], s, z) & m[3]) << 24;
        *px = q ^ flip;
    }
}

impl<E: Elem> Source for Scaled<'_, E> {
    type Rows = [[f32; WIDEN]; KG];

    fn rows(&self) -> Self::Rows {
        [[0f32; WIDEN]; KG]
    }

    fn dims(&self) -> (usize, usize, usize) {
        (self.c, self.h, self.w)
    }

    #[inline(always)]
    fn pack_row(&self, cg: usize, y: isize, s: ActQuant, flip: u32, row: &mut [u32], bufs: &mut Self::Rows) {
        let m = masks(self.c, cg);
        // A missing channel reads the group's first one (it exists) and masks it to 0.
        let ch: [usize; KG] = std::array::from_fn(|t| if m[t] != 0 { cg * KG + t } else { cg * KG });
        let f = ch.map(|c| self.factor(c));
        let rows = ch.map(|c| self.row(c, y as usize));
        if !E::HALF {
            let abcd = rows.map(|r| E::widen(r, &mut []));
            pack_four(abcd, f, m, s, flip, row);
            return;
        }
        for (x0, out) in (0..self.w).step_by(WIDEN).zip(row.chunks_mut(WIDEN)) {
            let x1 = x0 + out.len();
            let [b0, b1, b2, b3] = &mut *bufs;
            let abcd = [
                E::widen(&rows[0][x0..x1], b0),
                E::widen(&rows[1][x0..x1], b1),
                E::widen(&rows[2][x0..x1], b2),
                E::widen(&rows[3][x0..x1], b3),
            ];
            pack_four(abcd, f, m, s, flip, out);
        }
    }

    /// [`Source::row_range`] over the whole plane at once (the fast range pass), when its ends are finite.
    fn plane_range(&self, ch: usize) -> Option<Range> {
        let hw = self.h * self.w;
        scaled_range(E::range(&self.x[ch * hw..(ch + 1) * hw]), self.factor(ch))
    }

    /// For finite `s` the ends of `x * s` are the products of `x`'s ends ([`scaled_range`]). When those
    /// are not finite (overflow, `s` inf or NaN) the products are scanned one by one.
    #[inline(always)]
    fn row_range(&self, ch: usize, y: usize) -> Range {
        let (src, sc) = (self.row(ch, y), self.factor(ch));
        if let Some(r) = scaled_range(E::range_plain(src), sc) {
            return r;
        }
        let mut buf = [0f32; WIDEN];
        src.chunks(WIDEN).fold(Range::default(), |r, c| E::widen(c, &mut buf).iter().fold(r, |r, &v| r.with(v * sc)))
    }
}

/// Rows `y0..y0 + h` of another source: a band of its map, whose rows just outside the band (where the
/// map has them) are the band's halo, so a convolution of the band gives exactly the map's output rows.
#[derive(Clone, Copy)]
pub(super) struct Band<S> {
    pub src: S,
    pub y0: usize,
    pub h: usize,
}

impl<S: Source> Source for Band<S> {
    type Rows = S::Rows;

    fn rows(&self) -> Self::Rows {
        self.src.rows()
    }

    fn dims(&self) -> (usize, usize, usize) {
        let (c, _, w) = self.src.dims();
        (c, self.h, w)
    }

    fn has_row(&self, y: isize) -> bool {
        self.src.has_row(self.y0 as isize + y)
    }

    #[inline(always)]
    fn pack_row(&self, cg: usize, y: isize, a: ActQuant, flip: u32, row: &mut [u32], bufs: &mut Self::Rows) {
        self.src.pack_row(cg, self.y0 as isize + y, a, flip, row, bufs);
    }

    #[inline(always)]
    fn row_range(&self, ch: usize, y: usize) -> Range {
        self.src.row_range(ch, self.y0 + y)
    }
}

/// `up2(x) * s`: the x2 bilinear upsample (align_corners = false) of `x` `[c, hl, wl]` times per-channel
/// factors `s` (lengths checked by the caller; an f16 `x` at most [`MAX_F16_UP_WIDTH`] wide, its rows
/// widened as they are read).
#[derive(Clone, Copy)]
pub(super) struct Up<'a, E> {
    pub x: &'a [E],
    pub c: usize,
    pub hl: usize,
    pub wl: usize,
    pub s: &'a [f32],
}

/// One output row's vertical taps of one channel: the two input rows, their weights and the factor.
struct Taps<'a> {
    r0: &'a [f32],
    r1: &'a [f32],
    wy0: f32,
    wy1: f32,
    sc: f32,
}

impl Taps<'_> {
    /// `(wy0 * (wa * r0[a] + wb * r0[b]) + wy1 * (wa * r1[a] + wb * r1[b])) * sc`.
    #[inline(always)]
    fn px(&self, a: usize, b: usize, wa: f32, wb: f32) -> f32 {
        (self.wy0 * (wa * self.r0[a] + wb * self.r0[b]) + self.wy1 * (wa * self.r1[a] + wb * self.r1[b])) * self.sc
    }

    /// Output column `x` by `fused::resample`'s rules: with `wl >= 2` the exact-x2 weights (column `2j - 1`
    /// = inputs `j - 1`, `j` at 0.75 / 0.25, column `2j` at 0.25 / 0.75), `taps` at the two border
    /// columns; `taps` everywhere for a 1-wide input.
    #[inline(always)]
    fn col(&self, x: usize) -> f32 {
        let (w, ow) = (self.r0.len(), 2 * self.r0.len());
        if w < 2 || x == 0 || x == ow - 1 {
            let t = taps(x, w, ow);
            self.px(t.0, t.1, t.2, t.3)
        } else if x % 2 == 1 {
            self.px(x / 2, x.div_ceil(2), 0.75, 0.25)
        } else {
            self.px(x / 2 - 1, x / 2, 0.25, 0.75)
        }
    }

    /// Columns `2j - 1` (`e`) and `2j` (`o`) for the [`L`] pairs `j = j0..j0 + L` (`1 <= j0`,
    /// `j0 + L <= wl`): the same expressions as [`Taps::col`], a block the compiler vectorises.
    #[inline(always)]
    fn pairs(&self, j0: usize) -> ([f32; L], [f32; L]) {
        let (p, q) = (&self.r0[j0 - 1..j0 - 1 + L], &self.r0[j0..j0 + L]);
        let (u, v) = (&self.r1[j0 - 1..j0 - 1 + L], &self.r1[j0..j0 + L]);
        let (wy0, wy1, sc) = (self.wy0, self.wy1, self.sc);
        let (mut e, mut o) = ([0f32; L], [0f32; L]);
        for i in 0..L {
            e[i] = (wy0 * (0.75 * p[i] + 0.25 * q[i]) + wy1 * (0.75 * u[i] + 0.25 * v[i])) * sc;
            o[i] = (wy0 * (0.25 * p[i] + 0.75 * q[i]) + wy1 * (0.25 * u[i] + 0.75 * v[i])) * sc;
        }
        (e, o)
    }
}

/// The range of `x * s` for the values of `x` spanning `r`, when its ends are finite: rounding is
/// monotonic, so the products' smallest and largest are those of `r`'s ends (swapped for a negative `s`),
/// and a non-finite `x` gives a non-finite product, which a range ignores. `None` when an end is not
/// finite (overflow, `s` inf or NaN): then a finite product may lie between, and the caller scans.
fn scaled_range(r: Range, s: f32) -> Option<Range> {
    let (a, b) = (r.lo * s, r.hi * s);
    (a.is_finite() && b.is_finite()).then(|| Range::default().with(a).with(b))
}

/// First pairs of the blocks covering `j = 1..wl` (`wl > L`): steps of `L`, then one block ending at `wl`
/// (it recomputes a few pairs with the same values: cheaper than a scalar tail).
fn blocks(wl: usize) -> impl Iterator<Item = usize> {
    let last = wl - L;
    (1..last).step_by(L).chain(std::iter::once(last))
}

/// Slack of [`Up`]'s plane bound: `1 + 2^-20`, many times the blends' rounding (see `plane_bound`).
const BOUND_SLACK: f32 = 1.0 + 1.0 / 1048576.0;

/// Smallest plane maximum and bound [`Up`] gives a bound for: far above the subnormal range, so the
/// blends' rounding is relative (2^-60; the refiner's maps are many orders of magnitude larger).
const BOUND_FLOOR: f32 = 1.0 / 1_152_921_504_606_846_976.0;

/// Stack space for one channel's two widened low-resolution rows (f16 maps only).
type RowBufs = [[f32; MAX_F16_UP_WIDTH]; 2];

impl<E: Elem> Up<'_, E> {
    /// The vertical taps of output row `y` of channel `ch`: the rows of an f32 map in place (`bufs`
    /// unused, may be empty), an f16 map's widened into `bufs`.
    fn taps_of<'b>(&'b self, ch: usize, y: usize, bufs: Option<&'b mut RowBufs>) -> Taps<'b> {
        let (i0, i1, wy0, wy1) = taps(y, self.hl, 2 * self.hl);
        let plane = &self.x[ch * self.hl * self.wl..(ch + 1) * self.hl * self.wl];
        let (p0, p1) = (&plane[i0 * self.wl..][..self.wl], &plane[i1 * self.wl..][..self.wl]);
        let (r0, r1) = match bufs {
            Some([b0, b1]) => (E::widen(p0, b0), E::widen(p1, b1)),
            None => (E::widen(p0, &mut []), E::widen(p1, &mut [])),
        };
        Taps { r0, r1, wy0, wy1, sc: self.s[ch] }
    }

    /// [`Source::pack_row`] with `bufs` holding [`KG`] row buffers for an f16 map (none for f32).
    #[inline(always)]
    fn pack_row_in(&self, cg: usize, y: isize, a: ActQuant, flip: u32, row: &mut [u32], bufs: &mut [RowBufs]) {
        let (s, z) = (a.scale, a.zero as f32);
        let (m, wl) = (masks(self.c, cg), self.wl);
        let mut spare = bufs.iter_mut();
        let tp: [Taps; KG] = std::array::from_fn(|t| self.taps_of(if m[t] != 0 { cg * KG + t } else { cg * KG }, y as usize, spare.next()));
        let word = |vals: [f32; KG]| (0..KG).fold(0u32, |acc, t| acc | (quantise_lane(vals[t], s, z) & m[t]) << (8 * t)) ^ flip;
        if wl <= L {
            for (x, d) in row.iter_mut().enumerate() {
                *d = word(std::array::from_fn(|t| tp[t].col(x)));
            }
            return;
        }
        for x in [0, 2 * wl - 1] {
            row[x] = word(std::array::from_fn(|t| tp[t].col(x)));
        }
        for j0 in blocks(wl) {
            let (mut we, mut wo) = ([0u32; L], [0u32; L]);
            for t in 0..KG {
                let (e, o) = tp[t].pairs(j0);
                let (mask, sh) = (m[t], 8 * t as u32);
                for i in 0..L {
                    we[i] |= (quantise_lane(e[i], s, z) & mask) << sh;
                    wo[i] |= (quantise_lane(o[i], s, z) & mask) << sh;
                }
            }
            let out = &mut row[2 * j0 - 1..2 * j0 - 1 + 2 * L];
            for i in 0..L {
                out[2 * i] = we[i] ^ flip;
                out[2 * i + 1] = wo[i] ^ flip;
            }
        }
    }
}

impl<E: Elem> Source for Up<'_, E> {
    type Rows = [RowBufs; KG];

    fn rows(&self) -> Self::Rows {
        [[[0f32; MAX_F16_UP_WIDTH]; 2]; KG]
    }

    fn dims(&self) -> (usize, usize, usize) {
        (self.c, 2 * self.hl, 2 * self.wl)
    }

    #[inline(always)]
    fn pack_row(&self, cg: usize, y: isize, a: ActQuant, flip: u32, row: &mut [u32], bufs: &mut Self::Rows) {
        self.pack_row_in(cg, y, a, flip, row, if E::HALF { &mut bufs[..] } else { &mut [] });
    }

    fn bounded(&self) -> bool {
        true
    }

    /// `fl(fl(M |s|) * (1 + 2^-20))` with `M` the largest finite `|x|` of the low-resolution plane. Every
    /// upsampled value is a convex combination of at most four inputs with exact weights (0, 1/4, 3/4, 1:
    /// `taps` of an exact x2) that sum to 1, so its exact value is at most `M` in size; the computed
    /// one has at most five roundings (two products and a sum per row blend, then the column blend
    /// and `* s`), each a relative error of at most `2^-24` while nothing is subnormal, so `|value| <=
    /// (1 + 2^-24)^5 M |s|`, below the bound (the bound's own two roundings cost at most `2 * 2^-24`
    /// of the `2^-20` slack). A value using a non-finite input is non-finite or NaN (`0 * inf`), and
    /// the scale ignores those. `None` (no bound) when `M` or `M |s|` is below [`BOUND_FLOOR`] (where
    /// rounding near the subnormals is absolute) or the bound is not finite.
    fn plane_bound(&self, ch: usize) -> Option<f32> {
        let n = self.hl * self.wl;
        let r = E::range(&self.x[ch * n..(ch + 1) * n]);
        let m = r.hi.max(-r.lo);
        let ms = m * self.s[ch].abs();
        let b = ms * BOUND_SLACK;
        (m >= BOUND_FLOOR && ms >= BOUND_FLOOR && b.is_finite()).then_some(b)
    }

    #[inline(always)]
    fn row_range(&self, ch: usize, y: usize) -> Range {
        let mut bufs = [[0f32; MAX_F16_UP_WIDTH]; 2];
        let (tp, wl) = (self.taps_of(ch, y, E::HALF.then_some(&mut bufs)), self.wl);
        if wl <= L {
            return (0..2 * wl).fold(Range::default(), |r, x| r.with(tp.col(x)));
        }
        let (mut lo, mut hi) = ([0f32; L], [0f32; L]);
        for j0 in blocks(wl) {
            let (e, o) = tp.pairs(j0);
            lane_range(&mut lo, &mut hi, &e);
            lane_range(&mut lo, &mut hi, &o);
        }
        let edges = Range::default().with(tp.col(0)).with(tp.col(2 * wl - 1));
        edges.merge(lanes_merged(&lo, &hi))
    }
}

#[cfg(test)]
mod tests {
    use super::blocks;

    #[test]
    fn the_pair_blocks_cover_every_pair_and_stay_inside_the_row() {
        for wl in super::L + 1..super::L * 5 {
            let mut seen = vec![false; wl];
            for j0 in blocks(wl) {
                assert!(j0 >= 1 && j0 + super::L <= wl, "wl {wl}: block at {j0}");
                seen[j0..j0 + super::L].iter_mut().for_each(|s| *s = true);
            }
            assert!(seen[1..].iter().all(|&s| s), "wl {wl}: a pair is missed");
        }
    }
}
