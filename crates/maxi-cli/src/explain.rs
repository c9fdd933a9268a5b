//! `maxi explain`: validate everything, run the generator, write the outputs atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use maxi::ndarray::ArrayD;
use maxi::serde_json::{self, Map, Value, json};
use maxi::summary;
use maxi::{
    Explanation, ExplanationGenerator, Kwargs, MaxiError, Model, ModelContext, ModelKind,
    SearchKwargs, Shown, predict_class,
};
use ndarray_npy::WriteNpyExt;

use crate::cli::ExplainArgs;
use crate::config::{ComponentSpec, Config};
use crate::error::{CliError, CliResult};
use crate::input::{self, Source};
use crate::model_adapters::ModelExtras;
use crate::output::{Staging, check_out_dir, print_summary};
use crate::progress::{Mode, Progress};
use crate::render::{self, Layout};

/// The config of the main job (`maxi explain` with no `--config`): the copy of
/// `configs/mnist_pp.toml` that ships inside the binary, written out with the model it names.
pub fn default_config() -> CliResult<PathBuf> {
    let root = maxi::bundled::materialize().map_err(|e| CliError::runtime(e.to_string()))?;
    Ok(root.join(maxi::bundled::MAIN_JOB_CONFIG))
}

/// `path` itself, or — when no such file exists and it names a bundled config (e.g.
/// `configs/cifar10_lime.toml`) — the bundled copy, written out with what it needs, so the
/// shipped configs run from any folder.
fn bundled_if_missing(path: &Path, quiet: bool) -> CliResult<PathBuf> {
    let name = path.to_string_lossy().replace('\\', "/");
    let name = name.trim_start_matches("./");
    if path.exists() || !name.starts_with("configs/") || maxi::bundled::asset(name).is_none() {
        return Ok(path.to_path_buf());
    }
    let root = maxi::bundled::materialize().map_err(|e| CliError::runtime(e.to_string()))?;
    if !quiet {
        eprintln!("maxi: {name} is not in this folder: running the bundled copy");
    }
    Ok(root.join(name))
}

/// A model built through the registry.
pub(crate) struct LoadedModel {
    pub(crate) model: Arc<dyn Model>,
    /// Resolved `[model]` table: `backend` plus every kwarg with defaults.
    pub(crate) config: Value,
    /// Adapters and class names from `[model]`.
    pub(crate) extras: ModelExtras,
}

