//! The int8 convolution driver: an implicit GEMM over a quantised, zero-bordered copy of the input.
//!
//! The input `[c_in, h, w]` is quantised once per call into `[G][h + 2p][w + 2p][4]` bytes (channels in
//! groups of 4, `p = k / 2` zero border, planes `stride >= plane` words apart, see [`plane_stride`]).
//! Output pixel `(oy, ox)` becomes the flat column `j = oy * (w + 2p) + ox`; its tap `(ky, kx)` of
//! channel group `cg` is then the 4 bytes at `(cg * stride + j + ky * (w + 2p) + kx) * 4`, so a strip of
//! consecutive columns is one contiguous run per inner group and the micro-kernels read it in place
//! through an offset table (no im2col copy). Columns with `ox >= w` (the border) are computed and
//! dropped. Work is split into tasks of column blocks x output panels (`plan.rs`); integer sums are
//! exact, so blocking and threading cannot change a result.

use rayon::prelude::*;

use super::epilogue::{epilogue, Terms, Tile};
use super::kernels::micro_i8;
use super::pack::{Packed, PackedConv};
use super::plan::Plan;
use super::{act_quant_for, ensure, quantise_lane, ActQuant, QError, QIsa, QResult, KG, MR};
use crate::matmul::{threads, SyncPtr};
use crate::scratch::{run_tiled_in, tiled_len, tiled_workers, Scratch};

/// Most inner groups per block: a 32-column strip of 160 groups is 20 KiB, the 8-row panel slice 5 KiB
/// (both stay in a 48 KiB L1). Measured against 64 (one thread, alternating in one process): 3-6 % faster
/// on the refiner's large and thin 3x3 layers (fewer accumulator tile reloads, no short tail block).
const KCG: usize = 160;

/// Checked sizes of one call.
pub(super) struct Geometry {
    pub p: usize,
    pub wp: usize,
    pub plane: usize,
    /// Words from one channel group's plane to the next (>= `plane`, see [`plane_stride`]).
    pub stride: usize,
    pub cg: usize,
    pub n_flat: usize,
}

impl Geometry {
    /// Calls `run(k, pixel, len)` for each run of the flat columns `j0..j0 + ncols` that are output pixels of
    /// a `w`-wide map: block column `j0 + k` onwards is output pixel `pixel` (`oy * w + ox`) onwards, for
    /// `len` columns. The border columns (`ox >= w`) are skipped. Shared by every epilogue.
    #[inline(always)]
    pub(super) fn pixel_runs(&self, j0: usize, ncols: usize, w: usize, mut run: impl FnMut(usize, usize, usize)) {
        let mut j = j0;
        while j < j0 + ncols {
            let (oy, ox) = (j / self.wp, j % self.wp);
            let step = (self.wp - ox).min(j0 + ncols - j);
            if ox < w {
                run(j - j0, oy * w + ox, step.min(w - ox));
            }
            j += step;
        }
    }
}

/// Validates a conv call's buffers and returns its geometry.
pub(super) fn geometry(pc: &PackedConv, x: &[f32], h: usize, w: usize, bias: Option<&[f32]>, out: &[f32]) -> QResult<Geometry> {
    let c_in = pc.c_in;
    ensure!(x.len() == c_in * h * w, "packed conv input: {} floats, [{c_in}, {h}, {w}] needs {}", x.len(), c_in * h * w);
    output_geometry(pc, h, w, bias, out)
}

/// [`geometry`] without the input check (for callers whose input is not an f32 map: `upsample_quant.rs`).
pub(super) fn output_geometry(pc: &PackedConv, h: usize, w: usize, bias: Option<&[f32]>, out: &[f32]) -> QResult<Geometry> {
    let (c_in, c_out) = (pc.c_in, pc.c_out);
    ensure!(out.len() == c_out * h * w, "packed conv output: {} floats, [{c_out}, {h}, {w}] needs {}", out.len(), c_out * h * w);
    if let Some(b) = bias {
        ensure!(b.len() == c_out, "packed conv bias: {} values, c_out is {c_out}", b.len());
    }
    let p = pc.k / 2;
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let cg = c_in.div_ceil(KG);
    let stride = plane_stride(hp * wp);
    ensure!(cg * stride * KG < u32::MAX as usize / 2, "packed conv: input [{c_in}, {h}, {w}] too large for 32-bit offsets");
    Ok(Geometry { p, wp, plane: hp * wp, stride, cg, n_flat: h * wp })
}

