//! Where one official-size fp32 refine spends its time: `GAGA_BENCH_REFINE=<model.gaga> cargo bench -p
//! gaga-benches --bench winograd` runs `Refiner::run_observed` on a seeded input (1 warm-up, median of 3)
//! and stamps the clock at every convolution's input. A segment is one convolution plus the elementwise
//! work after it (activation, resize, modulation of the next input, ...). Each convolution is then timed
//! alone at its shape on the kernel the refiner picks (`winograd::pays`, else the direct packed conv), so
//! `segment - alone` estimates the non-convolution share.

use std::collections::HashMap;
use std::time::Instant;

use gaga_kernels::conv::{conv2d_prepacked, Conv2d, PackedWeights, Scratch};
use gaga_kernels::testing::seeded;
use gaga_kernels::winograd;
use gaga_runtime::model::Model;
use gaga_runtime::refiner::{NoiseMode, Refiner};
use gaga_runtime::weights::Weights;

/// One convolution's shape: `(c_in, c_out, k, side)`.
type Shape = (usize, usize, usize, usize);

/// One timed call of a convolution on its warmed-up scratch and output.
type Run = Box<dyn FnMut(&mut Scratch, &mut [f32])>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median of 3 (after one warm-up) of the convolution `shape` alone, in seconds.
fn alone(shape: Shape) -> f64 {
    let (ci, co, k, r) = shape;
    let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
    let (x, wt, b) = (seeded(1, ci * r * r), seeded(2, co * ci * k * k), seeded(3, co));
    let mut out = vec![0f32; co * r * r];
    let mut s = Scratch::new();
    let mut run: Run = if winograd::pays(&spec, r, r) {
        let ww = winograd::WinogradWeights::new(&spec, &wt, Some(&b)).expect("3x3 shape");
        Box::new(move |s, out| winograd::conv3x3(s, &ww, &x, r, r, out).expect("sizes match"))
    } else {
        let pw = PackedWeights::pack(&spec, &wt, Some(&b));
        Box::new(move |s, out| conv2d_prepacked(s, &pw, &x, r, r, out))
    };
    run(&mut s, &mut out);
    median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                run(&mut s, &mut out);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Prints the per-segment table and the totals for the model at `path`.
pub fn refine(path: &str) {
    let model = Model::open(path).expect("model opens");
    let cfg = model.config().clone();
    let mut r = Refiner::new(&model, &cfg, NoiseMode::Stored).expect("refiner loads");
    let s = r.size();
    let x = seeded(7, cfg.refiner.in_channels * s * s);
    let mut out = vec![0f32; cfg.refiner.out_channels * s * s];
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut seg: Vec<Vec<f64>> = Vec::new();
    let mut totals = Vec::new();
    for run in 0..4 {
        let mut stamps: Vec<(String, usize, Instant)> = Vec::with_capacity(128);
        let t0 = Instant::now();
        r.run_observed(&x, &mut out, &mut |n, a| stamps.push((n.to_string(), a.len(), Instant::now()))).expect("refine runs");
        let end = Instant::now();
        if run == 0 {
            names = stamps.iter().map(|(n, l, _)| (n.clone(), *l)).collect();
            seg = vec![Vec::new(); stamps.len() + 1];
            continue;
        }
        totals.push((end - t0).as_secs_f64());
        seg[0].push((stamps[0].2 - t0).as_secs_f64());
        for (i, w) in stamps.iter().enumerate() {
            let next = stamps.get(i + 1).map_or(end, |n| n.2);
            seg[i + 1].push((next - w.2).as_secs_f64());
        }
    }
    let total = median(totals);
    println!("refine {:.1} ms (median of 3), {} convolutions\n", total * 1e3, names.len());
    // The observer above makes the ResBlocks take their separate skip passes (the fused one never holds the
    // skip conv's input); `run`, the production path, fuses them. Alternate the two in this process.
    let (mut plain, mut observed) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        r.run(&x, &mut out).expect("refine runs");
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut seen = 0usize;
        r.run_observed(&x, &mut out, &mut |_, _| seen += 1).expect("refine runs");
        observed.push(t.elapsed().as_secs_f64());
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min) * 1e3;
    println!(
        "refine via `run` (fused skip passes) {:.1} ms (min {:.1}), via `run_observed` {:.1} ms (min {:.1}); medians of 7, \
         alternating\n",
        median(plain.clone()) * 1e3,
        min(&plain),
        median(observed.clone()) * 1e3,
        min(&observed)
    );
    ab(&mut r, &x, &mut out);
    println!("| # | conv | shape | segment ms | conv alone ms | rest ms |");
    println!("|---|---|---|---|---|---|");
    let pre = median(seg[0].clone());
    println!("| 0 | (before the first conv) | | {:.2} | | {:.2} |", pre * 1e3, pre * 1e3);
    let mut cache: HashMap<Shape, f64> = HashMap::new();
    let (mut conv3, mut conv1, mut wino, mut rest) = (0.0, 0.0, 0.0, pre);
    for (i, (name, len)) in names.iter().enumerate() {
        let sh = model.shape(name).expect("conv weight shape");
        let n = sh.len();
        let (co, ci, k) = (sh[n - 4], sh[n - 3], sh[n - 1]);
        let side = ((len / ci) as f64).sqrt() as usize;
        let shape = (ci, co, k, side);
        let a = *cache.entry(shape).or_insert_with(|| alone(shape));
        let sg = median(seg[i + 1].clone());
        let spec = Conv2d { c_in: ci, c_out: co, kernel: k, stride: 1, pad: k / 2 };
        if k == 3 {
            conv3 += a;
            if winograd::pays(&spec, side, side) {
                wino += a;
            }
        } else {
            conv1 += a;
        }
        rest += sg - a;
        let short = name.trim_start_matches("upsampler.").trim_start_matches("stylegan_decoder.").trim_end_matches(".weight");
        println!("| {} | {short} | {ci}->{co} k{k} @{side} | {:.2} | {:.2} | {:.2} |", i + 1, sg * 1e3, a * 1e3, (sg - a) * 1e3);
    }
    println!(
        "\ntotal {:.1} ms: 3x3 convs alone {:.1} ms (Winograd {:.1}), 1x1 convs alone {:.1} ms, rest (non-conv + in-frame \
         cache effects) {:.1} ms",
        total * 1e3,
        conv3 * 1e3,
        wino * 1e3,
        conv1 * 1e3,
        rest * 1e3
    );
}

