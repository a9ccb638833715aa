//! `gaga lift`: one source photo and its tracked parameters -> an avatar file (.gav), once per person.

use std::path::PathBuf;
use std::time::Instant;

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
    #[arg(long)]
    pub params: PathBuf,
    /// Cut this square out of the photo (zero outside) and resize it to the model's size: x,y,size.
    #[arg(long, allow_hyphen_values = true)]
    pub crop: Option<CropBox>,
    /// Where to write the avatar.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: Args) -> CmdResult {
    let model = Model::open(&args.model)?;
    let cfg = model.config().clone();
    let image = load_image(&args.image, cfg.image_size, args.crop)?;
    let params = driving::read_source_params(&args.params)?;
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
