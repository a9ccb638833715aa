//! AVX-512F bodies of the per-channel input and output transforms (the generic lane loops in `channel.rs`
//! left most of the time in de-interleaving gathers, stack copies and `memset`s of 2 KiB temporaries).
//!
//! One lane group is 16 tiles of one tile row, one tile per vector lane. Each input row's 66 floats are
//! de-interleaved (`rows[4 l + c]` -> lane `l` of column `c`) with two `vpermt2ps` and one 128-bit shuffle
//! per column; the output's four columns per tile are interleaved back with a 4x4 transpose. The arithmetic
//! is exactly `transforms::bt` / `transforms::at` (same operations, same order, no FMA contraction), so
//! this path and the generic one give identical bits.

use std::arch::x86_64::*;

use super::channel::group;
use super::transforms::{L, T};
use super::Epilogue;

// One tile per lane of a 16-float vector.
const _: () = assert!(L == 16);

/// `B^T d` for one column of six vectors (see `transforms::bt`).
#[inline]
#[target_feature(enable = "avx512f")]
fn bt(d: [__m512; T]) -> [__m512; T] {
    let (two, four, five) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0), _mm512_set1_ps(5.0));
    let a = _mm512_sub_ps(d[4], _mm512_mul_ps(four, d[2]));
    let b = _mm512_sub_ps(d[3], _mm512_mul_ps(four, d[1]));
    let c = _mm512_sub_ps(d[4], d[2]);
    let e = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    [
        _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, d[0]), _mm512_mul_ps(five, d[2])), d[4]),
        _mm512_add_ps(a, b),
        _mm512_sub_ps(a, b),
        _mm512_add_ps(c, e),
        _mm512_sub_ps(c, e),
        _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, d[1]), _mm512_mul_ps(five, d[3])), d[5]),
    ]
}

/// `A^T m` for one column of six vectors (see `transforms::at`).
#[inline]
#[target_feature(enable = "avx512f")]
fn at(m: [__m512; T]) -> [__m512; 4] {
    let (two, four, eight) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0), _mm512_set1_ps(8.0));
    let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
        _mm512_add_ps(d12, _mm512_mul_ps(two, d34)),
        _mm512_add_ps(s12, _mm512_mul_ps(four, s34)),
        _mm512_add_ps(_mm512_add_ps(d12, _mm512_mul_ps(eight, d34)), m[5]),
    ]
}

/// Columns `c = 0..6` of the 16 tiles of one input row: lane `l` of result `c` is `p[4 l + c]` where
/// `masks` allows it, else 0 (the map's borders and the rows above and below it).
///
/// # Safety
/// Every float of `p[0..W]` whose bit is set in `masks` (see [`row_masks`]) is readable.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn deinterleave(p: *const f32, masks: &[__mmask16; 8]) -> [__m512; T] {
    // SAFETY: masked-off lanes are neither read nor faulted on; the caller vouches for the others.
    let ld = |i: usize| unsafe { _mm512_maskz_loadu_ps(masks[i], p.wrapping_add(LOAD_AT[i])) };
    let (a, b) = ([ld(0), ld(1), ld(2), ld(3)], [ld(4), ld(5), ld(6), ld(7)]);
    let base = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    let pick = |r: &[__m512; 4], c: i32| {
        let idx = _mm512_add_epi32(base, _mm512_set1_epi32(c));
        // Lanes 0..8 of x: tiles 0..8 (from r0:r1); of y: tiles 8..16 (from r2:r3); joined by 128-bit halves.
        let x = _mm512_permutex2var_ps(r[0], idx, r[1]);
        let y = _mm512_permutex2var_ps(r[2], idx, r[3]);
        _mm512_shuffle_f32x4::<0x44>(x, y)
    };
    [pick(&a, 0), pick(&a, 1), pick(&a, 2), pick(&a, 3), pick(&b, 0), pick(&b, 1)]
}

