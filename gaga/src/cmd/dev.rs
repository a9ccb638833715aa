//! `gaga dev` (in progress).

use super::CmdResult;

#[derive(clap::Subcommand)]
pub enum DevCommand {}

pub fn run(cmd: DevCommand) -> CmdResult {
    match cmd {}
}
