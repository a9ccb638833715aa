//! Kernel benches at GAGAvatar's real shapes: the fast kernels against the reference oracles.
//!
//! `cargo bench -p gaga-benches --bench kernels` first prints a summary table (measured FMA peak, then per
//! shape: fast median time, GFLOP/s, percent of peak, reference GFLOP/s, speed-up), then runs criterion
//! with small sample counts. Criterion's throughput is in FLOP ("elem/s" = FLOP/s).
//! The references are timed on a band of rows (or fewer tokens/heads) so each run stays under a second;
//! their GFLOP/s is per-FLOP comparable with the fast kernels'. `GAGA_BENCH_SUMMARY=0` skips the table,
//! `GAGA_BENCH_SUMMARY=refiner` (or `lift`) prints only the refiner (or lifting) estimate;
//! a criterion filter argument (e.g. `-- conv/`) narrows the criterion part.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use gaga_kernels::conv::{conv2d, conv2d_with_path, conv_transpose2d_patch, Conv2d, GemmPath, Scratch};
use gaga_kernels::testing::seeded;
use gaga_kernels::{attention, linear, peak, reference};

/// A convolution shape and where the product runs it.
struct ConvCase {
    name: &'static str,
    spec: Conv2d,
    h: usize,
    w: usize,
    /// Input rows the reference is timed on.
    ref_rows: usize,
}

const fn conv(name: &'static str, c_in: usize, c_out: usize, kernel: usize, stride: usize, hw: usize, ref_rows: usize) -> ConvCase {
    ConvCase { name, spec: Conv2d { c_in, c_out, kernel, stride, pad: kernel / 2 }, h: hw, w: hw, ref_rows }
}

const CONVS: &[ConvCase] = &[
    // StyleUNet decoder, level 512: style_convs.12 (conv1 after the x2 upsample), 64 -> 32.
    conv("style_convs.12 3x3 64->32 @512", 64, 32, 3, 1, 512, 8),
    // StyleUNet decoder, level 512: style_convs.13 (conv2), 32 -> 32.
    conv("style_convs.13 3x3 32->32 @512", 32, 32, 3, 1, 512, 8),
    // StyleUNet up path: conv_body_up.6 conv2, 32 -> 16 at 512.
    conv("conv_body_up.6 3x3 32->16 @512", 32, 16, 3, 1, 512, 8),
    // SFT condition branch at 512: condition_scale.6 first conv, 16 -> 32.
    conv("condition_scale.6 3x3 16->32 @512", 16, 32, 3, 1, 512, 8),
    // StyleUNet decoder, level 32: style_convs.4/5, 512 -> 512 at 32x32 (the widest refiner layer).
    conv("style_convs.5 3x3 512->512 @32", 512, 512, 3, 1, 32, 3),
    // StyleUNet decoder, level 64: style_convs.6, 512 -> 256.
    conv("style_convs.6 3x3 512->256 @64", 512, 256, 3, 1, 64, 3),
    // StyleUNet entry: conv_body_first, 1x1 32 -> 16 at 512.
    conv("conv_body_first 1x1 32->16 @512", 32, 16, 1, 1, 512, 64),
    // DPT head: output_conv 3x3 256 -> 256 at 296 (also every refinenet.3 conv).
    conv("dpt output_conv 3x3 256->256 @296", 256, 256, 3, 1, 296, 3),
    // Lifting generators: gs_generator_l0.0 3x3 283 -> 128 at 296 (l1 identical).
    conv("gs_generator_l0.0 3x3 283->128 @296", 283, 128, 3, 1, 296, 3),
    // DPT resize_layers.3: 3x3 stride 2, 1024 -> 1024, 37 -> 19.
    conv("dpt resize_layers.3 3x3/2 1024->1024 @37", 1024, 1024, 3, 2, 37, 3),
    // DPT projects.2: 1x1 768 -> 1024 at 37.
    conv("dpt projects.2 1x1 768->1024 @37", 768, 1024, 1, 1, 37, 4),
    // DINOv2 patch embedding: 14x14 stride 14, 3 -> 768 on the 518 image.
    ConvCase {
        name: "dino patch_embed 14x14/14 3->768 @518",
        spec: Conv2d { c_in: 3, c_out: 768, kernel: 14, stride: 14, pad: 0 },
        h: 518,
        w: 518,
        ref_rows: 28,
    },
];

