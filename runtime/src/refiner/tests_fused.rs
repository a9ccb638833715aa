//! int8 levels that quantise their upsampled, modulated input on the fly (no f32 `din_up` map in the
//! arena) against the same refiner materialising it: the claim is bit-identity, so every comparison is
//! exact (same f32 values, same quantisation, exact integer sums, same epilogue).

use gaga_kernels::testing::seeded;

use super::packed::Precision;
use super::tests_quant::Quantised;
use super::*;
use crate::format::DType;

fn frames(r: &mut Refiner, cfg: &ModelConfig) -> Vec<u32> {
    let s = cfg.refiner.size;
    let mut bits = Vec::new();
    for seed in [50u64, 51] {
        let x = seeded(seed, cfg.refiner.in_channels * s * s);
        let mut out = vec![0f32; cfg.refiner.out_channels * s * s];
        r.run(&x, &mut out).expect("refiner runs");
        bits.extend(out.iter().map(|v| v.to_bits()));
    }
    bits
}

#[test]
fn an_int8_refiner_quantising_upsampled_inputs_on_the_fly_gives_the_bits_of_materialising_them() {
    let cfg = ModelConfig::small();
    let mut q = Quantised::new(&cfg, DType::I8);
    // One level with a calibrated activation scale (the quantise pass alone), the others dynamic (the
    // range pass on the fly too).
    let name = "upsampler.stylegan_decoder.style_convs.2.modulated_conv.weight@act_scale";
    q.plain.insert(name.to_string(), vec![1], vec![0.03]);
    for noise in [NoiseMode::Stored, NoiseMode::Random { seed: 9 }] {
        let mut fused = Refiner::with_map_memory(&q, &cfg, noise, MapMemory::Lean).expect("loads");
        let mut upsampled = Refiner::with_map_memory(&q, &cfg, noise, MapMemory::Upsampled).expect("loads");
        let mut plain = Refiner::with_map_memory(&q, &cfg, noise, MapMemory::Stored).expect("loads");
        assert!(fused.conv_precisions().iter().all(|(_, p)| *p == Precision::Int8));
        let want_frames = frames(&mut plain, &cfg);
        assert!(frames(&mut fused, &cfg) == want_frames, "{noise:?}: on-the-fly quantisation changed a bit");
        assert!(frames(&mut upsampled, &cfg) == want_frames, "{noise:?}: the upsampled inputs on the fly changed a bit");
        let levels = cfg.refiner.levels();
        let want = plan::report_int8(&cfg.refiner, &vec![true; levels], MapMemory::Lean).expect("valid").planned_bytes;
        assert_eq!(fused.arena_bytes(), want, "the arena has no upsampled-input buffers");
        // At this size the busiest step is the first conv, so the arena keeps its size (official: plan.rs).
        assert!(fused.arena_bytes() <= plain.arena_bytes(), "{} vs {}", fused.arena_bytes(), plain.arena_bytes());
    }
}

