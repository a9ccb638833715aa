//! Timing experiments for the int8 convolution (all `#[ignore]`, run by hand; numbers in
//! docs/performance.md): what aligned strip loads could gain, where a call's time goes, 1 vs 2 threads.

use super::kernels::micro_i8;
use super::tests::seeded_i8;
use super::*;

/// A 64-byte-aligned byte buffer of `len` seeded values in [-127, 127] (`x ^ 0x80` for offset ISAs).
struct Aligned {
    words: Vec<u128>,
    pad: usize,
    len: usize,
}

impl Aligned {
    fn new(seed: u64, len: usize, offset: bool) -> Aligned {
        let mut words = vec![0u128; len / 16 + 8];
        let pad = (words.as_ptr() as *const u8).align_offset(64);
        let flip = if offset { 0x80 } else { 0 };
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        for (d, v) in bytes[pad..pad + len].iter_mut().zip(seeded_i8(seed, len)) {
            *d = (v as u8) ^ flip;
        }
        Aligned { words, pad, len }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[self.pad..self.pad + self.len]
    }
}

/// The VNNI kernel on one thread over the conv driver's loop (64-group blocks as when measured, 32-column strips, 8-row
/// panels) for a 3x3 256 -> 256 layer at 64 x 64 (a 1.1 MB map, as in the refiner), alternating: the real
/// tap offsets (most strip loads split a cache line) against the same offsets rounded down to 64 bytes
/// (wrong results): the most that aligning the loads could gain.
/// `cargo test --release -p gaga-kernels alignment_bound_timing -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "timing; run by hand (command above)"]
fn alignment_bound_timing() {
    let isa = QIsa::Avx512Vnni;
    if !QIsa::available().contains(&isa) {
        return;
    }
    let (c, r, k, nr) = (256usize, 64usize, 3usize, isa.nr());
    let (cg, wp) = (c / KG, r + 2);
    let plane = (r + 2) * wp;
    let groups = k * k * cg;
    let panels = c / MR;
    let n_flat = r * wp;
    let map = Aligned::new(3, (cg * plane + n_flat + 4 * wp) * KG, isa.offset());
    let a = seeded_i8(4, panels * groups * MR * KG);
    let plain: Vec<u32> = (0..groups).map(|i| ((i % cg * plane + (i / cg / k) * wp + i / cg % k) * KG) as u32).collect();
    // Wrong results, timing only: the plain kernel with every load forced onto a cache line.
    let rounded: Vec<u32> = plain.iter().map(|&o| o & !63).collect();
    let (nc, ldt) = (256, 256 + 16);
    let mut ct = vec![0i32; panels * MR * ldt];
    let mut pass = |variant: usize| {
        let t0 = std::time::Instant::now();
        for j0 in (0..n_flat - nc).step_by(nc) {
            for g0 in (0..groups).step_by(64) {
                let gb = 64.min(groups - g0);
                for s0 in (0..nc).step_by(nr) {
                    for p in 0..panels {
                        // SAFETY: as in `conv::run_i8_with`: reads stay inside `map` (it has 4 rows of slack).
                        unsafe {
                            let ap = a.as_ptr().add((p * groups + g0) * MR * KG);
                            let b = map.bytes().as_ptr().add((j0 + s0) * KG);
                            let cp = ct.as_mut_ptr().add(p * MR * ldt + s0);
                            let offs = if variant == 0 { &plain } else { &rounded };
                            micro_i8(isa, gb, ap, b, offs[g0..].as_ptr(), cp, ldt, g0 == 0);
                        }
                    }
                }
            }
        }
        t0.elapsed().as_secs_f64()
    };
    let ops = 2.0 * (panels * MR * groups * KG * (n_flat - nc).div_ceil(nc) * nc) as f64;
    let peak = measure_int8_peak(isa, 1).unwrap_or(f64::NAN);
    let mut best = [f64::MAX; 2];
    for _ in 0..5 {
        for (v, b) in best.iter_mut().enumerate() {
            *b = b.min(pass(v));
        }
    }
    let pct = |t: f64| 100.0 * ops / t / 1e9 / peak;
    println!(
        "1-thread int8 peak {peak:.0} GOP/s; real offsets {:.2} ms ({:.0}%), rounded to 64 bytes {:.2} ms ({:.0}%)",
        best[0] * 1e3,
        pct(best[0]),
        best[1] * 1e3,
        pct(best[1]),
    );
}

