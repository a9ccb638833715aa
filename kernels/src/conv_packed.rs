//! Convolutions on our packed SGEMM (`crate::sgemm`) as an implicit GEMM: the weights are packed once
//! ([`PackedWeights`], at model load, or borrowed from a file that stores the panels; [`conv2d`] packs per
//! call into the caller's scratch for one-off users); the input is gathered straight into small packed `B` blocks (no
//! im2col matrix), so each input value is copied once, into a block that stays in L2 while every
//! weight panel passes over it. Nothing here allocates once the scratch has grown.
//!
//! Work is split over pixel blocks; the inner dimension is cut by `sgemm::kc_step`, which depends on the
//! shape only, so every output element sums the same products in the same order for any thread count.

use std::borrow::Cow;

use super::{Conv2d, Scratch};
use crate::matmul::{threads, SyncPtr};
use crate::scratch::{run_tiled_in, tiled_len};
use crate::sgemm::{self, Isa, MR};

/// Deepest layer whose interior strips are read in place (the offset table lives on the stack).
const DIRECT_MAX_K: usize = 1152;

/// Most output pixels per block: a 256-row `B` block of 256 pixels is 256 KiB (L2).
const NC: usize = 256;

/// A convolution's weights in the SGEMM panel layout (`sgemm::pack_a` of `[c_out, c_in * k * k]`) and its
/// bias padded to whole panels: packed once, then used by every [`conv2d_prepacked`] call.
#[derive(Clone, Debug)]
pub struct PackedWeights<'a> {
    spec: Conv2d,
    panels: Cow<'a, [f32]>,
    bias: Vec<f32>,
}

impl<'a> PackedWeights<'a> {
    /// Packs a PyTorch `[c_out, c_in, k, k]` weight (and `[c_out]` bias). Panics on lengths that do not
    /// match `spec` (the caller validated the shapes).
    pub fn pack(spec: &Conv2d, weight: &[f32], bias: Option<&[f32]>) -> PackedWeights<'static> {
        let kk = spec.c_in * spec.kernel * spec.kernel;
        assert_eq!(weight.len(), spec.c_out * kk, "PackedWeights::pack: weight length");
        let mut panels = vec![0f32; sgemm::packed_a_len(spec.c_out, kk)];
        sgemm::pack_a(spec.c_out, kk, weight, &mut panels);
        PackedWeights { spec: *spec, panels: Cow::Owned(panels), bias: packed_bias(spec, bias) }
    }

    /// Adopts panels already in the `sgemm::pack_a` layout (for example borrowed from a model file), or
    /// says which length was expected.
    pub fn from_panels(spec: &Conv2d, panels: Cow<'a, [f32]>, bias: Option<&[f32]>) -> Result<PackedWeights<'a>, String> {
        let want = sgemm::packed_a_len(spec.c_out, spec.c_in * spec.kernel * spec.kernel);
        if panels.len() != want {
            return Err(format!("packed conv weight {spec:?}: expected {want} floats of panels, found {}", panels.len()));
        }
        if let Some(b) = bias.filter(|b| b.len() != spec.c_out) {
            return Err(format!("packed conv bias: expected {} floats, found {}", spec.c_out, b.len()));
        }
        Ok(PackedWeights { spec: *spec, panels, bias: packed_bias(spec, bias) })
    }

    /// The convolution's shape.
    pub fn spec(&self) -> &Conv2d {
        &self.spec
    }

    /// The bias, zero-padded to whole `MR`-row panels (zeros without a bias).
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The panels (`sgemm::pack_a` layout).
    pub fn panels(&self) -> &[f32] {
        &self.panels
    }

    /// True when the panels are borrowed (zero-copy from a model file).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.panels, Cow::Borrowed(_))
    }
}

fn packed_bias(spec: &Conv2d, bias: Option<&[f32]>) -> Vec<f32> {
    if let Some(b) = bias {
        assert_eq!(b.len(), spec.c_out, "packed conv bias length");
    }
    let mut out = vec![0f32; sgemm::bias_len(spec.c_out)];
    sgemm::pack_bias(spec.c_out, bias, &mut out);
    out
}

