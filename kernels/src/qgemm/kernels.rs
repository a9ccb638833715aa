//! The int8 micro-kernel contract, its dispatch, and the portable kernel every other path must match.
//!
//! One call computes a full `MR x nr` tile of i32 over `groups` groups of 4 inner values:
//! `c[r * ldc + j] (= or +=) sum_g sum_t a[(g * MR + r) * 4 + t] * B(g, j, t)` with
//! `B(g, j, t) = b[offs[g] + j * 4 + t]` read as i8, or as `u8 = x + 128` on offset ISAs (whose caller
//! subtracts `128 * row sum`). Tiles are always full: callers give padded buffers.

use super::{QIsa, KG, MR};

/// Portable tile width.
const NR: usize = 8;

/// Runs one tile on `isa`.
///
/// # Safety
/// `a` holds `groups * MR * 4` bytes; `offs` holds `groups` entries and every `b + offs[g]` has
/// `isa.nr() * 4` readable bytes; `c` has `MR` rows of `isa.nr()` writable i32 at stride `ldc`; `isa`
/// runs on this CPU.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) unsafe fn micro_i8(
    isa: QIsa,
    groups: usize,
    a: *const i8,
    b: *const u8,
    offs: *const u32,
    c: *mut i32,
    ldc: usize,
    first: bool,
) {
    // SAFETY: forwarded; the ISA was detected on this CPU by the caller.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Vnni => super::x86::i8_8x32_vnni(groups, a, b, offs, c, ldc, first),
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx2 => super::x86::i8_8x8_avx2(groups, a, b, offs, c, ldc, first),
            #[cfg(target_arch = "aarch64")]
            QIsa::NeonDot => super::neon::i8_8x8_sdot(groups, a, b, offs, c, ldc, first),
            #[cfg(target_arch = "aarch64")]
            QIsa::Neon => super::neon::i8_8x8_neon(groups, a, b, offs, c, ldc, first),
            _ => i8_8x8_portable(groups, a, b, offs, c, ldc, first),
        }
    }
}

/// Portable 8 x 8 tile (i8 activations). See [`micro_i8`].
///
/// # Safety
/// As [`micro_i8`] with `nr = 8`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn i8_8x8_portable(groups: usize, a: *const i8, b: *const u8, offs: *const u32, c: *mut i32, ldc: usize, first: bool) {
    // SAFETY: every offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[0i32; NR]; MR];
        for g in 0..groups {
            let bv: [[i8; KG]; NR] = std::ptr::read_unaligned(b.add(*offs.add(g) as usize) as *const [[i8; KG]; NR]);
            let av: [[i8; KG]; MR] = std::ptr::read_unaligned(a.add(g * MR * KG) as *const [[i8; KG]; MR]);
            for (row, ar) in acc.iter_mut().zip(&av) {
                for (v, bj) in row.iter_mut().zip(&bv) {
                    *v = v.wrapping_add((0..KG).map(|t| ar[t] as i32 * bj[t] as i32).sum::<i32>());
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let p = c.add(r * ldc + j);
                *p = if first { v } else { (*p).wrapping_add(v) };
            }
        }
    }
}