/// Words between consecutive channel-group planes of the quantised map. A strip's loads walk every
/// group at the same pixel, so the groups' addresses modulo 4 KiB pick their L1 sets: planes of
/// 514 x 514 or 258 x 258 words lie 16 bytes apart modulo 4 KiB, so 16 groups x 3 rows fight over a
/// few 12-way sets and every load comes from L2. Large planes are therefore padded to 17 cache lines
/// past a 4 KiB multiple (17 is odd, so 64 consecutive groups start in 64 different sets), which
/// keeps 16-word alignment; planes under 16 KiB stay unpadded (padding would cost a large share).
pub(super) fn plane_stride(plane: usize) -> usize {
    const WORDS_4K: usize = 1024;
    const OFFSET: usize = 17 * 16;
    if plane < 4 * WORDS_4K || super::plan::old(super::plan::OLD_STRIDE) {
        return plane;
    }
    let base = plane - plane % WORDS_4K + OFFSET;
    if base >= plane {
        base
    } else {
        base + WORDS_4K
    }
}

/// int8 convolution of `x` into `out` on `isa` (see [`PackedConv::run_on`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_i8(
    isa: QIsa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    x: &[f32],
    h: usize,
    w: usize,
    act: Option<ActQuant>,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> QResult<()> {
    run_i8_timed(isa, pc, scratch, x, h, w, act, bias, out, None)
}

/// [`run_i8`] reporting where its time goes to `probe` (the phase-split timing test).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_i8_timed(
    isa: QIsa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    x: &[f32],
    h: usize,
    w: usize,
    act: Option<ActQuant>,
    bias: Option<&[f32]>,
    out: &mut [f32],
    probe: Probe,
) -> QResult<()> {
    geometry(pc, x, h, w, bias, out)?;
    let quant = || act.unwrap_or_else(|| act_quant_for(x));
    let fill = |g: &Geometry, a, map: &mut [u8]| quantise_map(x, pc.c_in, h, w, g, a, isa.offset(), map);
    run_i8_probed(isa, pc, scratch, h, w, bias, out, quant, fill, probe)
}

/// [`run_i8`] on an input the caller supplies: `quant()` gives the activation quantiser, `fill(g, a, map)`
/// writes the quantised, zero-bordered map exactly as `quantise_map` would (`upsample_quant.rs` quantises
/// an upsampled input straight from its low-resolution map). Checking the input is the caller's job.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_i8_with(
    isa: QIsa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    h: usize,
    w: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    quant: impl FnOnce() -> ActQuant,
    fill: impl FnOnce(&Geometry, ActQuant, &mut [u8]),
) -> QResult<()> {
    run_i8_probed(isa, pc, scratch, h, w, bias, out, quant, fill, None)
}

/// A phase of an int8 convolution call, as reported to a [`Probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// `quant()`: the range pass of a dynamic quantiser.
    Scale,
    /// `fill()`: the quantise pass.
    Fill,
    /// One task's micro-kernel loops (summed over tasks, so over threads).
    Gemm,
    /// One task's epilogue (summed over tasks).
    Epilogue,
    /// The wall time of the parallel GEMM + epilogue region.
    Region,
    /// How many workers ran the region (reported as a count, not seconds).
    Workers,
}

/// Receives each phase's seconds (timing tests only; calls pass `None` and read no clock).
pub(super) type Probe<'a> = Option<&'a (dyn Fn(Phase, f64) + Sync)>;

/// Elapsed seconds since `t0`, reported to `probe` as `phase` (nothing when there is no probe).
fn report(probe: Probe, phase: Phase, t0: Option<std::time::Instant>) {
    if let (Some(p), Some(t0)) = (probe, t0) {
        p(phase, t0.elapsed().as_secs_f64());
    }
}

