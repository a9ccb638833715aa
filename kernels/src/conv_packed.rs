//! Convolutions on our packed SGEMM (`crate::sgemm`) as an implicit GEMM: the weights are packed once per
//! call into the caller's scratch; the input is gathered straight into small packed `B` blocks (no
//! im2col matrix), so each input value is copied once, into a block that stays in L2 while every
//! weight panel passes over it. Nothing here allocates once the scratch has grown.
//!
//! Work is split over pixel blocks; the inner dimension is cut by `sgemm::kc_step`, which depends on the
//! shape only, so every output element sums the same products in the same order for any thread count.

use super::{Conv2d, Scratch};
use crate::matmul::{threads, SyncPtr};
use crate::scratch::{run_tiled_in, tiled_len};
use crate::sgemm::{self, Isa, MR};

/// Deepest layer whose interior strips are read in place (the offset table lives on the stack).
const DIRECT_MAX_K: usize = 1152;

/// Most output pixels per block: a 256-row `B` block of 256 pixels is 256 KiB (L2).
const NC: usize = 256;

/// `out = conv(input, weight) + bias` (shapes already checked by the caller).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d(
    scratch: &mut Scratch,
    spec: &Conv2d,
    input: &[f32],
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (oh, ow) = spec.out_size(h, w);
    if out.is_empty() {
        return;
    }
    let isa = Isa::detect();
    let nr = isa.nr();
    let kk = spec.c_in * spec.kernel * spec.kernel;
    let kc = sgemm::kc_step(kk);
    let plane = oh * ow;
    // Enough blocks to keep every thread busy on small maps (the split never changes the arithmetic).
    let t = threads();
    let nc = plane.div_ceil(2 * t).next_multiple_of(nr).clamp(nr, NC);
    let blocks = plane.div_ceil(nc);
    let packed_len = sgemm::packed_a_len(spec.c_out, kk);
    // Deep layers (several KC blocks) revisit C once per block: accumulate in a per-task buffer with a
    // padded row stride instead of the output planes, whose 4 KiB-multiple strides alias in L1.
    let multi = kk > kc;
    let ldt = nc + 16;
    let tile = kc * nc + if multi { spec.c_out.next_multiple_of(MR) * ldt } else { 0 };
    let (packed, tiles) = scratch.take(packed_len + tiled_len(blocks, tile)).split_at_mut(packed_len);
    sgemm::pack_a(spec.c_out, kk, weight, bias, packed);
    let packed = &*packed;
    let dst = SyncPtr(out.as_mut_ptr());
    let panel_len = MR * (kk + 1);
    // Direct reads: for stride-1 layers on AVX-512, a strip of 32 pixels whose taps all land inside the
    // map reads B row q straight from the input at a fixed offset, skipping the packing copy that
    // dominated the thin 512x512 layers (16-64 channels: ~1 copied float per 2 vector FMAs).
    let (k, pad) = (spec.kernel, spec.pad);
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85.
    let direct = isa == Isa::Avx512 && spec.stride == 1 && kk <= DIRECT_MAX_K && spec.c_out % MR == 0;
    let mut offs = [0u32; DIRECT_MAX_K];
    if direct {
        for (q, o) in offs[..kk].iter_mut().enumerate() {
            let (ci, ky, kx) = (q / (k * k), (q / k) % k, q % k);
            *o = (ci * h * w + ky * w + kx) as u32;
        }
    }
    let offs = &offs[..if direct { kk } else { 0 }];
    let interior = |ps: usize| {
        let (oy, ox) = (ps / ow, ps % ow);
        direct && ox + nr <= ow && oy >= pad && oy + k <= h + pad && ox >= pad && ox + nr + k <= w + pad + 1
    };
    run_tiled_in(tiles, blocks, tile, |blk, buf, _| {
        let (buf, ctmp) = buf.split_at_mut(kc * nc);
        let (cbase, ldc) = if multi { (ctmp.as_mut_ptr(), ldt) } else { (dst.get(), plane) };
        let p0 = blk * nc;
        let np = nc.min(plane - p0);
        let strips = np.div_ceil(nr);
        let mut q0 = 0;
        loop {
            let kcb = kc.min(kk - q0);
            pack_b(spec, input, h, w, ow, p0, np, q0, kcb, nr, &interior, &mut buf[..strips * kcb * nr]);
            // Strips outer, weight panels inner: the kc x 32 B strip stays in L1 while the weight block
            // streams from L2 (the other order streamed B from L2 once per panel and starved wide layers).
            for s in 0..strips {
                let cols = nr.min(np - s * nr);
                let ps = p0 + s * nr;
                for (p, panel) in packed.chunks_exact(panel_len).enumerate() {
                    let rows = MR.min(spec.c_out - p * MR);
                    let c =
                        if multi { cbase.wrapping_add(p * MR * ldt + s * nr) } else { cbase.wrapping_add(p * MR * plane + p0 + s * nr) };
                    // SAFETY: the strip holds kcb x nr floats; this block owns pixels p0..p0 + np of every
                    // output plane (or its own ctmp rows), and rows p*MR..p*MR + rows exist.
                    unsafe {
                        if cols == nr && interior(ps) {
                            // In bounds: the interior test keeps every tap of the 32 pixels inside the map.
                            let base = input.as_ptr().add((ps / ow - pad) * w + ps % ow - pad);
                            sgemm::tile_offs(isa, kcb, panel, q0, base, &offs[q0..q0 + kcb], c, ldc, q0 == 0);
                        } else {
                            let b = buf[s * kcb * nr..].as_ptr();
                            sgemm::tile(isa, kcb, panel, q0, b, nr, c, ldc, rows, cols, q0 == 0);
                        }
                    }
                }
            }
            q0 += kcb;
            if q0 >= kk {
                break;
            }
        }
        if multi {
            for o in 0..spec.c_out {
                // SAFETY: this block owns pixels p0..p0 + np of every output plane.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o * plane + p0), np) };
                row.copy_from_slice(&ctmp[o * ldt..o * ldt + np]);
            }
        }
    });
}