/// One lane group of 16 tiles whose 66 input columns all lie inside the map (most groups), read with plain
/// loads (no masks): `B^T` runs down the six rows on the loaded vectors first (a permutation commutes with
/// lane-wise arithmetic, so these are the bits of `bt` down each de-interleaved column), then each
/// transformed row is de-interleaved; columns 4-5 are columns 0-1 shifted by one tile (`valignd`) with the
/// 17th tile's first two floats broadcast in: 14 shuffles per row instead of 18, and no mask moves.
///
/// # Safety
/// The CPU has AVX-512F; each `Some(p)` of `rows` has 66 readable floats; `v + xi * stride` has 16
/// writable floats for every `xi < XI`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // q and r index several arrays at once
unsafe fn input_group_full(rows: &[Option<*const f32>; T], v: *mut f32, stride: usize) {
    let z = _mm512_setzero_ps();
    // t[q][r]: row r of B^T applied down vector position q (0-3: floats 16q..16q+16; 4, 5: float 64, 65).
    let mut t = [[z; T]; T];
    for q in 0..T {
        let mut d = [z; T];
        for (dk, row) in d.iter_mut().zip(rows) {
            if let Some(p) = row {
                // SAFETY: 66 floats of the row are readable (the caller's contract).
                *dk = unsafe {
                    if q < 4 {
                        _mm512_loadu_ps(p.add(16 * q))
                    } else {
                        _mm512_set1_ps(*p.add(60 + q))
                    }
                };
            }
        }
        t[q] = bt(d);
    }
    let base = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    for r in 0..T {
        let pick = |c: i32| {
            let idx = _mm512_add_epi32(base, _mm512_set1_epi32(c));
            let x = _mm512_permutex2var_ps(t[0][r], idx, t[1][r]);
            let y = _mm512_permutex2var_ps(t[2][r], idx, t[3][r]);
            _mm512_shuffle_f32x4::<0x44>(x, y)
        };
        let (c0, c1) = (pick(0), pick(1));
        let shift =
            |c: __m512, next: __m512| _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(_mm512_castps_si512(next), _mm512_castps_si512(c)));
        let o = bt([c0, c1, pick(2), pick(3), shift(c0, t[4][r]), shift(c1, t[5][r])]);
        for (c, oc) in o.iter().enumerate() {
            // SAFETY: row r * T + c of V has 16 writable floats at v (the caller's contract).
            unsafe { _mm512_storeu_ps(v.add((r * T + c) * stride), *oc) };
        }
    }
}

/// Float offsets of the eight 16-float loads of a row: columns 0-3 from the first four, 4-5 (the next
/// tile's 0-1) from the four shifted by one tile.
const LOAD_AT: [usize; 8] = [0, 16, 32, 48, 4, 20, 36, 52];

/// The load masks of a row whose floats `lo..hi` (of `W`) lie inside the map.
#[inline(always)]
fn row_masks(lo: usize, hi: usize) -> [__mmask16; 8] {
    LOAD_AT.map(|o| {
        let (a, b) = (lo.max(o).min(o + 16) - o, hi.max(o).min(o + 16) - o);
        (lanes(b) & !lanes(a)) as __mmask16
    })
}

/// Lane mask of the first `n` (<= 16) lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

