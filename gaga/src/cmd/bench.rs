//! `gaga bench`: time the lift once and the per-frame stages over N frames; report median milliseconds,
//! achieved GFLOP/s from the configuration's FLOP counts (`gaga_runtime::cost`) and the ratio to the
//! machine's measured FMA peak. A table by default, JSON with --json.

use std::path::PathBuf;
use std::time::Instant;

use gaga_converter::Precision;
use gaga_runtime::cost::{flame_flops, lift_flops, refiner_flops, total};
use gaga_runtime::image_io::{load_image, CropBox};
use gaga_runtime::model::Model;
use gaga_runtime::render::testing::{driving_frame, synthetic_avatar};
use gaga_runtime::render::{FrameRenderer, FrameTimes, RenderOptions};
use gaga_runtime::{avatar, driving, lift, Image};
use serde_json::json;

use super::reenact::{medians_ms, spinner};
use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The converted model (.gaga). Optional only with --predict (then the official configuration) and
    /// --precision (which converts its own).
    #[arg(long, required_unless_present_any = ["predict", "precision"])]
    pub model: Option<PathBuf>,
    /// Render this avatar (no lift timing).
    #[arg(long, conflicts_with = "image")]
    pub avatar: Option<PathBuf>,
    /// Lift this photo first (timed); needs --params. Without --avatar or --image, a synthetic avatar.
    #[arg(long, requires = "params")]
    pub image: Option<PathBuf>,
    /// Tracked parameters of --image.
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Crop box of --image: x,y,size.
    #[arg(long, allow_hyphen_values = true)]
    pub crop: Option<CropBox>,
    /// Driving frames (.pkl or .jsonl); seeded synthetic frames when absent.
    #[arg(long)]
    pub driver: Option<PathBuf>,
    /// Frames to time (after one warm-up frame).
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
    /// Worker threads (default: rayon's choice, all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also bench these models (other precisions of --model's checkpoint) side by side, frames
    /// alternating between models (`bench_precision.rs`): `--models m-fp16.gaga,m-int8.gaga`.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["image", "camera"])]
    pub models: Vec<PathBuf>,
    /// Convert --checkpoint and --flame at each of these precisions and bench the conversions side by
    /// side, as --models does (`--precision fp32,fp16,int8`). The files (refiner weights pre-packed, as
    /// `gaga convert --pack-refiner` writes them) go to a temporary directory under $TMPDIR, removed
    /// afterwards.
    #[arg(long, value_delimiter = ',', value_parser = super::convert::parse_precision,
          requires_all = ["checkpoint", "flame"], conflicts_with_all = ["model", "models", "image", "camera"])]
    pub precision: Vec<Precision>,
    /// With --precision: the official checkpoint (as `gaga convert --checkpoint`).
    #[arg(long, requires = "precision")]
    pub checkpoint: Option<PathBuf>,
    /// With --precision: the FLAME asset (as `gaga convert --flame`).
    #[arg(long, requires = "precision")]
    pub flame: Option<PathBuf>,
    /// With --models or --precision: write a bar chart of the per-stage medians (PNG).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Time the kiosk loop on this video file or camera (/dev/videoN) instead: tracker, render and
    /// capture-to-display latency (`bench_camera.rs`; --avatar, --frames and --json apply).
    #[arg(long, conflicts_with_all = ["image", "driver"])]
    pub camera: Option<String>,
    /// Where the frame runs: `cpu` or `vulkan` (per-stage GPU timestamps; `bench_vulkan.rs`).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "vulkan"])]
    pub backend: String,
    /// With --backend vulkan: use the device at this index (`gaga inspect --device` lists them).
    #[arg(long)]
    pub device: Option<usize>,
    /// With --backend vulkan: the device memory budget (BYTES, N MiB, N GiB); the model must fit at load.
    #[arg(long)]
    pub memory_budget: Option<String>,
    /// Print the cost model's predicted per-stage times on a board (`jetson-orin-nano`, `jetson-agx-orin`,
    /// `raspberry-pi-5`, `mali-g710-phone`) or `all`, for --model's configuration or the official one.
    #[arg(long)]
    pub predict: Option<String>,
}

