//! Measured peak of fused multiply-add throughput, the denominator of "achieved / peak" in benches.
//!
//! Each thread runs a loop of independent vector FMAs (12 accumulators, enough to cover the FMA latency
//! times the number of FMA ports on current x86 cores), so the loop is bound by FMA issue alone.
//! The vector width is the widest the GEMM kernels use here, detected at run time: AVX-512F (16 lanes),
//! else AVX2 with FMA (8 lanes); other CPUs fall back to a portable loop the compiler vectorises as it can.
//! [`peak_isa`] names the one measured.

use std::time::{Duration, Instant};

/// Accumulators per thread: independent dependency chains.
const CHAINS: usize = 12;

/// Peak f32 GFLOP/s (1 FMA = 2 FLOP) over `threads` OS threads, each running the FMA loop for about
/// 0.2 s. Runs its own threads, not rayon's pool, so the count is exact.
pub fn measure_fma_peak(threads: usize) -> f64 {
    measure_fma_peak_for(threads, Duration::from_millis(200))
}

/// [`measure_fma_peak`] with an explicit run time per thread.
pub fn measure_fma_peak_for(threads: usize, duration: Duration) -> f64 {
    let threads = threads.max(1);
    // Calibrate the repeat count on one short run so every thread does a fixed amount of work.
    let probe = 1 << 16;
    let t0 = Instant::now();
    std::hint::black_box(fma_loop(probe));
    let per_iter = t0.elapsed().as_secs_f64().max(1e-9) / probe as f64;
    let iters = ((duration.as_secs_f64() / per_iter) as u64).max(probe);
    let start = Instant::now();
    let flops: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(move || fma_loop(iters))).collect();
        handles.into_iter().map(|h| h.join().map_or(0.0, |(f, _)| f)).sum()
    });
    flops / start.elapsed().as_secs_f64() / 1e9
}

/// The instruction set [`measure_fma_peak`] measures on this CPU: "avx512f", "avx2+fma" or "portable".
pub fn peak_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
    }
    "portable"
}

/// Runs `iters` rounds of `CHAINS` vector FMAs; returns (FLOPs done, a checksum that keeps the work alive).
fn fma_loop(iters: u64) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    if peak_isa() == "avx512f" {
        // SAFETY: AVX-512F was detected.
        let sum = unsafe { x86::fma_loop_avx512(iters) };
        return ((iters * CHAINS as u64 * 16 * 2) as f64, sum);
    }
    #[cfg(target_arch = "x86_64")]
    if peak_isa() == "avx2+fma" {
        // SAFETY: both features were detected on this CPU.
        let sum = unsafe { x86::fma_loop_avx2(iters) };
        return ((iters * CHAINS as u64 * 8 * 2) as f64, sum);
    }
    (((iters * CHAINS as u64 * 8 * 2) as f64), portable_loop(iters))
}

/// 8-lane arrays per chain, so autovectorisation has the same shape as the AVX2 loop.
fn portable_loop(iters: u64) -> f32 {
    let mut acc = [[1.0f32; 8]; CHAINS];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..iters {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_loop_avx2(iters: u64) -> f32 {
        // Values chosen so the accumulators stay finite and normal for any iteration count.
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut total = _mm256_setzero_ps();
        for v in acc {
            total = _mm256_add_ps(total, v);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds exactly 8 floats; storeu has no alignment requirement.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
        lanes.iter().sum()
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_loop_avx512(iters: u64) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut total = 0.0;
        for v in acc {
            total += _mm512_reduce_add_ps(v);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_peak_is_positive_and_finite() {
        let one = measure_fma_peak_for(1, Duration::from_millis(20));
        assert!(one.is_finite() && one > 0.1, "1-thread peak {one} GFLOP/s");
    }

    #[test]
    fn fma_loop_keeps_accumulators_finite() {
        let (flops, sum) = fma_loop(1000);
        let lanes = if peak_isa() == "avx512f" { 16 } else { 8 };
        assert_eq!(flops, (1000 * CHAINS * lanes * 2) as f64);
        assert!(sum.is_finite());
    }
}
