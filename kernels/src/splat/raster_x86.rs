//! The AVX-512 build of one 8-pixel blend group for GAGAvatar's 32 channels, written with intrinsics.
//!
//! Same float operations, in the same order, as `raster::blend_group` and the reference (so the result is
//! bitwise the same): the falloff and `exp` run on the 8 pixels in one 256-bit register, the per-pixel
//! rules become 8-bit lane masks, and each pixel's 32-channel accumulator lives in two 512-bit registers
//! for the whole walk. Alphas are computed 4 Gaussians at a time (overlapping their latency chains), and
//! results are stored channel by channel, 8 pixels at once. Every lane's accumulate runs branch-free under
//! its blend mask (a masked add leaves a lane that does not blend untouched), which beats a data-dependent
//! branch per lane: on a head, about half the lanes blend any given Gaussian, in no predictable pattern.
//! No FMA anywhere: a fused multiply-add would round once where the reference rounds twice.

use std::arch::x86_64::*;

use super::project::Splat2d;
use super::raster::{Frame, TileSplats, CH_BLOCK, MAX_ALPHA, MIN_ALPHA, MIN_T};
use crate::matmul::SyncPtr;

/// `project::exp` on 8 lanes, operation for operation.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn exp8(x: __m256) -> __m256 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let c = _mm256_set1_ps;
    // `max_ps(x, c)` returns c when x is NaN, as `f32::max` does: a NaN argument becomes -110.
    let x = _mm256_min_ps(_mm256_max_ps(x, c(-110.0)), c(88.0));
    let shifted = _mm256_add_ps(_mm256_mul_ps(x, c(LOG2E)), c(ROUND));
    let n = _mm256_sub_ps(shifted, c(ROUND));
    let r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, c(LN2_HI))), _mm256_mul_ps(n, c(LN2_LO)));
    let r2 = _mm256_mul_ps(r, r);
    let horner = |acc: __m256, k: f32| _mm256_add_ps(_mm256_mul_ps(acc, r), c(k));
    let mut p = _mm256_mul_ps(c(1.987_569_1e-4), r);
    p = _mm256_add_ps(p, c(1.398_199_9e-3));
    p = horner(p, 8.333_452e-3);
    p = horner(p, 4.166_579_6e-2);
    p = horner(p, 1.666_666_5e-1);
    p = horner(p, 0.5);
    let p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), c(1.0));
    let n = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B40_0000));
    let n1 = _mm256_srai_epi32::<1>(n);
    let pow2 = |e: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(e, _mm256_set1_epi32(127))));
    _mm256_mul_ps(_mm256_mul_ps(p, pow2(n1)), pow2(_mm256_sub_epi32(n, n1)))
}

/// Gaussians whose alphas are computed together (see `blend_group32`).
const BATCH: usize = 4;

/// Alpha of splat `s` at the 8 pixels `(px, pyf)`, the reference's operations in its order: 0 where the
/// power is positive, else `min(opacity exp(power), 0.99)`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn alpha8(s: &Splat2d, px: __m256, pyf: f32) -> __m256 {
    let c = _mm256_set1_ps;
    let [ca, cb, cc] = s.conic;
    let dy = s.y - pyf;
    let cdy = cc * dy * dy;
    // power = -0.5 * (ca * dx * dx + cdy) - cb * dx * dy, each product left to right.
    let dx = _mm256_sub_ps(c(s.x), px);
    let quad = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(c(ca), dx), dx), c(cdy));
    let power = _mm256_sub_ps(_mm256_mul_ps(c(-0.5), quad), _mm256_mul_ps(_mm256_mul_ps(c(cb), dx), c(dy)));
    let a = _mm256_min_ps(_mm256_mul_ps(c(s.opacity), exp8(power)), c(MAX_ALPHA));
    let positive = _mm256_cmp_ps_mask::<_CMP_GT_OQ>(power, _mm256_setzero_ps());
    _mm256_mask_blend_ps(positive, a, _mm256_setzero_ps())
}

