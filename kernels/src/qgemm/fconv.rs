//! The fp32 / fp16-storage convolution driver on `crate::sgemm`'s micro-kernels.
//!
//! F32 weights are in `crate::sgemm`'s panel layout and are read in place; F16 ones are widened per call
//! (F16C / `fcvtl`) into that layout in the scratch (m * k conversions against m * k * pixels FMAs); the input is copied into a zero-bordered map and read in place through a
//! per-inner-row offset table, as the int8 driver does (`conv.rs`): on AVX-512 by the offset kernel
//! directly, elsewhere through a small strip copy. The inner dimension is cut by `sgemm::kc_step`, which
//! depends on the shape only, so results never depend on the thread count.

use half::f16;

use super::conv::{geometry, output_geometry, Geometry};
use super::pack::{Packed, PackedConv};
use super::{QResult, MR};
use crate::matmul::{threads, SyncPtr};
use crate::scratch::{run_tiled_in, tiled_len, Scratch};
use crate::sgemm::{self, Isa};

/// Most flat columns per task (multiple of every `nr`).
const NC: usize = 256;

/// Widens IEEE half values into f32 with the CPU's conversion instructions when it has them.
pub fn widen_f16(src: &[f16], dst: &mut [f32]) {
    let bits: &[u16] = bytemuck::cast_slice(src);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx") {
        // SAFETY: both features were detected; the length is checked inside.
        unsafe { super::x86::widen_f16c(bits, dst) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    {
        super::neon::widen_f16_neon(bits, dst);
    }
    #[cfg(not(target_arch = "aarch64"))]
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// `dst[i] = f16(src[i])`, rounded to nearest, ties to even (F16C on x86-64, `fcvtn` on aarch64): the
/// inverse of [`widen_f16`] on every half. Equal lengths (asserted).
pub fn narrow_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "narrow_f16: lengths differ");
    let bits: &mut [u16] = bytemuck::cast_slice_mut(dst);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx") {
        // SAFETY: both features were detected; the length is checked inside.
        unsafe { super::x86::narrow_f16c(src, bits) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    {
        super::neon::narrow_f16_neon(src, bits);
    }
    #[cfg(not(target_arch = "aarch64"))]
    for (d, s) in bits.iter_mut().zip(src) {
        *d = f16::from_f32(*s).to_bits();
    }
}

/// Float convolution of `x` into `out` on the SGEMM kernel `isa` (see [`PackedConv::run_on`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_float(
    isa: Isa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    x: &[f32],
    h: usize,
    w: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> QResult<()> {
    let g = geometry(pc, x, h, w, bias, out)?;
    run_float_planes(isa, pc, scratch, x, g.plane, h, w, bias, out)
}

/// Rows `y0..y0 + rows` of the 1x1 float convolution of `x` `[c_in, h, w]` into `out` `[c_out, rows, w]`,
/// read in place (no band copy): `Ok(false)`, nothing written, when this conv cannot (not 1x1, or the
/// band's pixels do not fill whole strips of `isa`). A 1x1 conv sums each pixel's channels the same way
/// at any width, so these are the whole map's bits.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_float_rows(
    isa: Isa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    x: &[f32],
    (h, w): (usize, usize),
    (y0, rows): (usize, usize),
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> QResult<bool> {
    let c_in = pc.c_in;
    super::ensure!(x.len() == c_in * h * w, "packed conv input: {} floats, [{c_in}, {h}, {w}] needs {}", x.len(), c_in * h * w);
    super::ensure!(y0 + rows <= h, "packed conv rows {y0}..{} of a {h}-row map", y0 + rows);
    if pc.k != 1 || (rows * w) % isa.nr() != 0 || rows == 0 {
        return Ok(false);
    }
    output_geometry(pc, rows, w, bias, out)?;
    run_float_planes(isa, pc, scratch, &x[y0 * w..], h * w, rows, w, bias, out)?;
    Ok(true)
}

/// [`run_float`] on input planes `stride` floats apart (`x` starts at the first plane's first pixel; a
/// stride other than `h * w` needs a 1x1 conv that reads in place: checked by the callers).
#[allow(clippy::too_many_arguments)]
fn run_float_planes(
    isa: Isa,
    pc: &PackedConv,
    scratch: &mut Scratch,
    x: &[f32],
    stride: usize,
    h: usize,
    w: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> QResult<()> {
    let g = output_geometry(pc, h, w, bias, out)?;
    if out.is_empty() {
        return Ok(());
    }
    let (k, c_in, nr) = (pc.k, pc.c_in, isa.nr());
    let (kk, panels) = (c_in * k * k, pc.c_out.div_ceil(MR));
    let panel_len = MR * kk;
    // A 1x1 conv whose columns fill whole strips reads `x` in place: with no border the bordered map is
    // `x` itself, and the last strip's reads end exactly at `x`'s end (a 32-channel 512x512 input is a
    // 32 MiB copy otherwise, the largest scratch of an int8 session).
    let in_place = k == 1 && g.n_flat % nr == 0;
    super::ensure!(in_place || stride == g.plane, "float conv: input planes {stride} floats apart need a 1x1 conv on whole strips");
    let map_len = if in_place { 0 } else { c_in * g.plane + nr + 2 * g.p + 16 };
    let t = threads();
    let nc = g.n_flat.div_ceil(2 * t).next_multiple_of(nr).clamp(nr, NC);
    let blocks = g.n_flat.div_ceil(nc);
    let kc = sgemm::kc_step(kk);
    // F32 panels are the SGEMM layout itself (read in place). F16 ones are widened into that layout one
    // inner block at a time in each task (every panel's rows `q0..q0 + kc`): m * k conversions per column
    // block against m * k * nc FMAs, and a per-task slice of m * kc floats instead of an f32 copy of the
    // whole weight (9 MiB for a 512-channel 3x3 layer that calibration keeps fp16).
    let (a, halves): (&[f32], &[f16]) = match &pc.w {
        Packed::F32(v) => (v, &[]),
        Packed::F16(v) => (&[], v),
        Packed::I8 { .. } => return Err(super::QError("run_float: weight is I8".into())),
    };
    let slice = if halves.is_empty() { 0 } else { panels * MR * kc };
    // Per task: the copied strip (non-AVX-512), the 8-row-padded output block and the widened slice.
    // Row stride of the output block, padded so its rows do not alias in L1 (4 KiB multiples).
    let ldt = nc + 16;
    let tile = kc * nr + panels * MR * ldt + slice;
    let bias_len = sgemm::bias_len(pc.c_out);
    let buf = scratch.take(bias_len + map_len + kk + tiled_len(blocks, tile));
    let (packed_bias, rest) = buf.split_at_mut(bias_len);
    let (map, rest) = rest.split_at_mut(map_len);
    let (offs, tiles) = rest.split_at_mut(kk);
    sgemm::pack_bias(pc.c_out, bias, packed_bias);
    let map: &[f32] = if in_place {
        x
    } else {
        pad_map(x, c_in, h, w, &g, map);
        map
    };
    let offs: &mut [u32] = bytemuck::cast_slice_mut(offs);
    for (q, o) in offs.iter_mut().enumerate() {
        let (ci, tap) = (q / (k * k), q % (k * k));
        *o = (ci * if in_place { stride } else { g.plane } + (tap / k) * g.wp + tap % k) as u32;
    }
    let (packed_bias, offs) = (&*packed_bias, &*offs);
    let last = g.n_flat.next_multiple_of(nr) + offs.iter().max().copied().unwrap_or(0) as usize;
    assert!(last <= map.len(), "float conv: strip reads reach float {last} of a {}-float map", map.len());
    let dst = SyncPtr(out.as_mut_ptr());
    let c_out = pc.c_out;
    run_tiled_in(tiles, blocks, tile, |blk, buf, _| {
        let (strip, rest) = buf[..tile].split_at_mut(kc * nr);
        let (ct, wide) = rest.split_at_mut(panels * MR * ldt);
        let j0 = blk * nc;
        let ncols = nc.min(g.n_flat - j0);
        let mut q0 = 0;
        while q0 < kk {
            let kcb = kc.min(kk - q0);
            if !halves.is_empty() {
                for p in 0..panels {
                    let src = p * panel_len + q0 * MR;
                    widen_f16(&halves[src..src + kcb * MR], &mut wide[p * MR * kc..][..kcb * MR]);
                }
            }
            // Panel p's rows from q0 on, and the row its slice starts at.
            let panel_at = |p: usize| -> (&[f32], usize) {
                if halves.is_empty() {
                    (&a[p * panel_len..(p + 1) * panel_len], q0)
                } else {
                    (&wide[p * MR * kc..][..kcb * MR], 0)
                }
            };
            for s0 in (0..ncols).step_by(nr) {
                let base = map[j0 + s0..].as_ptr();
                let copied = isa != Isa::Avx512;
                if copied {
                    for (qi, d) in strip.chunks_exact_mut(nr).take(kcb).enumerate() {
                        let o = offs[q0 + qi] as usize + j0 + s0;
                        d.copy_from_slice(&map[o..o + nr]);
                    }
                }
                for p in 0..panels {
                    let (panel, from) = panel_at(p);
                    let pb = &packed_bias[p * MR..(p + 1) * MR];
                    let c = ct[p * MR * ldt + s0..].as_mut_ptr();
                    // SAFETY: B reads stay below `last` (checked) or in `strip`; the 8 x nr tile lies in `ct`.
                    unsafe {
                        if copied || !sgemm::tile_offs_split(isa, kcb, panel, pb, from, base, &offs[q0..q0 + kcb], c, ldt, q0 == 0) {
                            sgemm::tile_split(isa, kcb, panel, pb, from, strip.as_ptr(), nr, c, ldt, MR, nr, q0 == 0);
                        }
                    }
                }
            }
            q0 += kcb;
        }
        // SAFETY: this block owns flat columns j0..j0 + ncols, i.e. its pixels of every output plane.
        unsafe { copy_out(ct, ldt, j0, ncols, &g, w, h, c_out, dst) };
    });
    Ok(())
}

/// Copies the block's valid columns of `ct` into the output planes.
///
/// # Safety
/// As `conv::epilogue`.
#[allow(clippy::too_many_arguments)]
unsafe fn copy_out(ct: &[f32], ldc: usize, j0: usize, ncols: usize, g: &Geometry, w: usize, h: usize, c_out: usize, dst: SyncPtr) {
    for o in 0..c_out {
        g.pixel_runs(j0, ncols, w, |k, px, len| {
            // SAFETY: pixels px..px + len of plane o are inside the output and owned by this block.
            let d = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o * h * w + px), len) };
            d.copy_from_slice(&ct[o * ldc + k..][..len]);
        });
    }
}

/// Copies `x` `[c_in, h, w]` into `[c_in, h + 2p, w + 2p]` with a zero border (and zero slack).
fn pad_map(x: &[f32], c_in: usize, h: usize, w: usize, g: &Geometry, map: &mut [f32]) {
    map.fill(0.0);
    for ci in 0..c_in {
        for y in 0..h {
            let d = (ci * g.plane) + (y + g.p) * g.wp + g.p;
            map[d..d + w].copy_from_slice(&x[(ci * h + y) * w..][..w]);
        }
    }
}