/// Median of 5 (after one warm-up) of `f`, in milliseconds.
fn ms(mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

/// The refiner's elementwise passes at their largest official shapes, with the bytes each moves, next
/// to a plain copy (the bandwidth they should reach).
pub fn elementwise() {
    use gaga_kernels::act::leaky_relu;
    use gaga_kernels::fused::{add_assign, bilinear_fast, bilinear_scaled, scale_channels, style_epilogue};
    let m = 512 * 512;
    let big = seeded(1, 64 * m);
    let mut out = vec![0f32; 64 * m];
    let (noise, s) = (seeded(2, m), seeded(3, 64));
    let (a, b) = (seeded(4, 32 * m), seeded(5, 32 * m));
    let gbs = |bytes: usize, t: f64| bytes as f64 / t / 1e6;
    let row = |what: &str, mib: usize, t: f64| println!("| {what} | {mib} | {t:.2} | {:.1} |", gbs(mib << 20, t));
    println!("\n| pass | MiB moved | ms | GB/s |\n|---|---|---|---|");
    let t = ms(|| out.copy_from_slice(&big));
    row("copy 64 MiB", 128, t);
    let t = ms(|| bilinear_scaled(&big[..64 * m / 4], 64, 256, 256, 512, 512, &s, &mut out));
    row("bilinear_scaled 64ch 256->512", 80, t);
    let t = ms(|| bilinear_fast(&big[..32 * m / 4], 32, 256, 256, 512, 512, &mut out[..32 * m]));
    row("bilinear_fast 32ch 256->512", 40, t);
    let t = ms(|| bilinear_fast(&big[..16 * m], 16, 512, 512, 256, 256, &mut out[..4 * m]));
    row("bilinear_fast 16ch 512->256", 20, t);
    let t = ms(|| style_epilogue(&mut out[..32 * m], m, &s[..32], &noise, 0.1, &s[32..], 0.2, None));
    row("style_epilogue 32ch@512", 64, t);
    let t = ms(|| style_epilogue(&mut out[..32 * m], m, &s[..32], &noise, 0.1, &s[32..], 0.2, Some((&a, &b))));
    row("style_epilogue + SFT 32ch@512", 128, t);
    let t = ms(|| leaky_relu(&mut out[..16 * m], 0.2));
    row("leaky_relu 16ch@512", 32, t);
    let t = ms(|| scale_channels(&big[..32 * m], &s[..32], m, &mut out[..32 * m]));
    row("scale_channels 32ch@512", 64, t);
    let t = ms(|| add_assign(&mut out[..32 * m], &a));
    row("add_assign 32ch@512", 96, t);
    skip_branch(&big[..32 * m / 4], &mut out[..16 * m]);
}

/// The last up ResBlock's skip branch (32 channels 256 -> 512, 1x1 to 16, `lrelu_add` into the block's
/// output) as three passes and as `fused::resize_conv1x1_lrelu_add`, alternating (medians of 5).
fn skip_branch(x: &[f32], out: &mut [f32]) {
    use gaga_kernels::fused::{bilinear_fast, lrelu_add, resize_conv1x1_lrelu_add};
    let m = 512 * 512;
    let spec = Conv2d { c_in: 32, c_out: 16, kernel: 1, stride: 1, pad: 0 };
    let pw = PackedWeights::pack(&spec, &seeded(9, 32 * 16), None);
    let (mut t2, mut t1, mut s) = (vec![0f32; 32 * m], vec![0f32; 16 * m], Scratch::new());
    let (mut sep, mut fused) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let t = Instant::now();
        bilinear_fast(x, 32, 256, 256, 512, 512, &mut t2);
        conv2d_prepacked(&mut s, &pw, &t2, 512, 512, &mut t1);
        lrelu_add(out, &t1, 0.2);
        let a = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let ran = resize_conv1x1_lrelu_add(&mut s, &pw, x, 256, 256, 512, 512, 0.2, out);
        let b = t.elapsed().as_secs_f64() * 1e3;
        if i > 0 && ran {
            sep.push(a);
            fused.push(b);
        }
    }
    if fused.is_empty() {
        println!("\nskip branch 32ch 256->512 -> 16: no fused path on this CPU");
        return;
    }
    println!("| skip branch 32->16 @512, three passes | 112 | {:.2} | |", median(sep));
    println!("| skip branch 32->16 @512, fused | 24 | {:.2} | |", median(fused));
}