/// Runs `maxi explain`; returns the exit code (0, or 3 when no valid explanation was found).
pub fn run(args: &ExplainArgs) -> CliResult<u8> {
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone(), args.quiet);

    let bundled = args.config.is_none();
    let config_path = match &args.config {
        Some(p) => bundled_if_missing(p, args.quiet)?,
        None => default_config()?,
    };
    let cfg = Config::load(&config_path)?;
    let file = cfg.file.display().to_string();
    if bundled && !args.quiet {
        eprintln!(
            "maxi: no --config given: running the main job, the bundled copy of {} (copy that file to start your own)",
            maxi::bundled::MAIN_JOB_CONFIG
        );
    }

    // Everything is validated before anything is written.
    let seed = args.seed.or(cfg.generator.seed).unwrap_or(0);
    let progress = Arc::new(Progress::new(Mode::detect(args.quiet), stop.clone()));
    let overrides = ModelOverrides {
        backend: args.backend.as_deref(),
        threads: args.threads,
    };
    let generator = build_generator(&cfg, seed, progress.clone(), overrides)?;
    check_out_dir(&args.out)?;
    let mut loaded = load_model(&cfg, args)?;
    let pixel_range = args.pixel_range.or(cfg.input.pixel_range);
    let source = match (&args.input, &cfg.input.path) {
        (Some(s), _) => Source::parse(s, None)?,
        (None, Some(p)) => Source::parse(p, Some(&cfg.dir))?,
        (None, None) => {
            return Err(CliError::usage(format!(
                "no input to explain: pass --input FILE (.npy, .png or mnist:N) or set [input] path in {file}"
            )));
        }
    };
    let model_shape = loaded.model.input_shape();
    let x = input::load(
        &source,
        model_shape.as_deref(),
        pixel_range.unwrap_or([0.0, 1.0]),
        &cfg.input.photo,
    )?;
    let x = loaded.extras.focus(&mut loaded.model, x, &file)?;
    if stop.load(Ordering::SeqCst) {
        return Err(CliError::interrupted(format!(
            "interrupted before the run; nothing was written to {}",
            args.out.display()
        )));
    }

    // The outputs are collected next to --out and swapped in at the end; dropping the staging
    // folder on any error leaves --out as it was.
    let staging = Staging::new(&args.out)?;

    let result = generator.run(x.view(), loaded.model.clone());
    progress.finish();
    let e = result.map_err(|e| {
        if e.is_usage() {
            CliError::from_maxi_in(e, &format!("while setting up the run from {file}"))
        } else {
            CliError::runtime(format!(
                "{e}; the run stopped and nothing was written to {}",
                args.out.display()
            ))
        }
    })?;
    if e.stopped_early() || stop.load(Ordering::SeqCst) {
        return Err(CliError::interrupted(format!(
            "interrupted at iteration {} of {}; nothing was written to {}",
            e.history.len(),
            cfg.generator.num_iter.unwrap_or(e.history.len()),
            args.out.display()
        )));
    }

    let ctx = OutputContext {
        file: &file,
        loaded: &loaded,
        pixel_range,
        model_shape: model_shape.as_deref(),
    };
    let (outcome, written) = write_explanation(&ctx, staging, &args.out, &source, &x, &e, &stop)?;
    if !args.quiet {
        let mut text = format!("{outcome}\n");
        text.push_str(&format!(
            "wrote {}/: {}\n",
            args.out.display().to_string().trim_end_matches('/'),
            files_line(&written, &e)
        ));
        print_summary(&text, &args.out);
    }
    Ok(if e.outcome.valid == Some(false) {
        crate::error::EXIT_NO_VALID
    } else {
        0
    })
}

/// What every explained input's outputs need besides the explanation.
pub(crate) struct OutputContext<'a> {
    /// The config file, as shown in messages and the report.
    pub(crate) file: &'a str,
    pub(crate) loaded: &'a LoadedModel,
    pub(crate) pixel_range: Option<[f64; 2]>,
    pub(crate) model_shape: Option<&'a [usize]>,
}

/// Builds report.json for `e` (the explanation of `x` from `source`) and writes every output
/// of `maxi explain` into `staging`, which replaces `out` at the end; returns the verdict and
/// the files written.
pub(crate) fn write_explanation(
    ctx: &OutputContext<'_>,
    staging: Staging,
    out: &Path,
    source: &Source,
    x: &ArrayD<f64>,
    e: &Explanation,
    stop: &AtomicBool,
) -> CliResult<(String, Vec<String>)> {
    let loaded = ctx.loaded;
    let pixel_range = ctx.pixel_range;
    let mut resolved = e.config.clone();
    resolved["model"] = loaded.config.clone();
    resolved["input"] = json!({"path": source.describe(), "pixel_range": pixel_range});
    let display = display_range(pixel_range, e, source, x);
    let outcome = summarise(e, x, loaded.model.as_ref(), &loaded.extras)?;
    let mut report = outcome.report;
    report.insert("seed".into(), json!(e.seed));
    report.insert("config".into(), resolved);
    report.insert("config_file".into(), json!(ctx.file));
    report.insert(
        "model".into(),
        json!({
            "path": loaded.config.get("path"),
            "backend": loaded.config.get("backend"),
            "describe": loaded.model.describe(),
            "input_shape": ctx.model_shape,
        }),
    );
    report.insert(
        "input".into(),
        json!({"source": source.describe(), "shape": x.shape(), "display_range": display}),
    );
    report.insert("verdict".into(), json!(outcome.verdict));
    report.insert("valid".into(), json!(e.outcome.valid));
    report.insert("result".into(), json!(e.outcome));
    report.insert("rounds".into(), json!(e.rounds));
    report.insert("history".into(), json!(e.history));
    report.insert("stopped_early".into(), json!(e.stopped_early()));
    report.insert("maxi_version".into(), json!(env!("CARGO_PKG_VERSION")));

    let mut staging = staging;
    loaded
        .extras
        .write_region_picture(&mut staging, e, x, display)?;
    let written = write_outputs(staging, out, e, x, display, report, stop)?;
    Ok((outcome.verdict, written))
}

