//! `gaga reenact`: render an avatar driven by a sequence of tracked frames into PNG frames, optionally an
//! MJPEG AVI, and print the median time of each per-frame stage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gaga_runtime::camera::orbit_transform;
use gaga_runtime::image_io::avi::AviWriter;
use gaga_runtime::image_io::save_png;
use gaga_runtime::model::Model;
use gaga_runtime::refiner::NoiseMode;
use gaga_runtime::render::{FrameRenderer, FrameTimes, RenderOptions};
use gaga_runtime::{avatar, driving, DrivingFrame, Image};
use indicatif::{ProgressBar, ProgressStyle};

use super::CmdResult;

/// Camera elevation of the turntable, degrees (the official multi-view demo's 5).
const ORBIT_ELEVATION: f32 = 5.0;
/// Largest azimuth of the turntable sweep, degrees either side of frontal.
const ORBIT_SWEEP: f32 = 60.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Noise {
    /// The checkpoint's stored noise buffers: reproducible frames.
    Stored,
    /// Fresh Gaussian noise per frame (the official demo's behaviour), seeded by --seed.
    Random,
}

#[derive(clap::Args)]
pub struct Args {
    /// The converted model (.gaga).
    #[arg(long)]
    pub model: PathBuf,
    /// The avatar made by `gaga lift`.
    #[arg(long)]
    pub avatar: PathBuf,
    /// Driving frames: the tracker's pickle (.pkl) or JSON lines (.jsonl).
    #[arg(long)]
    pub driver: PathBuf,
    /// Output folder for frame_00000.png, ...
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the frames as an MJPEG AVI.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Frames per second of the video.
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Turntable: replace each frame's camera by one sweeping -60..60 degrees around the head at the
    /// driver camera's distance (expressions still follow the driver, cycling when it is shorter).
    #[arg(long)]
    pub orbit: bool,
    #[arg(long, value_enum, default_value_t = Noise::Stored)]
    pub noise: Noise,
    /// Seed of --noise random.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Render only the first N frames (with --orbit: exactly N frames).
    #[arg(long)]
    pub frames: Option<usize>,
}

/// A spinner for a step of unknown length.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Median of each stage over frames, in milliseconds.
pub fn medians_ms(times: &[FrameTimes]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (s, slot) in out.iter_mut().enumerate() {
        let mut v: Vec<f64> = times.iter().map(|t| t.as_array()[s] * 1e3).collect();
        v.sort_by(f64::total_cmp);
        *slot = if v.is_empty() {
            0.0
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            0.5 * (v[v.len() / 2 - 1] + v[v.len() / 2])
        };
    }
    out
}

/// The frames to render: the driver's (first N), or N turntable frames cycling through the driver.
fn plan(frames: Vec<DrivingFrame>, n: Option<usize>, orbit: bool) -> Vec<DrivingFrame> {
    if !orbit {
        let n = n.unwrap_or(frames.len()).min(frames.len());
        return frames.into_iter().take(n).collect();
    }
    let n = n.unwrap_or(frames.len().max(60));
    (0..n)
        .map(|i| {
            let mut f = frames[i % frames.len()].clone();
            let azimuth = ORBIT_SWEEP * (std::f32::consts::TAU * i as f32 / n as f32).sin();
            f.transform = orbit_transform(&f.transform, azimuth, ORBIT_ELEVATION, 0.0);
            f
        })
        .collect()
}

pub fn run(args: Args) -> CmdResult {
    let model = Model::open(&args.model)?;
    let cfg = model.config().clone();
    let avatar = avatar::load(&args.avatar, &cfg)?;
    let driver = driving::read_driving(&args.driver)?;
    if driver.is_empty() {
        return Err(format!("{}: no driving frames", args.driver.display()).into());
    }
    let frames = plan(driver, args.frames, args.orbit);
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let noise = match args.noise {
        Noise::Stored => NoiseMode::Stored,
        Noise::Random => NoiseMode::Random { seed: args.seed },
    };
    let mut renderer = FrameRenderer::new(&model, &cfg, RenderOptions { noise })?;
    // f16 colours when the refiner is int8 (the f32 copy is dropped here).
    let avatar = renderer.prepare_avatar(avatar);
    let s = cfg.image_size;
    let mut video = args.video.as_deref().map(|p| AviWriter::create(p, s, s, args.fps)).transpose()?;
    let mut image = Image::new(s, s);
    let mut times = Vec::with_capacity(frames.len());
    let bar = ProgressBar::new(frames.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames, {per_sec}, eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (i, frame) in frames.iter().enumerate() {
        renderer.render(&avatar, frame, &mut image)?;
        times.push(renderer.times());
        save_png(&frame_path(&args.output, i), &image)?;
        if let Some(v) = video.as_mut() {
            v.write_frame(&image)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(v) = video {
        v.finish()?;
    }
    // The first frame grows buffers; report the steady state when there is one.
    let steady = if times.len() > 1 { &times[1..] } else { &times[..] };
    let [flame, splat, refine] = medians_ms(steady);
    println!(
        "{} frames -> {}{}; median per frame: flame {flame:.1} ms, splat {splat:.1} ms, refine {refine:.1} ms, total {:.1} ms",
        frames.len(),
        args.output.display(),
        args.video.as_ref().map(|p| format!(" and {}", p.display())).unwrap_or_default(),
        flame + splat + refine
    );
    Ok(())
}

fn frame_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("frame_{i:05}.png"))
}