/// `raster::blend_group` for 32 channels: blends `lanes` (<= 8) pixels of row `y` from column `gx`, walking
/// `row`, the Gaussians whose box reaches this group.
///
/// # Safety
/// The CPU must support AVX2, AVX-512F and AVX-512VL; `out` as for `raster::render_tile`, and `frame` must
/// have exactly `CH_BLOCK` channels.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
pub unsafe fn blend_group32(frame: &Frame, splats: &TileSplats, row: &[u32], gx: usize, lanes: usize, y: usize, out: &SyncPtr) {
    let c = _mm256_set1_ps;
    let pyf = y as f32;
    let px = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(gx as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    let mut t = c(1.0);
    let mut live: u8 = ((1u16 << lanes) - 1) as u8;
    let mut acc = [[_mm512_setzero_ps(); 2]; 8];
    let (mut alpha_l, mut t_l) = ([0f32; 8], [0f32; 8]);

    // The falloff and `exp` are one long chain of dependent operations; computed for BATCH Gaussians at a
    // time, without branches in between, the chains overlap instead of each waiting out its latency
    // behind the data-dependent branches of the per-pixel rules. A partial last batch repeats its first
    // Gaussian in the spare slots and ignores them.
    'walk: for batch in row.chunks(BATCH) {
        let alphas: [__m256; BATCH] = std::array::from_fn(|j| {
            let k = batch.get(j).copied().unwrap_or(batch[0]) as usize;
            alpha8(&splats.splats[k], px, pyf)
        });
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
                let color = &frame.colors[splats.ids[k] as usize * CH_BLOCK..][..CH_BLOCK];
                // SAFETY: `color` holds 32 floats, two 16-float loads.
                let (f0, f1) = unsafe { (_mm512_loadu_ps(color.as_ptr()), _mm512_loadu_ps(color.as_ptr().add(16))) };
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

    let mut sums = [[0f32; CH_BLOCK]; 8];
    for (sum, acc) in sums.iter_mut().zip(&acc) {
        // SAFETY: each row of `sums` holds 32 floats.
        unsafe {
            _mm512_storeu_ps(sum.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(sum.as_mut_ptr().add(16), acc[1]);
        }
    }
    // Written channel by channel, 8 neighbouring pixels per store: pixel by pixel, every store would land
    // in another channel plane (1 MiB apart at official size).
    let plane = frame.width * frame.height;
    let pix = y * frame.width + gx;
    let stride = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    let lanes_mask = ((1u16 << lanes) - 1) as u8;
    for (ch, &b) in frame.background.iter().take(CH_BLOCK).enumerate() {
        // SAFETY: lane l reads `sums[l][ch]`, inside the 8 x 32 array.
        let a = unsafe { _mm256_i32gather_ps::<4>(sums.as_ptr().cast::<f32>().add(ch), stride) };
        let v = _mm256_add_ps(a, _mm256_mul_ps(t, c(b)));
        // SAFETY: pixels (gx .. gx + lanes, y) lie in this tile and ch < 32 = channels: inside the
        // `[channels, height, width]` buffer our caller vouched for, and no other tile writes them; the
        // masked store touches only those `lanes` floats.
        unsafe { _mm256_mask_storeu_ps(out.0.add(ch * plane + pix), lanes_mask, v) };
    }
}

/// Keeps `exp` and `exp8` visibly tied: the unit test below compares them on every lane.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::splat::project::exp;
    use crate::testing::seeded;

    #[test]
    fn exp8_equals_the_scalar_exp_bit_for_bit_including_extremes_and_nan() {
        if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")) {
            return;
        }
        let mut xs: Vec<f32> = seeded(3, 4096).iter().map(|v| v * 120.0).collect();
        xs.extend([0.0, -0.0, -110.0, -200.0, 88.0, 100.0, f32::NAN, f32::NEG_INFINITY, f32::INFINITY, -1e-30, 1e-30, -87.3]);
        xs.resize(xs.len().div_ceil(8) * 8, 0.0);
        for chunk in xs.chunks(8) {
            let mut got = [0f32; 8];
            // SAFETY: features checked above; `chunk` and `got` hold 8 floats.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(chunk.as_ptr()))) };
            for (g, &x) in got.iter().zip(chunk) {
                assert_eq!(g.to_bits(), exp(x).to_bits(), "exp8({x})");
            }
        }
    }
}
