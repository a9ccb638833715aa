//! The per-channel input and output transforms of one block, compiled once per ISA: plain loops over
//! lane groups (no closures, so everything inlines into each `#[target_feature]` wrapper) and the run-time
//! dispatch on the GEMM's detected ISA.

use super::transforms::{input_group, output_group, Lanes, L, T, W, XI};
use super::Epilogue;
use crate::sgemm::Isa;

/// The lane group starting at tile `t` of a block ending at `end`: `(tile row, tile column, tiles)`, at
/// most `L` tiles of one row.
#[inline(always)]
pub(super) fn group(tw: usize, t: usize, end: usize) -> (usize, usize, usize) {
    let (ty, tx) = (t / tw, t % tw);
    (ty, tx, L.min(tw - tx).min(end - t))
}

/// One input channel's transform for a block (the body each ISA wrapper compiles; plain loops, no
/// closures, so everything inlines into the `target_feature` wrapper).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn input_channel(plane: &[f32], h: usize, w: usize, tw: usize, t0: usize, n: usize, mut v: [&mut [f32]; XI]) {
    let zero = [0f32; W];
    let mut edge = [[0f32; W]; T];
    let mut t = t0;
    while t < t0 + n {
        let (ty, tx, nl) = group(tw, t, t0 + n);
        let off = t - t0;
        // Columns 4 tx - 1 .. 4 tx - 1 + W of rows 4 ty - 1 .. 4 ty + 5: read in place inside the map,
        // copied with zero padding at its borders.
        let x0 = 4 * tx as isize - 1;
        let lo = (-x0).max(0) as usize;
        let hi = ((w as isize - x0).max(0) as usize).min(4 * nl + 2);
        let mut rows: [&[f32; W]; T] = [&zero; T];
        for (k, (row, buf)) in rows.iter_mut().zip(edge.iter_mut()).enumerate() {
            let y = (4 * ty + k) as isize - 1;
            if y < 0 || y as usize >= h || lo >= hi {
                continue;
            }
            let src = &plane[y as usize * w..][..w];
            if lo == 0 && hi == W {
                *row = src[x0 as usize..][..W].try_into().expect("W floats");
            } else {
                buf.fill(0.0);
                buf[lo..hi].copy_from_slice(&src[(x0 + lo as isize) as usize..(x0 + hi as isize) as usize]);
                *row = buf;
            }
        }
        let mut out = [[0f32; L]; XI];
        input_group(rows, &mut out);
        if nl == L {
            for (d, s) in v.iter_mut().zip(&out) {
                let d: &mut [f32; L] = (&mut d[off..off + L]).try_into().expect("L floats");
                *d = *s;
            }
        } else {
            for (d, s) in v.iter_mut().zip(&out) {
                d[off..off + nl].copy_from_slice(&s[..nl]);
            }
        }
        t += nl;
    }
}

/// One output channel's transform for a block (the body each ISA wrapper compiles).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn output_channel(
    m: [&[f32]; XI],
    bias: f32,
    h: usize,
    w: usize,
    tw: usize,
    t0: usize,
    n: usize,
    plane: &mut [f32],
    epi: Epilogue,
) {
    let mut t = t0;
    while t < t0 + n {
        let (ty, tx, nl) = group(tw, t, t0 + n);
        let off = t - t0;
        let mut lanes: [Lanes; XI] = [[0f32; L]; XI];
        if nl == L {
            for (d, s) in lanes.iter_mut().zip(&m) {
                *d = s[off..off + L].try_into().expect("L floats");
            }
        } else {
            for (d, s) in lanes.iter_mut().zip(&m) {
                d[..nl].copy_from_slice(&s[off..off + nl]);
            }
        }
        let mut y = [[0f32; 4 * L]; 4];
        output_group(&lanes, bias, &mut y);
        let x0 = 4 * tx;
        let cols = (4 * nl).min(w - x0);
        for (r, yr) in y.iter().enumerate() {
            let oy = 4 * ty + r;
            if oy >= h {
                break;
            }
            let dst = &mut plane[oy * w + x0..][..cols];
            if cols == 4 * L && epi == Epilogue::Store {
                let d: &mut [f32; 4 * L] = dst.try_into().expect("4L floats");
                *d = *yr;
            } else {
                for (d, s) in dst.iter_mut().zip(yr) {
                    *d = epi.apply(*s, *d);
                }
            }
        }
        t += nl;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn input_avx2(plane: &[f32], h: usize, w: usize, tw: usize, t0: usize, n: usize, v: [&mut [f32]; XI]) {
        input_channel(plane, h, w, tw, t0, n, v)
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn output_avx2(
        m: [&[f32]; XI],
        bias: f32,
        h: usize,
        w: usize,
        tw: usize,
        t0: usize,
        n: usize,
        plane: &mut [f32],
        epi: Epilogue,
    ) {
        output_channel(m, bias, h, w, tw, t0, n, plane, epi)
    }
}

/// [`input_channel`] compiled for the detected ISA.
#[allow(clippy::too_many_arguments)]
pub(super) fn dispatch_input(isa: Isa, plane: &[f32], h: usize, w: usize, tw: usize, t0: usize, n: usize, v: [&mut [f32]; XI]) {
    match isa {
        // SAFETY: the ISA was detected on this CPU (AVX-512 goes to `avx512` before building `v`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::input_avx2(plane, h, w, tw, t0, n, v) },
        _ => input_channel(plane, h, w, tw, t0, n, v),
    }
}

/// [`output_channel`] compiled for the detected ISA.
#[allow(clippy::too_many_arguments)]
pub(super) fn dispatch_output(
    isa: Isa,
    m: [&[f32]; XI],
    bias: f32,
    h: usize,
    w: usize,
    tw: usize,
    t0: usize,
    n: usize,
    plane: &mut [f32],
    epi: Epilogue,
) {
    match isa {
        // SAFETY: the ISA was detected on this CPU (AVX-512 goes to `avx512` before building `m`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::output_avx2(m, bias, h, w, tw, t0, n, plane, epi) },
        _ => output_channel(m, bias, h, w, tw, t0, n, plane, epi),
    }
}
