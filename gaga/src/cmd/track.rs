//! `gaga track`: a video, camera or image folder -> per-frame FLAME driving parameters as JSON lines
//! (docs/driving-format.md), one line per input frame, through the on-device MediaPipe tracker. Frames
//! without a face (or that cannot be decoded) get `"face": false` and carry the last pose, so
//! `gaga reenact --driver` replays the file frame for frame.

use std::path::{Path, PathBuf};

use gaga_boards::render::neutral_pose;
use gaga_boards::source::{CameraConfig, FrameSource, ImageFolderSource, VideoFileSource};
use gaga_boards::tracker::run::track_to_jsonl;
use gaga_boards::tracker::{fit, model_paths, MediaPipeTracker, Tracker};
use gaga_runtime::model::Model;

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The converted model (.gaga): the fit uses its FLAME and configuration.
    #[arg(long)]
    pub model: PathBuf,
    /// Track this video file (decoded by ffmpeg).
    #[arg(long, conflicts_with_all = ["camera", "images"])]
    pub video: Option<PathBuf>,
    /// Track a V4L2 camera (/dev/videoN) until --frames or Ctrl-C.
    #[arg(long, conflicts_with = "images")]
    pub camera: Option<String>,
    /// Track the PNG/JPEG files of this folder, in name order.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Stop after N frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Folder with face_detection_short_range.tflite and face_landmark.tflite (scripts/fetch-assets.sh).
    #[arg(long, default_value = "assets/fetched")]
    pub tracker_models: PathBuf,
    /// Where to write the JSON lines.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Opens exactly one of a video file, a V4L2 camera or an image folder.
pub fn open_input(
    video: Option<&Path>,
    camera: Option<&str>,
    images: Option<&Path>,
) -> Result<Box<dyn FrameSource>, Box<dyn std::error::Error>> {
    match (video, camera, images) {
        (Some(v), None, None) => Ok(Box::new(VideoFileSource::open(v)?)),
        (None, None, Some(d)) => Ok(Box::new(ImageFolderSource::open(d)?)),
        (None, Some(dev), None) => open_camera(dev),
        _ => Err("give exactly one of --video FILE, --camera /dev/videoN, --images DIR".into()),
    }
}

#[cfg(target_os = "linux")]
fn open_camera(device: &str) -> Result<Box<dyn FrameSource>, Box<dyn std::error::Error>> {
    let config = CameraConfig { device: device.into(), width: 640, height: 480, fps: 30, format: Default::default() };
    Ok(Box::new(gaga_boards::source::V4lCamera::open(config)))
}

#[cfg(not(target_os = "linux"))]
fn open_camera(_device: &str) -> Result<Box<dyn FrameSource>, Box<dyn std::error::Error>> {
    Err("V4L cameras need Linux; use --video or --images".into())
}

/// Opens the MediaPipe tracker with the fit for `model`.
pub fn open_tracker(models: &Path, model: &Model) -> Result<MediaPipeTracker, Box<dyn std::error::Error>> {
    let (det, mesh) = model_paths(models);
    let fit = fit::for_model(model, model.config())?;
    Ok(MediaPipeTracker::open(&det, &mesh, fit)?)
}

pub fn run(args: Args) -> CmdResult {
    use gaga_runtime::write_aside::write_aside;
    let model = Model::open(&args.model)?;
    let mc = model.config().clone();
    let mut tracker = open_tracker(&args.tracker_models, &model)?;
    let mut source = open_input(args.video.as_deref(), args.camera.as_deref(), args.images.as_deref())?;
    eprintln!("track: {} with {} (fit: {})", source.describe(), tracker.name(), tracker.fit_name());
    let name = args.output.display().to_string();
    // Before the first face: the frontal camera with every parameter zero.
    let neutral = neutral_pose(mc.flame.expr_params, fit::FRONTAL_CAMERA);
    // Written aside and renamed: a failure mid-clip leaves no partial driving file.
    let sum = write_aside(&args.output, |out| -> Result<_, Box<dyn std::error::Error>> {
        Ok(track_to_jsonl(source.as_mut(), &mut tracker, neutral, args.frames, out, &name, |s| {
            if s.frames % 30 == 0 {
                eprint!("\r{}", s.line());
            }
        })?)
    })?;
    eprint!("\r");
    println!("{name}: {}", sum.line());
    Ok(())
}
