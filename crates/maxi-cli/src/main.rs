//! `maxi`: the command-line tool of maxi.
//!
//! - `maxi list [--kind KIND] [--json]` shows every registered component (built-in and plugins)
//!   with its aliases, doc and kwargs (types, defaults, docs).
//! - `maxi explain [--config FILE] [--model MODEL] [--input INPUT] [--out DIR] [--seed N]
//!   [--quiet] ...` explains one input and writes `report.json`, savepoints (`iter_<n>.npy`,
//!   `iter_<n>.png`), `explanation.png` and `heatmap.png` into `DIR` (default `maxi-out/`).
//!   Without a config it runs the main job: the CEM pertinent positive of MNIST test image 2953
//!   on the bundled CNN, from `configs/mnist_pp.toml`.
//!
//! Exit codes: 0 success, 2 bad usage, config or input (the message names the problem and the
//! fix), 1 failure while running, 130 interrupted (Ctrl-C).

mod cli;
mod config;
mod error;
mod explain;
mod input;
mod list;
mod model_adapters;
mod output;
mod photo;
mod progress;
mod render;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, CliResult};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; real parse errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn run(cli: Cli) -> CliResult<()> {
    load_plugins(&cli.plugin)?;
    match cli.command {
        Command::List(args) => list::run(&args),
        Command::Explain(args) => explain::run(&args),
    }
}

/// Loads the plugins named by `MAXI_PLUGIN_PATH` and `--plugin`, before any registry use.
fn load_plugins(from_cli: &[std::path::PathBuf]) -> CliResult<()> {
    // Plugin errors name the file and the fix; they are usage errors whatever their kind.
    let mut paths =
        maxi_plugin_host::plugin_paths_from_env().map_err(|e| CliError::usage(e.to_string()))?;
    paths.extend(from_cli.iter().cloned());
    for path in paths {
        maxi_plugin_host::load_plugin(&path).map_err(|e| CliError::usage(e.to_string()))?;
    }
    Ok(())
}
