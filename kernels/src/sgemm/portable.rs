//! Portable 8x8 micro-kernel (aarch64 and anything without the x86 kernels): plain loops over fixed-size
//! arrays that the compiler can keep in vector registers.

use super::MR;

const NR: usize = 8;

/// 8x8 tile. See `super::micro` for the contract.
///
/// # Safety
/// Pointers as in `super::micro` with `nr = 8`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn kernel_8x8(kc: usize, a: *const f32, b: *const f32, ldb: usize, c: *mut f32, ldc: usize, first: bool, bias: *const f32) {
    // SAFETY: every pointer offset below stays within the ranges the caller vouched for.
    unsafe {
        let mut acc = [[0f32; NR]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if first { *bias.add(r) } else { *c.add(r * ldc + j) };
            }
        }
        for q in 0..kc {
            let bv: [f32; NR] = std::ptr::read_unaligned(b.add(q * ldb) as *const [f32; NR]);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = *a.add(q * MR + r);
                for (v, &bj) in row.iter_mut().zip(&bv) {
                    *v += av * bj;
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                *c.add(r * ldc + j) = v;
            }
        }
    }
}
