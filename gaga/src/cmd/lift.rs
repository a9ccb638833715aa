//! `gaga lift` (in progress).

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CmdResult {
    Err("gaga lift is not implemented yet".into())
}
