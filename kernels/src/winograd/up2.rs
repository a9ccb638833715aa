//! The first StyleConv of a decoder level convolves `bilinear_x2(x) * s` (the upsampled input, each
//! channel scaled by its modulation). [`conv3x3_up2_with`] takes the low-resolution `x` and `s` and
//! builds the upsampled values inside the input transform, a window of six rows by `4 k + 2` columns
//! at a time (`fused::up2_hrow` once per input row, `fused::up2_vrow` per window row), so the upsampled map (64 MiB at 512x512, 64 channels) is never
//! written nor read back. The windows hold the bits `fused::bilinear_scaled` writes, and the transform
//! is the one the plain path runs, so the output is bit-identical to `bilinear_scaled` then
//! [`super::conv3x3_with`].

use rayon::prelude::*;

use super::{narrow_strips, run_blocks, Block, Epilogue, WinogradWeights};
use crate::conv::Scratch;
use crate::fused::{up2_hrow, up2_vrow, up2_vtaps};
use crate::matmul::SyncPtr;
use crate::sgemm::Isa;

/// The low-resolution map's size and the per-channel factors.
#[derive(Clone, Copy)]
pub(super) struct Up2<'a> {
    hl: usize,
    wl: usize,
    s: &'a [f32],
}

/// Rows of an input window (one tile row's `B^T` input).
const ROWS: usize = 6;

/// Tiles per window: rows of `4 SEG + 3` floats (one float ahead of the transform's first) are zeroed on the stack once per channel.
const SEG: usize = 64;
const LD: usize = 4 * SEG + 3;

/// `out = epi(conv3x3(bilinear_x2(low) * s))`: `low` `[c_in, hl, wl]` upsampled (align_corners = false)
/// to `2hl x 2wl` with channel `i` multiplied by `s[i]`, `out` `[c_out, 2hl, 2wl]`. Bit-identical to
/// `fused::bilinear_scaled` into a map followed by [`super::conv3x3_with`]. Returns `Ok(false)`, doing
/// nothing, on a CPU without AVX-512F (the caller then runs those two steps); `Err` names the sizes
/// that do not match.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_up2_with(
    scratch: &mut Scratch,
    ww: &WinogradWeights,
    low: &[f32],
    hl: usize,
    wl: usize,
    s: &[f32],
    out: &mut [f32],
    epi: Epilogue,
) -> Result<bool, String> {
    let spec = ww.spec();
    let (h, w) = (2 * hl, 2 * wl);
    if low.len() != spec.c_in * hl * wl || s.len() != spec.c_in || out.len() != spec.c_out * h * w {
        return Err(format!(
            "Winograd x2-upsampling conv {spec:?} from {hl}x{wl}: expected {} input, {} factor and {} output floats, found {}, {} and {}",
            spec.c_in * hl * wl,
            spec.c_in,
            spec.c_out * h * w,
            low.len(),
            s.len(),
            out.len()
        ));
    }
    if Isa::detect() != Isa::Avx512 {
        return Ok(false);
    }
    run_blocks(scratch, ww, low, h, w, out, epi, narrow_strips(), Some(Up2 { hl, wl, s }));
    Ok(true)
}

/// One worker's windows: the six transform rows and the horizontal blends of the (at most four) input
/// rows they interpolate, `LD` floats each.
struct Windows {
    rows: [f32; ROWS * LD],
    h: [f32; 4 * LD],
}

impl Block<'_> {
    /// [`Block::input_transform`] of the upsampled, scaled map built from the low-resolution one in
    /// `self.input` (AVX-512F only: [`conv3x3_up2_with`] checked it).
    pub(super) fn input_transform_up2(&self, v: &mut [f32], up: Up2) {
        let vp = SyncPtr(v.as_mut_ptr());
        let fresh = || Windows { rows: [0.0; ROWS * LD], h: [0.0; 4 * LD] };
        if self.par {
            (0..self.ww.spec.c_in).into_par_iter().for_each_init(fresh, |win, i| self.channel_up2(i, up, win, vp));
        } else {
            // One set of windows for every channel (zeroing 10 KiB per channel and block would show).
            let mut win = fresh();
            (0..self.ww.spec.c_in).for_each(|i| self.channel_up2(i, up, &mut win, vp));
        }
    }

    /// Channel `i`'s tiles of this block into rows `xi * c_in + i` of `V` at `vp`.
    fn channel_up2(&self, i: usize, up: Up2, win: &mut Windows, vp: SyncPtr) {
        let (ci, nt, tw) = (self.ww.spec.c_in, self.plan.nt, self.plan.tw);
        let (hl, wl) = (up.hl, up.wl);
        let plane = &self.input[i * hl * wl..(i + 1) * hl * wl];
        let end = self.t0 + self.n;
        let mut t = self.t0;
        while t < end {
            // Tiles t..t + k: one tile row, at most SEG; the window covers whole 16-tile groups and starts
            // one column early (even), where `up2_hrow` writes straight into it.
            let (ty, tx) = (t / tw, t % tw);
            let k = (tw - tx).min(end - t).min(SEG);
            let len = 4 * k.next_multiple_of(16) + 3;
            let x0 = 4 * tx as isize - 2;
            // Output rows 4ty - 1 .. 4ty + 5 read input rows 2ty - 1 ..= 2ty + 2 (clamped to the map).
            let first = 2 * ty as isize - 1;
            let mut have = [false; 4];
            let mut inside = [false; ROWS];
            for (r, ins) in inside.iter_mut().enumerate() {
                let y = (4 * ty + r) as isize - 1;
                *ins = y >= 0 && (y as usize) < self.h;
                if !*ins {
                    continue;
                }
                let (y0, y1, wy0, wy1) = up2_vtaps(y as usize, hl);
                for q in [y0, y1] {
                    let slot = (q as isize - first) as usize;
                    if !have[slot] {
                        up2_hrow(&plane[q * wl..(q + 1) * wl], x0, true, &mut win.h[slot * LD..slot * LD + len]);
                        have[slot] = true;
                    }
                }
                let (s0, s1) = ((y0 as isize - first) as usize, (y1 as isize - first) as usize);
                let row = &mut win.rows[r * LD..r * LD + len];
                up2_vrow(&win.h[s0 * LD..s0 * LD + len], &win.h[s1 * LD..s1 * LD + len], wy0, wy1, up.s[i], true, row);
                // Outside the map the plain path reads +0; the blend above may have made -0 of it.
                let (lo, hi) = ((-x0).clamp(0, len as isize) as usize, (self.w as isize - x0).clamp(0, len as isize) as usize);
                row[..lo].fill(0.0);
                row[hi.max(lo)..].fill(0.0);
            }
            let rows: [Option<*const f32>; ROWS] = std::array::from_fn(|r| inside[r].then(|| win.rows[r * LD + 1..].as_ptr()));
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was detected; each window row has 4 ceil(k / 16) * 16 + 2 floats from its
            // pointer; channel i owns rows xi * c_in + i of V, whose columns t - t0 .. t - t0 + k lie in nt.
            unsafe {
                super::avx512::input_window(&rows, k, vp.get().add(i * nt + (t - self.t0)), ci * nt)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (rows, vp, ci, nt);
            t += k;
        }
    }
}
