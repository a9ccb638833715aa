//! Our own packed SGEMM for the convolution path: `C (m x n) = A (m x k) * B (k x n) [+ bias]` with row-major
//! `B` and `C` (a `[c_out, pixels]` output plane set), `A` packed once into micro-panels of [`MR`] rows.
//!
//! Why not the `gemm` crate here: it allocates its packing buffers on every call (so a warmed-up frame
//! was not allocation-free) and packs `B` again after im2col already copied it. Here `B` is read in place
//! (the im2col band, or the input map itself for 1x1), only a partial last column strip is copied into a
//! caller-owned tail panel, and `A` is packed into caller-owned memory, so a call never allocates.
//!
//! Micro-kernels, picked at run time: AVX-512F 8x32 and AVX2+FMA 8x8 on x86_64, and a portable 8x8
//! fallback elsewhere. The inner dimension is cut into blocks of at most [`KC`] so a `B` strip stays in L1;
//! the split depends on `k` only, and the threaded path splits over rows of `C` only, so results do not
//! depend on the thread count.

#[cfg(target_arch = "x86_64")]
mod x86;

mod portable;

use rayon::prelude::*;

use crate::matmul::SyncPtr;

/// Rows of `A` (output channels) per micro-panel, for every ISA.
pub const MR: usize = 8;

/// Largest inner-dimension block: a 32-column `B` strip of 256 rows is 32 KiB (L1).
pub const KC: usize = 256;

/// Which micro-kernel this machine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The widest kernel the running CPU supports (detected once, cached by std).
    pub fn detect() -> Isa {
        Isa::WIDEST_FIRST.into_iter().find(|isa| isa.runs()).unwrap_or(Isa::Portable)
    }

    /// Every kernel the running CPU can run, widest first (the last is always `Portable`): tests and
    /// benches run each.
    pub fn available() -> Vec<Isa> {
        Isa::WIDEST_FIRST.into_iter().filter(|isa| isa.runs()).collect()
    }

    /// Every kernel, widest first.
    const WIDEST_FIRST: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// Whether this kernel runs on the running CPU (allocation-free: per-call checks use it).
    pub fn runs(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            Isa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Columns of `C` per micro-tile.
    pub fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 | Isa::Portable => 8,
        }
    }
}

/// Floats [`pack_a`] needs for an `m x k` matrix: `ceil(m / MR)` panels of `k * MR` weights, element
/// `(r, q)` of panel `p` at `p * k * MR + q * MR + r`. The bias is kept apart ([`pack_bias`]) so a panel set
/// can be borrowed straight from a model file that stores this layout.
pub fn packed_a_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k
}

/// Floats [`pack_bias`] writes for `m` rows: `m` rounded up to a whole panel.
pub fn bias_len(m: usize) -> usize {
    m.div_ceil(MR) * MR
}

/// Floats of the tail panel [`gemm`] needs for `k` rows on `isa` (a copy of the last partial column strip).
pub fn tail_len(isa: Isa, k: usize) -> usize {
    k * isa.nr()
}

/// Packs `a[r * k + q]` (row-major `m x k`, e.g. PyTorch conv weights `[c_out, c_in*kh*kw]`) into
/// `dst[..packed_a_len(m, k)]`; rows past `m` are zero.
pub fn pack_a(m: usize, k: usize, a: &[f32], dst: &mut [f32]) {
    assert!(a.len() >= m * k, "pack_a: weight has {} floats, {m}x{k} needs {}", a.len(), m * k);
    for (p, out) in dst[..packed_a_len(m, k)].chunks_exact_mut((MR * k).max(1)).enumerate() {
        for r in 0..MR {
            let row = p * MR + r;
            for q in 0..k {
                out[q * MR + r] = if row < m { a[row * k + q] } else { 0.0 };
            }
        }
    }
}

/// The inverse of [`pack_a`]: the row-major `m x k` matrix from its panels (padding rows dropped).
pub fn unpack_a(m: usize, k: usize, panels: &[f32], dst: &mut [f32]) {
    assert!(panels.len() >= packed_a_len(m, k) && dst.len() >= m * k, "unpack_a: buffers too short for {m}x{k}");
    for (row, out) in dst[..m * k].chunks_exact_mut(k.max(1)).enumerate() {
        let (p, r) = (row / MR, row % MR);
        for (q, v) in out.iter_mut().enumerate() {
            *v = panels[p * MR * k + q * MR + r];
        }
    }
}

/// The bias (or zeros) padded to whole panels into `dst[..bias_len(m)]`.
pub fn pack_bias(m: usize, bias: Option<&[f32]>, dst: &mut [f32]) {
    for (r, d) in dst[..bias_len(m)].iter_mut().enumerate() {
        *d = if r < m { bias.map_or(0.0, |b| b[r]) } else { 0.0 };
    }
}

