//! Reusable workspace for kernels that need temporary buffers (im2col tiles, attention score blocks).
//!
//! Per-frame callers keep one [`Scratch`] and pass it to the `*_with` kernels: it grows to the largest
//! request once and is then reused, so warmed-up calls do not allocate. The convenience kernels without a
//! scratch argument use a per-thread one that also grows once (see [`with_local`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::matmul::threads;

/// Growable f32 workspace; contents are unspecified between calls.
#[derive(Debug, Default)]
pub struct Scratch {
    buf: Vec<f32>,
    /// A second buffer for a kernel whose data must outlive calls of other kernels on this scratch
    /// ([`Scratch::take_aux`]).
    aux: Vec<f32>,
}

impl Scratch {
    /// An empty workspace; it grows on first use.
    pub fn new() -> Self {
        Scratch::default()
    }

    /// Floats currently reserved (both buffers).
    pub fn capacity(&self) -> usize {
        self.buf.len() + self.aux.len()
    }

    /// The first `len` floats, growing the buffer when it is shorter (values left from earlier calls).
    pub fn take(&mut self, len: usize) -> &mut [f32] {
        if self.buf.len() < len {
            self.buf.resize(len, 0.0);
        }
        &mut self.buf[..len]
    }

    /// The second buffer, at least `len` floats, moved out so that other kernels can use this scratch
    /// meanwhile; hand it back with [`Scratch::put_aux`] (it grows once, as [`Scratch::take`] does).
    pub fn take_aux(&mut self, len: usize) -> Vec<f32> {
        let mut v = std::mem::take(&mut self.aux);
        if v.len() < len {
            v.resize(len, 0.0);
        }
        v
    }

    /// Returns the buffer [`Scratch::take_aux`] lent.
    pub fn put_aux(&mut self, v: Vec<f32>) {
        self.aux = v;
    }
}

thread_local! {
    static LOCAL: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's workspace. The buffer is moved out for the call, so a nested use on the
/// same thread (rayon may run another kernel here while this one waits) gets a fresh one instead of a
/// borrow panic; the larger of the two is kept afterwards.
pub fn with_local<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = LOCAL.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    let result = f(&mut scratch);
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if scratch.capacity() >= slot.capacity() {
            *slot = scratch;
        }
    });
    result
}

/// Runs `tasks` independent tasks `task(index, tile, gemm_threads)`, each with a tile of `tile_len`
/// floats from `scratch`. With enough tasks: one tile per worker, tasks handed out dynamically, and
/// single-threaded GEMMs inside. With few tasks (small maps): tasks in turn, each GEMM using the whole pool.
/// Which task computes what never depends on the thread count.
pub(crate) fn run_tiled(scratch: &mut Scratch, tasks: usize, tile_len: usize, task: impl Fn(usize, &mut [f32], usize) + Sync) {
    run_tiled_in(scratch.take(tiled_len(tasks, tile_len)), tasks, tile_len, task);
}

/// Floats [`run_tiled_in`] needs for `tasks` tasks of `tile_len` floats: one tile per worker that runs.
pub(crate) fn tiled_len(tasks: usize, tile_len: usize) -> usize {
    tiled_workers(tasks) * tile_len
}

/// Workers [`run_tiled_in`] runs `tasks` tasks on: the whole pool with at least two tasks per worker,
/// else one (tasks in turn).
pub(crate) fn tiled_workers(tasks: usize) -> usize {
    let t = threads();
    if t > 1 && tasks >= 2 * t {
        t
    } else {
        1
    }
}

/// [`run_tiled`] on a caller-provided buffer of at least [`tiled_len`] elements (floats, or the splat's
/// blend states).
pub(crate) fn run_tiled_in<T: Send>(buf: &mut [T], tasks: usize, tile_len: usize, task: impl Fn(usize, &mut [T], usize) + Sync) {
    let t = threads();
    let buf = &mut buf[..tiled_len(tasks, tile_len)];
    if tiled_workers(tasks) > 1 {
        let next = AtomicUsize::new(0);
        buf.par_chunks_mut(tile_len.max(1)).for_each(|tile| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            task(i, tile, 1);
        });
    } else {
        for i in 0..tasks {
            task(i, buf, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_grows_once_and_keeps_its_size() {
        let mut s = Scratch::new();
        assert_eq!(s.take(10).len(), 10);
        assert_eq!(s.take(4).len(), 4);
        assert_eq!(s.capacity(), 10);
    }

    #[test]
    fn nested_local_use_does_not_panic() {
        let outer = with_local(|a| {
            a.take(8);
            with_local(|b| b.take(3).len())
        });
        assert_eq!(outer, 3);
        assert!(with_local(|s| s.capacity()) >= 8);
    }
}