/// `--models` (or `--precision`'s conversions): every model's per-frame stages side by side.
fn side_by_side(args: &Args, models: Vec<PathBuf>) -> CmdResult {
    let b = super::bench_precision::PrecisionBench {
        models,
        avatar: args.avatar.as_deref(),
        driver: args.driver.as_deref(),
        frames: args.frames,
        json: args.json,
        chart: args.chart.as_deref(),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build()?;
    pool.install(|| super::bench_precision::run(&b).map_err(|e| e.to_string()))?;
    Ok(())
}

/// `--precision`: converts the checkpoint at each precision into a temporary directory (removed when it
/// drops, also on error), then benches the files side by side.
fn precisions(args: &Args) -> CmdResult {
    let (Some(checkpoint), Some(flame)) = (&args.checkpoint, &args.flame) else {
        return Err("--precision needs --checkpoint and --flame".into());
    };
    if args.backend == "vulkan" {
        return Err("--precision benches the CPU backend; for Vulkan, convert and pass --model".into());
    }
    let mut seen = Vec::new();
    for p in &args.precision {
        if seen.contains(p) {
            return Err(format!("--precision lists {} twice", p.name()).into());
        }
        seen.push(*p);
    }
    let dir = tempfile::Builder::new().prefix("gaga-bench-").tempdir()?;
    // Ctrl-C (or SIGTERM) would skip the directory's drop and leave up to 1.3 GB of conversions behind.
    let doomed = dir.path().to_path_buf();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_dir_all(&doomed);
        eprintln!("interrupted: removed {}", doomed.display());
        std::process::exit(130);
    })?;
    let mut models = Vec::new();
    for &precision in &args.precision {
        let output = dir.path().join(format!("{}.gaga", precision.name()));
        eprintln!("converting {} at {} into {}", checkpoint.display(), precision.name(), output.display());
        let convert = super::convert::Args::plain(checkpoint.clone(), flame.clone(), precision, output.clone(), true);
        super::convert::convert_file(&convert).map_err(|e| format!("converting at {}: {e}", precision.name()))?;
        models.push(output);
    }
    side_by_side(args, models)
}

