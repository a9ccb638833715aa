//! Resident memory of the per-frame session: releasing stage and tensor pages, the refiner's planned
//! arena, and an int8 session's anonymous memory against a budget computed from the plan.
//! Own test binary; the tests that read resident memory hold `MEASURE` so no other test here allocates
//! or touches the model while they measure. Nothing is timed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gaga_converter::dev::convert_seeded_small;
use gaga_converter::Precision;
use gaga_runtime::flame::Flame;
use gaga_runtime::format::Stage;
use gaga_runtime::model::{resident, Model};
use gaga_runtime::refiner::packed::Precision as PrecisionOf;
use gaga_runtime::refiner::{plan, MapMemory, Refiner};
use gaga_runtime::render::testing::{driving_frame, synthetic_avatar};
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{Image, ModelConfig, WeightMap, Weights};

static MEASURE: Mutex<()> = Mutex::new(());

/// A converted seeded `small` model at `precision` in a fresh temp dir (removed by the caller).
fn small_model(tag: &str, precision: Precision) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("gaga-memory-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = convert_seeded_small(&dir, 7, precision, "tests/memory").expect("seeded small model converts");
    (dir, out)
}

/// Resident bytes of this process's mappings of `file` (from /proc/self/smaps); None without /proc.
fn mapped_resident(file: &Path) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let name = file.canonicalize().ok()?.display().to_string();
    let mut inside = false;
    let mut total = 0;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if head.contains('-') && head.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.ends_with(&name);
        } else if inside && line.starts_with("Rss:") {
            total += line.trim_start_matches("Rss:").trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024;
        }
    }
    Some(total)
}

