//! The `gaga` command: a thin shell over the libraries. Each subcommand lives in `cmd/`, parses its
//! arguments into a library configuration, shows progress, and turns an error into one line and a
//! non-zero exit code.

use clap::Parser;

mod cmd;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // Large load-time temporaries go back to the system when freed (`gaga_runtime::malloc`).
    gaga_runtime::malloc::pin_mmap_threshold();
    let cli = cmd::Cli::parse();
    if let Err(err) = cmd::run(cli) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
