//! `gaga convert`: official checkpoint + FLAME asset -> one `.gaga` model file.

use std::path::PathBuf;

use gaga_converter::calibrate::{convert_calibrated, CalibrateOptions};
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
    /// Calibrate int8 on real inputs: DIR holds portraits (*.png, *.jpg, each with optional NAME.json
    /// source parameters and NAME.crop `x,y,size`) and driving files (*.jsonl, *.pkl; the bundled 60
    /// frames when none). Sets activation scales and keeps the most sensitive refiner layers at fp16.
    #[arg(long, value_name = "DIR")]
    pub calibrate: Option<PathBuf>,
    /// With --calibrate: driving frames rendered per portrait.
    #[arg(long, default_value_t = CALIBRATE_FRAMES, requires = "calibrate")]
    pub calibrate_frames: usize,
    /// With --calibrate: smallest PSNR (dB) against fp32 to reach on the calibration frames (plus a 2 dB margin).
    #[arg(long, default_value_t = CALIBRATE_TARGET, requires = "calibrate")]
    pub calibrate_target: f64,
    /// With --calibrate: MiB that layers kept at fp16 may add to a per-frame session (weights, activation
    /// arena, kernel scratch) over the default int8 conversion.
    #[arg(long, default_value_t = CALIBRATE_MEMORY_MIB, requires = "calibrate")]
    pub calibrate_memory_mib: f64,
    /// Store the refiner's conv weights pre-packed in the CPU kernels' layouts (fp32 panels, fp16 / int8
    /// qgemm panels; read zero-copy at load; readers before these layouts and the Vulkan refiner (fp16 /
    /// int8) reject the file). Off by default: docs/converter.md.
    #[arg(long)]
    pub pack_refiner: bool,
}

/// `--calibrate-frames`, `--calibrate-target` and `--calibrate-memory-mib` when not given.
const CALIBRATE_FRAMES: usize = 8;
const CALIBRATE_TARGET: f64 = 35.0;
const CALIBRATE_MEMORY_MIB: f64 = 3.0;

impl Args {
    /// A plain conversion of `checkpoint` and `flame` at `precision` into `output`: no `--keep`, no
    /// calibration, quiet, the refiner pre-packed when `pack_refiner`.
    pub fn plain(checkpoint: PathBuf, flame: PathBuf, precision: Precision, output: PathBuf, pack_refiner: bool) -> Args {
        Args {
            checkpoint,
            flame,
            precision,
            keep: Vec::new(),
            output,
            quiet: true,
            calibrate: None,
            calibrate_frames: CALIBRATE_FRAMES,
            calibrate_target: CALIBRATE_TARGET,
            calibrate_memory_mib: CALIBRATE_MEMORY_MIB,
            pack_refiner,
        }
    }
}

pub fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("`{s}`: expected fp32, fp16 or int8"))
}

pub fn run(args: Args) -> CmdResult {
    for line in convert_file(&args)? {
        println!("{line}");
    }
    Ok(())
}

/// Converts as `args` say (with a progress bar unless `--quiet`); returns the summary lines to print.
/// `gaga bench --precision` converts through here too.
pub fn convert_file(args: &Args) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let opts = ConvertOptions {
        checkpoint: args.checkpoint.clone(),
        flame: args.flame.clone(),
        output: args.output.clone(),
        precision: args.precision,
        keep: args.keep.clone(),
        created_by: format!("gaga convert {}", env!("CARGO_PKG_VERSION")),
    };
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut show = |p: &gaga_converter::Progress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_written);
        bar.set_message(p.tensor.to_string());
    };
    let summary = match &args.calibrate {
        None => convert(&opts, &mut show),
        Some(dir) => {
            let copts = CalibrateOptions {
                target_psnr: args.calibrate_target,
                frames_per_portrait: args.calibrate_frames,
                memory_growth: (args.calibrate_memory_mib.max(0.0) * (1u64 << 20) as f64) as u64,
                ..CalibrateOptions::new(dir.clone())
            };
            let quiet = args.quiet;
            convert_calibrated(&opts, &copts, &mut show, &mut |line| {
                if !quiet {
                    bar.suspend(|| eprintln!("{line}"));
                }
            })
            .map(|(summary, _)| summary)
        }
    };
    bar.finish_and_clear();
    let summary = summary?;
    let mut lines = Vec::new();
    if args.pack_refiner {
        let p = gaga_converter::pack::pack_refiner(&opts.output, &opts.output)?;
        lines.push(format!("packed {} refiner weights in the CPU kernels' layouts", p.packed));
    }
    lines.push(format!(
        "{}: {} tensors, {} bytes ({:.1} MiB), {} source tensors left out",
        opts.output.display(),
        summary.tensors,
        summary.file_bytes,
        summary.file_bytes as f64 / (1u64 << 20) as f64,
        summary.omitted.len()
    ));
    Ok(lines)
}