/// Median wall time of `runs` calls after one warm-up call.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// A fast-vs-reference pair of closures with their FLOP counts.
struct Case {
    name: String,
    flop: f64,
    fast: Box<dyn FnMut()>,
    ref_flop: f64,
    reference: Box<dyn FnMut()>,
}

fn conv_case(c: &ConvCase) -> Case {
    let s = c.spec;
    let (oh, ow) = s.out_size(c.h, c.w);
    let x = seeded(1, s.c_in * c.h * c.w);
    let wt = seeded(2, s.c_out * s.c_in * s.kernel * s.kernel);
    let b = seeded(3, s.c_out);
    let mut out = vec![0f32; s.c_out * oh * ow];
    let rh = c.ref_rows.min(c.h);
    let (roh, row) = s.out_size(rh, c.w);
    let xr = x[..s.c_in * rh * c.w].to_vec();
    let mut rout = vec![0f32; s.c_out * roh * row];
    let (wt2, b2) = (wt.clone(), b.clone());
    let (h, w) = (c.h, c.w);
    Case {
        name: c.name.to_string(),
        flop: 2.0 * s.macs(h, w) as f64,
        fast: Box::new(move || conv2d(&s, black_box(&x), h, w, &wt, Some(&b), &mut out)),
        ref_flop: 2.0 * s.macs(rh, w) as f64,
        reference: Box::new(move || reference::conv2d(&s, black_box(&xr), rh, w, &wt2, Some(&b2), &mut rout)),
    }
}

fn other_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // DPT resize_layers.0: ConvTranspose2d 256 -> 256, k4 s4, 37 -> 148.
    let (ci, co, k, hw) = (256, 256, 4, 37);
    let x = seeded(4, ci * hw * hw);
    let wt = seeded(5, ci * co * k * k);
    let mut out = vec![0f32; co * hw * k * hw * k];
    let (xr, wr, mut rout) = (x[..ci * 2 * hw].to_vec(), wt.clone(), vec![0f32; co * 2 * k * hw * k]);
    let flop = |rows: usize| 2.0 * (ci * co * k * k * rows * hw) as f64;
    cases.push(Case {
        name: "dpt resize_layers.0 convT k4/4 256->256 @37".into(),
        flop: flop(hw),
        fast: Box::new(move || conv_transpose2d_patch(ci, co, k, black_box(&x), hw, hw, &wt, None, &mut out)),
        ref_flop: flop(2),
        reference: Box::new(move || reference::conv_transpose2d_patch(ci, co, k, black_box(&xr), 2, hw, &wr, None, &mut rout)),
    });
    // DINOv2 qkv projection: 1,370 tokens x 768 -> 2,304 (mlp.fc1 768 -> 3072 is the same kind).
    let (n, din, dout) = (1370, 768, 2304);
    let x = seeded(6, n * din);
    let wt = seeded(7, dout * din);
    let b = seeded(8, dout);
    let mut out = vec![0f32; n * dout];
    let (rn, xr, wr, br) = (64, x[..64 * din].to_vec(), wt.clone(), b.clone());
    let mut rout = vec![0f32; rn * dout];
    cases.push(Case {
        name: "vit qkv linear 1370x768->2304".into(),
        flop: 2.0 * (n * din * dout) as f64,
        fast: Box::new(move || linear::linear(black_box(&x), n, din, &wt, Some(&b), dout, &mut out)),
        ref_flop: 2.0 * (rn * din * dout) as f64,
        reference: Box::new(move || reference::linear(black_box(&xr), rn, din, &wr, Some(&br), dout, &mut rout)),
    });
    // DINOv2 attention: 1,370 tokens, 12 heads of 64 (reference timed on 1 head).
    let (n, heads, hd) = (1370, 12, 64);
    let qkv = seeded(9, n * 3 * heads * hd);
    let mut out = vec![0f32; n * heads * hd];
    let qkv1 = seeded(10, n * 3 * hd);
    let mut rout = vec![0f32; n * hd];
    let flop = |h: usize| 4.0 * (h * n * n * hd) as f64;
    cases.push(Case {
        name: "vit attention 1370 tok 12x64".into(),
        flop: flop(heads),
        fast: Box::new(move || attention::self_attention(black_box(&qkv), n, heads, hd, &mut out)),
        ref_flop: flop(1),
        reference: Box::new(move || reference::self_attention(black_box(&qkv1), n, 1, hd, &mut rout)),
    });
    cases
}

