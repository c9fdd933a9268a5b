//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use maxi::Kind;

/// Explain black-box classifiers by optimisation: pertinent positives and negatives (CEM)
/// found with zero-order gradients (URV, USRV) and exponentiated-gradient optimisers.
///
/// Start with `maxi explain`: it explains MNIST test image 2953 with the bundled CNN and a tuned
/// config (configs/mnist_pp.toml) and writes the results to maxi-out/. `maxi list` shows every
/// component and its kwargs.
#[derive(Debug, Parser)]
#[command(name = "maxi", version, arg_required_else_help = true)]
pub struct Cli {
    /// Load a plugin library (.so) before anything else; repeatable. The variable
    /// MAXI_PLUGIN_PATH (colon-separated files, or folders of *.so) is read too.
    #[arg(long, global = true, value_name = "PATH")]
    pub plugin: Vec<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every registered component (built-in and plugins) with its kwargs.
    List(ListArgs),
    /// Explain one input with a config; with no arguments, run the bundled main job.
    #[command(after_long_help = EXPLAIN_AFTER_HELP)]
    Explain(ExplainArgs),
    /// Quality benchmark: explain many MNIST test images with a config and re-check each
    /// result on the model (valid rate, faithfulness, sizes, rows, time).
    Eval(EvalArgs),
    /// Explain every input of a manifest (folder, .npy stack, CSV/JSONL list, mnist:A..B):
    /// one output folder per input, results.jsonl and a summary; resumable and shardable.
    #[command(after_long_help = BATCH_AFTER_HELP)]
    Batch(BatchArgs),
    /// Join the --out folders of the shards of one batch into one results.jsonl and summary;
    /// reports missing and duplicate inputs (exit 1).
    Merge(MergeArgs),
}

/// Arguments of `maxi batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Config file as for `maxi explain`; its [input] path is ignored.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,

    /// The inputs: `mnist:START..END`, a folder of .png/.jpg/.npy files, a .npy stack
    /// [N, ...], or a .csv (header with `path`, optional `id`, `label`, `target`) or .jsonl
    /// list ({"path": ..., "id"?, "label"?, "target"?}); list paths are relative to the list.
    #[arg(long, short = 'i', value_name = "MANIFEST")]
    pub inputs: String,

    /// Output folder: batch.json, inputs/<id>/ per input, results.jsonl, summary.json.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,

    /// Seed of the batch (overrides [generator] seed); input i runs with a seed derived from
    /// it and i.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Model backend (overrides [model] backend).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,

    /// Cores this process may use (default: the available cores); split between workers and
    /// the backend's threads.
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_count(s, "a thread count"))]
    pub threads: Option<u64>,

    /// Inputs explained at once (default: one per core).
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_count(s, "a number of workers"))]
    pub workers: Option<u64>,

    /// Threads of the model backend, shared by the workers' calls (default: --threads).
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_count(s, "a thread count"))]
    pub model_threads: Option<u64>,

    /// Explain share i of N of the manifest (inputs i, i+N, i+2N, ...). Default: from
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shard-count.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<String>,

    /// Number of shards when the index comes from JOB_COMPLETION_INDEX (or SLURM_ARRAY_TASK_ID);
    /// also read from MAXI_SHARD_COUNT.
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_count(s, "a number of shards").map(|n| n as usize))]
    pub shard_count: Option<usize>,

    /// Redo inputs whose outputs are complete (default: skip them).
    #[arg(long)]
    pub force: bool,

    /// PNG inputs: the model values of pixel 0 and 255 (overrides [input] pixel_range).
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true, value_parser = parse_range)]
    pub pixel_range: Option<[f64; 2]>,

    /// No progress and no summary (errors only).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Arguments of `maxi merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The --out folders of the shards.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// Where the merged results.jsonl and summary.json go.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,

    /// No summary on stdout.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

const BATCH_AFTER_HELP: &str = "\
A result line per input in results.jsonl: id, index (position in the manifest), source,
label, status (ok, no_valid, error), verdict, valid, class_before, class_after, size, rows,
wall_s, seed, error, reason, dir. An input's folder appears only when complete; a second run
skips complete inputs and retries failed ones (--force redoes all).

Exit codes: 0 every input explained (valid or not), 1 some inputs failed (the others are
complete), 2 bad usage/config/manifest, 130 interrupted (run again to continue).";

