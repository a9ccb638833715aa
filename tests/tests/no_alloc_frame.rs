//! A warmed-up frame allocates nothing on the heap. Own test binary: the counting global allocator
//! below replaces the allocator for every test in this file only.
//!
//! History: with the `gemm` crate under the refiner's convolutions a warmed-up frame allocated (193 times
//! over two small-config frames, all in `gemm_basic_generic`'s packing buffers). The refiner now runs on
//! the kernels' own packed SGEMM (`gaga_kernels::sgemm`, buffers in the caller's `Scratch`) and its
//! matrix-vector linears on direct dot products, so whole frames are checked on every run. The FLAME +
//! splat test warms up over the whole sequence because the splatter's tile lists grow whenever a frame
//! has more tile-Gaussian pairs than any frame before. Converted small fp16 and int8 models are checked
//! too: the int8 path allocated 96 times a frame (8 bytes each: every int8 conv call asked
//! `QIsa::available()`, a `Vec`, for its kernel and checked it there; it now asks `QIsa::runs`).
//!
//! Rayon note: a parallel call made from outside the pool pushes a job onto the pool's global injector,
//! whose queue (crossbeam) allocates a new block every 63 pushes. Rendering inside `pool.install`
//! makes the whole frame a single injected job, and every nested parallel call then goes through the
//! workers' own deques, which do not allocate once grown.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gaga_converter::dev::convert_seeded_small;
use gaga_converter::Precision;
use gaga_kernels::splat::{splat, SplatCamera, SplatScratch};
use gaga_runtime::backend::cpu::CpuBackend;
use gaga_runtime::backend::{Backend, Budget};
use gaga_runtime::flame::Flame;
use gaga_runtime::model::Model;
use gaga_runtime::render::testing::{driving_frame, seeded_frame_weights, synthetic_avatar};
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{Image, ModelConfig, Weights};
use gaga_tests::test_dir;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size(), Ordering::Relaxed);
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

/// The counter is global: tests in this binary take this lock so they never overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn flame_and_splat_stages_allocate_nothing_once_warmed_up() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 2);
    let avatar = synthetic_avatar(&cfg, 2);
    let frames: Vec<_> = (0..3).map(|i| driving_frame(&cfg, i)).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let mut flame = Flame::new(&w, &cfg).expect("flame");
    let mut positions = vec![0f32; 3 * cfg.flame.vertices];
    let s = cfg.image_size;
    let mut image = vec![0f32; cfg.gaussian_channels * s * s];
    let background = vec![0f32; cfg.gaussian_channels];
    let mut scratch = SplatScratch::new();
    let frame = |i: usize, flame: &mut Flame, positions: &mut Vec<f32>, scratch: &mut SplatScratch, image: &mut Vec<f32>| {
        flame.set_identity(&avatar.shapecode).expect("identity");
        let f = &frames[i];
        flame.pose(&f.expcode, &f.posecode, &f.eyecode, &f.key, positions).expect("pose");
        let set = avatar.gaussians(positions).expect("set");
        let cam = SplatCamera::from_transform(&f.transform, cfg.focal, s, s);
        pool.install(|| splat(&set, &cam, &background, image, scratch));
    };
    // The splatter's tile lists grow with the number of tile-Gaussian pairs, which differs per frame
    // (measured: frame 2 grew them by 172 KB after frame 1), so warm up on the whole sequence.
    for i in 0..3 {
        frame(i, &mut flame, &mut positions, &mut scratch, &mut image);
    }
    let (n, bytes) = count(|| {
        frame(1, &mut flame, &mut positions, &mut scratch, &mut image);
        frame(2, &mut flame, &mut positions, &mut scratch, &mut image);
    });
    assert_eq!((n, bytes), (0, 0), "FLAME + splat of frames 2 and 3 allocated {n} times ({bytes} bytes)");
}

#[test]
fn whole_frames_allocate_nothing_once_warmed_up() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 1);
    frames_allocate_nothing("fp32", &w, &cfg, 1);
}

/// Renders warm-up frames, then counts the allocations of a `FrameRenderer` and of the CPU backend's
/// session over later frames of the model `w`, both inside a 2-thread pool.
fn frames_allocate_nothing(tag: &str, w: &(dyn Weights + Sync), cfg: &ModelConfig, seed: u64) {
    let avatar = synthetic_avatar(cfg, seed);
    let frames: Vec<_> = (0..4).map(|i| driving_frame(cfg, i)).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let s = cfg.image_size;
    let mut out = Image::new(s, s);

    let mut renderer = FrameRenderer::new(w, cfg, RenderOptions::default()).expect("renderer");
    for f in &frames {
        pool.install(|| renderer.render(&avatar, f, &mut out)).expect("warm-up frame");
    }
    let (n, bytes) = count(|| {
        for f in &frames[1..3] {
            pool.install(|| renderer.render(&avatar, f, &mut out)).expect("frame");
        }
    });
    assert_eq!((n, bytes), (0, 0), "{tag}: frames 2 and 3 allocated {n} times ({bytes} bytes)");

    // The same through the backend's session (not `Send`, so it lives entirely inside the pool).
    let (n, bytes) = pool.install(|| {
        let backend = CpuBackend::default();
        let mut session = backend.prepare(w, cfg, Budget::UNLIMITED).expect("session");
        let mut out = Image::new(s, s);
        for f in &frames {
            session.render(&avatar, f, &mut out).expect("session warm-up frame");
        }
        count(|| {
            for f in &frames[1..4] {
                session.render(&avatar, f, &mut out).expect("session frame");
            }
        })
    });
    assert_eq!((n, bytes), (0, 0), "{tag}: session frames 2-4 allocated {n} times ({bytes} bytes)");
}

/// [`frames_allocate_nothing`] on a converted `small` model at `precision`.
fn converted_frames_allocate_nothing(tag: &str, precision: Precision) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir(&format!("noalloc-{tag}"));
    let path = convert_seeded_small(dir.path(), 5, precision, "tests/no_alloc_frame").expect("seeded small model converts");
    let m = Model::open(&path).expect("open");
    let cfg = m.config().clone();
    frames_allocate_nothing(tag, &m, &cfg, 3);
}

#[test]
fn whole_int8_frames_allocate_nothing_once_warmed_up() {
    converted_frames_allocate_nothing("int8", Precision::Int8);
}

#[test]
fn whole_fp16_frames_allocate_nothing_once_warmed_up() {
    converted_frames_allocate_nothing("fp16", Precision::Fp16);
}