pub(crate) fn install_ctrl_c(stop: Arc<AtomicBool>, quiet: bool) {
    // A second Ctrl-C quits at once; the staging folder (never --out itself) may then remain.
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(crate::error::EXIT_INTERRUPTED));
        }
        if !quiet {
            eprintln!("\ninterrupted: stopping after this update (Ctrl-C again to quit at once)");
        }
    });
}

fn kwargs_of(spec: &ComponentSpec, cfg: &Config) -> CliResult<Kwargs> {
    Ok(Kwargs::from_serialize(&spec.kwargs)?.with_base_dir(&cfg.dir))
}

/// Builds the generator: resolves names and validates kwargs and settings; errors name the
/// config table and file.
pub(crate) fn build_generator(
    cfg: &Config,
    seed: u64,
    progress: Arc<Progress>,
    overrides: ModelOverrides<'_>,
) -> CliResult<ExplanationGenerator> {
    let mut b = ExplanationGenerator::builder()
        .model_loader(model_loader(cfg, overrides))
        .loss(&cfg.loss.name, kwargs_of(&cfg.loss, cfg)?)
        .optimizer(&cfg.optimizer.name, kwargs_of(&cfg.optimizer, cfg)?)
        .gradient(&cfg.gradient.name, kwargs_of(&cfg.gradient, cfg)?)
        .seed(seed)
        .observer(progress);
    if let Some(n) = cfg.generator.num_iter {
        b = b.num_iter(n);
    }
    if let Some(f) = cfg.generator.save_freq {
        b = b.save_freq(f);
    }
    if let Some(seg) = &cfg.segmentation {
        b = b.segmentation(&seg.name, kwargs_of(seg, cfg)?);
    }
    b = b.search(search_of(cfg)?);
    b.build().map_err(|e| {
        let file = cfg.file.display();
        let context = match &e {
            MaxiError::UnknownComponent { kind, .. }
            | MaxiError::UnknownKwarg { kind, .. }
            | MaxiError::InvalidKwarg { kind, .. } => {
                format!("in [{kind}] of {file}; see `maxi list --kind {kind}`")
            }
            MaxiError::InvalidSetting { name, .. } if name.starts_with("search.") => {
                format!("in [search] of {file}")
            }
            MaxiError::InvalidSetting { .. } => format!("in [generator] of {file}"),
            MaxiError::ModelLoad { .. } => format!("in [loss] of {file}"),
            _ => format!("in {file}"),
        };
        CliError::from_maxi_in(e, &context)
    })
}

/// Command-line settings that override `[model]`: `--backend` and `--threads`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ModelOverrides<'a> {
    /// `--backend`.
    pub(crate) backend: Option<&'a str>,
    /// `--threads`.
    pub(crate) threads: Option<u64>,
}

/// How the loss's model-valued kwargs (CEM's `AE`) are opened: with the explained model's
/// backend (`--backend` or `[model] backend`; else the one for the file's extension) and its
/// threads, once when the generator is built.
fn model_loader(cfg: &Config, overrides: ModelOverrides<'_>) -> maxi::ModelLoader {
    let backend = overrides
        .backend
        .map(str::to_string)
        .or_else(|| cfg.model.backend.clone());
    let threads = overrides
        .threads
        .map(|t| json!(t))
        .or_else(|| cfg.model.kwargs.get("threads").cloned());
    Arc::new(move |path: &Path| {
        let kwargs = match &threads {
            Some(t) => Kwargs::new().set("threads", t)?,
            None => Kwargs::new(),
        };
        maxi::registry::global()?.open_model(path, backend.as_deref(), kwargs)
    })
}

