//! Convolutions on our packed SGEMM, and matrix-vector linears, allocate nothing once warmed up. Own test
//! binary: the counting global allocator below replaces the allocator for this file's tests only.
//!
//! Calls run inside `pool.install`: a parallel call made from outside a rayon pool pushes a job onto the
//! pool's global injector, whose queue allocates a block every 63 pushes (rayon, not our kernels).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gaga_kernels::conv::{conv2d_with, Conv2d, Scratch};
use gaga_kernels::linear::linear;
use gaga_kernels::testing::seeded;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: tests in this binary take this lock so they never overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations made by `f` on any thread.
fn count(f: impl FnOnce()) -> usize {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCS.load(Ordering::SeqCst)
}

/// The fewest allocations `f` made in up to 4 runs (stopping at the first that made none). An allocation in
/// the call path happens on every run, so this still catches it; what it forgives is rayon growing a worker's
/// job deque or its injector's block list once, when a rare schedule first needs it (seen once in CI on a
/// loaded machine: 1 allocation in 2-thread convolutions that were warmed up).
fn steady_allocations(mut f: impl FnMut()) -> (usize, Vec<usize>) {
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(count(&mut f));
        if seen.last() == Some(&0) {
            break;
        }
    }
    (seen.iter().copied().min().unwrap_or(0), seen)
}

/// Shapes covering every packed path: many bands (parallel tiles), one band (threaded over output rows),
/// 1x1 with a partial last strip, stride 2, and a layer deeper than one `KC` block.
const SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    // (c_in, c_out, kernel, stride, size)
    (16, 32, 3, 1, 96),
    (64, 40, 3, 1, 9),
    (32, 16, 1, 1, 67),
    (13, 9, 3, 2, 37),
    (300, 24, 3, 1, 20),
];

/// Input, weight, bias and output of one shape.
type Buffers = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn run_all(scratch: &mut Scratch, bufs: &mut [Buffers]) {
    for (&(ci, co, k, s, r), (x, w, b, out)) in SHAPES.iter().zip(bufs.iter_mut()) {
        let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: s, pad: k / 2 };
        conv2d_with(scratch, &spec, x, r, r, w, Some(b), out);
    }
}

fn buffers() -> Vec<Buffers> {
    SHAPES
        .iter()
        .map(|&(ci, co, k, s, r)| {
            let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: s, pad: k / 2 };
            let (oh, ow) = spec.out_size(r, r);
            (seeded(1, ci * r * r), seeded(2, co * ci * k * k), seeded(3, co), vec![0f32; co * oh * ow])
        })
        .collect()
}

#[test]
fn warmed_up_convolutions_allocate_nothing_on_one_and_two_threads() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let mut bufs = buffers();
        let mut scratch = Scratch::new();
        pool.install(|| run_all(&mut scratch, &mut bufs));
        let (n, runs) = pool.install(|| {
            steady_allocations(|| {
                run_all(&mut scratch, &mut bufs);
                run_all(&mut scratch, &mut bufs);
            })
        });
        assert_eq!(n, 0, "{threads} thread(s): warmed-up convolutions allocated {runs:?} times in successive runs");
    }
}

#[test]
fn matrix_vector_linears_allocate_nothing() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The refiner's per-frame modulation (512 -> c_in) and final_linear (8192 -> 512) shapes, narrowed.
    let (x, w, b) = (seeded(4, 2048), seeded(5, 2048 * 96), seeded(6, 96));
    let mut out = vec![0f32; 96];
    // Warm-up first: the first parallel call may start rayon's global pool (its threads allocate once),
    // which depends on which test of this binary ran first.
    linear(&x, 1, 2048, &w, Some(&b), 96, &mut out);
    let (n, runs) = steady_allocations(|| linear(&x, 1, 2048, &w, Some(&b), 96, &mut out));
    assert_eq!(n, 0, "a 1-row linear allocated {runs:?} times in successive runs");
}
