//! The splatter's buffers, per-thread blend states included, live in `SplatScratch`: after a first frame,
//! later frames of the same scene must not allocate frame buffers. A counting global allocator (this test binary
//! only) records every allocation made while the second frame runs, on any thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gaga_kernels::splat::synthetic::{SyntheticHead, FRONTAL};
use gaga_kernels::splat::{splat, SplatCamera, SplatScratch, CHANNELS};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn second_splat_frame_allocates_no_frame_buffers_on_any_pool_thread() {
    // A quarter-size head (2 x 74^2 + 1,000 Gaussians) at 128x128 keeps the test fast.
    let head = SyntheticHead::new(1000, 74, CHANNELS, 3);
    let set = head.set();
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 128, 128);
    let bg = [0.0; CHANNELS];
    let mut out = vec![0f32; CHANNELS * 128 * 128];
    let mut scratch = SplatScratch::new();
    // Many more threads than cores: some take no tile in the warm-up frame and their first one later, which
    // must not grow anything (per-thread buffers grown lazily failed here, and once in CI on 2 cores).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(32).build().expect("thread pool");
    let stats = pool.install(|| {
        splat(&set, &cam, &bg, &mut out, &mut scratch);
        COUNTING.store(true, Ordering::SeqCst);
        let stats = splat(&set, &cam, &bg, &mut out, &mut scratch);
        COUNTING.store(false, Ordering::SeqCst);
        stats
    });
    let (count, largest) = (COUNT.load(Ordering::SeqCst), LARGEST.load(Ordering::SeqCst));
    println!("warmed-up frame: {count} allocations, largest {largest} bytes");
    assert!(stats.visible > 10_000, "{stats:?}");
    // Rayon's work-stealing deques may still grow by a few small blocks when scheduling differs (seen under
    // load: 13 blocks, the largest 2,304 bytes); a frame buffer (the smallest, a thread's blend states, is
    // 34,816 bytes) would be far larger than 4 KiB.
    assert!(largest <= 4096, "an allocation of {largest} bytes during a warmed-up frame ({count} in all)");
}