/// `out = conv(input, weight) + bias`, packing the weights into the scratch first (shapes already checked
/// by the caller).
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
    let kk = spec.c_in * spec.kernel * spec.kernel;
    let (plen, blen) = (sgemm::packed_a_len(spec.c_out, kk), sgemm::bias_len(spec.c_out));
    let need = Geometry::new(spec, h, w).tiles_len();
    let (panels, rest) = scratch.take(plen + blen + need).split_at_mut(plen);
    let (pb, tiles) = rest.split_at_mut(blen);
    sgemm::pack_a(spec.c_out, kk, weight, panels);
    sgemm::pack_bias(spec.c_out, bias, pb);
    run(tiles, spec, input, h, w, panels, pb, out);
}

/// `out = conv(input) + bias` with weights packed once (`PackedWeights`); `input` `[c_in, h, w]`, `out`
/// `[c_out, oh, ow]`. Allocates nothing once `scratch` has grown.
pub fn conv2d_prepacked(scratch: &mut Scratch, pw: &PackedWeights<'_>, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
    let spec = &pw.spec;
    let (oh, ow) = spec.out_size(h, w);
    assert_eq!(input.len(), spec.c_in * h * w, "conv2d_prepacked input length");
    assert_eq!(out.len(), spec.c_out * oh * ow, "conv2d_prepacked output length");
    let tiles = scratch.take(Geometry::new(spec, h, w).tiles_len());
    run(tiles, spec, input, h, w, &pw.panels, &pw.bias, out);
}

/// How a call splits its output: pixel blocks of `nc`, inner blocks of `kc`, one tile per task.
struct Geometry {
    nc: usize,
    blocks: usize,
    kc: usize,
    multi: bool,
    ldt: usize,
    tile: usize,
}

impl Geometry {
    fn new(spec: &Conv2d, h: usize, w: usize) -> Geometry {
        let (oh, ow) = spec.out_size(h, w);
        let nr = Isa::detect().nr();
        let kk = spec.c_in * spec.kernel * spec.kernel;
        let kc = sgemm::kc_step(kk);
        let plane = oh * ow;
        // Enough blocks to keep every thread busy on small maps (the split never changes the arithmetic).
        let nc = plane.div_ceil(2 * threads()).next_multiple_of(nr).clamp(nr, NC);
        let blocks = plane.div_ceil(nc);
        // Deep layers (several KC blocks) revisit C once per block: accumulate in a per-task buffer with a
        // padded row stride instead of the output planes, whose 4 KiB-multiple strides alias in L1.
        let multi = kk > kc;
        let ldt = nc + 16;
        let tile = kc * nc + if multi { spec.c_out.next_multiple_of(MR) * ldt } else { 0 };
        Geometry { nc, blocks, kc, multi, ldt, tile }
    }

    fn tiles_len(&self) -> usize {
        tiled_len(self.blocks, self.tile)
    }
}