#[test]
fn releasing_the_lift_stage_lowers_resident_memory_and_keeps_the_weights_readable() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, out) = small_model("lift", Precision::Fp32);
    let m = Model::open(&out).expect("open");
    let lift: Vec<String> = m.tensors().iter().filter(|e| e.stage == Stage::Lift).map(|e| e.name.clone()).collect();
    // Fault every lift page in (a sum the optimiser cannot drop), as a lift would.
    let touch = |m: &Model| lift.iter().map(|n| m.tensor(n).expect("listed").bytes.iter().map(|&b| b as u64).sum::<u64>()).sum::<u64>();
    let sum = touch(&m);
    let Some(before) = resident() else { return }; // no /proc: nothing to measure
    let released = m.release(Stage::Lift).expect("release");
    let after = resident().expect("/proc was readable a moment ago");
    assert!(released > m.stage_bytes(Stage::Lift) / 2, "released {released} of {} lift bytes", m.stage_bytes(Stage::Lift));
    // Resident memory is page-granular and other runtime threads may touch a page or two: ask for at
    // least half of what was released to leave the resident set.
    let dropped = before.now.saturating_sub(after.now);
    assert!(dropped >= released / 2, "RSS {} -> {} bytes after releasing {released}", before.now, after.now);
    // A later lift faults the pages back in from the file, unchanged.
    assert_eq!(touch(&m), sum);
    m.verify().expect("checksums after release");
    assert!(m.f32("base_model.dino_model.cls_token").is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn flame_keeps_only_the_expression_directions_resident_and_poses_the_same_vertices() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, out) = small_model("flame", Precision::Fp32);
    let cfg = ModelConfig::small();
    let m = Model::open(&out).expect("open");
    let shapedirs = m.tensor("flame.shapedirs").expect("present").entry.length;
    // The same arrays held in memory (nothing to release) give the reference vertices.
    let mut copy = WeightMap::default();
    for e in m.tensors().iter().filter(|e| e.stage == Stage::Flame) {
        copy.insert(e.name.clone(), e.shape.iter().map(|&d| d as usize).collect(), m.f32(&e.name).expect("readable").into_owned());
    }
    m.release(Stage::Flame).expect("start from a cold map");
    let (a, b) = (vec![0.3f32; cfg.flame.shape_params], vec![-0.2f32; cfg.flame.shape_params]);
    let frame = driving_frame(&cfg, 3);
    let pose = |f: &mut Flame, id: &[f32]| {
        let mut v = vec![0f32; 3 * cfg.flame.vertices];
        f.set_identity(id).expect("identity");
        f.pose(&frame.expcode, &frame.posecode, &frame.eyecode, "f3", &mut v).expect("pose");
        v
    };
    let mut mapped = Flame::new(&m, &cfg).expect("FLAME from the file");
    let mut held = Flame::new(&copy, &cfg).expect("FLAME in memory");
    let first = pose(&mut mapped, &a);
    assert!(first == pose(&mut held, &a), "released pages changed a vertex");
    // A new identity reads the shape directions again (from the file) and releases them again.
    pose(&mut mapped, &b);
    assert!(pose(&mut mapped, &a) == first, "identity a -> b -> a changed a vertex");
    if let Some(rss) = mapped_resident(&out) {
        // Of the 23 MiB of shape directions at most the unaligned edges (2 x 64 KiB) stay resident.
        assert!(rss < shapedirs / 4, "model map resident {rss} bytes after posing, shape directions are {shapedirs}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_refiners_planned_arena_is_below_its_stated_size() {
    // small: 576 KiB planned, what its busiest step needs (the first conv: the 32-channel 64x64 input
    // region, 512 KiB, and its output), against 3 MiB with one buffer per map.
    let small = plan::report(&ModelConfig::small().refiner).expect("valid");
    assert!(small.planned_bytes <= 600_000, "small arena {} bytes", small.planned_bytes);
    assert_eq!(small.planned_bytes, small.peak_live_bytes, "the placement reaches the busiest step's need");
    // official: 128.75 MiB (the refiner's buffers were 390 MiB before planning).
    let r = ModelConfig::official().refiner;
    let official = plan::report(&r).expect("valid");
    assert!(official.planned_bytes <= 129 << 20, "official arena {} bytes", official.planned_bytes);
    // official int8, half (the default): 41.75 MiB: lean, with the last two levels' largest maps in f16 and
    // the encoder's full-size steps in bands. Lean: 65.75 MiB: the upsampled and modulated inputs are
    // quantised on the fly, the SFT map is computed in row bands, the last level's convs run in bands;
    // `upsampled` (upsampled inputs only): 96.75 MiB.
    let all = vec![true; r.levels()];
    let lean = plan::report_int8(&r, &all, MapMemory::Lean).expect("valid");
    assert!(lean.planned_bytes <= (65 << 20) | (3 << 18), "official lean int8 arena {} bytes", lean.planned_bytes);
    let default = plan::report_int8(&r, &all, MapMemory::default()).expect("valid");
    let half = plan::report_int8(&r, &all, MapMemory::Half).expect("valid");
    assert_eq!(default.planned_bytes, half.planned_bytes, "the default int8 plan is half");
    assert!(half.planned_bytes <= (41 << 20) | (3 << 18), "official half int8 arena {} bytes", half.planned_bytes);
    let upsampled = plan::report_int8(&r, &all, MapMemory::Upsampled).expect("valid");
    assert!(upsampled.planned_bytes <= (97 << 20), "official upsampled int8 arena {} bytes", upsampled.planned_bytes);
}

/// `...style_convs.{2k}.modulated_conv.weight`: a decoder level's first (upsampling) StyleConv.
fn is_level_first_conv(name: &str) -> bool {
    let rest = name.strip_prefix("upsampler.stylegan_decoder.style_convs.").and_then(|r| r.strip_suffix(".modulated_conv.weight"));
    rest.and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i % 2 == 0)
}

