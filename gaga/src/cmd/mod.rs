//! Subcommand table. Each subcommand is one file with an `Args` struct and a `run` function.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gaga", version, about = "Edge runtime for one-shot Gaussian head avatars (GAGAvatar)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {}

/// Errors reach `main` as one displayable line.
pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

pub fn run(cli: Cli) -> CmdResult {
    match cli.command {}
}
