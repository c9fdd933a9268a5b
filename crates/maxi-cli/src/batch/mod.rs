//! `maxi batch`: explain every input of a manifest with one config, one model and
//! `maxi_core::batch::Batch`; `maxi merge`: join the outputs of shards.
//!
//! `--out DIR` holds `batch.json` (what was asked: config, seed, manifest ids, shard),
//! `inputs/<id>/` per input (the files of `maxi explain`, swapped in atomically: a folder that
//! exists is complete), `results.jsonl` (one line per input, rewritten in manifest order at the
//! end) and `summary.json`. A second run skips complete inputs (`--force` redoes them) and
//! retries failed ones.

pub mod manifest;
pub mod merge;
pub mod results;
pub mod shard;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use maxi::batch::{Batch, Job, ThreadSplit};
use maxi::ndarray::ArrayD;
use maxi::serde_json::{self, Map, Value, json};
use maxi::{Explanation, ExplanationGenerator};

use crate::cli::{BatchArgs, ExplainArgs};
use crate::config::Config;
use crate::error::{CliError, CliResult, EXIT_INTERRUPTED};
use crate::explain::{
    OutputContext, build_generator, install_ctrl_c, load_model, write_explanation,
};
use crate::input::{self, Source};
use crate::output::Staging;
use crate::progress::{Mode, Progress};
use manifest::{Item, ItemSource, Manifest};
use results::Summary;
use shard::Shard;

/// Name of the file describing a batch folder.
pub const BATCH_JSON: &str = "batch.json";
/// Name of the per-input result lines.
pub const RESULTS: &str = "results.jsonl";
/// Name of the summary.
pub const SUMMARY: &str = "summary.json";

/// FNV-1a: a stable fingerprint of a config file (to refuse resuming with another config).
fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The fixed part of an input's result line.
fn head(position: usize, item: &Item) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(item.id));
    m.insert("index".into(), json!(position));
    m.insert("source".into(), json!(item.source.describe()));
    m.insert("label".into(), item.label.clone().unwrap_or(Value::Null));
    if let Some(t) = item.target {
        m.insert("target".into(), json!(t));
    }
    m.insert("dir".into(), json!(format!("inputs/{}", item.id)));
    m
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// What a worker hands back for one input.
enum Done {
    /// Its line (outputs written, or its error).
    Line(Value),
    /// Stopped by Ctrl-C/SIGTERM before its outputs were written.
    Interrupted,
}

/// Prepares `--out`: refuses a folder holding something else or another batch (unless
/// `force`); writes `batch.json`.
fn prepare_out(out: &Path, description: &Value, force: bool) -> CliResult<()> {
    let shown = out.display();
    let file = out.join(BATCH_JSON);
    if out.exists() {
        if !out.is_dir() {
            return Err(CliError::usage(format!(
                "--out {shown} exists and is not a folder; choose another --out"
            )));
        }
        match read_json(&file) {
            Some(old) if old == *description || force => {}
            Some(old) => {
                let differs: Vec<&str> = [
                    "maxi_version",
                    "config_file",
                    "config_fingerprint",
                    "seed",
                    "inputs",
                    "ids",
                    "shard",
                ]
                .into_iter()
                .filter(|k| old.get(*k) != description.get(*k))
                .collect();
                return Err(CliError::usage(format!(
                    "--out {shown} holds a batch with another {} (see {BATCH_JSON}); use another --out, or --force to redo every input there",
                    differs.join(", ")
                )));
            }
            None => {
                let foreign = std::fs::read_dir(out)
                    .map_err(|e| CliError::usage(format!("cannot read --out {shown}: {e}")))?
                    .flatten()
                    .next();
                if let Some(entry) = foreign {
                    return Err(CliError::usage(format!(
                        "--out {shown} holds `{}` but no {BATCH_JSON}: it is not a maxi batch folder; choose a new or empty --out",
                        entry.file_name().to_string_lossy()
                    )));
                }
            }
        }
    }
    std::fs::create_dir_all(out.join("inputs"))
        .map_err(|e| CliError::usage(format!("cannot create --out {shown}: {e}")))?;
    let text = serde_json::to_string_pretty(description)
        .map_err(|e| CliError::runtime(format!("cannot encode {BATCH_JSON}: {e}")))?;
    results::write_atomic(&file, &(text + "\n"))
}

