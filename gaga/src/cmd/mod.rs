//! Subcommand table. Each subcommand is one file with an `Args` struct (clap) and a `run` function.

use clap::{Parser, Subcommand};

pub mod bench;
pub mod bench_camera;
pub mod bench_memory;
pub mod bench_precision;
pub mod bench_vulkan;
pub mod boards;
pub mod convert;
pub mod dev;
pub mod eval;
pub mod inspect;
pub mod kiosk;
pub mod lift;
pub mod reenact;
pub mod track;

#[derive(Parser)]
#[command(name = "gaga", version, about = "Edge runtime for one-shot Gaussian head avatars (GAGAvatar)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Convert the official checkpoint and FLAME asset into one .gaga model file.
    Convert(convert::Args),
    /// Show a model file's configuration, tensors and memory needs; --verify checks every checksum.
    Inspect(inspect::Args),
    /// Lift a source photo into an avatar (.gav), once per person.
    Lift(lift::Args),
    /// Render an avatar driven by a sequence of driving frames.
    Reenact(reenact::Args),
    /// Time the lift and the per-frame stages.
    Bench(bench::Args),
    /// Compare a model against a reference model: PSNR, SSIM and per-stage error per frame.
    Eval(eval::Args),
    /// Developer tools: seeded official-layout checkpoints, FLAME assets and driving sequences.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// List the board profiles built into this binary.
    Boards(boards::Args),
    /// Camera (or video, or images) -> tracker -> render -> overlay -> display, with latency and FPS.
    Kiosk(kiosk::Args),
    /// Track a video, camera or image folder into per-frame driving parameters (JSON lines).
    Track(track::Args),
}

/// Errors reach `main` as one displayable line.
pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

pub fn run(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Lift(args) => lift::run(args),
        Command::Reenact(args) => reenact::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Dev(cmd) => dev::run(cmd),
        Command::Boards(args) => boards::run(args),
        Command::Kiosk(args) => kiosk::run(args),
        Command::Track(args) => track::run(args),
    }
}