/// The implicit GEMM on packed panels and bias.
#[allow(clippy::too_many_arguments)]
fn run(tiles: &mut [f32], spec: &Conv2d, input: &[f32], h: usize, w: usize, packed: &[f32], bias: &[f32], out: &mut [f32]) {
    let (oh, ow) = spec.out_size(h, w);
    if out.is_empty() {
        return;
    }
    let isa = Isa::detect();
    let nr = isa.nr();
    let kk = spec.c_in * spec.kernel * spec.kernel;
    let plane = oh * ow;
    let Geometry { nc, blocks, kc, multi, ldt, tile } = Geometry::new(spec, h, w);
    let dst = SyncPtr(out.as_mut_ptr());
    let panel_len = MR * kk;
    // Direct reads: for stride-1 layers on AVX-512, a strip of 32 pixels whose taps all land inside the
    // map reads B row q straight from the input at a fixed offset, skipping the packing copy that
    // dominated the thin 512x512 layers (16-64 channels: ~1 copied float per 2 vector FMAs) and the
    // 3-channel ToRGB 1x1s (their partial panel goes through a stack tile).
    let (k, pad) = (spec.kernel, spec.pad);
    let direct = isa == Isa::Avx512 && spec.stride == 1 && kk <= DIRECT_MAX_K;
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
                for (p, panel) in packed.chunks_exact(panel_len.max(1)).take(spec.c_out.div_ceil(MR)).enumerate() {
                    let pb = &bias[p * MR..(p + 1) * MR];
                    let rows = MR.min(spec.c_out - p * MR);
                    let c =
                        if multi { cbase.wrapping_add(p * MR * ldt + s * nr) } else { cbase.wrapping_add(p * MR * plane + p0 + s * nr) };
                    // SAFETY: the strip holds kcb x nr floats; this block owns pixels p0..p0 + np of every
                    // output plane (or its own ctmp rows), and rows p*MR..p*MR + rows exist.
                    unsafe {
                        if cols == nr && interior(ps) {
                            // In bounds: the interior test keeps every tap of the 32 pixels inside the map.
                            let base = input.as_ptr().add((ps / ow - pad) * w + ps % ow - pad);
                            let offs = &offs[q0..q0 + kcb];
                            if rows == MR {
                                sgemm::tile_offs_split(isa, kcb, panel, pb, q0, base, offs, c, ldc, q0 == 0);
                            } else {
                                // A partial last panel (c_out = 3 for ToRGB): the full tile on the stack, then
                                // its valid rows; the same kernel and sums as the packed path it replaces.
                                let mut t = [0f32; MR * 32];
                                for r in (0..rows).filter(|_| q0 > 0) {
                                    std::ptr::copy_nonoverlapping(c.add(r * ldc), t.as_mut_ptr().add(r * nr), nr);
                                }
                                sgemm::tile_offs_split(isa, kcb, panel, pb, q0, base, offs, t.as_mut_ptr(), nr, q0 == 0);
                                for r in 0..rows {
                                    std::ptr::copy_nonoverlapping(t.as_ptr().add(r * nr), c.add(r * ldc), nr);
                                }
                            }
                        } else {
                            let b = buf[s * kcb * nr..].as_ptr();
                            sgemm::tile_split(isa, kcb, panel, pb, q0, b, nr, c, ldc, rows, cols, q0 == 0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    /// The SGEMM kernels' sum per output: start from the bias, then one fused multiply-add per tap in
    /// `q = (ci * k + ky) * k + kx` order (zero-padding taps included, as `fma(w, 0, acc) == acc`).
    fn fma_reference(spec: &Conv2d, x: &[f32], h: usize, w: usize, wt: &[f32], b: &[f32]) -> Vec<f32> {
        let (k, pad, kk) = (spec.kernel, spec.pad as isize, spec.c_in * spec.kernel * spec.kernel);
        let mut out = vec![0f32; spec.c_out * h * w];
        for o in 0..spec.c_out {
            for p in 0..h * w {
                let (oy, ox) = ((p / w) as isize, (p % w) as isize);
                let mut acc = b[o];
                for q in 0..kk {
                    let (ci, ky, kx) = (q / (k * k), (q / k) % k, q % k);
                    let (iy, ix) = (oy + ky as isize - pad, ox + kx as isize - pad);
                    let inside = iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize;
                    let v = if inside { x[ci * h * w + iy as usize * w + ix as usize] } else { 0.0 };
                    acc = wt[o * kk + q].mul_add(v, acc);
                }
                out[o * h * w + p] = acc;
            }
        }
        out
    }

    #[test]
    fn convs_with_a_partial_last_panel_match_the_fused_multiply_add_sum() {
        // c_out 3 (ToRGB) and 11 leave a partial 8-row panel, now read in place on AVX-512; c_in 300 at 1x1
        // splits the inner dimension, so the stack tile is reloaded between blocks. 40x40 has interior strips.
        for (ci, co, k) in [(32, 3, 1), (5, 11, 3), (300, 3, 1), (4, 3, 3)] {
            let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
            let (h, w) = (40, 40);
            let (x, wt, b) = (seeded(1, ci * h * w), seeded(2, co * ci * k * k), seeded(3, co));
            let pw = PackedWeights::pack(&spec, &wt, Some(&b));
            let mut got = vec![0f32; co * h * w];
            conv2d_prepacked(&mut Scratch::new(), &pw, &x, h, w, &mut got);
            let want = fma_reference(&spec, &x, h, w, &wt, &b);
            if Isa::detect() == Isa::Avx512 {
                assert_eq!(got, want, "{ci}->{co} k{k}: same products, same order, so exactly equal");
            } else {
                // Other kernels may round each product separately: sums of up to 300 terms below 1.
                assert_close(&format!("{ci}->{co} k{k}"), &got, &want, Tolerance::Custom { abs: 1e-4, rel: 1e-4 });
            }
        }
    }
}
