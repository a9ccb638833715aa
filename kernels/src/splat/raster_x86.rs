//! The AVX-512 build of one 8-pixel blend group for GAGAvatar's 32 channels, written with intrinsics.
//!
//! Same float operations, in the same order, as `raster::blend_group` and the reference (so the result is
//! bitwise the same): the falloff and `exp` run on the 8 pixels of two Gaussians in one 512-bit register, the per-pixel
//! rules become 8-bit lane masks, and each pixel's 32-channel accumulator lives in two 512-bit registers
//! for the walk over a bucket (loaded from and saved to the group's `GroupState` around it). Alphas are
//! computed 4 Gaussians at a time (overlapping their latency chains), and results are stored channel by
//! channel, 8 pixels at once. Every lane's accumulate runs branch-free under
//! its blend mask (a masked add leaves a lane that does not blend untouched), which beats a data-dependent
//! branch per lane: on a head, about half the lanes blend any given Gaussian, in no predictable pattern.
//! No FMA anywhere: a fused multiply-add would round once where the reference rounds twice.

use std::arch::x86_64::*;

use super::colors::Elem;
use super::project::Splat2d;
use super::raster::{ChunkSplats, Frame, GroupState, CH_BLOCK, MAX_ALPHA, MIN_ALPHA, MIN_T};
use crate::matmul::SyncPtr;

/// `project::exp` on 16 lanes (two Gaussians' 8 pixels in one 512-bit register), operation for operation.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn exp16(x: __m512) -> __m512 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let c = _mm512_set1_ps;
    // `max_ps(x, c)` returns c when x is NaN, as `f32::max` does: a NaN argument becomes -110.
    let x = _mm512_min_ps(_mm512_max_ps(x, c(-110.0)), c(88.0));
    let shifted = _mm512_add_ps(_mm512_mul_ps(x, c(LOG2E)), c(ROUND));
    let n = _mm512_sub_ps(shifted, c(ROUND));
    let r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, c(LN2_HI))), _mm512_mul_ps(n, c(LN2_LO)));
    let r2 = _mm512_mul_ps(r, r);
    let horner = |acc: __m512, k: f32| _mm512_add_ps(_mm512_mul_ps(acc, r), c(k));
    let mut p = _mm512_mul_ps(c(1.987_569_1e-4), r);
    p = _mm512_add_ps(p, c(1.398_199_9e-3));
    p = horner(p, 8.333_452e-3);
    p = horner(p, 4.166_579_6e-2);
    p = horner(p, 1.666_666_5e-1);
    p = horner(p, 0.5);
    let p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, r2), r), c(1.0));
    let n = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B40_0000));
    let n1 = _mm512_srai_epi32::<1>(n);
    let pow2 = |e: __m512i| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(e, _mm512_set1_epi32(127))));
    _mm512_mul_ps(_mm512_mul_ps(p, pow2(n1)), pow2(_mm512_sub_epi32(n, n1)))
}

/// A Gaussian's 32 channels as two 16-float registers: f16 ones are widened by `vcvtph2ps` (exact,
/// subnormal halves included, whatever MXCSR says), so the accumulate sees the values the f32 path would.
/// Picked at compile time per `T`: no branch in the walk.
///
/// # Safety
/// The CPU must support AVX-512F; `p` must point at 32 readable values of `T`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
unsafe fn load_color32<T: Elem>(p: *const T) -> (__m512, __m512) {
    // SAFETY: forwarded from the contract; the casts follow `T`'s size (`Elem` is sealed to f32, f16).
    unsafe {
        if T::HALF {
            let h = p.cast::<__m256i>();
            (_mm512_cvtph_ps(_mm256_loadu_si256(h)), _mm512_cvtph_ps(_mm256_loadu_si256(h.add(1))))
        } else {
            let f = p.cast::<f32>();
            (_mm512_loadu_ps(f), _mm512_loadu_ps(f.add(16)))
        }
    }
}