/// Arguments of `maxi eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Config file (TOML or JSON) as for `maxi explain`; its [input] is ignored.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,

    /// The MNIST test images to explain: `mnist:START..END` (END exclusive).
    #[arg(long, value_name = "RANGE", default_value = "mnist:0..100")]
    pub inputs: String,

    /// Seed of every run (overrides [generator] seed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Model backend (overrides [model] backend).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,

    /// Worker threads of the model backend.
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_count(s, "a thread count"))]
    pub threads: Option<u64>,

    /// Also write every image's figures to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// An autoencoder (e.g. fixtures/mnist/mnist_ae.onnx) to report the reconstruction error of
    /// the explanations with, when the config's loss has none.
    #[arg(long, value_name = "MODEL")]
    pub ae: Option<PathBuf>,

    /// No per-image lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Arguments of `maxi list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only components of this kind: loss, gradient, optimizer or model.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<Kind>,

    /// Print a JSON array of {kind, name, aliases, doc, kwargs_schema, kwargs, origin}.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `maxi explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Config file, TOML (.toml) or JSON (.json): [generator], [loss], [optimizer], [gradient],
    /// optional [model] and [input]. Default: the bundled configs/mnist_pp.toml.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Model file (e.g. .onnx); overrides [model] path. Relative to the current folder.
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: Option<PathBuf>,

    /// Input to explain: a .npy file (float32/float64, the model's item shape, optionally with
    /// a leading batch axis of 1), a .png file (grey or RGB, see --pixel-range), or
    /// `mnist:N` for the bundled MNIST test image N. Overrides [input] path.
    #[arg(long, short = 'i', value_name = "INPUT")]
    pub input: Option<String>,

    /// Output folder; replaced as a whole when the run succeeds, untouched otherwise.
    #[arg(long, short = 'o', value_name = "DIR", default_value = "maxi-out")]
    pub out: PathBuf,

    /// Seed of the run (overrides [generator] seed); the same seed gives the same files.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<u64>,

    /// Print nothing but errors (no progress, no verdict).
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// PNG inputs: the model values that pixel 0 and the brightest pixel (255) map to, e.g.
    /// `--pixel-range=-0.5,0.5` for the bundled MNIST models. Overrides [input] pixel_range;
    /// default 0,1. Also used to draw the PNG outputs.
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true, value_parser = parse_range)]
    pub pixel_range: Option<[f64; 2]>,

    /// Model backend (a `maxi list --kind model` name); overrides [model] backend. Default:
    /// the backend registered for the model file's extension.
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,

    /// Worker threads of the model backend (its `threads` kwarg); overrides [model] threads.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = |s: &str| parse_count(s, "a thread count")
    )]
    pub threads: Option<u64>,

    /// Rows per model call (the backend's `batch_size` kwarg); overrides [model] batch_size.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = |s: &str| parse_count(s, "a number of rows")
    )]
    pub batch_size: Option<u64>,
}

const EXPLAIN_AFTER_HELP: &str = "\
Config example (TOML; JSON has the same shape):

  [generator]
  num_iter = 200        # optimiser updates (>= 1)
  save_freq = 100       # savepoints after update 1, every save_freq-th and the last
  seed = 1
  [model]               # optional: backend, path and backend kwargs (threads, batch_size)
  path = \"model.onnx\"
  [input]               # optional: path (or mnist:N) and pixel_range for PNG inputs
  path = \"digit.png\"
  pixel_range = [-0.5, 0.5]
  [loss]
  name = \"cem\"
  mode = \"PP\"
  c = 1.0
  K = 20.0
  AE = \"ae.onnx\"        # model-valued kwargs are file paths, relative to the config file
  [optimizer]
  name = \"ao_exp_grad\"
  l1 = 0.25
  [gradient]
  name = \"urv\"
  sample_num = 100

Each component table holds `name` plus that component's kwargs (see `maxi list`); unknown
tables and keys are errors. Paths in a config are relative to the config file; paths on the
command line are relative to the current folder.

Outputs in --out: report.json (classes, sparsity, cost, seed, resolved config, per-step
history), iter_<n>.npy and iter_<n>.png per savepoint, explanation.png (input | explanation,
and x + delta for PN) and heatmap.png (|delta|, blurred, colour-mapped). With a
[segmentation]: segments.npy (int32 [H, W] labels), weights.npy (f64, one per segment),
segments.png (boundaries over the image) and weights.png (weight per segment).

Exit codes: 0 success, 2 bad usage/config/input, 1 failure while running, 130 interrupted
(Ctrl-C, SIGTERM or SIGHUP). Limits: threads <= 256, batch_size <= 1024 rows and <= 64 MiB
per model call, PNG inputs <= 16777216 pixels; every number in a config must be finite.";

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse()
}

/// A seed: any whole number that fits 64 bits (negative numbers reach this parser instead of
/// being taken for options, so the error names the value).
fn parse_seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("`{s}` is not a seed; give a whole number 0..={}", u64::MAX))
}

/// A whole number ≥ 1; the error calls `s` not `what`.
fn parse_count(s: &str, what: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not {what}; give a whole number ≥ 1")),
    }
}

/// Parses `LO,HI` with finite LO < HI.
pub fn parse_range(s: &str) -> Result<[f64; 2], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || format!("`{s}` is not LO,HI with two numbers LO < HI (e.g. -0.5,0.5 or 0,1)");
    if parts.len() != 2 {
        return Err(bad());
    }
    let lo: f64 = parts[0].parse().map_err(|_| bad())?;
    let hi: f64 = parts[1].parse().map_err(|_| bad())?;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(bad());
    }
    Ok([lo, hi])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn negative_numbers_reach_the_value_parsers() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(args)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for (option, needle) in [
            (
                "--seed",
                "`-1` is not a seed; give a whole number 0..=18446744073709551615",
            ),
            ("--threads", "`-1` is not a thread count"),
            ("--batch-size", "`-1` is not a number of rows"),
        ] {
            let e = parse(&["maxi", "explain", option, "-1"]).expect_err(option);
            assert!(e.contains(option) && e.contains(needle), "{e}");
        }
        let e = parse(&["maxi", "explain", "--seed", "18446744073709551616"]).expect_err("big");
        assert!(e.contains("is not a seed"), "{e}");
        assert!(parse(&["maxi", "explain", "--seed", "18446744073709551615"]).is_ok());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("-0.5,0.5"), Ok([-0.5, 0.5]));
        assert_eq!(parse_range(" 0 , 1 "), Ok([0.0, 1.0]));
        assert!(parse_range("1,0").is_err());
        assert!(parse_range("0").is_err());
        assert!(parse_range("a,b").is_err());
        assert!(parse_range("0,inf").is_err());
    }
}