/// The `[search]` table as typed settings; errors name the key and the file.
fn search_of(cfg: &Config) -> CliResult<SearchKwargs> {
    let value = Value::Object(cfg.search.clone());
    serde_path_to_error::deserialize::<_, SearchKwargs>(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!("`{path}`: ")
        };
        CliError::usage(format!(
            "in [search] of {}: {key}{}; keys: method (none, c, l1), steps, budget_rows, patience, give_up, warm_start",
            cfg.file.display(),
            e.inner()
        ))
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Builds the model through the registry: `[model]` backend/path/kwargs, overridden by
/// `--model`, `--backend`, `--threads` and `--batch-size`.
pub(crate) fn load_model(cfg: &Config, args: &ExplainArgs) -> CliResult<LoadedModel> {
    let file = cfg.file.display().to_string();
    let (path, hint) = match (&args.model, &cfg.model.path) {
        (Some(p), _) => (
            absolute(p),
            "check --model (relative to the current folder)".to_string(),
        ),
        (None, Some(p)) => (
            absolute(&cfg.dir.join(p)),
            format!("check [model] path in {file} (relative to the config file) or pass --model"),
        ),
        (None, None) => {
            return Err(CliError::usage(format!(
                "no model to explain: pass --model MODEL.onnx or set [model] path in {file}"
            )));
        }
    };
    if !path.exists() {
        return Err(CliError::usage(format!(
            "model file {} not found; {hint}",
            path.display()
        )));
    }
    let backend = args.backend.as_ref().or(cfg.model.backend.as_ref());
    let registry = maxi::registry::global()?;
    let entry = match backend {
        Some(name) => registry.get::<ModelKind>(name).map_err(|e| {
            CliError::from_maxi_in(
                e,
                &format!(
                    "from --backend or [model] backend in {file}; see `maxi list --kind model`"
                ),
            )
        })?,
        None => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
                .to_string();
            registry.model_for_extension(&ext).ok_or_else(|| {
                let names: Vec<&str> = registry
                    .metas(Some(maxi::Kind::Model))
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect();
                CliError::usage(format!(
                    "no model backend opens `.{ext}` files like {} (backends: {}); pass --backend NAME or set [model] backend in {file}",
                    path.display(),
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                ))
            })?
        }
    };
    let mut kw: Map<String, Value> = cfg.model.kwargs.clone();
    let extras = ModelExtras::take(&mut kw, &cfg.dir, &file)?;
    kw.insert("path".into(), json!(path.display().to_string()));
    if let Some(t) = args.threads {
        kw.insert("threads".into(), json!(t));
    }
    if let Some(n) = args.batch_size {
        kw.insert("batch_size".into(), json!(n));
    }
    let kwargs = Kwargs::from_serialize(&kw)?.with_base_dir(&cfg.dir);
    let prepared = entry.prepare(&kwargs).map_err(|e| {
        CliError::from_maxi_in(
            e,
            &format!(
                "in [model] of {file} or from --threads/--batch-size; see `maxi list --kind model`"
            ),
        )
    })?;
    let model = prepared.build(&ModelContext {
        base_dir: Some(&cfg.dir),
    })?;
    let model = extras.wrap(model, &file)?;
    let mut config = prepared.kwargs_json();
    if let Value::Object(m) = &mut config {
        m.insert("backend".into(), json!(entry.meta.name));
        m.extend(extras.config());
    }
    Ok(LoadedModel {
        model,
        config,
        extras,
    })
}

/// What the run shows, in numbers and one sentence.
struct Outcome {
    report: Map<String, Value>,
    verdict: String,
}

