//! `gaga reenact` (in progress).

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CmdResult {
    Err("gaga reenact is not implemented yet".into())
}