/// Gathers inner rows `q0..q0 + kc` (`q = (ci * k + ky) * k + kx`) for output pixels `p0..p0 + np` (flat
/// `oy * ow + ox`) into strips of `nr` pixels: `dst[(s * kc + qi) * nr + j]`. Taps in the zero padding and
/// pixels past `np` are 0. Strips for which `skip(first pixel)` holds are read in place and left alone.
#[allow(clippy::too_many_arguments)]
fn pack_b(
    spec: &Conv2d,
    input: &[f32],
    h: usize,
    w: usize,
    ow: usize,
    p0: usize,
    np: usize,
    q0: usize,
    kc: usize,
    nr: usize,
    skip: &dyn Fn(usize) -> bool,
    dst: &mut [f32],
) {
    let (k, st, pad) = (spec.kernel, spec.stride, spec.pad);
    for (s, strip) in dst.chunks_exact_mut(kc * nr).enumerate() {
        let ps = p0 + s * nr;
        let cols = nr.min(np - s * nr);
        if cols == nr && skip(ps) {
            continue;
        }
        let (oy, ox) = (ps / ow, ps % ow);
        let one_row = st == 1 && ox + cols <= ow;
        for (qi, d) in strip.chunks_exact_mut(nr).enumerate() {
            let q = q0 + qi;
            let (ci, ky, kx) = (q / (k * k), (q / k) % k, q % k);
            let plane = &input[ci * h * w..(ci + 1) * h * w];
            if one_row {
                // Contiguous run of one input row: ix = ox + j + kx - pad for j < cols.
                d[cols..].fill(0.0);
                let iy = (oy + ky) as isize - pad as isize;
                if iy < 0 || iy >= h as isize {
                    d[..cols].fill(0.0);
                    continue;
                }
                let row = &plane[iy as usize * w..][..w];
                let ix0 = (ox + kx) as isize - pad as isize;
                let lo = (-ix0).clamp(0, cols as isize) as usize;
                let hi = (w as isize - ix0).clamp(lo as isize, cols as isize) as usize;
                d[..lo].fill(0.0);
                d[hi..cols].fill(0.0);
                let start = (ix0 + lo as isize) as usize;
                d[lo..hi].copy_from_slice(&row[start..start + hi - lo]);
            } else {
                for (j, v) in d.iter_mut().enumerate() {
                    *v = 0.0;
                    if j < cols {
                        let p = ps + j;
                        let iy = ((p / ow) * st + ky) as isize - pad as isize;
                        let ix = ((p % ow) * st + kx) as isize - pad as isize;
                        if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                            *v = plane[iy as usize * w + ix as usize];
                        }
                    }
                }
            }
        }
    }
}