/// `c[r * ldc + j] = bias[r] + sum_q A[r, q] * b[q * ldb + j]` for `r < m`, `j < n`, with `A` from [`pack_a`]
/// and `bias` from [`pack_bias`].
///
/// `tail` must hold [`tail_len`] floats. `threads > 1` splits the rows of `C` over rayon's current pool
/// (no allocation once the pool is warm).
///
/// # Safety
/// Rows `r < m`, columns `j < n` of `c` (stride `ldc`) must be valid for writes and untouched by anyone else
/// during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    bias: &[f32],
    b: &[f32],
    ldb: usize,
    tail: &mut [f32],
    c: *mut f32,
    ldc: usize,
    threads: usize,
) {
    let nr = isa.nr();
    assert!(a.len() >= packed_a_len(m, k), "sgemm: packed A too short");
    assert!(bias.len() >= bias_len(m), "sgemm: packed bias too short");
    assert!(k == 0 || n == 0 || (k - 1) * ldb + n <= b.len(), "sgemm: B view out of bounds");
    assert!(tail.len() >= tail_len(isa, k), "sgemm: tail panel too short");
    if m == 0 || n == 0 {
        return;
    }
    // The partial last strip is read in place when `nr` columns fit inside `b` (padded im2col rows; the
    // extra columns only reach discarded lanes), else copied once, zero padded, into `tail`.
    let full = n / nr * nr;
    let tail_in_place = k == 0 || (k - 1) * ldb + full + nr <= b.len();
    if full < n && !tail_in_place {
        for q in 0..k {
            let dst = &mut tail[q * nr..(q + 1) * nr];
            dst[..n - full].copy_from_slice(&b[q * ldb + full..q * ldb + n]);
            dst[n - full..].fill(0.0);
        }
    }
    let panels = m.div_ceil(MR);
    let (cp, tail) = (SyncPtr(c), &*tail);
    let rows = |p0: usize, p1: usize| {
        // SAFETY: panels p0..p1 own rows p0*MR..p1*MR of C; the caller vouched for C.
        unsafe { panels_range(isa, p0, p1, m, n, k, a, bias, b, ldb, (!tail_in_place).then_some(tail), cp.get(), ldc) }
    };
    if threads > 1 && panels >= 2 {
        // Chunks fixed by the shape (not the thread count): results stay bitwise identical anyway,
        // since each output element is computed by the same sequence of FMAs wherever it runs.
        (0..panels).into_par_iter().for_each(|p| rows(p, p + 1));
    } else {
        rows(0, panels);
    }
}

/// Micro-panels `p0..p1` of `A` times all of `B`, in `KC` blocks; `tail` holds the copied last strip
/// when it cannot be read in place.
///
/// # Safety
/// As [`gemm`], for rows `p0*MR..min(p1*MR, m)`.
#[allow(clippy::too_many_arguments)]
unsafe fn panels_range(
    isa: Isa,
    p0: usize,
    p1: usize,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    bias: &[f32],
    b: &[f32],
    ldb: usize,
    tail: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    let nr = isa.nr();
    let kc_step = kc_step(k);
    let panel_len = MR * k;
    let mut q0 = 0;
    loop {
        let kc = kc_step.min(k - q0);
        let first = q0 == 0;
        for j0 in (0..n).step_by(nr) {
            let cols = nr.min(n - j0);
            // Full strips read B in place; the last partial one reads the zero-padded tail copy.
            let (bp, bld) = match tail {
                Some(t) if cols < nr => (t.as_ptr().wrapping_add(q0 * nr), nr),
                _ => (b.as_ptr().wrapping_add(q0 * ldb + j0), ldb),
            };
            for p in p0..p1 {
                let panel = &a[p * panel_len..(p + 1) * panel_len];
                let pb = &bias[p * MR..(p + 1) * MR];
                let rows_here = MR.min(m - p * MR);
                // SAFETY: A/B pointers stay inside their slices for kc rows (checked by `gemm`); C as vouched.
                unsafe { tile_split(isa, kc, panel, pb, q0, bp, bld, c.wrapping_add(p * MR * ldc + j0), ldc, rows_here, cols, first) };
            }
        }
        q0 += kc;
        if q0 >= k {
            break;
        }
    }
}