fn summarise(
    e: &Explanation,
    x: &ArrayD<f64>,
    model: &dyn Model,
    names: &ModelExtras,
) -> CliResult<Outcome> {
    let d = &e.description;
    let last = e.last_record();
    let mut report = Map::new();
    report.insert("loss".into(), json!(e.names.loss));
    report.insert("explanation".into(), json!(d));
    report.insert("entries".into(), json!(x.len()));
    report.insert("iterations".into(), json!(e.history.len()));
    report.insert("attack_loss".into(), json!(last.map(|r| r.attack_loss)));
    report.insert("objective".into(), json!(last.map(|r| r.objective)));
    report.insert("model_rows".into(), json!(e.model.rows));
    report.insert("model_calls".into(), json!(e.model.calls));
    report.insert("loss_rows".into(), json!(e.loss_rows));
    report.insert("wall_s".into(), json!(e.wall_seconds));
    report.insert("model_s".into(), json!(e.model.seconds));
    let unit = e.unit.plural();
    let label = &d.label;
    let budget = "(try more iterations or a larger budget_rows, a larger c or a smaller l1, or [search] method = \"c\")";
    let verdict = match d.shown {
        Shown::Candidate | Shown::InputPlusCandidate => {
            let s = summary::summarize(e, x.view(), model)?;
            if let Value::Object(m) = serde_json::to_value(&s)
                .map_err(|err| CliError::runtime(format!("internal: summary: {err}")))?
            {
                report.extend(m);
            }
            names.annotate(&mut report);
            // per segment: the segments used, of all segments
            let (n, total) = match &e.segments {
                Some(_) => (
                    e.outcome
                        .variable
                        .iter()
                        .filter(|v| v.abs() > e.support_threshold)
                        .count(),
                    e.outcome.variable.len(),
                ),
                None => (s.nonzero, x.len()),
            };
            let changed = s.explanation_class != s.original_class;
            // 'bull mastiff' with labels, else `class 5` / `5`
            let (orig, cls) = (
                names.class(s.original_class),
                names.class_short(s.explanation_class),
            );
            let what = if d.shown == Shown::InputPlusCandidate {
                let only_added = e
                    .outcome
                    .candidate
                    .iter()
                    .all(|v| *v >= -e.support_threshold);
                let verb = if only_added { "adding" } else { "changing" };
                format!("{verb} {n} {unit}")
            } else {
                format!("{n} of {total} {unit}")
            };
            match (e.outcome.valid, d.shown) {
                (Some(false), _) => format!(
                    "{label}: no valid {} found within the budget; the closest candidate ({what}, update {} of round {}) is classified {cls} {budget}",
                    d.name, e.outcome.iteration, e.outcome.round
                ),
                (_, Shown::InputPlusCandidate) if changed => {
                    format!("{label}: {what} turns {orig} into {cls}")
                }
                (_, Shown::InputPlusCandidate) => format!(
                    "{label}: {what} leaves {orig} unchanged — no {} found {budget}",
                    d.name
                ),
                _ if !changed => format!("{label}: {what} keep {orig}"),
                _ => format!(
                    "{label}: {what} are classified {cls}, not {orig} — no {} found {budget}",
                    d.name
                ),
            }
        }
        Shown::Weights => {
            let class = predict_class(model, x.view()).ok().map(|(c, _)| c);
            if let Some(c) = class {
                report.insert("original_class".into(), json!(c));
            }
            // how many weights raise / lower the explained class, and the strongest one
            let w = &e.outcome.variable;
            let unit = if e.segments.is_some() {
                "segments"
            } else {
                "entries"
            };
            let raise = w.iter().filter(|v| **v > e.support_threshold).count();
            let lower = w.iter().filter(|v| **v < -e.support_threshold).count();
            let top = w
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, v)| (i, *v));
            let of = class.map_or_else(|| "the class".to_string(), |c| names.class(c));
            let strongest = match top {
                Some((i, v)) if raise > 0 && e.segments.is_some() => {
                    format!("strongest: segment {i}, weight {v:.3}; ")
                }
                _ => String::new(),
            };
            format!(
                "{label}: {raise} of {} {unit} raise {of}, {lower} lower it ({strongest}fit loss {:.4})",
                w.len(),
                last.map_or(f64::NAN, |r| r.attack_loss)
            )
        }
    };
    report.insert("mode".into(), json!(label));
    Ok(Outcome { report, verdict })
}

/// The values drawn black and white: the PNG pixel range, else the loss's input range, else
/// the MNIST range for bundled images, else the input's own range.
fn display_range(
    pixel_range: Option<[f64; 2]>,
    e: &Explanation,
    source: &Source,
    x: &ArrayD<f64>,
) -> [f64; 2] {
    if let Some(r) = pixel_range {
        return r;
    }
    if let Some([lo, hi]) = e.description.input_range
        && lo < hi
    {
        return [lo, hi];
    }
    if matches!(source, Source::Mnist(_)) {
        return [-0.5, 0.5];
    }
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo < hi {
        [lo, hi]
    } else {
        [lo - 0.5, lo + 0.5]
    }
}

