//! `gaga eval`: render the same avatar and driving frames with a reference and a candidate model (for
//! example fp32 and int8 conversions of one checkpoint) and report PSNR, SSIM and per-stage errors.

use std::path::PathBuf;

use gaga_runtime::eval::{evaluate, EvalReport, STAGES};
use gaga_runtime::model::Model;
use gaga_runtime::render::RenderOptions;
use gaga_runtime::{avatar, driving};
use serde_json::json;

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The reference model (usually the fp32 conversion).
    #[arg(long)]
    pub reference: PathBuf,
    /// The model under test (fp16, int8, calibrated int8, ...): same configuration as the reference.
    #[arg(long)]
    pub candidate: PathBuf,
    /// The avatar both models render (made by `gaga lift`).
    #[arg(long)]
    pub avatar: PathBuf,
    /// Driving frames (.pkl or .jsonl).
    #[arg(long)]
    pub driver: PathBuf,
    /// Only the first N frames.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A PSNR for people: infinite when the frames are identical.
fn db(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "inf".into()
    }
}

/// JSON has no infinity: identical frames are written as `null`.
fn finite(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        serde_json::Value::Null
    }
}

pub fn run(args: Args) -> CmdResult {
    let reference = Model::open(&args.reference)?;
    let candidate = Model::open(&args.candidate)?;
    let cfg = reference.config().clone();
    if candidate.config() != &cfg {
        return Err(format!(
            "{} and {}: the models have different configurations (eval compares conversions of one checkpoint)",
            args.reference.display(),
            args.candidate.display()
        )
        .into());
    }
    let avatar = avatar::load(&args.avatar, &cfg)?;
    let mut frames = driving::read_driving(&args.driver)?;
    frames.truncate(args.frames.unwrap_or(frames.len()));
    if frames.is_empty() {
        return Err(format!("{}: no driving frames", args.driver.display()).into());
    }
    let bar = indicatif::ProgressBar::new(frames.len() as u64);
    let report = evaluate(&reference, &candidate, &cfg, &avatar, &frames, RenderOptions::default(), &mut |_, _| bar.inc(1));
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&args, &report))?);
        return Ok(());
    }
    print!("{}", table(&args, &report));
    Ok(())
}

fn to_json(args: &Args, r: &EvalReport) -> serde_json::Value {
    let stage = |e: gaga_runtime::eval::StageError| json!({"max_abs": e.max_abs, "rel_l2": e.rel_l2});
    let frames: Vec<_> = r
        .frames
        .iter()
        .map(|f| {
            let stages: serde_json::Map<_, _> = STAGES.iter().zip(f.stages).map(|(n, e)| (n.to_string(), stage(e))).collect();
            json!({"psnr": finite(f.psnr), "ssim": f.ssim, "stages": stages})
        })
        .collect();
    let worst: serde_json::Map<_, _> = STAGES.iter().zip(r.stage_worst()).map(|(n, e)| (n.to_string(), stage(e))).collect();
    json!({
        "reference": args.reference.display().to_string(),
        "candidate": args.candidate.display().to_string(),
        "avatar": args.avatar.display().to_string(),
        "driver": args.driver.display().to_string(),
        "psnr_note": "dB over RGB in [0, 1]; null = identical frames (infinite PSNR)",
        "psnr_min": finite(r.psnr_min()),
        "psnr_median": finite(r.psnr_median()),
        "ssim_min": r.ssim_min(),
        "stages": worst,
        "frames": frames,
    })
}

fn table(args: &Args, r: &EvalReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ =
        writeln!(o, "gaga eval: {} against reference {}, {} frames", args.candidate.display(), args.reference.display(), r.frames.len());
    let _ = writeln!(
        o,
        "{:>6} {:>9} {:>8}  {}",
        "frame",
        "PSNR dB",
        "SSIM",
        STAGES.map(|s| format!("{:>25}", format!("{s} max / rel"))).join("")
    );
    for (i, f) in r.frames.iter().enumerate() {
        let cells: String = f.stages.iter().map(|e| format!("{:>25}", format!("{:.2e} / {:.2e}", e.max_abs, e.rel_l2))).collect();
        let _ = writeln!(o, "{i:>6} {:>9} {:>8.5}  {cells}", db(f.psnr), f.ssim);
    }
    let cells: String = r.stage_worst().iter().map(|e| format!("{:>25}", format!("{:.2e} / {:.2e}", e.max_abs, e.rel_l2))).collect();
    let _ = writeln!(o, "{:>6} {:>9} {:>8.5}  {cells}", "worst", db(r.psnr_min()), r.ssim_min());
    let _ = writeln!(o, "PSNR min {} dB, median {} dB; SSIM min {:.5}", db(r.psnr_min()), db(r.psnr_median()), r.ssim_min());
    o
}
