//! Twins of the binning passes: `splat_scan.comp` (counts -> offsets, totals, overflow flag),
//! `splat_fill.comp` (index and depth bits appended per tile) and `splat_sort.comp` (per-tile bitonic sort
//! by (depth bits, index)). The fill's order inside a tile depends on the GPU's atomics; the sort makes
//! every order the same, so the twin fills in index order and the comparison happens after the sort.

use super::splat::{SplatPush, Status, REC_WORDS, SORT_SHARED_CAP};

/// `splat_scan.comp`: offsets (`tiles + 1` values) from the counts, which it clears; the status words.
pub fn scan(p: &SplatPush, counts: &mut [u32], offsets: &mut [u32], status: &mut [u32; 4]) {
    let tiles = p.tiles();
    let mut run = 0u32;
    let mut wrapped = false;
    for t in 0..tiles {
        offsets[t] = run;
        let (next, over) = run.overflowing_add(counts[t]);
        wrapped |= over;
        run = next;
        counts[t] = 0;
    }
    offsets[tiles] = run;
    status[Status::PAIRS] = run;
    status[Status::OVERFLOW] = u32::from(wrapped || run > p.capacity);
    status[Status::VISIBLE] = status[Status::VISIBLE_COUNTER];
    status[Status::VISIBLE_COUNTER] = 0;
}

/// `splat_fill.comp` for Gaussian `i` (record `rec`): append to each covered tile's list.
pub fn fill(p: &SplatPush, i: usize, rec: &[u32; REC_WORDS], offsets: &[u32], cursor: &mut [u32], list: &mut [u32], keys: &mut [u32]) {
    let (x0, y0, x1, y1) = (rec[8], rec[9], rec[10], rec[11]);
    for ty in y0..y1 {
        for tx in x0..x1 {
            let t = (ty * p.grid_x + tx) as usize;
            let at = (offsets[t] + cursor[t]) as usize;
            cursor[t] += 1;
            list[at] = i as u32;
            keys[at] = rec[6];
        }
    }
}

/// The two positions compared by comparator `c` of step `(k, s)` (`s == 0`: the flip step of block `k`).
pub fn pair_of(c: usize, k: usize, s: usize) -> (usize, usize) {
    match c.checked_div(s) {
        Some(q) => {
            let a = q * 2 * s + c % s;
            (a, a + s)
        }
        None => {
            let half = k / 2;
            let (block, at) = (c / half, c % half);
            (block * k + at, block * k + k - 1 - at)
        }
    }
}

/// The half-cleaner distances after the flip step of block size `k`: `0` (the flip), then `k/4 .. 1`.
pub fn steps(k: usize) -> impl Iterator<Item = usize> {
    std::iter::once(0).chain(std::iter::successors((k >= 4).then_some(k / 4), |&s| (s > 1).then_some(s / 2)))
}

/// `splat_sort.comp` on one tile's `keys`/`list` segment: the same comparator network (comparators of one
/// step touch disjoint pairs, so running them in sequence gives the parallel result). Returns whether
/// the shader sorts this length in shared memory.
pub fn sort_tile(keys: &mut [u32], list: &mut [u32]) -> bool {
    let len = keys.len();
    assert_eq!(list.len(), len, "sort twin: keys and list lengths");
    let size = len.next_power_of_two();
    let mut k = 2;
    while k <= size {
        for s in steps(k) {
            for c in 0..size / 2 {
                let (a, b) = pair_of(c, k, s);
                if b >= len {
                    continue;
                }
                if (keys[b], list[b]) < (keys[a], list[a]) {
                    keys.swap(a, b);
                    list.swap(a, b);
                }
            }
        }
        k *= 2;
    }
    len <= SORT_SHARED_CAP
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seeded;

    #[test]
    fn the_padded_flip_bitonic_network_sorts_any_length_with_ties_by_index() {
        // Few distinct keys, so ties are frequent; lengths around powers of two and the shared limit.
        for len in [0usize, 1, 2, 3, 5, 8, 31, 100, 255, 256, 257, 1000, 2048, 2049, 3000] {
            let raw = seeded(len as u64 + 3, len);
            let mut keys: Vec<u32> = raw.iter().map(|v| 0x3f00_0000 + ((v.abs() * 9.0) as u32)).collect();
            // Indices in scrambled order, as the atomics leave them.
            let mut list: Vec<u32> = (0..len as u32).map(|i| (i * 7919) % len.max(1) as u32).collect();
            let mut want: Vec<(u32, u32)> = keys.iter().copied().zip(list.iter().copied()).collect();
            want.sort_unstable();
            let shared = sort_tile(&mut keys, &mut list);
            assert_eq!(shared, len <= SORT_SHARED_CAP);
            let got: Vec<(u32, u32)> = keys.into_iter().zip(list).collect();
            assert_eq!(got, want, "length {len}");
        }
    }

    #[test]
    fn steps_are_the_flip_then_halving_distances() {
        assert_eq!(steps(2).collect::<Vec<_>>(), vec![0]);
        assert_eq!(steps(4).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(steps(16).collect::<Vec<_>>(), vec![0, 4, 2, 1]);
    }

    #[test]
    fn scan_flags_pairs_beyond_the_capacity_and_a_wrapped_total() {
        let p = SplatPush { n: 0, width: 32, height: 16, grid_x: 2, grid_y: 1, capacity: 5 };
        let (mut counts, mut offsets, mut status) = (vec![2, 3], vec![0; 3], [0, 0, 7, 0]);
        scan(&p, &mut counts, &mut offsets, &mut status);
        assert_eq!((offsets.clone(), status, counts.clone()), (vec![0, 2, 5], [5, 0, 0, 7], vec![0, 0]));
        let mut counts = vec![4, 2];
        scan(&p, &mut counts, &mut offsets, &mut status);
        assert_eq!(status[..2], [6, 1]);
        let mut counts = vec![u32::MAX, 2];
        scan(&SplatPush { capacity: u32::MAX, ..p }, &mut counts, &mut offsets, &mut status);
        assert_eq!(status[1], 1, "a total that wraps u32 is an overflow");
    }
}
