//! `gaga dev`: seeded files in the official layouts (checkpoint, FLAME asset) and scripted driving
//! sequences, so everything can be built, converted and benchmarked without the licence-gated assets.
//! What the values are and why: `docs/seeded-models.md`; driving formats: `docs/driving-format.md`.

use std::path::PathBuf;
use std::time::Instant;

use gaga_converter::dev::{driver, flame, write_checkpoint_file};
use gaga_runtime::driving::{read_source_params, write_jsonl, write_source_params};
use gaga_runtime::ModelConfig;

use super::CmdResult;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConfigName {
    /// The released model's dimensions (597 tensors, 747 MB).
    Official,
    /// The fast-test dimensions of `ModelConfig::small()`.
    Small,
}

// The variants are the subcommands `make-checkpoint`, `make-flame`, ...: the shared prefix is the point.
#[allow(clippy::enum_variant_names)]
#[derive(clap::Subcommand)]
pub enum DevCommand {
    /// Write a seeded checkpoint in GAGAvatar.pt's layout (torch.load(weights_only=True) opens it).
    MakeCheckpoint {
        #[arg(long, value_enum, default_value = "small")]
        config: ConfigName,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write a seeded, head-shaped FLAME asset with FLAME_with_eye.pt's keys and shapes.
    MakeFlame {
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write a scripted driving sequence as JSON lines (jaw, expressions, eyes, head turn).
    MakeDriver {
        #[arg(long, default_value_t = 60)]
        frames: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Source parameters JSON whose camera the motion starts from (default: the frontal camera).
        #[arg(long)]
        source: Option<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write the default frontal source parameters (R = diag(-1, 1, -1), T = (0, 0, 9.0144), zero shape).
    MakeSource {
        #[arg(short, long)]
        output: PathBuf,
    },
}

pub fn run(cmd: DevCommand) -> CmdResult {
    let start = Instant::now();
    match cmd {
        DevCommand::MakeCheckpoint { config, seed, output } => {
            let (cfg, name) = match config {
                ConfigName::Official => (ModelConfig::official(), "official"),
                ConfigName::Small => (ModelConfig::small(), "small"),
            };
            let tensors = write_checkpoint_file(&output, &cfg, name, seed)?;
            let bytes = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "{}: {tensors} tensors, {:.1} MB, config {name}, seed {seed} ({:.1} s)",
                output.display(),
                bytes as f64 / 1e6,
                start.elapsed().as_secs_f64()
            );
        }
        DevCommand::MakeFlame { seed, output } => {
            flame::build(seed).write_file(&output)?;
            eprintln!("{}: seeded FLAME, seed {seed} ({:.1} s)", output.display(), start.elapsed().as_secs_f64());
        }
        DevCommand::MakeDriver { frames, seed, source, output } => {
            let source = match source {
                Some(path) => read_source_params(&path)?,
                None => driver::frontal_source(),
            };
            write_jsonl(&output, &driver::scripted(frames, seed, &source))?;
            eprintln!("{}: {frames} scripted frames, seed {seed}", output.display());
        }
        DevCommand::MakeSource { output } => {
            write_source_params(&output, &driver::frontal_source())?;
            eprintln!("{}: frontal source parameters", output.display());
        }
    }
    Ok(())
}
