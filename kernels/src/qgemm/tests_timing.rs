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
                    p.run(&mut scratch, &x, r, r, Some(0.01), None, &mut out).expect("conv");
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

/// Where a one-thread int8 convolution spends its time: the max-abs pass, the quantise pass, and the
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
            let mut map = vec![0u8; (g.cg * g.plane + 64) * KG];
            let mut best = [f64::MAX; 3];
            let time = |f: &mut dyn FnMut()| {
                let t0 = std::time::Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            };
            for _ in 0..7 {
                best[0] = best[0].min(time(&mut || {
                    std::hint::black_box(act_scale_for(&x));
                }));
                best[1] = best[1].min(time(&mut || super::conv::quantise_map(&x, ci, r, r, &g, 0.01, true, &mut map)));
                best[2] = best[2].min(time(&mut || p.run(&mut scratch, &x, r, r, Some(0.01), None, &mut out).expect("conv")));
            }
            let ops = 2.0 * (ci * co * k * k * r * r) as f64;
            println!(
                "{k}x{k} {ci}->{co} @{r}: max-abs {:.2} ms, quantise {:.2} ms, fixed-scale call {:.2} ms ({:.0} GOP/s), rest {:.2} ms",
                best[0] * 1e3,
                best[1] * 1e3,
                best[2] * 1e3,
                ops / best[2] / 1e9,
                (best[2] - best[1]) * 1e3
            );
        }
    });
}