fn all_cases() -> Vec<Case> {
    CONVS.iter().map(conv_case).chain(other_cases()).collect()
}

/// Prints the summary table (markdown) on stdout.
fn summary() {
    let threads = rayon::current_num_threads();
    let peak = peak::measure_fma_peak(threads);
    let peak1 = peak::measure_fma_peak(1);
    println!("\nFMA peak: {peak:.1} GFLOP/s with {threads} threads ({peak1:.1} with 1)\n");
    match std::env::var("GAGA_BENCH_SUMMARY").as_deref() {
        Ok("refiner") => return refiner_estimate(peak),
        Ok("lift") => return lift_estimate(peak),
        _ => {}
    }
    println!("| shape | fast median | fast GFLOP/s | % of peak | reference GFLOP/s | speed-up |");
    println!("|---|---|---|---|---|---|");
    for mut c in all_cases() {
        let t = median_time(3, &mut c.fast).as_secs_f64();
        let rt = median_time(1, &mut c.reference).as_secs_f64();
        let (g, rg) = (c.flop / t / 1e9, c.ref_flop / rt / 1e9);
        println!("| {} | {:.2} ms | {g:.1} | {:.0}% | {rg:.2} | {:.0}x |", c.name, t * 1e3, 100.0 * g / peak, g / rg);
    }
    println!();
    refiner_estimate(peak);
    println!();
}

/// Every convolution of the per-frame refiner (§6) as (c_in, c_out, kernel, resolution, count), in
/// execution-independent order. Sums to the spec's 136.9 GFLOP.
fn refiner_convs() -> Vec<(usize, usize, usize, usize, usize)> {
    let mut l = vec![(32, 16, 1, 512, 1)]; // conv_body_first
                                           // conv_body_down: conv1 in->in at r, conv2 in->out at r/2, skip 1x1 in->out at r/2.
    for (a, b, r) in [(16, 32, 512), (32, 64, 256), (64, 128, 128), (128, 256, 64), (256, 256, 32), (256, 256, 16), (256, 256, 8)] {
        l.extend([(a, a, 3, r, 1), (a, b, 3, r / 2, 1), (a, b, 1, r / 2, 1)]);
    }
    l.push((256, 256, 3, 4, 1)); // final_conv
                                 // conv_body_up: conv1 in->in at r, conv2 in->out at 2r, skip at 2r; condition_scale/shift at 2r.
    for (a, b, r) in [(256, 256, 4), (256, 256, 8), (256, 256, 16), (256, 128, 32), (128, 64, 64), (64, 32, 128), (32, 16, 256)] {
        l.extend([(a, a, 3, r, 1), (a, b, 3, 2 * r, 1), (a, b, 1, 2 * r, 1), (b, b, 3, 2 * r, 2), (b, 2 * b, 3, 2 * r, 2)]);
    }
    l.extend([(512, 512, 3, 4, 1), (512, 3, 1, 4, 1)]); // style_conv1, to_rgb1
                                                        // Decoder levels 8..512: style_convs 2k, 2k+1 and to_rgbs k.
    for (a, b, r) in [(512, 512, 8), (512, 512, 16), (512, 512, 32), (512, 256, 64), (256, 128, 128), (128, 64, 256), (64, 32, 512)] {
        l.extend([(a, b, 3, r, 1), (b, b, 3, r, 1), (b, 3, 1, r, 1)]);
    }
    l
}