fn npy_bytes(a: &ArrayD<f64>) -> CliResult<Vec<u8>> {
    let mut buf = Vec::new();
    a.write_npy(&mut buf)
        .map_err(|e| CliError::runtime(format!("cannot encode .npy: {e}")))?;
    Ok(buf)
}

fn png(img: &image::RgbImage) -> CliResult<Vec<u8>> {
    render::png_bytes(img).map_err(|e| CliError::runtime(format!("cannot encode PNG: {e}")))
}

/// Writes every output into a staging folder and swaps it in for `--out`.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    mut staging: Staging,
    out: &Path,
    e: &Explanation,
    x: &ArrayD<f64>,
    [lo, hi]: [f64; 2],
    mut report: Map<String, Value>,
    stop: &AtomicBool,
) -> CliResult<Vec<String>> {
    let lay: Option<Layout> = render::layout(x.shape());
    let scale = lay.as_ref().map_or(1, render::display_scale);
    let width = hi - lo;
    let draw_value = |v: f64| (v - lo) / width;
    let reference = e.description.no_info_val;
    let is_input = e.description.shown != Shown::Weights;
    let change = |c: &ArrayD<f64>, l: &Layout| -> Vec<f64> {
        render::hwc(c, l).iter().map(|v| v - reference).collect()
    };
    // Candidates that are inputs are drawn as their change from the no-information value,
    // stretched to be visible (the .npy files hold the values); weights as a signed heat map
    // over the input (per segment, or per pixel: the mean over channels).
    let xs_all = lay.as_ref().map(|l| render::hwc(x, l));
    let draw_candidate = |c: &ArrayD<f64>, l: &Layout| {
        if is_input {
            return render::change_picture(&change(c, l), l, scale);
        }
        let per_pixel: Vec<f64> = render::hwc(c, l)
            .chunks(l.channels)
            .map(|px| px.iter().sum::<f64>() / px.len() as f64)
            .collect();
        let pixels = maxi::ndarray::Array2::from_shape_fn((l.height, l.width), |(r, col)| {
            i32::try_from(r * l.width + col).unwrap_or(0)
        });
        let base = xs_all.as_deref().unwrap_or(&[]);
        render::segment_heatmap(
            base,
            pixels.view(),
            &per_pixel,
            (l, scale, false),
            draw_value,
        )
    };
    staging.write("explanation.npy", &npy_bytes(&e.outcome.candidate)?)?;
    let mut savepoints = Vec::new();
    for (t, c) in &e.savepoints {
        let npy = format!("iter_{t}.npy");
        staging.write(&npy, &npy_bytes(c)?)?;
        let mut entry = json!({"iteration": t, "npy": npy});
        if let Some(l) = &lay {
            let name = format!("iter_{t}.png");
            staging.write(&name, &png(&draw_candidate(c, l))?)?;
            entry["png"] = json!(name);
        }
        savepoints.push(entry);
    }
    if let Some(l) = &lay {
        let last = &e.outcome.candidate;
        let xs = render::hwc(x, l);
        let delta = change(last, l);
        let mut panels = vec![
            render::picture(&xs, l, scale, draw_value),
            draw_candidate(last, l),
        ];
        if e.description.shown == Shown::InputPlusCandidate {
            // x + δ as the model sees it, the added change in red
            let shown = render::hwc(&(x + last), l);
            panels.push(render::overlay(
                &shown,
                &delta,
                l,
                scale,
                1.0,
                [255, 48, 48],
                draw_value,
            ));
        } else if is_input {
            // the kept part in amber over the dimmed input
            panels.push(render::overlay(
                &xs,
                &delta,
                l,
                scale,
                0.4,
                [255, 200, 0],
                draw_value,
            ));
        }
        staging.write("explanation.png", &png(&render::side_by_side(&panels))?)?;
        staging.write("heatmap.png", &png(&render::heatmap(&delta, l, scale))?)?;
        if let Some(labels) = &e.segments {
            staging.write(
                "segments.png",
                &png(&render::boundaries(
                    &xs,
                    labels.view(),
                    l,
                    scale,
                    draw_value,
                ))?,
            )?;
            let weights: Vec<f64> = e.outcome.variable.iter().copied().collect();
            staging.write(
                "weights.png",
                &png(&render::segment_heatmap(
                    &xs,
                    labels.view(),
                    &weights,
                    (l, scale, true),
                    draw_value,
                ))?,
            )?;
        }
    }
    if let Some(labels) = &e.segments {
        // the label map and one weight per segment, for any tool to score
        let mut buf = Vec::new();
        labels
            .write_npy(&mut buf)
            .map_err(|err| CliError::runtime(format!("cannot encode segments.npy: {err}")))?;
        staging.write("segments.npy", &buf)?;
        staging.write("weights.npy", &npy_bytes(&e.outcome.variable)?)?;
        report.insert(
            "segmentation".into(),
            json!({"segments": e.outcome.variable.len(), "labels": "segments.npy", "weights": "weights.npy"}),
        );
    }
    report.insert("savepoints".into(), Value::Array(savepoints));
    let mut files = staging.written().to_vec();
    files.insert(0, "report.json".into());
    report.insert("files".into(), json!(files));
    let mut text = serde_json::to_string_pretty(&Value::Object(report))
        .map_err(|err| CliError::runtime(format!("cannot encode report.json: {err}")))?;
    text.push('\n');
    staging.write("report.json", text.as_bytes())?;
    if stop.load(Ordering::SeqCst) {
        return Err(CliError::interrupted(format!(
            "interrupted while writing; nothing was written to {}",
            out.display()
        )));
    }
    staging.commit()?;
    Ok(files)
}