/// One micro-tile of which only `rows x cols` is stored: inner rows `q0..q0 + kc` of the packed panel
/// `panel` (its `MR` bias values in `bias`, added when `first`) times `kc` rows of `B` at `b` (stride `ldb`, `nr` readable columns each).
///
/// # Safety
/// `b` as in [`micro`]; `c` has `rows` rows of `cols` writable floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn tile_split(
    isa: Isa,
    kc: usize,
    panel: &[f32],
    bias: &[f32],
    q0: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    first: bool,
) {
    let nr = isa.nr();
    assert!(panel.len() >= MR * (q0 + kc) && bias.len() >= MR && rows <= MR && cols <= nr);
    let (ap, bias) = (panel[q0 * MR..].as_ptr(), bias.as_ptr());
    // SAFETY: A and bias checked above; B and C as vouched by the caller.
    unsafe {
        if rows == MR && cols == nr {
            micro(isa, kc, ap, b, ldb, c, ldc, first, bias);
        } else {
            // Edge tile: run the full kernel on a stack tile, copy the valid part.
            let mut t = [0f32; MR * 32];
            if !first {
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(c.add(r * ldc), t.as_mut_ptr().add(r * nr), cols);
                }
            }
            micro(isa, kc, ap, b, ldb, t.as_mut_ptr(), nr, first, bias);
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(t.as_ptr().add(r * nr), c.add(r * ldc), cols);
            }
        }
    }
}

/// [`tile`] for full `MR x 32` tiles on AVX-512 with `B` row `q` at `b + offs[q - q0]` (the implicit-GEMM
/// convolution's in-place reads). Returns false (doing nothing) when this CPU path is unavailable.
///
/// # Safety
/// `offs` holds `kc` entries, every `b + offs[i]` has 32 readable floats; `c` has `MR` rows of 32 writable
/// floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn tile_offs_split(
    isa: Isa,
    kc: usize,
    panel: &[f32],
    bias: &[f32],
    q0: usize,
    b: *const f32,
    offs: &[u32],
    c: *mut f32,
    ldc: usize,
    first: bool,
) -> bool {
    assert!(panel.len() >= MR * (q0 + kc) && bias.len() >= MR && offs.len() >= kc);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: A, bias and offs checked above; B and C as vouched by the caller; AVX-512F detected.
        unsafe { x86::kernel_8x32_avx512_offs(kc, panel[q0 * MR..].as_ptr(), b, offs.as_ptr(), c, ldc, first, bias.as_ptr()) };
        return true;
    }
    let _ = (isa, b, c, ldc, first, bias);
    false
}

/// Columns of the narrow micro-tile ([`tile_narrow`]).
pub(crate) const NR_NARROW: usize = 16;

/// A narrow micro-tile: panels `p..p + np` (`np` is 1 or 2) of the packed `m x k` matrix `a` (from
/// [`pack_a`]; `bias` holds their `MR * np` values, added when `first`), inner rows `q0..q0 + kc`, times
/// `kc` rows of [`NR_NARROW`] columns of `B` at `b` (stride `ldb`), into `MR * np` rows of `c` (stride
/// `ldc`). Bit-identical to [`tile_split`]'s full tile on the columns both compute. Returns false (doing
/// nothing) when this CPU has no narrow kernel (only AVX-512 strips are wider than 16).
///
/// # Safety
/// `b` has `kc` rows of 16 readable floats at stride `ldb`; `c` has `MR * np` rows of 16 writable floats at
/// stride `ldc`, written by no one else during the call.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn tile_narrow(
    isa: Isa,
    kc: usize,
    a: &[f32],
    k: usize,
    p: usize,
    np: usize,
    bias: &[f32],
    q0: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    first: bool,
) -> bool {
    assert!((1..=2).contains(&np) && q0 + kc <= k && a.len() >= (p + np) * MR * k && bias.len() >= np * MR);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        let at = |i: usize| a[(p + i) * MR * k + q0 * MR..].as_ptr();
        // SAFETY: panels and bias checked above; B and C as vouched by the caller; AVX-512F detected.
        unsafe {
            if np == 2 {
                x86::kernel_16cols_avx512::<2>(kc, [at(0), at(1)], b, ldb, c, ldc, first, bias.as_ptr());
            } else {
                x86::kernel_16cols_avx512::<1>(kc, [at(0)], b, ldb, c, ldc, first, bias.as_ptr());
            }
        }
        return true;
    }
    let _ = (isa, b, c, ldc, ldb, first);
    false
}

/// The `KC` split of an inner dimension `k`: block length (blocks are equal but the last). Depends on `k`
/// only, so every path sums in the same order.
pub(crate) fn kc_step(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// One `MR x nr` tile: `c = (first ? bias : c) + a * b` over `kc` inner steps.
///
/// # Safety
/// `a` holds `kc * MR` floats, `bias` `MR`, `b` `kc` rows of `nr` floats at stride `ldb`, `c` `MR` rows of
/// `nr` writable floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn micro(isa: Isa, kc: usize, a: *const f32, b: *const f32, ldb: usize, c: *mut f32, ldc: usize, first: bool, bias: *const f32) {
    // SAFETY: forwarded; the ISA was detected on this CPU.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::kernel_8x32_avx512(kc, a, b, ldb, c, ldc, first, bias),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::kernel_8x8_avx2(kc, a, b, ldb, c, ldc, first, bias),
            _ => portable::kernel_8x8(kc, a, b, ldb, c, ldc, first, bias),
        }
    }
}

#[cfg(test)]
mod tests;