/// [`super::channel`]'s `input_channel` for AVX-512F: channel plane `plane` (`h x w`), tiles `t0..t0 + n`
/// (`tw` per tile row) into `v[xi * stride + t - t0]` (a base and a stride rather than 36 slices: building
/// and passing those per channel and block cost ~15 % of a thin layer). With `ahead > 0` the same rows
/// `ahead` floats further on (a later channel's plane) are prefetched while this channel's group is transformed.
///
/// # Safety
/// The CPU has AVX-512F; `plane` holds `h * w` floats; `v + xi * stride` has `n` writable floats for every
/// `xi < XI`, written by no one else during the call. `ahead` may point anywhere (prefetches never fault).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // r picks row r of all six columns of e
pub unsafe fn input_channel(plane: &[f32], h: usize, w: usize, tw: usize, t0: usize, n: usize, v: *mut f32, stride: usize, ahead: usize) {
    let mut t = t0;
    while t < t0 + n {
        let (ty, tx, nl) = group(tw, t, t0 + n);
        let off = t - t0;
        // Columns 4 tx - 1 .. 4 tx - 1 + W of rows 4 ty - 1 .. 4 ty + 5, read in place with masked loads
        // (zeros outside the map; `wrapping` because the row start may be one float before the plane).
        let x0 = 4 * tx as isize - 1;
        if ahead > 0 {
            for k in 0..T {
                let y = (4 * ty + k) as isize - 1;
                if y >= 0 && (y as usize) < h {
                    let p = plane.as_ptr().wrapping_add(ahead).wrapping_offset(y * w as isize + x0);
                    for o in [0, 16, 32, 48, 65] {
                        // Prefetches never fault, so the pointer may point anywhere.
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(o) as *const i8);
                    }
                }
            }
        }
        if nl == L && x0 >= 0 && x0 as usize + 4 * L + 2 <= w {
            let rows: [Option<*const f32>; T] = std::array::from_fn(|k| {
                let y = (4 * ty + k) as isize - 1;
                (y >= 0 && (y as usize) < h).then(|| plane[y as usize * w + x0 as usize..].as_ptr())
            });
            // SAFETY: rows inside the map with columns x0..x0 + 66 <= w; V rows have n >= off + 16 floats.
            unsafe { input_group_full(&rows, v.add(off), stride) };
            t += nl;
            continue;
        }
        let lo = (-x0).max(0) as usize;
        let hi = ((w as isize - x0).max(0) as usize).min(4 * nl + 2);
        let inside = row_masks(lo, hi.max(lo));
        let mut rows = [(plane.as_ptr(), [0 as __mmask16; 8]); T];
        for (k, row) in rows.iter_mut().enumerate() {
            let y = (4 * ty + k) as isize - 1;
            if y >= 0 && (y as usize) < h {
                *row = (plane.as_ptr().wrapping_offset(y * w as isize + x0), inside);
            }
        }
        // Plain loops over zeroed register arrays: `array::from_fn` here compiled to `memcpy` calls.
        let z = _mm512_setzero_ps();
        let mut d = [[z; T]; T];
        for (dk, (p, masks)) in d.iter_mut().zip(&rows) {
            // SAFETY: the mask bits select columns lo..hi of a row inside the map (none for other rows).
            *dk = unsafe { deinterleave(*p, masks) };
        }
        let mut e = [[z; T]; T];
        for (c, ec) in e.iter_mut().enumerate() {
            *ec = bt([d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c]]);
        }
        let mask = lanes(nl);
        for r in 0..T {
            let o = bt([e[0][r], e[1][r], e[2][r], e[3][r], e[4][r], e[5][r]]);
            for (c, oc) in o.iter().enumerate() {
                // SAFETY: row r * T + c has n >= off + nl floats; the store writes only the first nl lanes.
                unsafe { _mm512_mask_storeu_ps(v.add((r * T + c) * stride + off), mask, *oc) };
            }
        }
        t += nl;
    }
}

/// `epi` on the 16 output values `y` bound for `p` (lanes outside `mask` are not read).
///
/// # Safety
/// The CPU has AVX-512F; the `mask` lanes of `p` are readable.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn finish(epi: Epilogue, y: __m512, p: *const f32, mask: __mmask16) -> __m512 {
    match epi {
        Epilogue::Store => y,
        Epilogue::LeakyRelu(slope) => {
            // Lanes with y < 0 (ordered: NaN and -0 pass through, as in the scalar `if`) get y * slope.
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, _mm512_setzero_ps());
            _mm512_mask_mul_ps(y, neg, y, _mm512_set1_ps(slope))
        }
        // SAFETY (both): the caller's mask lanes of p are readable.
        Epilogue::MulInto => _mm512_mul_ps(unsafe { _mm512_maskz_loadu_ps(mask, p) }, y),
        Epilogue::AddInto => _mm512_add_ps(unsafe { _mm512_maskz_loadu_ps(mask, p) }, y),
    }
}

