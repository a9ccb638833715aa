//! A warmed-up frame allocates nothing on the heap. Own test binary: the counting global allocator
//! below replaces the allocator for every test in this file only.
//!
//! Rayon note: a parallel call made from outside the pool pushes a job onto the pool's global injector,
//! whose queue (crossbeam) allocates a new block every 63 pushes. Rendering inside `pool.install`
//! makes the whole frame a single injected job, and every nested parallel call then goes through the
//! workers' own deques, which do not allocate once grown.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gaga_runtime::backend::cpu::CpuBackend;
use gaga_runtime::backend::{Backend, Budget};
use gaga_runtime::render::testing::{driving_frame, seeded_frame_weights, synthetic_avatar};
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{Image, ModelConfig};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            let k = ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            if k % 20 == 0 {
                COUNTING.store(false, Ordering::SeqCst);
                eprintln!("ALLOC {} bytes\n{}", layout.size(), std::backtrace::Backtrace::force_capture());
                COUNTING.store(true, Ordering::SeqCst);
            }
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
            BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (count, bytes) made by `f` on any thread.
fn count(f: impl FnOnce()) -> (usize, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

// One test function: the counter is global, so tests in this binary must not run concurrently.
#[test]
fn frames_after_the_first_allocate_nothing() {
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 1);
    let avatar = synthetic_avatar(&cfg, 1);
    let frames: Vec<_> = (0..4).map(|i| driving_frame(&cfg, i)).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let s = cfg.image_size;
    let mut out = Image::new(s, s);

    let mut renderer = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    pool.install(|| renderer.render(&avatar, &frames[0], &mut out)).expect("frame 1");
    let (n, bytes) = count(|| {
        for f in &frames[1..3] {
            pool.install(|| renderer.render(&avatar, f, &mut out)).expect("frame");
        }
    });
    assert_eq!((n, bytes), (0, 0), "frames 2 and 3 allocated {n} times ({bytes} bytes)");

    // The same through the backend's session (not `Send`, so it lives entirely inside the pool).
    let (n, bytes) = pool.install(|| {
        let backend = CpuBackend::default();
        let mut session = backend.prepare(&w, &cfg, Budget::UNLIMITED).expect("session");
        let mut out = Image::new(s, s);
        session.render(&avatar, &frames[0], &mut out).expect("session frame 1");
        count(|| {
            for f in &frames[1..4] {
                session.render(&avatar, f, &mut out).expect("session frame");
            }
        })
    });
    assert_eq!((n, bytes), (0, 0), "session frames 2-4 allocated {n} times ({bytes} bytes)");
}
