//! `gaga lift`: one source photo and its tracked parameters -> an avatar file (.gav), once per person.
//! With `--track`, the on-device tracker finds the face, crops it (1.65 x the face box) and fits the
//! parameters itself, so no Python tracker is needed.

use std::path::PathBuf;
use std::time::Instant;

use gaga_boards::tracker::{fit, model_paths, MediaPipeTracker};
use gaga_runtime::image_io::{load_image, CropBox};
use gaga_runtime::model::Model;
use gaga_runtime::{avatar, driving, lift};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The converted model (.gaga).
    #[arg(long)]
    pub model: PathBuf,
    /// Source photo (PNG or JPEG): a square crop of the model's size, or any size with --crop.
    #[arg(long)]
    pub image: PathBuf,
    /// Tracked source parameters (JSON with `shapecode` and `transform_matrix`).
    #[arg(long, required_unless_present = "track", conflicts_with = "track")]
    pub params: Option<PathBuf>,
    /// Cut this square out of the photo (zero outside) and resize it to the model's size: x,y,size.
    #[arg(long, allow_hyphen_values = true, conflicts_with = "track")]
    pub crop: Option<CropBox>,
    /// Find, crop and fit the face with the on-device tracker instead of --params and --crop.
    #[arg(long)]
    pub track: bool,
    /// With --track: also write the fitted source parameters here (JSON).
    #[arg(long, requires = "track")]
    pub save_params: Option<PathBuf>,
    /// With --track: folder with face_detection_short_range.tflite and face_landmark.tflite.
    #[arg(long, default_value = "assets/fetched")]
    pub tracker_models: PathBuf,
    /// Where to write the avatar.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: Args) -> CmdResult {
    let model = Model::open(&args.model)?;
    let cfg = model.config().clone();
    let (crop, params) = match &args.params {
        Some(p) => (args.crop, driving::read_source_params(p)?),
        None => {
            let (b, params) = track_source(&args, &model)?;
            (Some(b), params)
        }
    };
    let image = load_image(&args.image, cfg.image_size, crop)?;
    let bar = super::reenact::spinner("lifting");
    let start = Instant::now();
    let (avatar, trace) = lift::lift_traced(&model, &cfg, &image, &params)?;
    bar.finish_and_clear();
    avatar::save(&args.output, &avatar, &cfg)?;
    let t = &trace.times;
    println!(
        "{}: {} Gaussians in {:.2} s (DINOv2 {:.2} s, DPT {:.2} s, generators {:.2} s)",
        args.output.display(),
        avatar.count,
        start.elapsed().as_secs_f64(),
        t.dino,
        t.dpt,
        t.vertex_generator + t.plane_generators
    );
    Ok(())
}

/// Finds the face in the photo, crops it and fits the source parameters (`--track`).
fn track_source(args: &Args, model: &Model) -> Result<(CropBox, gaga_runtime::SourceParams), Box<dyn std::error::Error>> {
    let photo = gaga_boards::image::open(&args.image)
        .map_err(|e| format!("{}: cannot decode as PNG or JPEG: {e}", args.image.display()))?
        .to_rgb8();
    let (det, mesh) = model_paths(&args.tracker_models);
    let mut tracker = MediaPipeTracker::open(&det, &mesh, fit::for_model(model, model.config())?)?;
    let (b, params) = tracker.fit_source(&photo)?.ok_or_else(|| format!("{}: no face found", args.image.display()))?;
    eprintln!("{}: face cropped at {},{},{} (fit: {})", args.image.display(), b.x, b.y, b.size, tracker.fit_name());
    if let Some(out) = &args.save_params {
        driving::write_source_params(out, &params)?;
    }
    Ok((b, params))
}