/// One convolution at its real shape on a chosen GEMM engine, with its own warmed-up scratch.
fn conv_on(path: GemmPath, ci: usize, co: usize, k: usize, r: usize) -> (f64, Box<dyn FnMut()>) {
    let s = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
    let x = seeded(1, ci * r * r);
    let (wt, b) = (seeded(2, co * ci * k * k), seeded(3, co));
    let mut out = vec![0f32; co * r * r];
    let mut scratch = Scratch::new();
    let f = move || conv2d_with_path(path, &mut scratch, &s, black_box(&x), r, r, &wt, Some(&b), &mut out);
    (2.0 * s.macs(r, r) as f64, Box::new(f))
}

/// Times each refiner convolution (median of 3) on both engines, our packed SGEMM (what `conv2d_with`
/// uses) and the `gemm` crate, alternating per layer so both see the same machine load, and prints the
/// per-frame sums against the peak floor.
fn refiner_estimate(peak: f64) {
    let (mut t_packed, mut t_crate, mut total_f) = (0.0, 0.0, 0.0);
    let mut rows = Vec::new();
    for (ci, co, k, r, count) in refiner_convs() {
        let (flop, mut packed) = conv_on(GemmPath::Packed, ci, co, k, r);
        let (_, mut krate) = conv_on(GemmPath::GemmCrate, ci, co, k, r);
        let tp = median_time(3, &mut packed).as_secs_f64() * count as f64;
        let tc = median_time(3, &mut krate).as_secs_f64() * count as f64;
        t_packed += tp;
        t_crate += tc;
        total_f += flop * count as f64;
        rows.push((tp, tc, format!("{ci}->{co} k{k} @{r} x{count}"), flop * count as f64));
    }
    let line = |what: &str, t: f64| {
        println!(
            "Refiner convolutions, {what}: {:.1} GFLOP in {:.0} ms = {:.1} GFLOP/s ({:.0}% of peak; floor {:.0} ms, {:.2}x floor)",
            total_f / 1e9,
            t * 1e3,
            total_f / t / 1e9,
            100.0 * total_f / t / 1e9 / peak,
            total_f / peak / 1e6,
            t / (total_f / peak / 1e9)
        );
    };
    line("packed SGEMM (used)", t_packed);
    line("gemm crate", t_crate);
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("Slowest layers (packed | gemm crate):");
    for (tp, tc, n, f) in rows.iter().take(8) {
        println!("  {n}: {:.1} ms ({:.0} GFLOP/s) | {:.1} ms ({:.0} GFLOP/s)", tp * 1e3, f / tp / 1e9, tc * 1e3, f / tc / 1e9);
    }
    let slower: Vec<_> = rows.iter().filter(|r| r.0 > 1.1 * r.1).map(|r| r.2.clone()).collect();
    println!(
        "Layers where the packed SGEMM is >10% slower than the gemm crate: {}",
        if slower.is_empty() { "none".to_string() } else { slower.join(", ") }
    );
}