/// Whole int8 convolutions (fixed activation scale) on 1 and 2 threads, alternating, best of 5, for the
/// refiner's large and thin layers (meaningful only on a quiet machine: another process on the second
/// core makes both the same).
/// `cargo test --release -p gaga-kernels conv_thread_scaling -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "timing; run by hand (command above)"]
fn conv_thread_scaling() {
    use crate::scratch::Scratch;
    use crate::testing::seeded;
    let pools: Vec<rayon::ThreadPool> =
        [1, 2].iter().filter_map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()).collect();
    let layers = [
        (256usize, 256usize, 3usize, 64usize),
        (512, 512, 3, 32),
        (128, 128, 3, 128),
        (64, 32, 3, 512),
        (32, 32, 3, 512),
        (32, 16, 1, 512),
    ];
    for (ci, co, k, r) in layers {
        let x = seeded(1, ci * r * r);
        let Ok(p) = PackedConv::from_f32_as_i8(&seeded(2, co * ci * k * k), co, ci, k) else { return };
        let mut out = vec![0f32; co * r * r];
        let mut wall = [f64::MAX; 2];
        let mut scratch = Scratch::new();
        for _ in 0..5 {
            for (i, pool) in pools.iter().enumerate() {
                pool.install(|| {
                    let t0 = std::time::Instant::now();
                    p.run(&mut scratch, &x, r, r, Some(ActQuant::symmetric(0.01)), None, &mut out).expect("conv");
                    wall[i] = wall[i].min(t0.elapsed().as_secs_f64());
                });
            }
        }
        let gops = |t: f64| 2.0 * (ci * co * k * k * r * r) as f64 / t / 1e9;
        println!(
            "{k}x{k} {ci}->{co} @{r}: 1 thread {:.2} ms ({:.0} GOP/s), 2 threads {:.2} ms ({:.0} GOP/s), {:.2}x",
            wall[0] * 1e3,
            gops(wall[0]),
            wall[1] * 1e3,
            gops(wall[1]),
            wall[0] / wall[1]
        );
    }
}

/// Where a one-thread int8 convolution spends its time: the range pass, the quantise pass, and the
/// whole call with a fixed scale (kernel + epilogue = the rest), best of 7 each, alternating.
/// `cargo test --release -p gaga-kernels conv_phase_timing -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "timing; run by hand (command above)"]
fn conv_phase_timing() {
    use crate::scratch::Scratch;
    use crate::testing::seeded;
    let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(1).build() else { return };
    let layers = [(256usize, 256usize, 3usize, 64usize), (64, 32, 3, 512), (32, 32, 3, 512), (16, 32, 3, 512), (32, 16, 1, 512)];
    pool.install(|| {
        for (ci, co, k, r) in layers {
            let x = seeded(1, ci * r * r);
            let Ok(p) = PackedConv::from_f32_as_i8(&seeded(2, co * ci * k * k), co, ci, k) else { return };
            let mut out = vec![0f32; co * r * r];
            let mut scratch = Scratch::new();
            let Ok(g) = super::conv::geometry(&p, &x, r, r, None, &out) else { return };
            let mut map = vec![0u8; (g.cg * g.stride + 64) * KG];
            let mut best = [f64::MAX; 3];
            let time = |f: &mut dyn FnMut()| {
                let t0 = std::time::Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            };
            for _ in 0..7 {
                best[0] = best[0].min(time(&mut || {
                    std::hint::black_box(act_quant_for(&x));
                }));
                best[1] = best[1].min(time(&mut || super::conv::quantise_map(&x, ci, r, r, &g, ActQuant::symmetric(0.01), true, &mut map)));
                best[2] = best[2]
                    .min(time(&mut || p.run(&mut scratch, &x, r, r, Some(ActQuant::symmetric(0.01)), None, &mut out).expect("conv")));
            }
            let ops = 2.0 * (ci * co * k * k * r * r) as f64;
            println!(
                "{k}x{k} {ci}->{co} @{r}: range {:.2} ms, quantise {:.2} ms, fixed-scale call {:.2} ms ({:.0} GOP/s), rest {:.2} ms",
                best[0] * 1e3,
                best[1] * 1e3,
                best[2] * 1e3,
                ops / best[2] / 1e9,
                (best[2] - best[1]) * 1e3
            );
        }
    });
}

