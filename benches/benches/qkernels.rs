//! Reduced-precision convolution benches (`gaga_kernels::qgemm`) at the refiner's big layer shapes:
//! fp32 (`conv2d_with`, what the refiner runs today, and `PackedConv` F32), fp16 storage and int8.
//!
//! `cargo bench -p gaga-benches --bench qkernels` prints the measured peaks, a table per shape (median of 3:
//! ms, GOP/s, percent of peak; fp32/fp16 against the f32 FMA peak, int8 against the measured int8 peak of
//! the detected kernel, `qgemm::measure_int8_peak`), then the per-frame estimate (every refiner convolution
//! at its real shape in fp32 and int8), then criterion (`qkernels/<format>/<shape>`, 10 samples, 2 s).
//! `GAGA_BENCH_SUMMARY=0` skips the printed part; `GAGA_BENCH_SUMMARY=shapes` skips the per-frame estimate;
//! `GAGA_BENCH_SUMMARY=layers` prints only the int8 per-layer profile (every distinct refiner convolution,
//! slowest first: whole call, kernel with a given activation scale, the range pass alone; `layers_profile`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use gaga_kernels::conv::{conv2d_with, Conv2d, Scratch};
use gaga_kernels::qgemm::{measure_int8_peak, PackedConv, QIsa};
use gaga_kernels::testing::seeded;
use gaga_kernels::{peak, sgemm};
use half::f16;

/// (name, c_in, c_out, k, resolution).
const SHAPES: &[(&str, usize, usize, usize, usize)] = &[
    ("3x3 256->256 @64", 256, 256, 3, 64),
    ("3x3 128->128 @128", 128, 128, 3, 128),
    ("3x3 64->64 @256", 64, 64, 3, 256),
    ("3x3 32->32 @512", 32, 32, 3, 512),
    ("3x3 512->512 @32", 512, 512, 3, 32),
    ("1x1 256->128 @128", 256, 128, 1, 128),
    ("1x1 32->16 @512", 32, 16, 1, 512),
];

const FORMATS: [&str; 4] = ["fp32 conv2d_with", "fp32 packed", "fp16", "int8"];

/// A runnable convolution in one format, with its own warmed-up scratch.
fn runner(format: &str, ci: usize, co: usize, k: usize, r: usize) -> Box<dyn FnMut()> {
    let x = seeded(1, ci * r * r);
    let (wt, b) = (seeded(2, co * ci * k * k), seeded(3, co));
    let mut out = vec![0f32; co * r * r];
    let mut scratch = Scratch::new();
    let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
    let packed = match format {
        "fp32 packed" => PackedConv::from_f32(&wt, co, ci, k).ok(),
        "fp16" => PackedConv::from_f16(&wt.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), co, ci, k).ok(),
        "int8" => PackedConv::from_f32_as_i8(&wt, co, ci, k).ok(),
        _ => None,
    };
    match packed {
        Some(p) => Box::new(move || {
            let r = p.run(&mut scratch, black_box(&x), r, r, None, Some(&b), &mut out);
            assert!(r.is_ok(), "packed conv failed: {r:?}");
        }),
        None => Box::new(move || conv2d_with(&mut scratch, &spec, black_box(&x), r, r, &wt, Some(&b), &mut out)),
    }
}