/// Progress over inputs: a bar with rate and ETA on a terminal, a line every ~10 % otherwise.
struct InputProgress {
    mode: Mode,
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
    started: Instant,
    from: usize,
    next_line: usize,
}

impl InputProgress {
    fn new(mode: Mode, total: usize, already: usize) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} inputs {pos}/{len} [{wide_bar}] {per_sec} elapsed {elapsed} ETA {eta}  {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(already as u64);
            bar.reset_eta();
            bar
        });
        InputProgress {
            mode,
            bar,
            total,
            done: already,
            started: Instant::now(),
            from: already,
            next_line: already + 1,
        }
    }

    fn step(&mut self, id: &str, status: &str) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done as u64);
            bar.set_message(format!("{id}: {status}"));
        }
        if self.mode == Mode::Lines && (self.done >= self.next_line || self.done == self.total) {
            let secs = self.started.elapsed().as_secs_f64();
            let rate = (self.done - self.from) as f64 / secs.max(1e-9);
            let eta = (self.total - self.done) as f64 / rate.max(1e-9);
            let _ = writeln!(
                std::io::stderr().lock(),
                "inputs {}/{}: {rate:.2} inputs/s, ETA {eta:.0} s (last: {id} {status})",
                self.done,
                self.total
            );
            self.next_line = self.done + (self.total / 10).max(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Everything a worker needs to load, explain and write one input.
struct Work<'a> {
    manifest: &'a Manifest,
    positions: &'a [usize],
    out: &'a Path,
    ctx: OutputContext<'a>,
    pixel_range: [f64; 2],
    photo: &'a crate::photo::PhotoOptions,
    targets: &'a BTreeMap<u64, ExplanationGenerator>,
    stop: &'a AtomicBool,
}

impl Work<'_> {
    fn load(&self, position: usize) -> CliResult<ArrayD<f64>> {
        let item = &self.manifest.items[position];
        match &item.source {
            ItemSource::Input(source) => {
                input::load(source, self.ctx.model_shape, self.pixel_range, self.photo)
            }
            ItemSource::NpyRow(path, row) => {
                let x = self.manifest.load_row(path, *row)?;
                input::checked(x, self.ctx.model_shape, &item.source.describe())
            }
        }
    }

    fn finish(
        &self,
        position: usize,
        r: Result<(ArrayD<f64>, maxi::Result<Explanation>), CliError>,
    ) -> Done {
        let item = &self.manifest.items[position];
        let head = head(position, item);
        let (x, e) = match r {
            Err(e) => return Done::Line(results::error_line(head, "bad input", &e.message)),
            Ok((_, Err(e))) => {
                let reason = if e.is_usage() {
                    "bad input"
                } else {
                    "run failed"
                };
                return Done::Line(results::error_line(head, reason, &e.to_string()));
            }
            Ok((x, Ok(e))) => (x, e),
        };
        if e.stopped_early() || self.stop.load(Ordering::SeqCst) {
            return Done::Interrupted;
        }
        let dir = self.out.join("inputs").join(&item.id);
        let source = match &item.source {
            ItemSource::Input(s) => s.clone(),
            ItemSource::NpyRow(..) => Source::File(PathBuf::from(item.source.describe())),
        };
        let written = Staging::new(&dir).and_then(|staging| {
            write_explanation(&self.ctx, staging, &dir, &source, &x, &e, self.stop)
        });
        match written {
            Ok(_) => match read_json(&dir.join("report.json")) {
                Some(report) => Done::Line(results::line_from_report(head, &report)),
                None => Done::Line(results::error_line(
                    head,
                    "write failed",
                    &format!("cannot read back {}", dir.join("report.json").display()),
                )),
            },
            Err(e) if e.code == EXIT_INTERRUPTED => Done::Interrupted,
            Err(e) => Done::Line(results::error_line(head, "write failed", &e.message)),
        }
    }
}