#[test]
fn a_converted_int8_refiner_gives_the_same_bits_with_and_without_the_upsampled_input_maps() {
    // Holds the lock too: its allocations would land in another test's resident measurement.
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, out) = small_model("fused", Precision::Int8);
    let m = Model::open(&out).expect("open");
    let cfg = m.config().clone();
    let s = cfg.refiner.size;
    let run = |maps: MapMemory| {
        let mut r = Refiner::with_map_memory(&m, &cfg, Default::default(), maps).expect("refiner");
        let int8_up = r.conv_precisions().iter().filter(|(n, p)| is_level_first_conv(n) && *p == PrecisionOf::Int8).count();
        assert_eq!(int8_up, cfg.refiner.levels(), "every level's first StyleConv is int8 in this file");
        let mut bits = Vec::new();
        for seed in [3u64, 4] {
            let x = gaga_kernels::testing::seeded(seed, cfg.refiner.in_channels * s * s);
            let mut rgb = vec![0f32; cfg.refiner.out_channels * s * s];
            r.run(&x, &mut rgb).expect("frame");
            bits.extend(rgb.iter().map(|v| v.to_bits()));
        }
        (bits, r.arena_bytes())
    };
    let ((fused, a), (plain, b)) = (run(MapMemory::Lean), run(MapMemory::Stored));
    // Same values, same quantisation, exact integer sums: bit-identical, no tolerance.
    assert!(fused == plain, "on-the-fly quantisation of the upsampled inputs changed a bit");
    assert!(a <= b, "arena {a} bytes fused vs {b} materialised");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_int8_session_keeps_its_anonymous_memory_within_the_planned_budget() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, out) = small_model("int8", Precision::Int8);
    let m = Model::open(&out).expect("open");
    let cfg = m.config().clone();
    let avatar = synthetic_avatar(&cfg, 2);
    let mut image = Image::new(cfg.image_size, cfg.image_size);
    let Some(before) = resident() else { return };
    let mut r = FrameRenderer::new(&m, &cfg, RenderOptions::default()).expect("renderer");
    for i in 0..2 {
        r.render(&avatar, &driving_frame(&cfg, i), &mut image).expect("frame");
    }
    let after = resident().expect("/proc was readable a moment ago");
    let grown = after.anonymous.saturating_sub(before.anonymous);
    // What the session owns: the refiner arena; the frame buffers (splat image, positions, RGB); FLAME's
    // expression directions and working meshes; packed weights, at most 4 bytes per stored byte (int8
    // and fp16 packing pads rows, fp32 panels are copies); plus kernel scratch, the splatter's tile
    // lists and allocator rounding, bounded by 4 MiB at this size.
    let s = cfg.image_size;
    let arena = plan::report(&cfg.refiner).expect("valid").planned_bytes as u64;
    let frame = 4 * (cfg.gaussian_channels * s * s + 3 * cfg.gaussians() + cfg.refiner.out_channels * s * s) as u64;
    let flame = 4 * (3 * cfg.flame.vertices * (cfg.flame.expr_params + 4)) as u64;
    let weights = 4 * m.stage_bytes(Stage::Frame);
    let budget = arena + frame + flame + weights + (4 << 20);
    assert!(grown <= budget, "anonymous memory grew {grown} bytes, budget {budget} (arena {arena}, frame {frame}, weights {weights})");
    std::fs::remove_dir_all(&dir).ok();
}

/// `Session::prepare_avatar`: the CPU session of an int8 model keeps the colours in f16 (half the bytes) and
/// renders them bitwise as the same colours widened to f32 (the splat widens exactly, so no tolerance);
/// the fp32 model's session keeps the avatar unchanged, so its frames stay the PyTorch-checked ones.
#[test]
fn an_int8_cpu_session_keeps_f16_colours_and_renders_them_as_the_widened_avatar() {
    use gaga_runtime::backend::{cpu::CpuBackend, Backend, Budget};
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let (dir8, out8) = small_model("f16-int8", Precision::Int8);
    let (dir32, out32) = small_model("f16-fp32", Precision::Fp32);
    let (m8, m32) = (Model::open(&out8).expect("int8 model"), Model::open(&out32).expect("fp32 model"));
    let cfg = m8.config().clone();
    let avatar = synthetic_avatar(&cfg, 3);
    let s = cfg.image_size;

    let mut session = CpuBackend::default().prepare(&m8, &cfg, Budget::UNLIMITED).expect("int8 session");
    let prepared = session.prepare_avatar(avatar.clone());
    assert!(prepared.colors.is_f16(), "int8 session colours");
    assert_eq!(2 * prepared.colors.bytes(), 4 * avatar.colors.len());
    let mut widened = prepared.clone();
    widened.colors = widened.colors.into_f32();
    for i in 0..2 {
        let (mut a, mut b) = (Image::new(s, s), Image::new(s, s));
        session.render(&prepared, &driving_frame(&cfg, i), &mut a).expect("f16 frame");
        session.render(&widened, &driving_frame(&cfg, i), &mut b).expect("widened frame");
        assert!(a == b, "frame {i}: f16 colours and their widened f32 values render differently");
    }

    let session = CpuBackend::default().prepare(&m32, &cfg, Budget::UNLIMITED).expect("fp32 session");
    assert_eq!(session.prepare_avatar(avatar.clone()).colors, avatar.colors, "the fp32 session keeps f32 colours");
    drop(session);
    std::fs::remove_dir_all(&dir8).ok();
    std::fs::remove_dir_all(&dir32).ok();
}

