//! Activation maps in the arena stored as f32 or, on an int8 level that plans them so
//! ([`super::plan::OnTheFly::half`]), as f16: half the bytes, the same channel-major `[C, H, W]` layout.
//!
//! Every reader of an f16 map is an int8 conv quantising it on the fly (`gaga_kernels::qgemm`'s sources
//! widen it exactly), and every writer stores one band of f32 results at a time (the conv's output band
//! after its epilogue), rounding each value once to the nearest half. The arena stays `[f32]`; an f16 map's
//! buffer holds `ceil(n / 2)` floats reinterpreted as `n` halves.

use gaga_kernels::elem::narrow_into;
use gaga_kernels::fused::{add_assign, mul_assign};
use gaga_kernels::winograd::Epilogue;
use half::f16;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// A map to read.
#[derive(Clone, Copy)]
pub enum MapRef<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// A map to write.
pub enum MapMut<'a> {
    F32(&'a mut [f32]),
    F16(&'a mut [f16]),
}

/// Floats of arena space a map of `n` values takes in f16 (`half`) or f32.
pub fn arena_len(n: usize, half: bool) -> usize {
    if half {
        n.div_ceil(2)
    } else {
        n
    }
}

/// Calls `$body` with `$x` bound to the map's slice in its own element type (the kernels are generic
/// over `gaga_kernels::elem::Elem`).
macro_rules! with_map {
    ($m:expr, $x:ident => $body:expr) => {
        match $m {
            $crate::refiner::maps::MapRef::F32($x) => $body,
            $crate::refiner::maps::MapRef::F16($x) => $body,
        }
    };
}
pub(crate) use with_map;

impl<'a> MapRef<'a> {
    /// An arena buffer read as a map of `n` values (f16 when `half`). Errors when the buffer is short.
    pub fn of(buf: &'a [f32], n: usize, half: bool, what: &str) -> Result<Self> {
        check(buf.len(), n, half, what)?;
        Ok(if half { MapRef::F16(&bytemuck::cast_slice(buf)[..n]) } else { MapRef::F32(&buf[..n]) })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        with_map!(self, x => x.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> MapMut<'a> {
    /// An arena buffer written as a map of `n` values (f16 when `half`). Errors when the buffer is short.
    pub fn of(buf: &'a mut [f32], n: usize, half: bool, what: &str) -> Result<Self> {
        check(buf.len(), n, half, what)?;
        Ok(if half { MapMut::F16(&mut bytemuck::cast_slice_mut(buf)[..n]) } else { MapMut::F32(&mut buf[..n]) })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            MapMut::F32(x) => x.len(),
            MapMut::F16(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map for reading.
    pub fn as_ref(&self) -> MapRef<'_> {
        match self {
            MapMut::F32(x) => MapRef::F32(x),
            MapMut::F16(x) => MapRef::F16(x),
        }
    }

    /// The f32 slice of an f32 map (None for f16).
    pub fn as_f32(&mut self) -> Option<&mut [f32]> {
        match self {
            MapMut::F32(x) => Some(x),
            MapMut::F16(_) => None,
        }
    }

    /// Rows `y0..y1` of every `h x w` plane of a `[C, h, w]` map (`C = band.len() / ((y1 - y0) w)`)
    /// from `band` `[C, y1 - y0, w]`: copied into an f32 map, rounded to the nearest half into an f16
    /// one (`Epilogue::Store`); or combined with the stored values, `v * band` (`MulInto`) or `v + band`
    /// (`AddInto`), computed in f32 (an f16 value widened exactly) and stored as above. Per channel in
    /// parallel (a memory-bound pass). Lengths are the caller's (checked by `of`).
    pub fn put_rows(&mut self, (h, w): (usize, usize), (y0, y1): (usize, usize), band: &[f32], epi: Epilogue) {
        let (hw, n) = (h * w, (y1 - y0) * w);
        let (lo, hi) = (y0 * w, y1 * w);
        let f32_op = |d: &mut [f32], v: &[f32]| match epi {
            Epilogue::MulInto => mul_assign(d, v),
            Epilogue::AddInto => add_assign(d, v),
            _ => d.copy_from_slice(v),
        };
        match self {
            MapMut::F32(x) => x.par_chunks_mut(hw).zip(band.par_chunks(n)).for_each(|(p, v)| f32_op(&mut p[lo..hi], v)),
            MapMut::F16(x) => x.par_chunks_mut(hw).zip(band.par_chunks(n)).for_each(|(p, v)| {
                let dst = &mut p[lo..hi];
                if matches!(epi, Epilogue::MulInto | Epilogue::AddInto) {
                    // Widen, combine and narrow a stack chunk at a time: no f32 copy of the map exists.
                    const CHUNK: usize = 512;
                    let mut buf = [0f32; CHUNK];
                    for (d, v) in dst.chunks_mut(CHUNK).zip(v.chunks(CHUNK)) {
                        let b = &mut buf[..d.len()];
                        gaga_kernels::qgemm::widen_f16(d, b);
                        f32_op(b, v);
                        narrow_into(b, d);
                    }
                } else {
                    narrow_into(v, dst);
                }
            }),
        }
    }
}

fn check(found: usize, n: usize, half: bool, what: &str) -> Result<()> {
    let want = arena_len(n, half);
    if found < want {
        let kind = if half { "f16" } else { "f32" };
        return Err(Error::Other(format!("refiner {what}: buffer of {found} floats, an {kind} map of {n} values needs {want}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rows_are_stored_rounded_once_and_combined_in_f32() {
        let (c, h, w) = (3, 4, 5);
        let mut buf = vec![0f32; arena_len(c * h * w, true)];
        let band: Vec<f32> = (0..c * 2 * w).map(|i| 1.0 + i as f32 / 3.0).collect();
        let mut m = MapMut::of(&mut buf, c * h * w, true, "test").expect("fits");
        m.put_rows((h, w), (1, 3), &band, Epilogue::Store);
        m.put_rows((h, w), (1, 3), &band, Epilogue::MulInto);
        let MapRef::F16(x) = m.as_ref() else { panic!("f16 map") };
        for ch in 0..c {
            for i in 0..2 * w {
                let v = band[ch * 2 * w + i];
                let stored = f16::from_f32(v).to_f32();
                assert_eq!(x[ch * h * w + w + i], f16::from_f32(stored * v), "channel {ch} value {i}");
            }
            assert!(x[ch * h * w..][..w].iter().all(|v| *v == f16::ZERO), "row 0 untouched");
        }
        let e = MapMut::of(&mut buf[..10], c * h * w, true, "cond_t").err().expect("short");
        assert!(e.to_string().contains("cond_t") && e.to_string().contains("needs 30"), "{e}");
    }
}
