//! `gaga kiosk`: camera (or a video file, or an image folder) -> tracker -> render -> overlay -> display,
//! with capture-to-display latency and FPS printed at the end. Settings come from `--board NAME` and are
//! overridden by flags. Without `--model`, the camera picture itself is shown (the loop with no model).
//! `--tracker mediapipe` (the default) drives the avatar from the face in the camera; when the face is lost
//! the last pose is held, then eased to the neutral pose. `--tracker none` always shows the neutral pose.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use gaga_boards::display::{self, DisplaySpec};
use gaga_boards::kiosk::{self, camera_passthrough, LoopOptions, Renderer};
use gaga_boards::profile::{self, BackendKind, KioskConfig};
use gaga_boards::render::{neutral_pose, SessionRenderer};
use gaga_boards::source::{FrameSource, ImageFolderSource, VideoFileSource};
use gaga_boards::tracker::fit::HeadPoseFit;
use gaga_boards::tracker::{model_paths, MediaPipeTracker, PassThrough, Tracker};
use gaga_runtime::backend::cpu::CpuBackend;
use gaga_runtime::backend::{Backend, Budget};
use gaga_runtime::config::ModelConfig;
use gaga_runtime::model::Model;
use gaga_runtime::{avatar, driving};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// Board profile to start from (`gaga boards` lists them); flags override it.
    #[arg(long)]
    pub board: Option<String>,
    /// Play this video file (decoded by ffmpeg) instead of the camera.
    #[arg(long, conflicts_with = "images")]
    pub video: Option<PathBuf>,
    /// Play the PNG/JPEG files of this folder, in name order, instead of the camera.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Stop after N displayed frames (default: until the source ends or Ctrl-C).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Do not draw the FPS/latency/tracking line.
    #[arg(long)]
    pub no_overlay: bool,
    /// Render this model (.gaga) instead of showing the camera picture; needs --avatar.
    #[arg(long, requires = "avatar")]
    pub model: Option<PathBuf>,
    /// The avatar made by `gaga lift` for --model.
    #[arg(long, requires = "model")]
    pub avatar: Option<PathBuf>,
    /// Source parameters whose camera frames the neutral pose.
    #[arg(long, default_value = "assets/defaults/source_params.json")]
    pub source_params: PathBuf,
    /// Face tracker: `mediapipe` (MediaPipe face detection + mesh and the FLAME fit) or `none`.
    #[arg(long, value_enum, default_value_t = TrackerKind::Mediapipe)]
    pub tracker: TrackerKind,
    /// Folder with face_detection_short_range.tflite and face_landmark.tflite (scripts/fetch-assets.sh).
    #[arg(long, default_value = "assets/fetched")]
    pub tracker_models: PathBuf,
    #[command(flatten)]
    pub config: KioskConfig,
}

/// Which tracker the kiosk runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrackerKind {
    Mediapipe,
    None,
}

/// The tracker; with a model its FLAME fit poses the avatar's identity (`identity`, the avatar's shape code).
fn open_tracker(args: &Args, model: Option<&Model>, identity: Option<&[f32]>) -> Result<Box<dyn Tracker>, Box<dyn std::error::Error>> {
    if args.tracker == TrackerKind::None {
        return Ok(Box::new(PassThrough));
    }
    let (det, mesh) = model_paths(&args.tracker_models);
    let fit = match model {
        Some(m) => gaga_boards::tracker::fit::for_model(m, m.config())?,
        // Without a model the tracker still runs, for the overlay's tracking state.
        None => {
            let c = ModelConfig::official();
            Box::new(HeadPoseFit::new(c.flame.expr_params, c.flame.shape_params))
        }
    };
    let mut tracker = MediaPipeTracker::open(&det, &mesh, fit)?;
    if let Some(shape) = identity {
        tracker.set_identity(shape)?;
    }
    Ok(Box::new(tracker))
}

fn open_source(args: &Args, cfg: &KioskConfig) -> Result<Box<dyn FrameSource>, Box<dyn std::error::Error>> {
    if let Some(v) = &args.video {
        return Ok(Box::new(VideoFileSource::open(v)?));
    }
    if let Some(d) = &args.images {
        return Ok(Box::new(ImageFolderSource::open(d)?));
    }
    camera(cfg)
}

#[cfg(target_os = "linux")]
fn camera(cfg: &KioskConfig) -> Result<Box<dyn FrameSource>, Box<dyn std::error::Error>> {
    Ok(Box::new(gaga_boards::source::V4lCamera::open(cfg.camera_config())))
}

#[cfg(not(target_os = "linux"))]
fn camera(_cfg: &KioskConfig) -> Result<Box<dyn FrameSource>, Box<dyn std::error::Error>> {
    Err("V4L cameras need Linux; use --video or --images".into())
}

pub fn run(args: Args) -> CmdResult {
    let base = match &args.board {
        Some(name) => profile::find(name)?.kiosk,
        None => KioskConfig::default(),
    };
    let cfg = base.overridden_by(&args.config);
    if let Some(n) = cfg.threads.filter(|&n| n > 0) {
        // Fails only if a pool already exists, which nothing here creates before this point.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    let spec = cfg.display.clone().unwrap_or(DisplaySpec::Http { addr: "127.0.0.1:8080".into() });
    let mut source = open_source(&args, &cfg)?;
    let mut display = display::open(&spec, cfg.camera_fps.unwrap_or(30))?;
    eprintln!("kiosk: {} -> {}", source.describe(), display.describe());
    let mut opts =
        LoopOptions { frames: args.frames, overlay: !args.no_overlay, stop: Arc::new(AtomicBool::new(false)), ..Default::default() };
    kiosk::stop_on_ctrl_c(opts.stop.clone())?;

    let model = args.model.as_deref().map(Model::open).transpose()?;
    let avatar = match (&model, &args.avatar) {
        (Some(model), Some(path)) => Some(avatar::load(path, model.config())?),
        _ => None,
    };
    let mut tracker = open_tracker(&args, model.as_ref(), avatar.as_ref().map(|a| a.shapecode.as_slice()))?;
    eprintln!("kiosk: tracker {}", tracker.name());
    let report = match (&model, avatar) {
        (Some(model), Some(avatar)) => {
            if cfg.backend == Some(BackendKind::Vulkan) {
                log::warn!("the kiosk renders on the CPU backend for now (the Vulkan session is not wired here yet)");
            }
            let mc = model.config().clone();
            let source_params = driving::read_source_params(&args.source_params)?;
            let budget = cfg.memory_budget_mib.map_or(Budget::UNLIMITED, |m| Budget { bytes: m << 20 });
            let session = CpuBackend::default().prepare(model, &mc, budget)?;
            let neutral = neutral_pose(mc.flame.expr_params, source_params.transform);
            opts.neutral = Some(neutral.clone());
            let mut r = SessionRenderer::new(session, avatar, neutral, mc.image_size);
            kiosk::run(source.as_mut(), tracker.as_mut(), &mut r, display.as_mut(), &opts)?
        }
        _ => {
            let mut r = camera_passthrough;
            let r: &mut dyn Renderer = &mut r;
            kiosk::run(source.as_mut(), tracker.as_mut(), r, display.as_mut(), &opts)?
        }
    };
    println!("{}", report.summary());
    Ok(())
}