/// The official-size breakdown behind docs/performance.md (needs a converted model, so not in CI):
/// `GAGA_MEMORY_MODEL=/tmp/d/m.gaga cargo test --release -p gaga-tests --test memory -- --ignored --nocapture`
/// (`GAGA_INT8_MAPS=stored|upsampled|lean` picks which int8 maps are stored, as for every session.)
#[test]
#[ignore]
fn official_int8_session_breakdown() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = std::env::var_os("GAGA_MEMORY_MODEL") else { return };
    let mib = |b: u64| b as f64 / 1048576.0;
    let mut last = resident().expect("/proc");
    let mut step = |what: &str| {
        let now = resident().expect("/proc");
        let (da, df) = (now.anonymous as i64 - last.anonymous as i64, now.file as i64 - last.file as i64);
        eprintln!("{what:<28} anonymous {:+8.1} MiB, file-backed {:+8.1} MiB", da as f64 / 1048576.0, df as f64 / 1048576.0);
        last = now;
    };
    let m = Model::open(Path::new(&path)).expect("open");
    let cfg = m.config().clone();
    step("open");
    let mut flame = Flame::new(&m, &cfg).expect("flame");
    flame.set_identity(&vec![0.1; cfg.flame.shape_params]).expect("identity");
    step("FLAME + identity");
    let maps = MapMemory::from_env().expect("GAGA_INT8_MAPS");
    let mut r = Refiner::with_map_memory(&m, &cfg, Default::default(), maps).expect("refiner");
    step("refiner load (packed weights)");
    let s = cfg.image_size;
    let x = vec![0.25f32; cfg.refiner.in_channels * s * s];
    let mut out = vec![0f32; 3 * s * s];
    step("input and output images");
    r.run(&x, &mut out).expect("frame");
    step("first refiner run");
    r.run(&x, &mut out).expect("frame");
    step("second refiner run");
    let end = resident().expect("/proc");
    eprintln!(
        "arena {:.1} MiB, kernel scratch {:.1} MiB; total {:.1} MiB ({:.1} anonymous, {:.1} file-backed)",
        mib(r.arena_bytes() as u64),
        mib(r.scratch_bytes() as u64),
        mib(end.now),
        mib(end.anonymous),
        mib(end.file)
    );
}

/// `x` rounded to the nearest IEEE half (ties to even) and widened back, as fp16 storage would keep it.
fn through_f16(x: f32) -> f32 {
    let a = x.abs();
    if !a.is_finite() || a >= 65520.0 {
        return if a.is_nan() { x } else { f32::INFINITY.copysign(x) };
    }
    if a < 6.103_515_6e-5 {
        // Subnormal halves: multiples of 2^-24 (the scaling by a power of two is exact).
        let q = (a * 16_777_216.0).round_ties_even() / 16_777_216.0;
        return q.copysign(x);
    }
    let b = x.to_bits();
    let (rem, kept) = (b & 0x1fff, b & !0x1fff);
    let up = rem > 0x1000 || (rem == 0x1000 && kept & 0x2000 != 0);
    f32::from_bits(if up { kept + 0x2000 } else { kept })
}

