//! Binning: the Gaussians each tile blends, front to back.
//!
//! The official rasteriser radix-sorts 64-bit `tile << 32 | depth bits` keys whose values were emitted in
//! Gaussian index order, so each tile's list is ordered by depth, ties by lower index. Here one stable LSD
//! radix sort on the 32-bit depth bits (over the visible Gaussians, in index order) gives that global order,
//! and a counting pass plus a scatter in that order fills every tile's list already sorted: no 64-bit keys
//! and no per-tile sort. Count and scatter run in parallel over chunks of the order (see `build`). Depths
//! are above 0.2, so their bit patterns order like the values. The sort carries each Gaussian's tile
//! rectangle, so both passes read memory in order (fetching 180 k `Projected` records in depth order was a
//! random walk).

use rayon::prelude::*;

use super::project::{Projected, TileRect};

/// Pieces the depth order is cut into for the parallel count and scatter (any number gives the same
/// lists; a few per core balance the work).
const SCATTER_CHUNKS: usize = 8;

/// The tile lists, written through by disjoint slots from several threads.
struct ListPtr(*mut u32);
// SAFETY: only used for writes to disjoint indices (see the scatter in `Bins::build`).
unsafe impl Sync for ListPtr {}

/// A visible Gaussian and its tile rectangle, carried through the depth sort so the count and scatter
/// passes read rectangles in order instead of fetching each Gaussian's `Projected` record at random.
#[derive(Clone, Copy, Default, Debug)]
struct Entry {
    g: u32,
    rect: TileRect,
}

/// Reusable buffers of the binning stage (grown, never shrunk).
#[derive(Default, Debug)]
pub struct Bins {
    keys: Vec<u32>,
    keys_tmp: Vec<u32>,
    /// Visible Gaussians front to back (ties by index), each with its tile rectangle (and the radix sort's
    /// scratch copy).
    entries: Vec<Entry>,
    entries_tmp: Vec<Entry>,
    /// `offsets[t]..offsets[t + 1]` is tile t's range in `list`.
    pub offsets: Vec<usize>,
    /// Per (chunk, tile): first a count, then the next free slot in `list`.
    cursor: Vec<usize>,
    /// Gaussian indices per tile, tile-major, each tile front to back.
    pub list: Vec<u32>,
}

impl Bins {
    /// Rebuild the bins from this frame's preprocessing (culled Gaussians have an empty tile rectangle).
    pub fn build(&mut self, projected: &[Projected], grid: (usize, usize)) {
        self.keys.clear();
        self.entries.clear();
        // Room for every Gaussian up front: pushing one by one would double the capacity past the count
        // (262,144 for the official 180,255: 1.9 MiB of the two buffers never used). The sort swaps each
        // buffer with its spare, so the spares get the same room: otherwise the second frame would grow them.
        self.keys_tmp.clear();
        self.entries_tmp.clear();
        for keys in [&mut self.keys, &mut self.keys_tmp] {
            keys.reserve_exact(projected.len());
        }
        for entries in [&mut self.entries, &mut self.entries_tmp] {
            entries.reserve_exact(projected.len());
        }
        for (i, p) in projected.iter().enumerate() {
            if p.rect.count() > 0 {
                self.keys.push(p.depth.to_bits());
                self.entries.push(Entry { g: i as u32, rect: p.rect });
            }
        }
        radix_sort(&mut self.keys, &mut self.entries, &mut self.keys_tmp, &mut self.entries_tmp);

        let tiles = grid.0 * grid.1;
        // Count and scatter in parallel over contiguous chunks of the depth order: chunk c's entries for
        // tile t go after those of chunks < c, so every tile's list is the same as one serial pass makes.
        let chunk = self.entries.len().div_ceil(SCATTER_CHUNKS).max(1);
        let chunks = self.entries.len().div_ceil(chunk);
        self.cursor.clear();
        self.cursor.resize(chunks * tiles, 0);
        let entries = &self.entries;
        // `tiles.max(1)`: rayon rejects chunks of 0; a 0-tile image has no visible Gaussians anyway.
        entries.par_chunks(chunk).zip(self.cursor.par_chunks_mut(tiles.max(1))).for_each(|(part, counts)| {
            for e in part {
                for_each_tile(e.rect, grid.0, |t| counts[t] += 1);
            }
        });
        self.offsets.clear();
        self.offsets.resize(tiles + 1, 0);
        let mut next = 0;
        for t in 0..tiles {
            self.offsets[t] = next;
            for c in 0..chunks {
                let count = self.cursor[c * tiles + t];
                self.cursor[c * tiles + t] = next;
                next += count;
            }
        }
        self.offsets[tiles] = next;
        self.list.resize(next, 0);
        let list = ListPtr(self.list.as_mut_ptr());
        entries.par_chunks(chunk).zip(self.cursor.par_chunks_mut(tiles.max(1))).for_each(|(part, cursor)| {
            let list = &list;
            for &Entry { g, rect } in part {
                for_each_tile(rect, grid.0, |t| {
                    // SAFETY: `cursor[t]` walks chunk c's own slots of tile t, `count` of them starting where
                    // the prefix sum put it; all slots of all (chunk, tile) pairs are disjoint and below
                    // `next`, the length `list` was resized to, and `list` outlives this loop.
                    unsafe { *list.0.add(cursor[t]) = g };
                    cursor[t] += 1;
                });
            }
        });
    }