/// f16 maps (`MapMemory::Half`) round each of the last two levels' largest maps once; each layer's f16
/// form is exactly its f32 form rounded (`tests_lowmem.rs`), so what is left to check here is the wiring
/// (which map, which rows, which precision each level reads). This seeded small int8 model is very
/// sensitive: rounding only its input to f16 moves the frame by mean 3.8e-3, max 2.7e-2, and the f16
/// maps move it by as much (mean 2.6e-3, max 1.9e-2; int8 itself against fp32: 2.8e-3, 1.8e-2). A
/// wiring error (a wrong map or band) moves it by tenths, so the bound is the input rounding's x2.
#[test]
fn an_int8_refiner_with_f16_maps_moves_the_frame_no_more_than_rounding_its_input() {
    let cfg = ModelConfig::small();
    let q = Quantised::new(&cfg, DType::I8);
    let s = cfg.refiner.size;
    let diff = |a: &[f32], b: &[f32]| {
        let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        (max, a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).sum::<f64>() / a.len() as f64)
    };
    for noise in [NoiseMode::Stored, NoiseMode::Random { seed: 9 }] {
        let mut half = Refiner::with_map_memory(&q, &cfg, noise, MapMemory::Half).expect("loads");
        let mut lean = Refiner::with_map_memory(&q, &cfg, noise, MapMemory::Lean).expect("loads");
        assert!(half.fly.iter().any(|f| f.half), "the small model has f16 levels");
        // (Its busiest step is the encoder's first conv either way; official plans: tests_plan.rs.)
        assert!(half.arena_bytes() <= lean.arena_bytes(), "{} vs {}", half.arena_bytes(), lean.arena_bytes());
        for seed in [50u64, 51] {
            let x = seeded(seed, cfg.refiner.in_channels * s * s);
            let rounded: Vec<f32> = x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
            let (mut a, mut b, mut c) = (vec![0f32; 3 * s * s], vec![0f32; 3 * s * s], vec![0f32; 3 * s * s]);
            half.run(&x, &mut a).expect("f16 maps");
            lean.run(&x, &mut b).expect("f32 maps");
            lean.run(&rounded, &mut c).expect("f32 maps, rounded input");
            let ((max, mean), (in_max, in_mean)) = (diff(&a, &b), diff(&c, &b));
            assert!(a != b, "f16 maps rounded nothing");
            assert!(
                max <= 2.0 * in_max && mean <= 2.0 * in_mean,
                "{noise:?} seed {seed}: f16 maps moved the frame by max {max}, mean {mean}; rounding the input: {in_max}, {in_mean}"
            );
        }
    }
}

#[test]
fn fp32_and_fp16_refiners_keep_the_upsampled_input_buffers_and_the_planned_arena() {
    let cfg = ModelConfig::small();
    let full = plan::report(&cfg.refiner).expect("valid").planned_bytes;
    let q16 = Quantised::new(&cfg, DType::F16);
    for w in [&q16.plain as &dyn Weights, &q16] {
        let r = Refiner::new(w, &cfg, NoiseMode::Stored).expect("loads");
        assert_eq!(r.arena_bytes(), full, "fp32 / fp16 arena changed");
    }
}

#[test]
fn observing_an_int8_refiner_shows_the_upsampled_input_and_gives_the_same_frame() {
    let cfg = ModelConfig::small();
    let q = Quantised::new(&cfg, DType::I8);
    let s = cfg.refiner.size;
    let x = seeded(7, cfg.refiner.in_channels * s * s);
    // Observing needs f32 maps: the f16 ones (the default) are an error, named.
    let mut half = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Half).expect("loads");
    let e = half.run_observed(&x, &mut vec![0f32; 3 * s * s], &mut |_, _| {}).expect_err("f16 maps");
    assert!(e.to_string().contains("GAGA_INT8_MAPS=lean"), "{e}");
    let mut r = Refiner::with_map_memory(&q, &cfg, NoiseMode::Stored, MapMemory::Lean).expect("loads");
    let (mut plain, mut observed) = (vec![0f32; 3 * s * s], vec![0f32; 3 * s * s]);
    r.run(&x, &mut plain).expect("runs");
    let mut seen: Vec<(String, usize)> = Vec::new();
    r.run_observed(&x, &mut observed, &mut |name, act| seen.push((name.to_string(), act.len()))).expect("runs");
    assert!(plain == observed, "observing changed the frame");
    // Last level's first StyleConv: d[levels - 1] channels at the full size.
    let (levels, d) = (cfg.refiner.levels(), &cfg.refiner.decoder_channels);
    let name = format!("upsampler.stylegan_decoder.style_convs.{}.modulated_conv.weight", 2 * levels - 2);
    assert!(seen.contains(&(name.clone(), d[levels - 1] * s * s)), "`{name}` not observed at {s}x{s}: {seen:?}");
}