/// The lifting's convolutions, linears and attentions (§2.2, §3.1), each run once at its real shape; same
/// kernels repeated (12 ViT blocks, refinenet's units) are timed once and multiplied. Leaves out
/// `gs_generator_g` (6.1 GFLOP), LayerNorm, GELU and resizes.
fn lift_estimate(peak: f64) {
    let (mut t_sum, mut f_sum) = (0.0, 0.0);
    let mut add = |what: &str, mut c: Case, count: usize| {
        let t = median_time(1, &mut c.fast).as_secs_f64() * count as f64;
        t_sum += t;
        f_sum += c.flop * count as f64;
        println!("  {what} x{count}: {:.0} ms, {:.1} GFLOP/s", t * 1e3, c.flop * count as f64 / t / 1e9);
    };
    let vit = other_cases();
    let mut cases = vit.into_iter();
    let _convt = cases.next();
    if let (Some(qkv), Some(att)) = (cases.next(), cases.next()) {
        add("vit qkv", qkv, 12);
        add("vit attention", att, 12);
    }
    for (name, din, dout) in [("vit proj", 768, 768), ("vit fc1", 768, 3072), ("vit fc2", 3072, 768)] {
        let n = 1370;
        let (x, wt, b) = (seeded(1, n * din), seeded(2, din * dout), seeded(3, dout));
        let mut out = vec![0f32; n * dout];
        let fast: Box<dyn FnMut()> = Box::new(move || linear::linear(&x, n, din, &wt, Some(&b), dout, &mut out));
        add(name, Case { name: name.into(), flop: 2.0 * (n * din * dout) as f64, fast, ref_flop: 0.0, reference: Box::new(|| {}) }, 12);
    }
    let convs: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
        ("patch_embed", 3, 768, 14, 14, 518, 1),
        ("projects 1x1 768->256..1024", 768, 704, 1, 1, 37, 4), // 256+512+1024+1024 = 4 x 704 outputs
        ("resize_layers.3 s2", 1024, 1024, 3, 2, 37, 1),
        ("layer_rn.0", 259, 256, 3, 1, 148, 1),
        ("layer_rn.1", 515, 256, 3, 1, 74, 1),
        ("layer_rn.2", 1027, 256, 3, 1, 37, 1),
        ("layer_rn.3", 1027, 256, 3, 1, 19, 1),
        ("refinenet rcu @19", 256, 256, 3, 1, 19, 2),
        ("refinenet rcu @37", 256, 256, 3, 1, 37, 4),
        ("refinenet rcu @74", 256, 256, 3, 1, 74, 4),
        ("refinenet rcu @148", 256, 256, 3, 1, 148, 4),
        ("refinenet out_conv 1x1 @37..296", 256, 256, 1, 1, 296, 1), // dominates the four out_convs
        ("output_conv", 256, 256, 3, 1, 296, 1),
        ("gs_generator conv0", 283, 128, 3, 1, 296, 2),
        ("gs_generator conv1/2", 128, 128, 3, 1, 296, 4),
        ("gs_generator 1x1", 128, 41, 1, 1, 296, 2),
    ];
    for &(name, ci, co, k, s, hw, count) in convs {
        add(name, conv_case(&conv("", ci, co, k, s, hw, 1)), count);
    }
    let mut convt = other_cases().into_iter().next();
    if let Some(c) = convt.take() {
        add("resize_layers.0 convT k4 (k2 one similar)", c, 2);
    }
    println!(
        "Lift (timed part): {:.1} GFLOP in {:.2} s = {:.1} GFLOP/s ({:.0}% of peak)",
        f_sum / 1e9,
        t_sum,
        f_sum / t_sum / 1e9,
        100.0 * f_sum / t_sum / 1e9 / peak
    );
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernels");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for mut case in all_cases() {
        group.throughput(Throughput::Elements(case.flop as u64));
        group.bench_function(BenchmarkId::new("fast", &case.name), |b| b.iter(&mut case.fast));
        group.throughput(Throughput::Elements(case.ref_flop as u64));
        group.bench_function(BenchmarkId::new("reference", &case.name), |b| b.iter(&mut case.reference));
    }
    group.finish();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not and should stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    if benching && std::env::var("GAGA_BENCH_SUMMARY").map_or(true, |v| v != "0") {
        summary();
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
