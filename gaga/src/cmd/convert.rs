//! `gaga convert` (in progress).

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CmdResult {
    Err("gaga convert is not implemented yet".into())
}