    /// Tile `t`'s Gaussians, front to back.
    pub fn tile(&self, t: usize) -> &[u32] {
        &self.list[self.offsets[t]..self.offsets[t + 1]]
    }

    /// Bytes held by each buffer (capacities), by name.
    pub fn buffer_bytes(&self) -> [(&'static str, usize); 5] {
        let bytes = |len: usize, size: usize| len * size;
        [
            ("bins.keys (+ sort copy)", bytes(self.keys.capacity() + self.keys_tmp.capacity(), 4)),
            ("bins.entries (+ sort copy)", bytes(self.entries.capacity() + self.entries_tmp.capacity(), std::mem::size_of::<Entry>())),
            ("bins.list", bytes(self.list.capacity(), 4)),
            ("bins.offsets", bytes(self.offsets.capacity(), std::mem::size_of::<usize>())),
            ("bins.cursor", bytes(self.cursor.capacity(), std::mem::size_of::<usize>())),
        ]
    }

    /// Visible Gaussians of the last build.
    pub fn visible(&self) -> usize {
        self.entries.len()
    }

    /// Tile-Gaussian pairs of the last build.
    pub fn pairs(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }
}

/// Calls `f` with the index of every tile rectangle `r` covers, row by row.
#[inline(always)]
fn for_each_tile(r: TileRect, grid_x: usize, mut f: impl FnMut(usize)) {
    for ty in r.y0 as usize..r.y1 as usize {
        for tx in r.x0 as usize..r.x1 as usize {
            f(ty * grid_x + tx);
        }
    }
}

/// Stable LSD radix sort of `keys` (carrying `vals`), 8 bits per pass; passes where every key has the same
/// byte are skipped (depths of one scene usually share their top byte).
fn radix_sort<V: Copy + Default>(keys: &mut Vec<u32>, vals: &mut Vec<V>, keys_tmp: &mut Vec<u32>, vals_tmp: &mut Vec<V>) {
    let n = keys.len();
    let mut hist = [[0usize; 256]; 4];
    for &k in keys.iter() {
        for (pass, h) in hist.iter_mut().enumerate() {
            h[((k >> (8 * pass)) & 0xff) as usize] += 1;
        }
    }
    keys_tmp.resize(n, 0);
    vals_tmp.resize(n, V::default());
    for (pass, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut start = [0usize; 256];
        for b in 1..256 {
            start[b] = start[b - 1] + h[b - 1];
        }
        for (&k, &v) in keys.iter().zip(vals.iter()) {
            let b = ((k >> (8 * pass)) & 0xff) as usize;
            keys_tmp[start[b]] = k;
            vals_tmp[start[b]] = v;
            start[b] += 1;
        }
        std::mem::swap(keys, keys_tmp);
        std::mem::swap(vals, vals_tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seeded;

    #[test]
    fn radix_sort_orders_by_key_and_keeps_ties_in_input_order() {
        // Few distinct keys, so ties are common; some share the top bytes, some do not.
        let raw = seeded(5, 3000);
        let mut keys: Vec<u32> = raw.iter().map(|v| ((v.abs() * 40.0) as u32) * 0x0101_0301).collect();
        let mut vals: Vec<u32> = (0..keys.len() as u32).collect();
        let mut want: Vec<(u32, u32)> = keys.iter().copied().zip(vals.iter().copied()).collect();
        want.sort_by_key(|&(k, _)| k);
        radix_sort(&mut keys, &mut vals, &mut Vec::new(), &mut Vec::new());
        let got: Vec<(u32, u32)> = keys.into_iter().zip(vals).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn radix_sort_handles_empty_and_uniform_input() {
        let (mut k, mut v) = (Vec::new(), Vec::<u32>::new());
        radix_sort(&mut k, &mut v, &mut Vec::new(), &mut Vec::new());
        assert!(k.is_empty());
        let (mut k, mut v) = (vec![7u32; 5], vec![4u32, 3, 2, 1, 0]);
        radix_sort(&mut k, &mut v, &mut Vec::new(), &mut Vec::new());
        assert_eq!(v, vec![4, 3, 2, 1, 0]);
    }
}