fn median_time(runs: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn ops(ci: usize, co: usize, k: usize, r: usize) -> f64 {
    2.0 * (ci * co * k * k * r * r) as f64
}

fn summary(per_frame: bool) {
    let threads = rayon::current_num_threads();
    let fpeak = peak::measure_fma_peak(threads);
    let qisa = QIsa::detect();
    let qpeak = measure_int8_peak(qisa, threads);
    println!("Threads {threads}; f32 FMA peak ({}, sgemm {:?}): {fpeak:.0} GFLOP/s", peak::peak_isa(), sgemm::Isa::detect());
    match qpeak {
        Some(q) => println!("int8 peak ({qisa:?} inner step): {q:.0} GOP/s ({:.2}x the f32 peak)", q / fpeak),
        None => println!("int8 kernel {qisa:?}: no measured peak; int8 percentages use the f32 FMA peak"),
    }
    let qpeak = qpeak.unwrap_or(fpeak);
    println!("\n| shape | {} |", FORMATS.map(|f| format!("{f}: ms, GOP/s, % peak")).join(" | "));
    println!("|---|{}", "---|".repeat(FORMATS.len()));
    for &(name, ci, co, k, r) in SHAPES {
        let cells: Vec<String> = FORMATS
            .iter()
            .map(|f| {
                let t = median_time(3, &mut runner(f, ci, co, k, r));
                let g = ops(ci, co, k, r) / t / 1e9;
                let pk = if *f == "int8" { qpeak } else { fpeak };
                format!("{:.1} ms, {g:.0}, {:.0}%", t * 1e3, 100.0 * g / pk)
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    if per_frame {
        refiner_estimate();
    }
}

/// Every refiner convolution (c_in, c_out, k, resolution, count), as in `benches/benches/kernels.rs`.
fn refiner_convs() -> Vec<(usize, usize, usize, usize, usize)> {
    let mut l = vec![(32, 16, 1, 512, 1)];
    for (a, b, r) in [(16, 32, 512), (32, 64, 256), (64, 128, 128), (128, 256, 64), (256, 256, 32), (256, 256, 16), (256, 256, 8)] {
        l.extend([(a, a, 3, r, 1), (a, b, 3, r / 2, 1), (a, b, 1, r / 2, 1)]);
    }
    l.push((256, 256, 3, 4, 1));
    for (a, b, r) in [(256, 256, 4), (256, 256, 8), (256, 256, 16), (256, 128, 32), (128, 64, 64), (64, 32, 128), (32, 16, 256)] {
        l.extend([(a, a, 3, r, 1), (a, b, 3, 2 * r, 1), (a, b, 1, 2 * r, 1), (b, b, 3, 2 * r, 2), (b, 2 * b, 3, 2 * r, 2)]);
    }
    l.extend([(512, 512, 3, 4, 1), (512, 3, 1, 4, 1)]);
    for (a, b, r) in [(512, 512, 8), (512, 512, 16), (512, 512, 32), (512, 256, 64), (256, 128, 128), (128, 64, 256), (64, 32, 512)] {
        l.extend([(a, b, 3, r, 1), (b, b, 3, r, 1), (b, 3, 1, r, 1)]);
    }
    l
}

/// Per-frame convolution time in fp32 (`conv2d_with`), fp16 and int8, alternating per layer.
fn refiner_estimate() {
    let fmts = ["fp32 conv2d_with", "fp16", "int8"];
    let mut t = [0.0f64; 3];
    let mut total = 0.0;
    for (ci, co, k, r, count) in refiner_convs() {
        total += ops(ci, co, k, r) * count as f64;
        for (i, f) in fmts.iter().enumerate() {
            t[i] += median_time(3, &mut runner(f, ci, co, k, r)) * count as f64;
        }
    }
    println!("\nRefiner convolutions per frame ({:.1} GOP):", total / 1e9);
    for (f, ti) in fmts.iter().zip(t) {
        println!("  {f}: {:.0} ms ({:.0} GOP/s), {:.2}x faster than fp32", ti * 1e3, total / ti / 1e9, t[0] / ti);
    }
}

/// The int8 refiner per layer, slowest first: whole call (dynamic scale), the call with a fixed activation
/// scale (quantise + kernel + epilogue), and the range pass of the dynamic quantiser alone, with GOP/s and percent of int8 peak.
fn layers_profile() {
    let threads = rayon::current_num_threads();
    let qisa = QIsa::detect();
    let qpeak = measure_int8_peak(qisa, threads).unwrap_or_else(|| peak::measure_fma_peak(threads));
    println!("Threads {threads}; int8 peak ({qisa:?}): {qpeak:.0} GOP/s");
    let mut layers: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    for (ci, co, k, r, n) in refiner_convs() {
        match layers.iter_mut().find(|l| (l.0, l.1, l.2, l.3) == (ci, co, k, r)) {
            Some(l) => l.4 += n,
            None => layers.push((ci, co, k, r, n)),
        }
    }
    // `GAGA_BENCH_LAYER=ci,co,k,r` keeps one layer (for a profiler).
    if let Ok(only) = std::env::var("GAGA_BENCH_LAYER") {
        layers.retain(|l| format!("{},{},{},{}", l.0, l.1, l.2, l.3) == only);
    }
    let mut rows = Vec::new();
    let (mut total, mut total_fixed, mut total_ops) = (0.0, 0.0, 0.0);
    for &(ci, co, k, r, n) in &layers {
        let x = seeded(1, ci * r * r);
        let (wt, b) = (seeded(2, co * ci * k * k), seeded(3, co));
        let Ok(p) = PackedConv::from_f32_as_i8(&wt, co, ci, k) else { continue };
        let mut out = vec![0f32; co * r * r];
        let mut scratch = Scratch::new();
        let mut call = |s: Option<gaga_kernels::qgemm::ActQuant>| {
            let res = p.run(&mut scratch, black_box(&x), r, r, s, Some(&b), &mut out);
            assert!(res.is_ok(), "int8 conv failed: {res:?}");
        };
        let whole = median_time(5, &mut || call(None));
        let fixed = median_time(5, &mut || call(Some(gaga_kernels::qgemm::ActQuant::symmetric(0.01))));
        let range = median_time(5, &mut || {
            black_box(gaga_kernels::qgemm::act_quant_for(black_box(&x)));
        });
        let o = ops(ci, co, k, r);
        let nf = n as f64;
        total += whole * nf;
        total_fixed += fixed * nf;
        total_ops += o * nf;
        rows.push((
            whole * nf,
            format!(
                "| {k}x{k} {ci}->{co} @{r} x{n} | {:.2} | {:.0}% | {:.2} | {:.0}% | {:.2} |",
                whole * 1e3,
                100.0 * o / whole / 1e9 / qpeak,
                fixed * 1e3,
                100.0 * o / fixed / 1e9 / qpeak,
                range * 1e3
            ),
        ));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("\n| layer x count | whole ms | % peak | fixed-scale ms | % peak | range ms |\n|---|---|---|---|---|---|");
    for (_, r) in &rows {
        println!("{r}");
    }
    println!(
        "\nint8 refiner convolutions: {:.0} ms ({:.0}% of peak), with fixed scales {:.0} ms ({:.0}%)",
        total * 1e3,
        100.0 * total_ops / total / 1e9 / qpeak,
        total_fixed * 1e3,
        100.0 * total_ops / total_fixed / 1e9 / qpeak
    );
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("qkernels");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for &(name, ci, co, k, r) in SHAPES {
        group.throughput(Throughput::Elements(ops(ci, co, k, r) as u64));
        for f in FORMATS {
            let mut run = runner(f, ci, co, k, r);
            group.bench_function(BenchmarkId::new(f, name), |b| b.iter(&mut run));
        }
    }
    group.finish();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not and should stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let mode = std::env::var("GAGA_BENCH_SUMMARY").unwrap_or_default();
    if benching && mode == "layers" {
        layers_profile();
        return;
    }
    if benching && mode != "0" {
        summary(mode != "shapes");
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