/// [`super::channel`]'s `output_channel` for AVX-512F: `m[xi * stride + t - t0]` plus `bias` into the output
/// plane.
///
/// # Safety
/// The CPU has AVX-512F; `m + xi * stride` has `n` readable floats for every `xi < XI`; `plane` holds `h * w`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn output_channel(
    m: *const f32,
    stride: usize,
    bias: f32,
    h: usize,
    w: usize,
    tw: usize,
    t0: usize,
    n: usize,
    plane: &mut [f32],
    epi: Epilogue,
) {
    let bias = _mm512_set1_ps(bias);
    let mut t = t0;
    while t < t0 + n {
        let (ty, tx, nl) = group(tw, t, t0 + n);
        let off = t - t0;
        let mask = lanes(nl);
        let z = _mm512_setzero_ps();
        let mut s = [[z; 4]; T];
        for (c, sc) in s.iter_mut().enumerate() {
            let mut col = [z; T];
            for (k, v) in col.iter_mut().enumerate() {
                // SAFETY: each row has n >= off + nl floats; the load reads only the first nl lanes.
                *v = unsafe { _mm512_maskz_loadu_ps(mask, m.add((k * T + c) * stride + off)) };
            }
            *sc = at(col);
        }
        let x0 = 4 * tx;
        let cols = (4 * nl).min(w - x0);
        // Output rows of this tile row that lie inside the map (r also picks row r of every column of s).
        for (r, oy) in (4 * ty..h).take(4).enumerate() {
            let mut o = at([s[0][r], s[1][r], s[2][r], s[3][r], s[4][r], s[5][r]]);
            for v in o.iter_mut() {
                *v = _mm512_add_ps(*v, bias);
            }
            // 4x4 transpose inside each 128-bit lane: u_j's quarter q = tile 4q + j's four columns ...
            let (t0v, t1v) = (_mm512_unpacklo_ps(o[0], o[1]), _mm512_unpackhi_ps(o[0], o[1]));
            let (t2v, t3v) = (_mm512_unpacklo_ps(o[2], o[3]), _mm512_unpackhi_ps(o[2], o[3]));
            let u0 = _mm512_shuffle_ps::<0x44>(t0v, t2v);
            let u1 = _mm512_shuffle_ps::<0xee>(t0v, t2v);
            let u2 = _mm512_shuffle_ps::<0x44>(t1v, t3v);
            let u3 = _mm512_shuffle_ps::<0xee>(t1v, t3v);
            // ... then of the quarters: output vector q = tiles 4q..4q + 4 in pixel order.
            let (v0, v1) = (_mm512_shuffle_f32x4::<0x44>(u0, u1), _mm512_shuffle_f32x4::<0x44>(u2, u3));
            let (v2, v3) = (_mm512_shuffle_f32x4::<0xee>(u0, u1), _mm512_shuffle_f32x4::<0xee>(u2, u3));
            let out = [
                _mm512_shuffle_f32x4::<0x88>(v0, v1),
                _mm512_shuffle_f32x4::<0xdd>(v0, v1),
                _mm512_shuffle_f32x4::<0x88>(v2, v3),
                _mm512_shuffle_f32x4::<0xdd>(v2, v3),
            ];
            let dst = &mut plane[oy * w + x0..][..cols];
            for (q, oq) in out.iter().enumerate() {
                let k = cols.saturating_sub(16 * q).min(16);
                if k == 0 {
                    break;
                }
                let mask = lanes(k);
                // SAFETY: floats 16 q .. 16 q + k of `dst` exist; the load and store touch only k lanes.
                unsafe {
                    let p = dst.as_mut_ptr().add(16 * q);
                    _mm512_mask_storeu_ps(p, mask, finish(epi, *oq, p, mask))
                };
            }
        }
        t += nl;
    }
}