/// [`run_i8_with`] reporting where its time goes to `probe`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_i8_probed(
    isa: QIsa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    h: usize,
    w: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    quant: impl FnOnce() -> ActQuant,
    fill: impl FnOnce(&Geometry, ActQuant, &mut [u8]),
    probe: Probe,
) -> QResult<()> {
    let clock = || probe.map(|_| std::time::Instant::now());
    let Packed::I8 { q, scales, sums } = &pc.w else {
        return Err(QError(format!("run_i8: weight is {:?}, not I8", pc.format())));
    };
    let g = output_geometry(pc, h, w, bias, out)?;
    let t0 = clock();
    let a = quant();
    report(probe, Phase::Scale, t0);
    a.check("packed conv")?;
    if out.is_empty() {
        return Ok(());
    }
    let (k, nr, panels) = (pc.k, isa.nr(), pc.c_out.div_ceil(MR));
    let groups = k * k * g.cg;
    // Quantised map (+ slack for the last strip's dropped columns and the largest tap offset), alignment
    // pad, offsets.
    let map_words = g.cg * g.stride + nr + 2 * g.p + 16;
    let plan = Plan::new(g.n_flat, nr, panels, threads());
    // Row stride of the accumulator tile, padded so its rows do not alias in L1 (4 KiB multiples).
    let ldt = plan.max_columns() + 16;
    let tile = plan.max_panels() * MR * ldt;
    let buf = scratch.take(map_words + 16 + groups + tiled_len(plan.tasks(), tile));
    // A 64-byte-aligned map: 1x1 convolutions on maps whose planes are multiples of 16 pixels then load
    // whole cache lines. (3x3 taps stay misaligned by `(ky * wp + kx) % 16` words; aligning them with
    // permutes cost more than the split loads, see docs/performance.md.)
    let pad = buf.as_ptr().align_offset(64).min(16);
    let (map, rest) = buf[pad..].split_at_mut(map_words);
    let (offs, tiles) = rest.split_at_mut(groups);
    let map: &mut [u8] = bytemuck::cast_slice_mut(map);
    let t0 = clock();
    fill(&g, a, map);
    report(probe, Phase::Fill, t0);
    let offs: &mut [u32] = bytemuck::cast_slice_mut(offs);
    for (i, o) in offs.iter_mut().enumerate() {
        let (tap, c) = (i / g.cg, i % g.cg);
        *o = ((c * g.stride + (tap / k) * g.wp + tap % k) * KG) as u32;
    }
    let (map, offs) = (&*map, &*offs);
    // Inner blocks of at most KCG groups, equal in size (72 groups: 2 x 36, not 64 + 8).
    let kb = groups.div_ceil(groups.div_ceil(KCG));
    // Largest byte read: the last strip's end plus the largest offset.
    let last = g.n_flat.next_multiple_of(nr) * KG + offs.iter().max().copied().unwrap_or(0) as usize;
    assert!(last <= map.len(), "int8 conv: strip reads reach byte {last} of a {}-byte map", map.len());
    let dst = SyncPtr(out.as_mut_ptr());
    // The kernels sum `w * byte`, the byte being `q + 128` on offset ISAs: take `(128 + zero) * sum(w)` off.
    let shift = a.zero + if isa.offset() { 128 } else { 0 };
    let terms = Terms { scales, s: a.scale, sums, shift, bias };
    let t0 = clock();
    run_tiled_in(tiles, plan.tasks(), tile, |task, buf, _| {
        let t1 = clock();
        let ct: &mut [i32] = bytemuck::cast_slice_mut(&mut buf[..tile]);
        let ((j0, j1), (p0, p1)) = (plan.columns(task), plan.panel_range(task));
        let ncols = j1.min(g.n_flat) - j0;
        for g0 in (0..groups).step_by(kb) {
            let gb = kb.min(groups - g0);
            for s0 in (0..ncols).step_by(nr) {
                for p in p0..p1 {
                    // SAFETY: the panel slice holds gb groups; strip reads stay below `last` (checked);
                    // the tile's 8 rows x nr columns lie inside `ct` (column counts are multiples of nr).
                    unsafe {
                        let a = q.as_ptr().add((p * groups + g0) * MR * KG);
                        let b = map.as_ptr().add((j0 + s0) * KG);
                        micro_i8(isa, gb, a, b, offs[g0..].as_ptr(), ct.as_mut_ptr().add((p - p0) * MR * ldt + s0), ldt, g0 == 0);
                    }
                }
            }
        }
        report(probe, Phase::Gemm, t1);
        let t1 = clock();
        let tile = Tile { ct, ldc: ldt, j0, ncols, o0: p0 * MR, o1: (p1 * MR).min(pc.c_out) };
        // SAFETY: this task owns flat columns j0..j0 + ncols of output channels o0..o1.
        unsafe { epilogue(&tile, &terms, &g, w, h, dst) };
        report(probe, Phase::Epilogue, t1);
    });
    report(probe, Phase::Region, t0);
    if let Some(p) = probe {
        p(Phase::Workers, tiled_workers(plan.tasks()) as f64);
    }
    Ok(())
}