/// Runs `maxi batch`; returns the exit code (0 every input explained, 1 some failed, 130
/// interrupted).
pub fn run(args: &BatchArgs) -> CliResult<u8> {
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone(), args.quiet);
    let started = Instant::now();

    let cfg = Config::load(&args.config)?;
    let file = cfg.file.display().to_string();
    if cfg.model.kwargs.contains_key("region") {
        return Err(CliError::usage(format!(
            "[model] region in {file}: maxi batch explains whole inputs; crop the inputs instead, or run maxi explain per input"
        )));
    }
    let manifest = Manifest::parse(&args.inputs)?;
    let shard = Shard::resolve(args.shard.as_deref(), args.shard_count, |k| {
        std::env::var(k).ok()
    })?;
    let positions: Vec<usize> = (0..manifest.items.len())
        .filter(|p| shard.is_none_or(|s| s.takes(*p)))
        .collect();
    let seed = args.seed.or(cfg.generator.seed).unwrap_or(0);

    // Everything is checked before anything is written: the pipeline for each target class,
    // the model, the output folder.
    let observer = Arc::new(Progress::new(Mode::Quiet, stop.clone()));
    // the AE (if any) opens with the explained model's backend; one thread each
    let overrides = crate::explain::ModelOverrides {
        backend: args.backend.as_deref(),
        threads: args.model_threads.or(Some(1)),
    };
    let generator = build_generator(&cfg, seed, observer.clone(), overrides)?;
    let mut targets = BTreeMap::new();
    for p in &positions {
        if let Some(t) = manifest.items[*p].target
            && !targets.contains_key(&t)
        {
            let mut c = cfg.clone();
            c.loss.kwargs.insert("pn_target".into(), json!(t));
            let g = build_generator(&c, seed, observer.clone(), overrides).map_err(|mut e| {
                e.message = format!(
                    "target {t} of input {}: {}",
                    manifest.items[*p].id, e.message
                );
                e
            })?;
            targets.insert(t, g);
        }
    }
    let cores = args
        .threads
        .map_or_else(maxi::model::default_threads, |t| t as usize);
    let split = ThreadSplit::new(
        cores,
        positions.len(),
        args.workers.map(|w| w as usize),
        args.model_threads.map(|t| t as usize),
    );
    let explain_args = ExplainArgs {
        config: Some(args.config.clone()),
        model: None,
        input: None,
        out: args.out.clone(),
        seed: None,
        quiet: true,
        pixel_range: None,
        backend: args.backend.clone(),
        threads: Some(split.model_threads as u64),
        batch_size: None,
    };
    let loaded = load_model(&cfg, &explain_args)?;
    let model_shape = loaded.model.input_shape();
    let config_bytes = std::fs::read(&cfg.file)
        .map_err(|e| CliError::usage(format!("cannot read {file}: {e}")))?;
    let ids: Vec<&str> = manifest.items.iter().map(|i| i.id.as_str()).collect();
    let description = json!({
        "maxi_version": env!("CARGO_PKG_VERSION"),
        "config_file": file,
        "config_fingerprint": fingerprint(&config_bytes),
        "seed": seed,
        "inputs": manifest.spec,
        "ids": ids,
        "shard": shard.map(|s| json!([s.index, s.count])),
    });
    prepare_out(&args.out, &description, args.force)?;

    // complete inputs are skipped (redone with --force)
    let complete = |p: &usize| {
        let dir = args.out.join("inputs").join(&manifest.items[*p].id);
        dir.join("report.json").is_file()
    };
    let todo: Vec<usize> = positions
        .iter()
        .copied()
        .filter(|p| args.force || !complete(p))
        .collect();
    let skipped = positions.len() - todo.len();
    let mode = Mode::detect(args.quiet);
    if mode != Mode::Quiet {
        let share = shard.map_or(String::new(), |s| {
            format!(
                " (shard {}/{} of {})",
                s.index,
                s.count,
                manifest.items.len()
            )
        });
        eprintln!(
            "maxi batch: {} inputs{share}, {skipped} already complete; {} workers sharing {} model threads",
            positions.len(),
            split.workers,
            split.model_threads
        );
    }

    let results_path = args.out.join(RESULTS);
    let mut live = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results_path)
        .map_err(|e| CliError::runtime(format!("cannot open {}: {e}", results_path.display())))?;
    let work = Work {
        manifest: &manifest,
        positions: &todo,
        out: &args.out,
        ctx: OutputContext {
            file: &file,
            loaded: &loaded,
            pixel_range: args.pixel_range.or(cfg.input.pixel_range),
            model_shape: model_shape.as_deref(),
        },
        pixel_range: args
            .pixel_range
            .or(cfg.input.pixel_range)
            .unwrap_or([0.0, 1.0]),
        photo: &cfg.input.photo,
        targets: &targets,
        stop: &stop,
    };
    let mut progress = InputProgress::new(mode, positions.len(), skipped);
    let mut errors: HashMap<usize, Value> = HashMap::new();
    let mut write_error: Option<String> = None;
    let run_started = Instant::now();
    let mut explained_now = 0usize;
    Batch::new(&generator)
        .workers(split.workers)
        .stop(stop.clone())
        .for_each(
            todo.len(),
            |k| {
                let p = work.positions[k];
                let x = work.load(p)?;
                let generator = work.manifest.items[p]
                    .target
                    .and_then(|t| work.targets.get(&t));
                Ok(Job {
                    index: p as u64,
                    x,
                    generator,
                })
            },
            loaded.model.clone(),
            |k, r| work.finish(work.positions[k], r),
            |k, done| {
                let p = todo[k];
                if let Done::Line(line) = done {
                    if let Err(e) = writeln!(live, "{line}") {
                        write_error =
                            Some(format!("cannot append to {}: {e}", results_path.display()));
                    }
                    let status = line["status"].as_str().unwrap_or_default().to_string();
                    progress.step(&manifest.items[p].id, &status);
                    if status == results::ERROR {
                        errors.insert(p, line);
                    } else {
                        explained_now += 1;
                    }
                }
                ControlFlow::Continue(())
            },
        );
    progress.finish();
    drop(live);
    let run_secs = run_started.elapsed().as_secs_f64();

    // results.jsonl in manifest order: complete folders and this run's errors
    let mut summary = Summary::default();
    let mut missing = 0usize;
    let lines = positions.iter().filter_map(|&p| {
        let item = &manifest.items[p];
        let line = match errors.remove(&p) {
            Some(line) => Some(line),
            None => read_json(&args.out.join("inputs").join(&item.id).join("report.json"))
                .map(|r| results::line_from_report(head(p, item), &r)),
        };
        match &line {
            Some(l) => summary.add(l),
            None => missing += 1,
        }
        line
    });
    results::write_jsonl(&results_path, lines)?;
    let interrupted = stop.load(Ordering::SeqCst);
    let mut extra = Map::new();
    extra.insert("shard".into(), description["shard"].clone());
    extra.insert("not_done".into(), json!(missing));
    extra.insert("skipped_complete".into(), json!(skipped));
    extra.insert("explained_now".into(), json!(explained_now));
    extra.insert("workers".into(), json!(split.workers));
    extra.insert("model_threads".into(), json!(split.model_threads));
    extra.insert("run_s".into(), json!(run_secs));
    extra.insert("total_s".into(), json!(started.elapsed().as_secs_f64()));
    extra.insert(
        "inputs_per_s".into(),
        json!((run_secs > 0.0).then(|| explained_now as f64 / run_secs)),
    );
    let summary = summary.to_json(extra);
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| CliError::runtime(format!("cannot encode {}: {e}", SUMMARY)))?;
    results::write_atomic(&args.out.join(SUMMARY), &(text + "\n"))?;
    if let Some(e) = write_error {
        return Err(CliError::runtime(e));
    }
    if interrupted {
        return Err(CliError::interrupted(format!(
            "interrupted: {} of {} inputs complete in {}; run the same command again to continue",
            positions.len() - missing,
            positions.len(),
            args.out.display()
        )));
    }
    if !args.quiet {
        let mut text = results::summary_text(&summary);
        text.push_str(&format!(
            "{explained_now} explained in {run_secs:.1} s ({:.2} inputs/s); wrote {}/{} and {}/inputs/<id>/\n",
            explained_now as f64 / run_secs.max(1e-9),
            args.out.display(),
            RESULTS,
            args.out.display()
        ));
        crate::output::print_summary(&text, &args.out);
    }
    let failed = summary["errors"].as_u64().unwrap_or(0);
    if failed > 0 {
        return Err(CliError::runtime(format!(
            "{failed} of {} inputs failed (status \"error\" in {}); the others are complete",
            positions.len(),
            results_path.display()
        )));
    }
    Ok(0)
}