/// Refine time on an official-size int8 file in each `MapMemory` mode (stored, upsampled, lean),
/// alternating in one process (`GAGA_TIMING_ROUNDS`, default 10, after a warm-up; `GAGA_TIMING_THREADS`,
/// default the pool's), minima, medians and process CPU time, the frames compared bitwise every round:
/// `GAGA_MEMORY_MODEL=/tmp/q/m_int8p.gaga cargo test --release -p gaga-runtime refiner::tests_fused::timing
/// -- --ignored --nocapture`
#[test]
#[ignore]
fn timing_official_int8_refine_in_each_map_memory_mode() {
    let Some(path) = std::env::var_os("GAGA_MEMORY_MODEL") else { return };
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (rounds, threads) = (env("GAGA_TIMING_ROUNDS", 10).max(1), env("GAGA_TIMING_THREADS", 0));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let m = crate::model::Model::open(std::path::Path::new(&path)).expect("open");
    let cfg = m.config().clone();
    let s = cfg.refiner.size;
    let x = seeded(5, cfg.refiner.in_channels * s * s);
    let mut out = vec![0f32; 3 * s * s];
    let modes = [MapMemory::Stored, MapMemory::Upsampled, MapMemory::Lean, MapMemory::Half];
    let mut rs: Vec<Refiner> = modes.map(|f| Refiner::with_map_memory(&m, &cfg, NoiseMode::Stored, f).expect("loads")).into();
    let names = ["stored", "upsampled", "lean", "half"];
    // Every mode but `half` (f16 maps: PSNR against lean printed) gives the same bits.
    let exact = 3;
    let mut times = vec![Vec::new(); modes.len()];
    let mut frames = vec![Vec::new(); modes.len()];
    // Process CPU time (all threads; utime + stime of /proc/self/stat, in clock ticks): less sensitive than
    // wall time to other processes on a shared machine.
    let cpu = || -> u64 {
        let st = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = st.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let mut ticks = vec![0u64; modes.len()];
    pool.install(|| {
        for round in 0..=rounds {
            for (((r, t), f), tk) in rs.iter_mut().zip(&mut times).zip(&mut frames).zip(&mut ticks) {
                let (t0, c0) = (std::time::Instant::now(), cpu());
                r.run(&x, &mut out).expect("runs");
                if round > 0 {
                    t.push(t0.elapsed().as_secs_f64() * 1e3);
                    *tk += cpu() - c0;
                }
                *f = out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
            }
            assert!(
                frames[..exact].iter().all(|f| *f == frames[0]),
                "round {round}: a map memory mode changed a bit of the official frame"
            );
        }
    });
    times.iter_mut().for_each(|t| t.sort_by(f64::total_cmp));
    let med = |t: &[f64]| t[t.len() / 2];
    for i in 0..modes.len() {
        let t = &times[i];
        eprintln!(
            "{:<9} arena {:6.2} MiB  refine min {:6.1} / median {:6.1} ms  median / upsampled's {:.3}, min / upsampled's {:.3}  CPU {} ticks",
            names[i],
            rs[i].arena_bytes() as f64 / 1048576.0,
            t[0],
            med(t),
            med(t) / med(&times[1]),
            t[0] / times[1][0],
            ticks[i],
        );
    }
    let rgb = |f: &[u32]| f.iter().map(|b| f32::from_bits(*b)).collect::<Vec<f32>>();
    let p = crate::eval::psnr(&rgb(&frames[3]), &rgb(&frames[2])).expect("psnr");
    eprintln!("half against lean (last frame): PSNR {p:.2} dB");
    let xr: Vec<f32> = x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
    let mut o2 = vec![0f32; 3 * s * s];
    pool.install(|| rs[2].run(&xr, &mut o2)).expect("runs");
    let p2 = crate::eval::psnr(&o2, &rgb(&frames[2])).expect("psnr");
    eprintln!("lean on the input rounded to f16 against lean: PSNR {p2:.2} dB");
}
