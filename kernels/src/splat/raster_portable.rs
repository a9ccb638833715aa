//! The portable blend of one 8-pixel group (SSE2 on x86-64, NEON on aarch64, and AVX2 when compiled
//! inside `raster::render_tile_avx2`), for any channel count: written lane by lane so the compiler
//! vectorises it, with every lane performing the reference's float operations in its order.

use super::colors::Elem;
use super::project::exp;
use super::raster::{ChunkSplats, Frame, GroupState, CH_BLOCK, LANES, MAX_ALPHA, MIN_ALPHA, MIN_T};
use crate::matmul::SyncPtr;

/// Blends the chunk's Gaussians listed in `bucket` into the 8 pixels of row `y` from column `gx`, channels
/// `ch0..ch0 + cw`, continuing from `state`. `FIXED > 0` fixes the channel count at compile time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn blend_group<const FIXED: usize, T: Elem>(
    frame: &Frame<T>,
    chunk: &ChunkSplats,
    bucket: &[u8],
    gx: usize,
    y: usize,
    ch0: usize,
    cw: usize,
    state: &mut GroupState,
) {
    let cw = if FIXED > 0 { FIXED } else { cw };
    let mut t = state.t;
    let mut live: [bool; LANES] = std::array::from_fn(|l| state.live >> l & 1 == 1);
    let mut acc = state.acc;
    let pyf = y as f32;
    let pxf: [f32; LANES] = std::array::from_fn(|l| (gx + l) as f32);
    let c = frame.channels;
    // Where f16 colours are widened (exactly) before the f32 accumulate; unused for f32 colours.
    let mut wide = [0f32; CH_BLOCK];

    for &k in bucket {
        let k = k as usize;
        let s = &chunk.splats[k];
        let (sx, opacity) = (s.x, s.opacity);
        let [ca, cb, cc] = s.conic;
        let dy = s.y - pyf;
        let cdy = cc * dy * dy;
        let mut alpha = [0f32; LANES];
        let mut any = false;
        for l in 0..LANES {
            let dx = sx - pxf[l];
            let power = -0.5 * (ca * dx * dx + cdy) - cb * dx * dy;
            let a = (opacity * exp(power)).min(MAX_ALPHA);
            alpha[l] = if power > 0.0 { 0.0 } else { a };
            any |= alpha[l] >= MIN_ALPHA;
        }
        if !any {
            continue;
        }
        // The official per-pixel rules for all lanes at once: a lane blends when it is live and alpha
        // reaches 1/255, unless T would fall below 1e-4, which stops it without blending.
        let mut blend = [false; LANES];
        let mut next_t = t;
        let mut any_blend = false;
        let mut any_live = false;
        for l in 0..LANES {
            let a = alpha[l];
            let test_t = t[l] * (1.0 - a);
            let hit = live[l] & (a >= MIN_ALPHA);
            let stop = hit & (test_t < MIN_T);
            live[l] &= !stop;
            blend[l] = hit & !stop;
            next_t[l] = if blend[l] { test_t } else { t[l] };
            any_blend |= blend[l];
            any_live |= live[l];
        }
        if any_blend {
            let color = T::widen(&frame.colors[chunk.ids[k] as usize * c + ch0..][..cw], &mut wide);
            for l in 0..LANES {
                if blend[l] {
                    let (a, tl) = (alpha[l], t[l]);
                    for (acc, &f) in acc[l][..cw].iter_mut().zip(color) {
                        *acc += f * a * tl;
                    }
                }
            }
        }
        t = next_t;
        if !any_live {
            break;
        }
    }
    state.t = t;
    state.live = live.iter().enumerate().fold(0, |m, (l, &v)| m | (u8::from(v) << l));
    state.acc = acc;
}

/// Writes a group's result, `acc + T background`, for `lanes` pixels of row `y` from column `gx`, channels
/// `ch0..` of `state`'s block.
#[inline(always)]
pub(super) fn store_group<T>(frame: &Frame<T>, state: &GroupState, gx: usize, lanes: usize, y: usize, ch0: usize, out: &SyncPtr) {
    let plane = frame.width * frame.height;
    let cw = CH_BLOCK.min(frame.channels - ch0);
    let bg = &frame.background[ch0..ch0 + cw];
    for l in 0..lanes {
        let pix = y * frame.width + gx + l;
        for (ch, (&a, &b)) in state.acc[l][..cw].iter().zip(bg).enumerate() {
            // SAFETY: pixel (gx + l, y) lies in this tile and ch0 + ch < channels, so the index is inside the
            // `[channels, height, width]` buffer `render_tile`'s caller vouched for, and no other tile writes it.
            unsafe { *out.0.add((ch0 + ch) * plane + pix) = a + state.t[l] * b };
        }
    }
}
