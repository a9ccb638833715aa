//! Measured int8 peak: the denominator of the int8 benches' "percent of peak".
//!
//! Each thread runs independent chains of the detected int8 kernel's inner step (AVX-512 VNNI: one
//! `vpdpbusd`, 64 multiply-adds; AVX2: `vpsignb` + `vpmaddubsw` + `vpmaddwd` + `vpaddd`, 32), so the loop
//! is bound by issue alone, like `crate::peak` for f32 FMAs. 1 multiply-add = 2 ops.

use std::time::{Duration, Instant};

use super::QIsa;

/// Peak int8 GOP/s over `threads` OS threads for `isa`'s inner step, each running about 0.2 s; `None`
/// for kernels without a measured loop (NEON, portable).
pub fn measure_int8_peak(isa: QIsa, threads: usize) -> Option<f64> {
    if !QIsa::available().contains(&isa) {
        return None;
    }
    let (macs_per_iter, run) = inner_step(isa)?;
    let probe = 1 << 16;
    let t0 = Instant::now();
    std::hint::black_box(run(probe));
    let per_iter = t0.elapsed().as_secs_f64().max(1e-9) / probe as f64;
    let iters = ((Duration::from_millis(200).as_secs_f64() / per_iter) as u64).max(probe);
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(move || run(iters))).collect();
        for h in handles {
            std::hint::black_box(h.join().ok());
        }
    });
    Some(2.0 * macs_per_iter * iters as f64 * threads.max(1) as f64 / start.elapsed().as_secs_f64() / 1e9)
}

/// `iters` rounds of a kernel's inner step, returning a checksum.
type PeakLoop = fn(u64) -> i32;

/// Multiply-adds per round and the round loop of `isa`'s inner step; `None` for kernels without one (a
/// separate function so that targets without any loop have no unreachable code).
fn inner_step(isa: QIsa) -> Option<(f64, PeakLoop)> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY (both): the caller checked `QIsa::available`, so the kernel's features were detected.
        QIsa::Avx512Vnni => Some((12.0 * 64.0, |n| unsafe { super::x86::peak_loop_vnni(n) })),
        #[cfg(target_arch = "x86_64")]
        QIsa::Avx2 => Some((12.0 * 32.0, |n| unsafe { super::x86::peak_loop_avx2(n) })),
        _ => None,
    }
}
