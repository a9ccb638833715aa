//! `gaga boards`: the board profiles compiled into this binary, one line each; `--show NAME` prints
//! one profile's TOML (a starting point for a custom board, see boards/RECIPE.md).

use gaga_boards::profile;

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// Print this profile's full TOML instead of the table.
    #[arg(long)]
    pub show: Option<String>,
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn run(args: Args) -> CmdResult {
    if let Some(name) = args.show {
        let p = profile::find(&name)?;
        let text = profile::SHIPPED.iter().find(|(file, _)| *file == format!("{}.toml", p.name)).map(|(_, t)| *t).unwrap_or_default();
        print!("{text}");
        return Ok(());
    }
    println!("{:<18} {:<7} {:<5} {:>8}  {:<28} display", "board", "backend", "prec", "budget", "camera");
    for p in profile::shipped()? {
        let k = &p.kiosk;
        let camera = format!(
            "{} {}@{} {}",
            or_dash(k.camera.as_ref()),
            or_dash(k.camera_size),
            or_dash(k.camera_fps),
            or_dash(k.camera_format.map(|f| format!("{f:?}").to_lowercase()))
        );
        println!(
            "{:<18} {:<7} {:<5} {:>8}  {:<28} {}",
            p.name,
            or_dash(k.backend.map(|b| format!("{b:?}").to_lowercase())),
            or_dash(k.precision.map(|b| format!("{b:?}").to_lowercase())),
            or_dash(k.memory_budget_mib.map(|m| format!("{m} MiB"))),
            camera,
            or_dash(k.display.as_ref())
        );
    }
    Ok(())
}
