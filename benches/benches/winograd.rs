//! Winograd F(4x4, 3x3) against the direct packed convolution, at the refiner's official 3x3 shapes.
//!
//! `cargo bench -p gaga-benches --bench winograd` first prints the FMA peak and a table (per distinct
//! 3x3 shape of the per-frame StyleUNet: direct and Winograd medians of 5, alternating so both see the same
//! load, effective GFLOP/s = direct FLOPs / time, the ratio and the per-frame sum), then runs criterion on a
//! few shapes. `GAGA_BENCH_SUMMARY=0` skips the table; `-- zzz` skips criterion; `cargo test --benches`
//! runs one tiny shape once. `GAGA_BENCH_REFINE=<model.gaga>` profiles one whole fp32 refine instead
//! (`winograd/profile.rs`: per-convolution segments, convolutions alone, the elementwise passes).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use gaga_kernels::conv::{conv2d_prepacked, Conv2d, PackedWeights, Scratch};
use gaga_kernels::testing::seeded;
use gaga_kernels::{peak, winograd};

// Not `profile.rs` beside this file: cargo would take any `benches/*.rs` for a bench target of its own.
#[path = "winograd/profile.rs"]
mod profile;

/// Every 3x3 convolution of the per-frame refiner as `(c_in, c_out, side, count)` (spec §6; the same
/// list as the kernels bench's refiner estimate, 1x1 layers left out).
fn refiner_3x3() -> Vec<(usize, usize, usize, usize)> {
    let mut l = Vec::new();
    for (a, b, r) in [(16, 32, 512), (32, 64, 256), (64, 128, 128), (128, 256, 64), (256, 256, 32), (256, 256, 16), (256, 256, 8)] {
        l.extend([(a, a, r, 1), (a, b, r / 2, 1)]);
    }
    l.push((256, 256, 4, 1)); // final_conv
    for (a, b, r) in [(256, 256, 4), (256, 256, 8), (256, 256, 16), (256, 128, 32), (128, 64, 64), (64, 32, 128), (32, 16, 256)] {
        l.extend([(a, a, r, 1), (a, b, 2 * r, 1), (b, b, 2 * r, 2), (b, 2 * b, 2 * r, 2)]);
    }
    l.push((512, 512, 4, 1)); // style_conv1
    for (a, b, r) in [(512, 512, 8), (512, 512, 16), (512, 512, 32), (512, 256, 64), (256, 128, 128), (128, 64, 256), (64, 32, 512)] {
        l.extend([(a, b, r, 1), (b, b, r, 1)]);
    }
    // Merge repeats of one shape.
    let mut merged: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (a, b, r, n) in l {
        match merged.iter_mut().find(|m| (m.0, m.1, m.2) == (a, b, r)) {
            Some(m) => m.3 += n,
            None => merged.push((a, b, r, n)),
        }
    }
    merged
}

/// Both kernels of one shape with their own warmed-up scratch: `(direct, winograd)`.
type Runner = Box<dyn FnMut()>;

fn runners(ci: usize, co: usize, r: usize) -> (Runner, Runner) {
    let s = Conv2d { c_in: ci, c_out: co, kernel: 3, stride: 1, pad: 1 };
    let x = seeded(1, ci * r * r);
    let (wt, b) = (seeded(2, co * ci * 9), seeded(3, co));
    let pw = PackedWeights::pack(&s, &wt, Some(&b));
    let ww = winograd::WinogradWeights::new(&s, &wt, Some(&b)).expect("valid shape");
    let (x2, mut o1, mut o2) = (x.clone(), vec![0f32; co * r * r], vec![0f32; co * r * r]);
    let (mut s1, mut s2) = (Scratch::new(), Scratch::new());
    let direct = Box::new(move || conv2d_prepacked(&mut s1, &pw, black_box(&x), r, r, &mut o1));
    let wino = Box::new(move || winograd::conv3x3(&mut s2, &ww, black_box(&x2), r, r, &mut o2).expect("valid call"));
    (direct, wino)
}

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

fn summary() {
    let threads = rayon::current_num_threads();
    let pk = peak::measure_fma_peak(threads);
    println!("FMA peak ({}, {threads} threads): {pk:.1} GFLOP/s\n", peak::peak_isa());
    println!("| shape (x count) | direct ms | Winograd ms | direct GFLOP/s | Winograd eff. GFLOP/s | speed-up |");
    println!("|---|---|---|---|---|---|");
    let (mut td, mut tw, mut tsel, mut flops) = (0.0, 0.0, 0.0, 0.0);
    for (ci, co, r, n) in refiner_3x3() {
        let (mut d, mut w) = runners(ci, co, r);
        d();
        w();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            d();
            a.push(t.elapsed());
            let t = Instant::now();
            w();
            b.push(t.elapsed());
        }
        let (md, mw) = (median(&mut a), median(&mut b));
        let f = 2.0 * (ci * co * 9 * r * r) as f64;
        let spec = Conv2d { c_in: ci, c_out: co, kernel: 3, stride: 1, pad: 1 };
        let chosen = if winograd::pays(&spec, r, r) { mw } else { md };
        println!(
            "| {ci}->{co} @{r} x{n} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |",
            md * 1e3,
            mw * 1e3,
            f / md / 1e9,
            f / mw / 1e9,
            md / mw
        );
        td += md * n as f64;
        tw += mw * n as f64;
        tsel += chosen * n as f64;
        flops += f * n as f64;
    }
    let floor = flops / (pk * 1e9);
    println!(
        "\nper frame, 3x3 convs only ({:.1} GFLOP, floor {:.0} ms at the peak): direct {:.0} ms, all Winograd {:.0} ms, \
         selected (winograd::pays) {:.0} ms = {:.2}x the floor",
        flops / 1e9,
        floor * 1e3,
        td * 1e3,
        tw * 1e3,
        tsel * 1e3,
        tsel / floor
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not and should stay quick (one small shape).
    let benching = std::env::args().any(|a| a == "--bench");
    if let (true, Ok(path)) = (benching, std::env::var("GAGA_BENCH_REFINE")) {
        // `GAGA_BENCH_REFINE=-`: the elementwise passes alone.
        if path != "-" {
            profile::refine(&path);
        }
        profile::elementwise();
        return;
    }
    if benching && std::env::var("GAGA_BENCH_SUMMARY").as_deref() != Ok("0") {
        summary();
    }
    let mut c = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(2)).configure_from_args();
    let mut g = c.benchmark_group("winograd");
    let shapes: &[(usize, usize, usize)] =
        if benching { &[(64, 32, 512), (512, 512, 32), (512, 256, 64), (256, 256, 16)] } else { &[(8, 8, 16)] };
    for &(ci, co, r) in shapes {
        g.throughput(Throughput::Elements(2 * (ci * co * 9 * r * r) as u64));
        let (mut d, mut w) = runners(ci, co, r);
        g.bench_function(BenchmarkId::new("direct", format!("{ci}->{co}@{r}")), |b| b.iter(&mut d));
        g.bench_function(BenchmarkId::new("winograd", format!("{ci}->{co}@{r}")), |b| b.iter(&mut w));
    }
    g.finish();
    c.final_summary();
}
