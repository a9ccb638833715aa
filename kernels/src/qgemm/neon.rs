//! aarch64 int8 micro-kernels (see `kernels::micro_i8` for the contract) and the `fcvtl` widening.
//!
//! SDOT goes through `asm!`: `vdotq_s32` is still unstable in the Debian rustc the boards are built with.

// Row loops index the accumulator array by row number next to pointer offsets; clearer than zips.
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;
use std::arch::asm;

use super::{KG, MR};

/// `acc.4s[i] += dot(b.16b[4i..4i+4], a.4b[lane])`.
macro_rules! sdot {
    ($acc:expr, $b:expr, $a:expr, $lane:literal) => {
        asm!(
            concat!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[", $lane, "]"),
            acc = inout(vreg) $acc,
            b = in(vreg) $b,
            a = in(vreg) $a,
            options(pure, nomem, nostack)
        )
    };
}

/// 8 x 8 tile with SDOT (by element): rows 0-3 and 4-7 each in one `A` register, columns 0-3 and 4-7
/// in two `B` registers, 16 accumulators.
///
/// # Safety
/// The CPU has the dot-product extension; pointers as in `kernels::micro_i8` with `nr = 8`.
#[target_feature(enable = "neon,dotprod")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn i8_8x8_sdot(groups: usize, a: *const i8, b: *const u8, offs: *const u32, c: *mut i32, ldc: usize, first: bool) {
    // SAFETY: every offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[vdupq_n_s32(0); 2]; MR];
        for g in 0..groups {
            let bp = b.add(*offs.add(g) as usize) as *const i8;
            let bv = [vld1q_s8(bp), vld1q_s8(bp.add(16))];
            let ap = a.add(g * MR * KG);
            let (a0, a1) = (vld1q_s8(ap), vld1q_s8(ap.add(16)));
            for h in 0..2 {
                sdot!(acc[0][h], bv[h], a0, "0");
                sdot!(acc[1][h], bv[h], a0, "1");
                sdot!(acc[2][h], bv[h], a0, "2");
                sdot!(acc[3][h], bv[h], a0, "3");
                sdot!(acc[4][h], bv[h], a1, "0");
                sdot!(acc[5][h], bv[h], a1, "1");
                sdot!(acc[6][h], bv[h], a1, "2");
                sdot!(acc[7][h], bv[h], a1, "3");
            }
        }
        store(&acc, c, ldc, first);
    }
}

/// 8 x 8 tile with baseline NEON: `smull` of 4-byte groups against the row's weights repeated, then
/// `sadalp` into pairwise i32 sums; a final `addp` joins the pairs. Four rows per pass keeps the
/// 16 accumulators in registers.
///
/// # Safety
/// Pointers as in `kernels::micro_i8` with `nr = 8` (NEON is part of the aarch64 baseline).
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn i8_8x8_neon(groups: usize, a: *const i8, b: *const u8, offs: *const u32, c: *mut i32, ldc: usize, first: bool) {
    // SAFETY: every offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut out = [[vdupq_n_s32(0); 2]; MR];
        for half in 0..2 {
            // acc[r][s]: column pair s (0: c0-1, 1: c2-3, 2: c4-5, 3: c6-7), lanes (c, t01), (c, t23), ...
            let mut acc = [[vdupq_n_s32(0); 4]; 4];
            for g in 0..groups {
                let bp = b.add(*offs.add(g) as usize) as *const i8;
                let (b0, b1) = (vld1q_s8(bp), vld1q_s8(bp.add(16)));
                let ap = a.add((g * MR + half * 4) * KG) as *const i32;
                for r in 0..4 {
                    let av = vreinterpretq_s8_s32(vdupq_n_s32(ap.add(r).read_unaligned()));
                    acc[r][0] = vpadalq_s16(acc[r][0], vmull_s8(vget_low_s8(b0), vget_low_s8(av)));
                    acc[r][1] = vpadalq_s16(acc[r][1], vmull_high_s8(b0, av));
                    acc[r][2] = vpadalq_s16(acc[r][2], vmull_s8(vget_low_s8(b1), vget_low_s8(av)));
                    acc[r][3] = vpadalq_s16(acc[r][3], vmull_high_s8(b1, av));
                }
            }
            for r in 0..4 {
                out[half * 4 + r] = [vpaddq_s32(acc[r][0], acc[r][1]), vpaddq_s32(acc[r][2], acc[r][3])];
            }
        }
        store(&out, c, ldc, first);
    }
}

/// Writes (or adds) 8 rows of two 4-lane vectors at stride `ldc`.
///
/// # Safety
/// `c` has 8 rows of 8 writable i32 at stride `ldc`.
#[target_feature(enable = "neon")]
unsafe fn store(acc: &[[int32x4_t; 2]; MR], c: *mut i32, ldc: usize, first: bool) {
    // SAFETY: as vouched by the caller.
    unsafe {
        for r in 0..MR {
            for h in 0..2 {
                let p = c.add(r * ldc + 4 * h);
                let v = if first { acc[r][h] } else { vaddq_s32(acc[r][h], vld1q_s32(p)) };
                vst1q_s32(p, v);
            }
        }
    }
}

/// Widens `src` (IEEE half bits) into `dst` with `fcvtl`, 4 at a time; the tail through `half`.
pub fn widen_f16_neon(src: &[u16], dst: &mut [f32]) {
    assert!(dst.len() >= src.len(), "widen_f16_neon: destination shorter than source");
    let full = src.len() / 4 * 4;
    for (s, d) in src[..full].chunks_exact(4).zip(dst.chunks_exact_mut(4)) {
        // SAFETY: 4 halves are read and 4 floats written, inside the chunks; fcvtl is baseline aarch64.
        unsafe {
            let h = vld1_u16(s.as_ptr());
            let f: float32x4_t;
            asm!("fcvtl {o:v}.4s, {i:v}.4h", o = out(vreg) f, i = in(vreg) h, options(pure, nomem, nostack));
            vst1q_f32(d.as_mut_ptr(), f);
        }
    }
    for (s, d) in src[full..].iter().zip(&mut dst[full..]) {
        *d = half::f16::from_bits(*s).to_f32();
    }
}

/// Rounds `src` to the nearest half (ties to even, the default FPCR mode) into `dst` (IEEE half bits)
/// with `fcvtn`, 4 at a time; the tail through `half`.
pub fn narrow_f16_neon(src: &[f32], dst: &mut [u16]) {
    assert!(dst.len() >= src.len(), "narrow_f16_neon: destination shorter than source");
    let full = src.len() / 4 * 4;
    for (s, d) in src[..full].chunks_exact(4).zip(dst.chunks_exact_mut(4)) {
        // SAFETY: 4 floats are read and 4 halves written, inside the chunks; fcvtn is baseline aarch64.
        unsafe {
            let f = vld1q_f32(s.as_ptr());
            let h: uint16x4_t;
            asm!("fcvtn {o:v}.4h, {i:v}.4s", o = out(vreg) h, i = in(vreg) f, options(pure, nomem, nostack));
            vst1_u16(d.as_mut_ptr(), h);
        }
    }
    for (s, d) in src[full..].iter().zip(&mut dst[full..]) {
        *d = half::f16::from_f32(*s).to_bits();
    }
}
