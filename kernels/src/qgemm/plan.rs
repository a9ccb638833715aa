//! How an int8 convolution's GEMM is cut into tasks: column blocks x output-panel chunks.
//!
//! Tasks are handed to the workers dynamically, so the split aims at a count that is a multiple of
//! the thread count with every task the same size to within one strip (or one panel): then no
//! worker waits for another at the end. Maps with few columns (32 x 32 and smaller in the refiner)
//! are also split over output panels, so they still have at least two tasks per thread. Integer
//! sums are exact, so the split never changes a result.

/// Most flat columns per task (a multiple of every `nr`): the accumulator tile of 256 outputs is then
/// `32 panels x 8 x 272` i32 (278 KiB), inside the 2 MiB L2 with the map's strips and the weights.
pub(super) const NC: usize = 256;

/// A task split: `blocks` column blocks of `strips` strips in total, `chunks` panel chunks of
/// `panels` panels in total; task `i` is column block `i / chunks`, panel chunk `i % chunks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub nr: usize,
    pub strips: usize,
    pub blocks: usize,
    pub panels: usize,
    pub chunks: usize,
    /// Fixed block width in columns (0: balanced blocks); only the session-4 split uses it.
    pub fixed: usize,
}

/// Timing tests only: bits of [`OLD_SPLIT`], [`OLD_STRIDE`] switch today's choices
/// back to session 4's, so old and new can alternate in one process.
#[cfg(test)]
pub(super) static OLD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// [`OLD`] bit: the session-4 task split ([`Plan::session4`]).
#[cfg(test)]
pub(super) const OLD_SPLIT: u32 = 1;
/// [`OLD`] bit: unpadded planes.
pub(super) const OLD_STRIDE: u32 = 2;

/// Whether the timing tests switched `bit` of [`OLD`] on (always false outside tests).
#[inline(always)]
pub(super) fn old(bit: u32) -> bool {
    #[cfg(test)]
    return OLD.load(std::sync::atomic::Ordering::Relaxed) & bit != 0;
    #[cfg(not(test))]
    {
        let _ = bit;
        false
    }
}

impl Plan {
    /// The split of `n_flat` flat columns (strips of `nr`) and `panels` output panels for `threads`
    /// workers.
    pub fn new(n_flat: usize, nr: usize, panels: usize, threads: usize) -> Plan {
        #[cfg(test)]
        if old(OLD_SPLIT) {
            return Plan::session4(n_flat, nr, panels, threads);
        }
        let strips = n_flat.div_ceil(nr).max(1);
        let panels = panels.max(1);
        let t = threads.max(1);
        // Fewest blocks of at most NC columns, then rounded up to a multiple of the thread count (never
        // more blocks than strips).
        let blocks = strips.div_ceil(NC / nr).next_multiple_of(t).min(strips);
        // Too few blocks for two per worker: split the output panels too, keeping the task count a
        // multiple of the thread count where the panels allow it.
        let mut chunks = 1;
        if t > 1 && blocks < 2 * t {
            chunks = (2 * t).div_ceil(blocks).min(panels);
            while chunks < panels && !(blocks * chunks).is_multiple_of(t) {
                chunks += 1;
            }
        }
        Plan { nr, strips, blocks, panels, chunks, fixed: 0 }
    }

    /// The session-4 split (timing comparisons): blocks of `n_flat / (2 t)` columns rounded up to `nr`,
    /// at most NC, the last one short; no panel split.
    #[cfg(test)]
    pub fn session4(n_flat: usize, nr: usize, panels: usize, threads: usize) -> Plan {
        let nc = n_flat.div_ceil(2 * threads.max(1)).next_multiple_of(nr).clamp(nr, NC);
        let strips = n_flat.div_ceil(nr).max(1);
        Plan { nr, strips, blocks: n_flat.div_ceil(nc).max(1), panels: panels.max(1), chunks: 1, fixed: nc }
    }

    /// Number of tasks.
    pub fn tasks(&self) -> usize {
        self.blocks * self.chunks
    }

    /// Flat columns `[start, end)` of task `i` (balanced: block sizes differ by at most one strip; the
    /// last block ends at the last strip's end, which may pass `n_flat`: callers clip).
    pub fn columns(&self, i: usize) -> (usize, usize) {
        let b = i / self.chunks;
        if self.fixed > 0 {
            return (b * self.fixed, ((b + 1) * self.fixed).min(self.strips * self.nr));
        }
        (b * self.strips / self.blocks * self.nr, (b + 1) * self.strips / self.blocks * self.nr)
    }

    /// Output panels `[start, end)` of task `i` (balanced like the columns).
    pub fn panel_range(&self, i: usize) -> (usize, usize) {
        let c = i % self.chunks;
        (c * self.panels / self.chunks, (c + 1) * self.panels / self.chunks)
    }

    /// Most columns any task has (the accumulator tile's width).
    pub fn max_columns(&self) -> usize {
        if self.fixed > 0 {
            return self.fixed;
        }
        self.strips.div_ceil(self.blocks) * self.nr
    }

    /// Most panels any task has (the accumulator tile's height in panels).
    pub fn max_panels(&self) -> usize {
        self.panels.div_ceil(self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (column, panel) pair belongs to exactly one task, and no task is larger than the maxima.
    fn assert_partition(p: &Plan) {
        let mut seen = vec![0u8; p.strips * p.panels];
        for i in 0..p.tasks() {
            let ((c0, c1), (q0, q1)) = (p.columns(i), p.panel_range(i));
            assert!(c1 - c0 <= p.max_columns() && q1 - q0 <= p.max_panels(), "{p:?} task {i} too large");
            for s in c0 / p.nr..c1 / p.nr {
                for q in q0..q1 {
                    seen[s * p.panels + q] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{p:?}: not a partition");
    }

    #[test]
    fn plans_partition_the_work_for_every_thread_count() {
        for n_flat in [1, 24, 80, 288, 1088, 4224, 16640, 263_168] {
            for nr in [8, 32] {
                for panels in [1, 2, 3, 32, 64] {
                    for t in 1..=4 {
                        assert_partition(&Plan::new(n_flat, nr, panels, t));
                        assert_partition(&Plan::session4(n_flat, nr, panels, t));
                    }
                }
            }
        }
    }

    #[test]
    fn two_threads_get_an_even_number_of_tasks_of_near_equal_size() {
        // 64 x 64 (4,224 columns, 132 strips): 18 blocks of 7-8 strips, not 17 blocks with a half one.
        let p = Plan::new(4224, 32, 32, 2);
        assert_eq!((p.blocks, p.chunks), (18, 1));
        // 32 x 32 (34 strips): 6 blocks of 5-6 strips.
        let p = Plan::new(1088, 32, 64, 2);
        assert_eq!((p.blocks, p.chunks), (6, 1));
        // 16 x 16 (9 strips): 2 blocks x 2 panel chunks; 4 x 4 (1 strip): 1 block x 4 chunks.
        assert_eq!(Plan::new(288, 32, 64, 2).tasks(), 4);
        let p = Plan::new(24, 32, 32, 2);
        assert_eq!((p.blocks, p.chunks, p.max_panels()), (1, 4, 8));
        // One thread: the fewest blocks of at most NC columns, no panel split.
        let p = Plan::new(4224, 32, 32, 1);
        assert_eq!((p.blocks, p.chunks), (17, 1));
    }
}