fn files_line(files: &[String], e: &Explanation) -> String {
    let fixed: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !f.starts_with("iter_"))
        .collect();
    let its: Vec<String> = e.savepoints.keys().map(ToString::to_string).collect();
    let kinds = if files
        .iter()
        .any(|f| f.starts_with("iter_") && f.ends_with(".png"))
    {
        "iter_<n>.npy/.png"
    } else {
        "iter_<n>.npy"
    };
    format!(
        "{}, {kinds} for updates {}",
        fixed.join(", "),
        its.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model: Value) -> Config {
        let v = json!({
            "model": model,
            "loss": {"name": "cem", "mode": "PP"},
            "optimizer": {"name": "ao_exp_grad"},
            "gradient": {"name": "urv"},
        });
        Config::from_value(v, Path::new("c.toml"), PathBuf::from(".")).expect("valid config")
    }

    fn ae() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mnist/mnist_ae.onnx")
    }

    fn load(
        cfg: &Config,
        overrides: ModelOverrides<'_>,
        path: &Path,
    ) -> maxi::Result<Option<usize>> {
        let model = model_loader(cfg, overrides)(path)?;
        Ok(model.input_shape().map(|s| s.iter().product()))
    }

    #[test]
    fn the_autoencoder_is_opened_with_the_threads_of_model_even_without_a_backend() {
        // before: with no backend named, the AE was opened by extension and `threads` was dropped
        let over = ModelOverrides {
            backend: None,
            threads: Some(257),
        };
        let e = load(&config(json!({})), over, &ae()).expect_err("257 threads are refused");
        assert!(e.to_string().contains("at most 256"), "{e}");
        let e = load(
            &config(json!({"threads": 257})),
            ModelOverrides::default(),
            &ae(),
        )
        .expect_err("[model] threads reaches the AE");
        assert!(e.to_string().contains("at most 256"), "{e}");
        let two = ModelOverrides {
            backend: None,
            threads: Some(2),
        };
        assert_eq!(
            load(&config(json!({})), two, &ae()).expect("opens"),
            Some(784)
        );
    }

    #[test]
    fn a_missing_autoencoder_or_an_unknown_extension_is_named() {
        let cfg = config(json!({}));
        let e = load(
            &cfg,
            ModelOverrides::default(),
            Path::new("no/such/ae.onnx"),
        )
        .expect_err("missing");
        assert!(e.to_string().contains("no such file"), "{e}");
        let e = load(&cfg, ModelOverrides::default(), Path::new("Cargo.toml"))
            .expect_err("no backend opens .toml");
        assert!(
            e.to_string().contains("no model backend opens `.toml`"),
            "{e}"
        );
    }
}
