//! `gaga bench --camera SOURCE`: the kiosk loop (capture -> MediaPipe tracker -> render -> display) on a
//! video file or a V4L2 camera, timed: tracker ms/frame, render ms/frame and capture-to-display latency,
//! each as median and 95th percentile. The display is a null sink (nothing is shown) unless `--display`
//! names one, so the numbers are the pipeline's own.

use std::path::{Path, PathBuf};

use gaga_boards::display::{self, Display, DisplaySpec};
use gaga_boards::kiosk::{self, percentile, KioskReport, LoopOptions};
use gaga_boards::render::{neutral_pose, SessionRenderer};
use gaga_boards::tracker::fit::FRONTAL_CAMERA;
use gaga_boards::RgbImage;
use gaga_runtime::avatar;
use gaga_runtime::backend::cpu::CpuBackend;
use gaga_runtime::backend::{Backend, Budget};
use gaga_runtime::model::Model;
use gaga_runtime::render::testing::synthetic_avatar;
use serde_json::json;

use super::track::{open_input, open_tracker};
use super::CmdResult;

/// What `gaga bench` passes for a camera run.
pub struct CameraBench<'a> {
    pub model: &'a Path,
    /// A video file, or a V4L2 device (`/dev/video...`).
    pub source: &'a str,
    /// Render this avatar; a synthetic one when absent.
    pub avatar: Option<&'a Path>,
    /// Frames to run (the whole video when absent; a camera needs it).
    pub frames: Option<u64>,
    /// A display spec (`png:DIR`, `video:FILE.avi`, ...); a null display when absent.
    pub display: Option<&'a str>,
    pub tracker_models: PathBuf,
    pub json: bool,
}

impl<'a> CameraBench<'a> {
    /// `gaga bench --camera` settings: `frames` frames, null display, models from `assets/fetched`.
    pub fn new(model: &'a Path, source: &'a str, avatar: Option<&'a Path>, frames: usize, json: bool) -> Self {
        CameraBench { model, source, avatar, frames: Some(frames as u64), display: None, tracker_models: "assets/fetched".into(), json }
    }
}

/// Shows nothing: the loop's cost without a display.
struct NullDisplay;

impl Display for NullDisplay {
    fn show(&mut self, _frame: &RgbImage) -> gaga_boards::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "null display".into()
    }
}

fn ms(v: &[f64], p: f64) -> f64 {
    percentile(v, p) * 1e3
}

/// Runs the loop and prints the report.
pub fn run(b: &CameraBench) -> CmdResult {
    let model = Model::open(b.model)?;
    let mc = model.config().clone();
    let mut tracker = open_tracker(&b.tracker_models, &model)?;
    let is_camera = b.source.starts_with("/dev/video");
    if is_camera && b.frames.is_none() {
        return Err("a camera never ends: give --frames N".into());
    }
    let mut source = if is_camera { open_input(None, Some(b.source), None)? } else { open_input(Some(Path::new(b.source)), None, None)? };
    let mut shown: Box<dyn Display> = match b.display {
        Some(spec) => display::open(&spec.parse::<DisplaySpec>()?, 30)?,
        None => Box::new(NullDisplay),
    };
    let avatar = match b.avatar {
        Some(p) => avatar::load(p, &mc)?,
        None => synthetic_avatar(&mc, 1),
    };
    let neutral = neutral_pose(mc.flame.expr_params, FRONTAL_CAMERA);
    let session = CpuBackend::default().prepare(&model, &mc, Budget::UNLIMITED)?;
    let mut renderer = SessionRenderer::new(session, avatar, neutral.clone(), mc.image_size);
    let opts = LoopOptions { frames: b.frames, neutral: Some(neutral), ..Default::default() };
    eprintln!("bench: {} -> tracker -> render ({}) -> {}", source.describe(), b.model.display(), shown.describe());
    let report = kiosk::run(source.as_mut(), &mut tracker, &mut renderer, shown.as_mut(), &opts)?;
    print_report(&report, b.json);
    Ok(())
}

fn print_report(r: &KioskReport, as_json: bool) {
    if as_json {
        let v = json!({
            "frames": r.frames_shown,
            "faces": r.faces,
            "frame_errors": r.frame_errors,
            "fps": r.fps(),
            "tracker_ms": {"median": ms(&r.track_times, 0.5), "p95": ms(&r.track_times, 0.95)},
            "render_ms": {"median": ms(&r.render_times, 0.5), "p95": ms(&r.render_times, 0.95)},
            "latency_ms": {"median": r.latency_ms(0.5), "p95": r.latency_ms(0.95)},
        });
        println!("{v}");
        return;
    }
    println!("{:<28} {:>10} {:>10}", "per frame", "median ms", "p95 ms");
    println!("{:<28} {:>10.1} {:>10.1}", "tracker", ms(&r.track_times, 0.5), ms(&r.track_times, 0.95));
    println!("{:<28} {:>10.1} {:>10.1}", "render", ms(&r.render_times, 0.5), ms(&r.render_times, 0.95));
    println!("{:<28} {:>10.1} {:>10.1}", "capture-to-display latency", r.latency_ms(0.5), r.latency_ms(0.95));
    println!("{} frames ({} with a face, {} frame errors), {:.2} fps", r.frames_shown, r.faces, r.frame_errors, r.fps());
}