/// Where an int8 convolution's time goes at 1 and 2 threads (dynamic scale, as the refiner runs it),
/// with session 4's choices (variant 3: `plan::OLD` bits) and today's (0) alternating in one process: range pass,
/// quantise pass, GEMM (task time summed over tasks / workers), epilogue (likewise) and idle (the
/// parallel region's wall time minus the workers' average busy time: load imbalance and hand-out
/// overhead). Per layer, variant and thread count: the split of the fastest of 9 calls
/// (`GAGA_SPLIT_REPS`), in ms, and the whole call's % of that pool's int8 peak (`GAGA_SPLIT_LAYERS=
/// ci,co,r;...` picks 3x3 layers).
/// `cargo test --release -p gaga-kernels conv_phase_split -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore = "timing; run by hand (command above)"]
fn conv_phase_split() {
    use super::conv::{run_i8_timed, Phase};
    use super::plan::OLD;
    use crate::scratch::Scratch;
    use crate::testing::seeded;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    let isa = QIsa::detect();
    let pools: Vec<rayon::ThreadPool> =
        [1, 2].iter().filter_map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()).collect();
    let peaks: Vec<f64> = pools.iter().map(|p| p.install(|| measure_int8_peak(isa, p.current_num_threads()).unwrap_or(f64::NAN))).collect();
    println!("\nint8 peak ({isa:?}): {:.0} GOP/s on 1 thread, {:.0} on 2", peaks[0], peaks[1]);
    println!(
        "| layer | variant, threads | call ms (% peak) | range | quantise | GEMM | epilogue | idle |\n|---|---|---|---|---|---|---|---|"
    );
    let layers = std::env::var("GAGA_SPLIT_LAYERS").ok().map_or_else(
        || {
            vec![
                (512usize, 256usize, 64usize),
                (512, 512, 32),
                (256, 256, 64),
                (256, 128, 128),
                (512, 512, 16),
                (256, 256, 16),
                (64, 32, 512),
                (32, 32, 512),
            ]
        },
        |v| {
            v.split(';')
                .filter_map(|l| {
                    let n: Vec<usize> = l.split(',').filter_map(|t| t.trim().parse().ok()).collect();
                    (n.len() == 3).then(|| (n[0], n[1], n[2]))
                })
                .collect()
        },
    );
    // `GAGA_SPLIT_VARIANTS=7,0`: the `plan::OLD` bits of each variant (default: session 4 = 3 vs today).
    let variants: Vec<u32> = std::env::var("GAGA_SPLIT_VARIANTS")
        .ok()
        .map_or_else(|| vec![3, 0], |v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect());
    let reps: usize = std::env::var("GAGA_SPLIT_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    for (ci, co, r) in layers {
        let k = 3;
        let x = seeded(1, ci * r * r);
        let Ok(p) = PackedConv::from_f32_as_i8(&seeded(2, co * ci * k * k), co, ci, k) else { return };
        let mut out = vec![0f32; co * r * r];
        let mut scratch = Scratch::new();
        // Per (variant, pool): (wall, [scale, fill, gemm, epilogue, region, workers]) of the fastest call.
        let mut best = vec![(f64::MAX, [0f64; 6]); 2 * variants.len()];
        for _ in 0..reps {
            for (v, b) in best.iter_mut().enumerate() {
                OLD.store(variants[v / 2], Ordering::Relaxed);
                let acc = Mutex::new([0f64; 6]);
                let probe = |ph: Phase, t: f64| {
                    if let Ok(mut a) = acc.lock() {
                        a[ph as usize] += t;
                    }
                };
                let wall = pools[v % 2].install(|| {
                    let t0 = std::time::Instant::now();
                    run_i8_timed(isa, &p, &mut scratch, &x, r, r, None, None, &mut out, Some(&probe)).expect("conv");
                    t0.elapsed().as_secs_f64()
                });
                if wall < b.0 {
                    *b = (wall, acc.into_inner().unwrap_or_default());
                }
            }
        }
        OLD.store(0, Ordering::Relaxed);
        for (v, (wall, a)) in best.iter().enumerate() {
            let workers = a[Phase::Workers as usize].max(1.0);
            let (gemm, epi) = (a[Phase::Gemm as usize] / workers, a[Phase::Epilogue as usize] / workers);
            let idle = a[Phase::Region as usize] - gemm - epi;
            let pct = 100.0 * 2.0 * (ci * co * k * k * r * r) as f64 / wall / 1e9 / peaks[v % 2];
            println!(
                "| 3x3 {ci}->{co} @{r} | {}, {} | {:.2} ({pct:.0} %) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                variants[v / 2],
                v % 2 + 1,
                wall * 1e3,
                a[Phase::Scale as usize] * 1e3,
                a[Phase::Fill as usize] * 1e3,
                gemm * 1e3,
                epi * 1e3,
                idle * 1e3
            );
        }
    }
}

/// The range pass on a 64 x 512 x 512 input (64 MiB, the refiner's largest) on one thread: one sequential
/// stream (`range_plain`) against four side by side (`range_f32`), alternating, best of 9 (session 4
/// measured the same split for the max-abs pass this replaced).
/// `cargo test --release -p gaga-kernels range_stream_timing -- --ignored --nocapture --test-threads=1`
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "timing; run by hand (command above)"]
fn range_stream_timing() {
    /// The one-stream loop compiled for AVX-512.
    #[target_feature(enable = "avx512f")]
    unsafe fn one_stream(x: &[f32]) -> Range {
        range_plain(x)
    }
    if !std::is_x86_feature_detected!("avx512f") {
        return;
    }
    let x = crate::testing::seeded(1, 64 * 512 * 512);
    let mut best = [f64::MAX; 2];
    for _ in 0..9 {
        for (i, b) in best.iter_mut().enumerate() {
            let t0 = std::time::Instant::now();
            // SAFETY: AVX-512F was detected above.
            std::hint::black_box(if i == 0 { unsafe { one_stream(&x) } } else { range_f32(&x) });
            *b = b.min(t0.elapsed().as_secs_f64());
        }
    }
    println!("range of 64 MiB: one stream {:.2} ms, four streams {:.2} ms", best[0] * 1e3, best[1] * 1e3);
}
