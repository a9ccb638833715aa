//! `gaga bench` (in progress).

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CmdResult {
    Err("gaga bench is not implemented yet".into())
}