/// Quantises `x` `[c_in, h, w]` with `a` into the zero-bordered, channel-grouped map (`xor 0x80` for offset
/// ISAs): one little-endian u32 per (group, pixel), byte `t` for channel `4 * group + t`.
#[allow(clippy::too_many_arguments)]
pub(super) fn quantise_map(x: &[f32], c_in: usize, h: usize, w: usize, g: &Geometry, a: ActQuant, offset: bool, map: &mut [u8]) {
    for_each_group(g, a, offset, map, |words, cg, dst| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU.
            unsafe { quantise_group_avx2(x, c_in, h, w, g, a, words, cg, dst) };
            return;
        }
        quantise_group(x, c_in, h, w, g, a, words, cg, dst);
    });
}

/// The word of four zero-point bytes (`x = 0` in every channel), `xor 0x80` on offset ISAs: the padding.
fn zero_word(a: ActQuant, offset: bool) -> u32 {
    u32::from_le_bytes([a.zero as i8 as u8 ^ if offset { 0x80 } else { 0 }; 4])
}

/// The map's layout, shared by every writer: fills the slack after the last plane with the zero word
/// ([`zero_word`]), then runs `group((zero, flip), cg, plane)` on each channel group's plane of `g.plane`
/// u32 words (planes start `g.stride` words apart) in parallel, `flip` being the xor every packed word
/// gets (`0x80` bytes on offset ISAs). The words between planes are left as they are: only dropped border
/// columns of the last strip can read them.
pub(super) fn for_each_group(
    g: &Geometry,
    a: ActQuant,
    offset: bool,
    map: &mut [u8],
    group: impl Fn((u32, u32), usize, &mut [u32]) + Sync,
) {
    let words = (zero_word(a, offset), if offset { 0x8080_8080u32 } else { 0 });
    let map: &mut [u32] = bytemuck::cast_slice_mut(map);
    let (body, slack) = map.split_at_mut(g.cg * g.stride);
    slack.fill(words.0);
    body.par_chunks_mut(g.stride).enumerate().for_each(|(cg, dst)| group(words, cg, &mut dst[..g.plane]));
}

/// [`quantise_group`] compiled for AVX2 (same IEEE operations, 8 lanes instead of SSE2's 4).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn quantise_group_avx2(
    x: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    g: &Geometry,
    a: ActQuant,
    words: (u32, u32),
    cg: usize,
    dst: &mut [u32],
) {
    quantise_group(x, c_in, h, w, g, a, words, cg, dst);
}