/// Session-5 changes that keep the same bits, each with its process-wide switch (off = the old path).
/// A switch's name and setter.
type Switch = (&'static str, fn(bool));

const SWITCHES: [Switch; 1] = [("narrow 16-column strip for 16x16 maps", winograd::set_narrow_strips)];

/// Old against new in this process, alternating: the whole refine (all switches off, then on; medians of
/// 7), then each switch alone on the 3x3 shapes it touches (medians of 5 rounds of [`alone`]).
fn ab(r: &mut Refiner, x: &[f32], out: &mut [f32]) {
    let set = |on: bool| SWITCHES.iter().for_each(|(_, f)| f(on));
    let (mut old, mut new) = (Vec::new(), Vec::new());
    let mut first: Option<Vec<f32>> = None;
    for _ in 0..7 {
        for (on, v) in [(false, &mut old), (true, &mut new)] {
            set(on);
            let t = Instant::now();
            r.run(x, out).expect("refine runs");
            v.push(t.elapsed().as_secs_f64() * 1e3);
            // Every run, old or new, must give the first one's bits.
            let same = first.get_or_insert_with(|| out.to_vec()).iter().zip(out.iter()).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "refine output with the switches {} differs from the first run's", if on { "on" } else { "off" });
        }
    }
    let (o, n) = (median(old), median(new));
    println!("A/B whole refine via `run`, medians of 7 alternating: old {o:.1} ms, new {n:.1} ms ({:.3}x)\n", o / n);
    println!("| switch | shape | old ms | new ms | ratio |\n|---|---|---|---|---|");
    let shapes: [Shape; 3] = [(256, 256, 3, 16), (256, 512, 3, 16), (512, 512, 3, 16)];
    for (name, f) in SWITCHES {
        for shape in shapes {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                f(false);
                a.push(alone(shape));
                f(true);
                b.push(alone(shape));
            }
            let (a, b) = (median(a) * 1e3, median(b) * 1e3);
            println!("| {name} | {}->{} @{} | {a:.2} | {b:.2} | {:.2} |", shape.0, shape.1, shape.3, a / b);
        }
    }
    set(true);
    println!();
}