pub fn run(args: Args) -> CmdResult {
    if let Some(board) = &args.predict {
        return super::bench_vulkan::predict(board, args.model.as_deref(), args.json);
    }
    if !args.precision.is_empty() {
        return precisions(&args);
    }
    let model_path = args.model.clone().ok_or("--model is required (only --predict runs without one)")?;
    if args.chart.is_some() && args.models.is_empty() {
        return Err("--chart draws the side-by-side bench: it needs --models or --precision".into());
    }
    if args.backend == "vulkan" {
        return vulkan(&args, &model_path);
    }
    if !args.models.is_empty() {
        let models = std::iter::once(model_path.clone()).chain(args.models.iter().cloned()).collect();
        return side_by_side(&args, models);
    }
    if let Some(source) = &args.camera {
        return super::bench_camera::run(&super::bench_camera::CameraBench::new(
            &model_path,
            source,
            args.avatar.as_deref(),
            args.frames,
            args.json,
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build()?;
    let threads = pool.current_num_threads();
    pool.install(|| bench(&args, &model_path, threads).map_err(|e| e.to_string()))?;
    Ok(())
}

/// `--backend vulkan`: the frame on the GPU (`bench_vulkan.rs`).
fn vulkan(args: &Args, model: &std::path::Path) -> CmdResult {
    super::bench_vulkan::run(&super::bench_vulkan::VulkanBench {
        model,
        avatar: args.avatar.as_deref(),
        driver: args.driver.as_deref(),
        frames: args.frames,
        device: args.device,
        budget: args.memory_budget.as_deref(),
        json: args.json,
    })
}

fn bench(args: &Args, model_path: &std::path::Path, threads: usize) -> CmdResult {
    let model = Model::open(model_path)?;
    let cfg = model.config().clone();
    let (avatar, lift_s, source) = match (&args.avatar, &args.image, &args.params) {
        (Some(path), _, _) => (avatar::load(path, &cfg)?, None, path.display().to_string()),
        (None, Some(img), Some(params)) => {
            let image = load_image(img, cfg.image_size, args.crop)?;
            let params = driving::read_source_params(params)?;
            let bar = spinner("lifting");
            let t = Instant::now();
            let a = lift::lift(&model, &cfg, &image, &params)?;
            bar.finish_and_clear();
            // The lift's weights are not needed per frame: drop their pages from the resident set.
            model.release(gaga_runtime::format::Stage::Lift)?;
            (a, Some(t.elapsed().as_secs_f64()), img.display().to_string())
        }
        _ => (synthetic_avatar(&cfg, 1), None, "synthetic".to_string()),
    };
    let driver = bench_driver(&cfg, args.driver.as_deref(), args.frames)?;
    let mut renderer = FrameRenderer::new(&model, &cfg, RenderOptions::default())?;
    // As a session keeps it: f16 colours with an int8 refiner (the f32 copy is dropped here).
    let avatar = renderer.prepare_avatar(avatar);
    let after_load = gaga_runtime::model::resident();
    let mut image = Image::new(cfg.image_size, cfg.image_size);
    let mut times: Vec<FrameTimes> = Vec::with_capacity(args.frames);
    let bar = indicatif::ProgressBar::new(args.frames as u64 + 1);
    for i in 0..=args.frames {
        renderer.render(&avatar, &driver[i % driver.len()], &mut image)?;
        if i > 0 {
            times.push(renderer.times());
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let after_frames = gaga_runtime::model::resident();
    let planned = super::bench_memory::Planned::new(&model, &cfg, &avatar);
    let peak = gaga_kernels::peak::measure_fma_peak(threads);
    // A refiner of int8 convolutions does int8 multiply-adds: its row is a share of the int8 peak (a mixed
    // file's fp16 layers make that an upper bound of the int8 share), every other row of the f32 FMA peak.
    let int8_peak =
        (renderer.int8_convs() > 0).then(|| gaga_kernels::qgemm::measure_int8_peak(gaga_kernels::qgemm::QIsa::detect(), threads)).flatten();
    let peak_of = |stage: &str| if stage == "refine" { int8_peak.unwrap_or(peak) } else { peak };
    let med = medians_ms(&times);
    let flops = [flame_flops(&cfg), f64::NAN, total(&refiner_flops(&cfg))];
    let lift_flop = total(&lift_flops(&cfg));
    let rate = |flop: f64, ms: f64| if flop.is_finite() && ms > 0.0 { flop / (ms * 1e-3) / 1e9 } else { f64::NAN };

    let stages: Vec<(String, f64, f64)> = lift_s
        .map(|s| ("lift".to_string(), s * 1e3, lift_flop))
        .into_iter()
        .chain(FrameTimes::STAGES.iter().zip(med).zip(flops).map(|((n, ms), f)| (n.to_string(), ms, f)))
        .collect();
    let frame_ms: f64 = med.iter().sum();
    if args.json {
        let rows: Vec<_> = stages
            .iter()
            .map(|(n, ms, f)| {
                let g = rate(*f, *ms);
                json!({"stage": n, "median_ms": ms, "gflop": f.is_finite().then_some(f / 1e9), "gflops": g.is_finite().then_some(g), "peak_fraction": g.is_finite().then_some(g / peak_of(n))})
            })
            .collect();
        let out = json!({
            "model": model_path.display().to_string(), "avatar": source, "frames": args.frames, "threads": threads,
            "fma_peak_gflops": peak, "int8_peak_gops": int8_peak, "stages": rows, "frame_median_ms": frame_ms, "fps": 1e3 / frame_ms,
            "resident_after_load_bytes": after_load.map(|r| r.now), "peak_resident_bytes": gaga_runtime::model::resident().map(|r| r.peak),
            "memory": super::bench_memory::json(&planned, after_load, after_frames),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("gaga bench: {} ({}), avatar {source}, {} frames, {threads} threads", model_path.display(), describe(&cfg), args.frames);
    println!("{:<8} {:>12} {:>10} {:>10} {:>8}", "stage", "median ms", "GFLOP", "GFLOP/s", "% peak");
    for (n, ms, f) in &stages {
        let g = rate(*f, *ms);
        let cell = |v: f64, p: usize| if v.is_finite() { format!("{v:.p$}") } else { "-".into() };
        println!("{n:<8} {ms:>12.2} {:>10} {:>10} {:>8}", cell(f / 1e9, 3), cell(g, 1), cell(100.0 * g / peak_of(n), 1));
    }
    println!("{:<8} {frame_ms:>12.2}   ({:.2} frames/s)", "frame", 1e3 / frame_ms);
    println!("FMA peak measured: {peak:.1} GFLOP/s on {threads} threads");
    if let Some(p) = int8_peak {
        println!("int8 peak measured: {p:.1} GOP/s on {threads} threads (the refine row's % peak: int8 convolutions)");
    }
    super::bench_memory::print(&planned, after_load, after_frames);
    Ok(())
}

/// The avatar file, or a seeded synthetic avatar when none is given (every bench mode).
pub(super) fn bench_avatar(
    cfg: &gaga_runtime::ModelConfig,
    path: Option<&std::path::Path>,
) -> Result<gaga_runtime::Avatar, Box<dyn std::error::Error>> {
    Ok(match path {
        Some(p) => avatar::load(p, cfg)?,
        None => synthetic_avatar(cfg, 1),
    })
}

/// The driving frames, or `frames + 1` seeded ones (warm-up included) when no driver is given; never empty.
pub(super) fn bench_driver(
    cfg: &gaga_runtime::ModelConfig,
    path: Option<&std::path::Path>,
    frames: usize,
) -> Result<Vec<gaga_runtime::DrivingFrame>, Box<dyn std::error::Error>> {
    let driver = match path {
        Some(p) => driving::read_driving(p)?,
        None => (0..frames + 1).map(|i| driving_frame(cfg, i)).collect(),
    };
    if driver.is_empty() {
        return Err("the driver has no frames".into());
    }
    Ok(driver)
}

fn describe(cfg: &gaga_runtime::ModelConfig) -> String {
    format!("{}x{} output, {} Gaussians", cfg.image_size, cfg.image_size, cfg.gaussians())
}