#[test]
fn rounding_through_f16_keeps_halves_and_rounds_ties_to_even() {
    for v in [0.0f32, 1.0, -2.5, 65504.0, 6.103_515_6e-5, 5.960_464_5e-8] {
        assert_eq!(through_f16(v), v, "{v} is a half");
    }
    // Halves step by 2^-10 above 1.
    assert_eq!(through_f16(1.0 + 1.0 / 2048.0), 1.0, "a tie rounds to the even 1.0");
    assert_eq!(through_f16(1.0 + 3.0 / 2048.0), 1.0 + 2.0 / 1024.0, "a tie rounds to the even neighbour above");
    assert_eq!(through_f16(1.0 + 1.5 / 2048.0), 1.0 + 1.0 / 1024.0, "three quarters of a step rounds up");
    assert_eq!(through_f16(1.0 + 0.5 / 2048.0), 1.0, "a quarter step rounds down");
    assert_eq!(through_f16(1e6), f32::INFINITY);
    assert_eq!(through_f16(3.0e-8), 5.960_464_5e-8, "subnormal halves round to multiples of 2^-24");
}

/// Whether an int8 session may keep the avatar's features in fp16 (issue 6: >= 35 dB against fp32): the
/// fp32 model on the avatar as stored is the reference; the int8 model renders the same frames with the
/// avatar as stored and with its features (colours; then also opacities, scales, rotations) rounded
/// through f16, and the fp32 model with the rounded avatar (the rounding's error alone). Prints PSNR min /
/// median. Not in CI (official models):
/// `GAGA_MEMORY_MODEL=/tmp/q/m_int8p.gaga GAGA_MEMORY_REFERENCE=/tmp/q/m_fp32p.gaga
/// GAGA_MEMORY_AVATAR=out/demo/astronaut.gav GAGA_MEMORY_DRIVER=assets/defaults/expressions.jsonl
/// cargo test --release -p gaga-tests --test memory fp16_avatar -- --ignored --nocapture`
#[test]
#[ignore]
fn fp16_avatar_features_accuracy_of_an_int8_session() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let (Some(cand), Some(refm), Some(av), Some(drv)) =
        (var("GAGA_MEMORY_MODEL"), var("GAGA_MEMORY_REFERENCE"), var("GAGA_MEMORY_AVATAR"), var("GAGA_MEMORY_DRIVER"))
    else {
        return;
    };
    let frames_n: usize = std::env::var("GAGA_MEMORY_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let (mc, mr) = (Model::open(&cand).expect("int8 model"), Model::open(&refm).expect("fp32 model"));
    let cfg = mc.config().clone();
    let avatar = gaga_runtime::avatar::load(&av, &cfg).expect("avatar");
    // The real conversion, as every CLI command and the kiosk make it (`prepare_avatar`).
    let colours = FrameRenderer::new(&mc, &cfg, RenderOptions::default()).expect("renderer").prepare_avatar(avatar.clone());
    assert!(colours.colors.is_f16(), "an int8 session keeps f16 colours");
    let simulated: Vec<f32> = avatar.colors.to_f32().iter().map(|&v| through_f16(v)).collect();
    assert!(colours.colors.to_f32()[..] == simulated[..], "the session's f16 colours are the simulated rounding");
    let mut all = colours.clone();
    for v in all.opacities.iter_mut().chain(all.scales.iter_mut()).chain(all.rotations.iter_mut()) {
        *v = through_f16(*v);
    }
    let frames = gaga_runtime::driving::read_driving(&drv).expect("driver");
    let render = |m: &Model, a: &gaga_runtime::Avatar| {
        let mut r = FrameRenderer::new(m, &cfg, RenderOptions::default()).expect("renderer");
        frames
            .iter()
            .take(frames_n)
            .map(|f| {
                let mut img = Image::new(cfg.image_size, cfg.image_size);
                r.render(a, f, &mut img).expect("frame");
                img.data
            })
            .collect::<Vec<_>>()
    };
    let reference = render(&mr, &avatar);
    let rows = [
        ("fp32, colours+opacity+scale+rotation f16", &mr, &all),
        ("int8, avatar f32", &mc, &avatar),
        ("int8, colours f16", &mc, &colours),
        ("int8, colours+opacity+scale+rotation f16", &mc, &all),
    ];
    for (what, m, a) in rows {
        let got = render(m, a);
        let mut p: Vec<f64> = got.iter().zip(&reference).map(|(c, r)| gaga_runtime::eval::psnr(c, r).expect("psnr")).collect();
        p.sort_by(f64::total_cmp);
        eprintln!("{what:<42} PSNR vs fp32: min {:.2} dB, median {:.2} dB ({} frames)", p[0], p[p.len() / 2], p.len());
    }
}