/// Alphas of two splats at 8 pixels of a row, the reference's operations in its order (0 where the power is
/// positive, else `min(opacity exp(power), 0.99)`): the first array entry is `a`'s alphas at the pixels
/// `(px, pyf)` (lanes 0-7 of `px`, repeated in lanes 8-15), the second `b`'s, computed in one 512-bit register.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn alpha16(a: &Splat2d, b: &Splat2d, px: __m512, pyf: f32) -> [__m256; 2] {
    // Lanes 8-15 take `b`'s value.
    let pair = |va: f32, vb: f32| _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(va), _mm512_set1_ps(vb));
    let (dya, dyb) = (a.y - pyf, b.y - pyf);
    let (cdya, cdyb) = (a.conic[2] * dya * dya, b.conic[2] * dyb * dyb);
    let dx = _mm512_sub_ps(pair(a.x, b.x), px);
    let quad = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(pair(a.conic[0], b.conic[0]), dx), dx), pair(cdya, cdyb));
    let cross = _mm512_mul_ps(_mm512_mul_ps(pair(a.conic[1], b.conic[1]), dx), pair(dya, dyb));
    let power = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5), quad), cross);
    let v = _mm512_min_ps(_mm512_mul_ps(pair(a.opacity, b.opacity), exp16(power)), _mm512_set1_ps(MAX_ALPHA));
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(power, _mm512_setzero_ps());
    let v = _mm512_mask_blend_ps(positive, v, _mm512_setzero_ps());
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    [_mm512_castps512_ps256(v), hi]
}

/// Gaussians whose alphas are computed together (see `blend_group32`).
const BATCH: usize = 4;

/// `raster::blend_group` for 32 channels: blends the chunk's Gaussians listed in `bucket` into the 8
/// pixels of row `y` from column `gx`, continuing from `state` (accumulators held in registers for the walk).
///
/// # Safety
/// The CPU must support AVX2, AVX-512F and AVX-512VL, and `frame` must have exactly `CH_BLOCK` channels.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
pub unsafe fn blend_group32<T: Elem>(frame: &Frame<T>, chunk: &ChunkSplats, bucket: &[u8], gx: usize, y: usize, state: &mut GroupState) {
    let c = _mm256_set1_ps;
    let pyf = y as f32;
    let px = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(gx as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    let px16 = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(_mm512_castps256_ps512(px)), _mm256_castps_pd(px)));
    let mut live = state.live;
    // SAFETY: `state.t` holds 8 floats and each accumulator row 32 (two 16-float loads).
    let mut t = unsafe { _mm256_loadu_ps(state.t.as_ptr()) };
    let mut acc: [[__m512; 2]; 8] =
        std::array::from_fn(|l| unsafe { [_mm512_loadu_ps(state.acc[l].as_ptr()), _mm512_loadu_ps(state.acc[l].as_ptr().add(16))] });
    let (mut alpha_l, mut t_l) = ([0f32; 8], [0f32; 8]);

    // The falloff and `exp` are one long chain of dependent operations; computed for BATCH Gaussians at a
    // time, without branches in between, the chains overlap instead of each waiting out its latency
    // behind the data-dependent branches of the per-pixel rules. A partial last batch repeats its first
    // Gaussian in the spare slots and ignores them.
    'walk: for batch in bucket.chunks(BATCH) {
        let splat = |j: usize| &chunk.splats[batch.get(j).copied().unwrap_or(batch[0]) as usize];
        let [a0, a1] = alpha16(splat(0), splat(1), px16, pyf);
        // A bucket's last batch may hold 1 or 2 Gaussians: then one pair is enough.
        let [a2, a3] = if batch.len() > 2 { alpha16(splat(2), splat(3), px16, pyf) } else { [a0, a1] };
        let alphas = [a0, a1, a2, a3];
        for (&k, &alpha) in batch.iter().zip(&alphas) {
            let k = k as usize;
            let strong = _mm256_cmp_ps_mask::<_CMP_GE_OQ>(alpha, c(MIN_ALPHA));
            if strong == 0 {
                continue;
            }
            let test_t = _mm256_mul_ps(t, _mm256_sub_ps(c(1.0), alpha));
            let hit = live & strong;
            let stop = hit & _mm256_cmp_ps_mask::<_CMP_LT_OQ>(test_t, c(MIN_T));
            live &= !stop;
            let blend = hit & !stop;
            if blend != 0 {
                // SAFETY: both arrays hold 8 floats.
                unsafe {
                    _mm256_storeu_ps(alpha_l.as_mut_ptr(), alpha);
                    _mm256_storeu_ps(t_l.as_mut_ptr(), t);
                }
                let color = &frame.colors[chunk.ids[k] as usize * CH_BLOCK..][..CH_BLOCK];
                // SAFETY: `color` holds 32 values of `T`, which is f16 when `T::HALF` and f32 otherwise
                // (`Elem` is sealed): two 16-half (256-bit) or two 16-float (512-bit) loads in bounds.
                let (f0, f1) = unsafe { load_color32(color.as_ptr()) };
                for (l, acc) in acc.iter_mut().enumerate() {
                    // All 16 mask bits set when lane l blends, none otherwise.
                    let m = 0u16.wrapping_sub(((blend >> l) & 1) as u16);
                    // Volatile reads make these broadcasts from memory (a load each); otherwise the compiler
                    // extracts the lane with two shuffles on the port the 512-bit arithmetic needs.
                    // SAFETY: in-bounds reads of local arrays.
                    let (wa, wt) =
                        unsafe { (_mm512_set1_ps(std::ptr::read_volatile(&alpha_l[l])), _mm512_set1_ps(std::ptr::read_volatile(&t_l[l]))) };
                    acc[0] = _mm512_mask_add_ps(acc[0], m, acc[0], _mm512_mul_ps(_mm512_mul_ps(f0, wa), wt));
                    acc[1] = _mm512_mask_add_ps(acc[1], m, acc[1], _mm512_mul_ps(_mm512_mul_ps(f1, wa), wt));
                }
            }
            t = _mm256_mask_blend_ps(blend, t, test_t);
            if live == 0 {
                break 'walk;
            }
        }
    }

    state.live = live;
    // SAFETY: as for the loads above.
    unsafe {
        _mm256_storeu_ps(state.t.as_mut_ptr(), t);
        for (row, acc) in state.acc.iter_mut().zip(&acc) {
            _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
        }
    }
}