/// Channel group `cg` of [`quantise_map`] into its plane `dst`: border words (the zero word of
/// [`for_each_group`]'s `(zero, flip)`) first, then each row's pixels as one u32 of four quantised
/// channels, xor `flip` (32-bit lanes throughout, so the loop vectorises).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn quantise_group(
    x: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    g: &Geometry,
    a: ActQuant,
    (zero, flip4): (u32, u32),
    cg: usize,
    dst: &mut [u32],
) {
    let (s, z) = (a.scale, a.zero as f32);
    // Top border rows and the left border of the first row; later gaps are filled row by row.
    let first = (g.p * g.wp + g.p).min(dst.len());
    dst[..first].fill(zero);
    for y in 0..h {
        let base = (y + g.p) * g.wp + g.p;
        let row = &mut dst[base..base + w];
        let src = |t: usize| {
            let ci = cg * KG + t;
            (ci < c_in).then(|| &x[(ci * h + y) * w..][..w])
        };
        match (src(0), src(1), src(2), src(3)) {
            (Some(a), Some(b), Some(c), Some(d)) => {
                for ((((px, &va), &vb), &vc), &vd) in row.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                    let q = (quantise_lane(va, s, z) & 0xff)
                        | (quantise_lane(vb, s, z) & 0xff) << 8
                        | (quantise_lane(vc, s, z) & 0xff) << 16
                        | quantise_lane(vd, s, z) << 24;
                    *px = q ^ flip4;
                }
            }
            (a, b, c, d) => {
                // A partial last group: missing channels stay 0 (`flip` on offset ISAs); their weights are 0.
                for (i, px) in row.iter_mut().enumerate() {
                    let lane = |src: Option<&[f32]>| src.map_or(0, |v| quantise_lane(v[i], s, z) & 0xff);
                    let q = lane(a) | lane(b) << 8 | lane(c) << 16 | lane(d) << 24;
                    *px = q ^ flip4;
                }
            }
        }
        // Right border of this row and left border of the next (or the bottom border after the last).
        let end = if y + 1 < h { base + g.wp } else { dst.len() };
        dst[base + w..end].fill(zero);
    }
}

/// `c[r * n + j] = sum_q a[r, q] * b[q * n + j]` in exact i32 on `isa`, with `a` an I8-packed weight
/// (`k = 1`, i.e. a `c_out x c_in` matrix) and `b` a row-major `c_in x n` int8 matrix in [-127, 127].
/// The integer core of every int8 kernel, exposed for tests and benches.
pub fn gemm_i32(isa: QIsa, a: &PackedConv, b: &[i8], n: usize, c: &mut [i32]) -> QResult<()> {
    let Packed::I8 { q, sums, .. } = &a.w else {
        return Err(QError(format!("gemm_i32: weight is {:?}, not I8", a.format())));
    };
    let (m, k) = (a.c_out, a.c_in);
    ensure!(a.k == 1, "gemm_i32: weight has kernel size {}, expected 1", a.k);
    ensure!(b.len() == k * n, "gemm_i32: B has {} values, {k} x {n} needs {}", b.len(), k * n);
    ensure!(c.len() == m * n, "gemm_i32: C has {} values, {m} x {n} needs {}", c.len(), m * n);
    ensure!(!b.contains(&i8::MIN), "gemm_i32: B holds -128; activations lie in [-127, 127]");
    let (nr, groups, panels) = (isa.nr(), k.div_ceil(KG), m.div_ceil(MR));
    let np = n.next_multiple_of(nr).max(nr);
    let flip = if isa.offset() { 0x80u8 } else { 0 };
    // B as [group][column][4], padded columns and channels zero.
    let mut bp = vec![flip; groups * np * KG + nr * KG];
    for (qi, row) in b.chunks_exact(n.max(1)).enumerate().take(k) {
        for (j, &v) in row.iter().enumerate() {
            bp[((qi / KG) * np + j) * KG + qi % KG] = (v as u8) ^ flip;
        }
    }
    let offs: Vec<u32> = (0..groups).map(|g| (g * np * KG) as u32).collect();
    let mut ct = vec![0i32; panels * MR * np];
    for s0 in (0..np).step_by(nr) {
        for p in 0..panels {
            // SAFETY: strip s0 of every group lies inside `bp` (np columns + slack); tile inside `ct`.
            unsafe {
                micro_i8(
                    isa,
                    groups,
                    q.as_ptr().add(p * groups * MR * KG),
                    bp.as_ptr().add(s0 * KG),
                    offs.as_ptr(),
                    ct.as_mut_ptr().add(p * MR * np + s0),
                    np,
                    true,
                )
            };
        }
    }
    for r in 0..m {
        let corr = if isa.offset() { sums[r] } else { 0 };
        for j in 0..n {
            c[r * n + j] = ct[r * np + j].wrapping_sub(corr);
        }
    }
    Ok(())
}
