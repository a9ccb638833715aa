//! `gaga convert`: official checkpoint + FLAME asset -> one `.gaga` model file.

use std::path::PathBuf;

use gaga_converter::{convert, ConvertOptions, Keep, Precision};
use indicatif::{ProgressBar, ProgressStyle};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The official checkpoint (GAGAvatar.pt, a torch zip) or the same state dict as .safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The FLAME asset (FLAME_with_eye.pt).
    #[arg(long)]
    pub flame: PathBuf,
    /// Storage precision: fp32, fp16 or int8 (per-channel weights; sensitive tensors stay wider).
    #[arg(long, default_value = "fp16", value_parser = parse_precision)]
    pub precision: Precision,
    /// Keep tensors matching a glob at least this wide, e.g. --keep 'upsampler.final_conv.*=fp32'.
    #[arg(long, value_parser = Keep::parse)]
    pub keep: Vec<Keep>,
    /// Output model file; written aside and renamed into place.
    #[arg(short, long)]
    pub output: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("`{s}`: expected fp32, fp16 or int8"))
}

pub fn run(args: Args) -> CmdResult {
    let opts = ConvertOptions {
        checkpoint: args.checkpoint,
        flame: args.flame,
        output: args.output,
        precision: args.precision,
        keep: args.keep,
        created_by: format!("gaga convert {}", env!("CARGO_PKG_VERSION")),
    };
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let summary = convert(&opts, &mut |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_written);
        bar.set_message(p.tensor.to_string());
    });
    bar.finish_and_clear();
    let summary = summary?;
    println!(
        "{}: {} tensors, {} bytes ({:.1} MiB), {} source tensors left out",
        opts.output.display(),
        summary.tensors,
        summary.file_bytes,
        summary.file_bytes as f64 / (1u64 << 20) as f64,
        summary.omitted.len()
    );
    Ok(())
}