/// Writes a finished 32-channel group, `acc + T background`, for `lanes` (<= 8) pixels of row `y` from
/// column `gx`: channel by channel, 8 neighbouring pixels per store (pixel by pixel, every store would land
/// in another channel plane, 1 MiB apart at official size). Each channel's 8 values are gathered from the
/// pixel-major accumulators (8x8 register transposes instead measured within the noise, 1-5 %).
///
/// # Safety
/// The CPU must support AVX2, AVX-512F and AVX-512VL; `out` as for `raster::render_tile` (pixels `gx ..
/// gx + lanes` of row `y` are the calling tile's), and `frame` must have exactly `CH_BLOCK` channels.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
pub unsafe fn store_group32<T>(frame: &Frame<T>, state: &GroupState, gx: usize, lanes: usize, y: usize, out: &SyncPtr) {
    let plane = frame.width * frame.height;
    let pix = y * frame.width + gx;
    let lanes_mask = ((1u16 << lanes) - 1) as u8;
    // SAFETY: `state.t` holds 8 floats.
    let t = unsafe { _mm256_loadu_ps(state.t.as_ptr()) };
    let stride = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    for (ch, &b) in frame.background.iter().take(CH_BLOCK).enumerate() {
        // SAFETY: lane l reads `state.acc[l][ch]`, inside the 8 x 32 array.
        let a = unsafe { _mm256_i32gather_ps::<4>(state.acc.as_ptr().cast::<f32>().add(ch), stride) };
        let v = _mm256_add_ps(a, _mm256_mul_ps(t, _mm256_set1_ps(b)));
        // SAFETY: pixels (gx .. gx + lanes, y) lie in this tile and ch < 32 = channels: inside the
        // `[channels, height, width]` buffer our caller vouched for, and no other tile writes them; the
        // masked store touches only those `lanes` floats.
        unsafe { _mm256_mask_storeu_ps(out.0.add(ch * plane + pix), lanes_mask, v) };
    }
}

/// Keeps `exp` and `exp16` visibly tied: the unit test below compares them on every lane.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::splat::project::exp;
    use crate::testing::seeded;

    #[test]
    fn exp16_equals_the_scalar_exp_bit_for_bit_including_extremes_and_nan() {
        if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")) {
            return;
        }
        let mut xs: Vec<f32> = seeded(3, 4096).iter().map(|v| v * 120.0).collect();
        xs.extend([0.0, -0.0, -110.0, -200.0, 88.0, 100.0, f32::NAN, f32::NEG_INFINITY, f32::INFINITY, -1e-30, 1e-30, -87.3]);
        xs.resize(xs.len().div_ceil(16) * 16, 0.0);
        for chunk in xs.chunks(16) {
            let mut got = [0f32; 16];
            // SAFETY: features checked above; `chunk` and `got` hold 16 floats.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp16(_mm512_loadu_ps(chunk.as_ptr()))) };
            for (g, &x) in got.iter().zip(chunk) {
                assert_eq!(g.to_bits(), exp(x).to_bits(), "exp16({x})");
            }
        }
    }
}
