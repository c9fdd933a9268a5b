//! `maxi`: the command-line tool of maxi.
//!
//! - `maxi list [--kind KIND] [--json]` shows every registered component (built-in and plugins)
//!   with its aliases, doc and kwargs (types, defaults, docs).
//! - `maxi explain [--config FILE] [--model MODEL] [--input INPUT] [--out DIR] [--seed N]
//!   [--quiet] ...` explains one input and writes `report.json`, savepoints (`iter_<n>.npy`,
//!   `iter_<n>.png`), `explanation.png` and `heatmap.png` into `DIR` (default `maxi-out/`).
//!   Without a config it runs the main job: the CEM pertinent positive of MNIST test image 2953
//!   on the bundled CNN, from `configs/mnist_pp.toml`.
//! - `maxi batch --config FILE --inputs MANIFEST --out DIR [--shard i/N] ...` explains every
//!   input of a manifest (resumable, shardable); `maxi merge DIR... --out DIR` joins shards.
//!
//! Exit codes: 0 success, 3 the run finished but found no valid explanation (the outputs are
//! written, marked invalid), 2 bad usage, config or input (the message names the problem and
//! the fix), 1 failure while running, 130 interrupted (Ctrl-C, SIGTERM or SIGHUP). A stdout
//! that cannot be written after the outputs are complete is a warning, not a failure.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use maxi_cli::cli::{Cli, Command};
use maxi_cli::error::{CliError, CliResult};
use maxi_cli::{batch, eval, explain, list};

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
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn run(cli: Cli) -> CliResult<u8> {
    load_plugins(&cli.plugin)?;
    match cli.command {
        Command::List(args) => list::run(&args).map(|()| 0),
        Command::Explain(args) => explain::run(&args),
        Command::Eval(args) => eval::run(&args).map(|()| 0),
        Command::Batch(args) => batch::run(&args),
        Command::Merge(args) => batch::merge::run(&args),
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
