//! `maxi eval`: the quality benchmark. Explains many MNIST test images with one config and
//! re-checks every result independently: the explanation is written to `.npy`, read back and
//! shown to the model again.
//!
//! Printed per config: the valid rate (by the model's class on the saved explanation, and by
//! the loss's own verdict with its margin), for pertinent positives the support faithfulness
//! (the input with every entry outside the explanation's support set to the no-information
//! value keeps the class), median and 90th-percentile sizes, median model rows, wall time per
//! explanation, and with an autoencoder the reconstruction error of the explanations.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use maxi::ndarray::{ArrayD, Axis};
use maxi::serde_json::{Value, json};
use maxi::{Shown, predict_class};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use crate::cli::{EvalArgs, ExplainArgs};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::explain::{build_generator, load_model};
use crate::list::print_stdout;
use crate::progress::{Mode, Progress};

/// One explained image, re-checked.
struct Row {
    index: usize,
    /// The model's class of the saved explanation as shown (PP alone, x + PN) is right.
    valid: bool,
    /// The loss's own verdict (with its margin).
    loss_valid: Option<bool>,
    /// PP: the input restricted to the support keeps the class.
    faithful: Option<bool>,
    size: usize,
    rows: u64,
    wall: f64,
    /// Mean squared AE reconstruction error of the shown explanation (per entry).
    ae_error: Option<f64>,
}

/// Parses `mnist:A..B` (B exclusive) into the image indices.
pub(crate) fn parse_range(s: &str) -> CliResult<std::ops::Range<usize>> {
    let bad = || {
        CliError::usage(format!(
            "--inputs `{s}`: expected mnist:START..END with 0 ≤ START < END ≤ 10000 (e.g. mnist:0..100)"
        ))
    };
    let rest = s.strip_prefix("mnist:").ok_or_else(bad)?;
    let (a, b) = rest.split_once("..").ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if a >= b || b > 10_000 {
        return Err(bad());
    }
    Ok(a..b)
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

/// The `q`-quantile by the nearest-rank rule (`NaN` when empty).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn percent(n: usize, of: usize) -> String {
    if of == 0 {
        return "—".into();
    }
    format!("{:.0} % ({n}/{of})", 100.0 * n as f64 / of as f64)
}

/// Runs `maxi eval`.
pub fn run(args: &EvalArgs) -> CliResult<()> {
    let range = parse_range(&args.inputs)?;
    let cfg = Config::load(&args.config)?;
    let seed = args.seed.or(cfg.generator.seed).unwrap_or(0);
    let progress = Arc::new(Progress::new(Mode::Quiet, Arc::new(AtomicBool::new(false))));
    let overrides = crate::explain::ModelOverrides {
        backend: args.backend.as_deref(),
        threads: args.threads,
    };
    let generator = build_generator(&cfg, seed, progress, overrides)?;
    let explain_args = ExplainArgs {
        config: Some(args.config.clone()),
        model: None,
        input: None,
        out: PathBuf::from("."),
        seed: None,
        quiet: true,
        pixel_range: None,
        backend: args.backend.clone(),
        threads: args.threads,
        batch_size: None,
    };
    let loaded = load_model(&cfg, &explain_args)?;
    let model = loaded.model.clone();
    // the autoencoder of the config's loss, else --ae (to compare configs without one)
    let ae = match (
        generator.config()["loss"].get("AE").and_then(Value::as_str),
        &args.ae,
    ) {
        (Some(path), _) => Some(maxi::registry::load_model_file(&cfg.dir.join(path))?),
        (None, Some(path)) => Some(maxi::registry::load_model_file(path)?),
        (None, None) => None,
    };
    let scratch = std::env::temp_dir().join(format!("maxi-eval-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| CliError::runtime(format!("cannot create {}: {e}", scratch.display())))?;
    let mut rows = Vec::new();
    let mut label = String::new();
    let started = Instant::now();
    for index in range.clone() {
        let x = maxi::mnist::test_image(index)?;
        let t0 = Instant::now();
        let e = generator.run(x.view(), model.clone())?;
        let wall = t0.elapsed().as_secs_f64();
        let d = &e.description;
        label = d.label.clone();
        // the independent re-check: write, read back, show to the model
        let file = scratch.join(format!("{index}.npy"));
        let mut buf = Vec::new();
        e.outcome
            .candidate
            .write_npy(&mut buf)
            .map_err(|err| CliError::runtime(format!("cannot encode .npy: {err}")))?;
        std::fs::write(&file, &buf)
            .map_err(|err| CliError::runtime(format!("cannot write {}: {err}", file.display())))?;
        let saved =
            ArrayD::<f64>::read_npy(std::fs::File::open(&file).map_err(|err| {
                CliError::runtime(format!("cannot read {}: {err}", file.display()))
            })?)
            .map_err(|err| CliError::runtime(format!("cannot read {}: {err}", file.display())))?;
        let (orig, _) = predict_class(model.as_ref(), x.view())?;
        let shown = match d.shown {
            Shown::InputPlusCandidate => &x + &saved,
            _ => saved.clone(),
        };
        let (cls, _) = predict_class(model.as_ref(), shown.view())?;
        let valid = match d.shown {
            Shown::InputPlusCandidate => cls != orig,
            _ => cls == orig,
        };
        let threshold = e.support_threshold;
        let support: Vec<bool> = saved
            .iter()
            .map(|v| (v - d.no_info_val).abs() > threshold)
            .collect();
        let faithful = if d.shown == Shown::Candidate {
            let mut kept = x.clone();
            for (v, keep) in kept.iter_mut().zip(&support) {
                if !keep {
                    *v = d.no_info_val;
                }
            }
            Some(predict_class(model.as_ref(), kept.view())?.0 == orig)
        } else {
            None
        };
        let ae_error = match &ae {
            Some(ae) => {
                let rec = ae.predict(shown.view().insert_axis(Axis(0)))?;
                let n = shown.len().max(1) as f64;
                Some(
                    shown
                        .iter()
                        .zip(rec.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        / n,
                )
            }
            None => None,
        };
        let row = Row {
            index,
            valid,
            loss_valid: e.outcome.valid,
            faithful,
            size: support.iter().filter(|s| **s).count(),
            rows: e.model.rows,
            wall,
            ae_error,
        };
        if !args.quiet {
            eprintln!(
                "image {:>5}: {} valid={} loss_valid={:?} size={} rows={} wall={:.2}s",
                row.index, label, row.valid, row.loss_valid, row.size, row.rows, row.wall
            );
        }
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let n = rows.len();
    let valid = rows.iter().filter(|r| r.valid).count();
    let loss_valid = rows.iter().filter(|r| r.loss_valid == Some(true)).count();
    let faithful: Vec<bool> = rows.iter().filter_map(|r| r.faithful).collect();
    let mut sizes: Vec<f64> = rows.iter().map(|r| r.size as f64).collect();
    let mut valid_sizes: Vec<f64> = rows
        .iter()
        .filter(|r| r.valid)
        .map(|r| r.size as f64)
        .collect();
    let mut model_rows: Vec<f64> = rows.iter().map(|r| r.rows as f64).collect();
    let mut walls: Vec<f64> = rows.iter().map(|r| r.wall).collect();
    let mut ae: Vec<f64> = rows.iter().filter_map(|r| r.ae_error).collect();
    let table = format!(
        "| config | images | valid (re-checked) | valid (loss, margin K) | faithful | size median | size p90 | size median (valid) | rows median | rows max | wall/explanation | AE error median |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n\
         | {} ({label}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s | {} |\n",
        args.config.display(),
        args.inputs,
        percent(valid, n),
        percent(loss_valid, n),
        if faithful.is_empty() {
            "—".into()
        } else {
            percent(faithful.iter().filter(|f| **f).count(), faithful.len())
        },
        median(&mut sizes),
        quantile(&mut sizes, 0.9),
        median(&mut valid_sizes),
        median(&mut model_rows),
        model_rows.iter().copied().fold(0.0f64, f64::max),
        median(&mut walls),
        if ae.is_empty() {
            "—".into()
        } else {
            format!("{:.4}", median(&mut ae))
        },
    );
    let mut text = table;
    text.push_str(&format!(
        "{n} explanations in {:.1} s, seed {seed}\n",
        started.elapsed().as_secs_f64()
    ));
    if let Some(path) = &args.json {
        let per_image: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"index": r.index, "valid": r.valid, "loss_valid": r.loss_valid,
                       "faithful": r.faithful, "size": r.size, "rows": r.rows,
                       "wall_s": r.wall, "ae_error": r.ae_error})
            })
            .collect();
        let body = maxi::serde_json::to_string_pretty(&json!({
            "config": args.config.display().to_string(),
            "inputs": args.inputs,
            "seed": seed,
            "images": per_image,
        }))
        .map_err(|e| CliError::runtime(format!("cannot encode JSON: {e}")))?;
        std::fs::write(path, body + "\n")
            .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    print_stdout(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_quantiles() {
        assert_eq!(parse_range("mnist:0..100").expect("range"), 0..100);
        assert!(parse_range("mnist:5..5").is_err());
        assert!(parse_range("mnist:0..10001").is_err());
        assert!(parse_range("0..3").is_err());
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median(&mut v), 3.0);
        assert_eq!(quantile(&mut v, 0.9), 5.0);
        let mut ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&mut ten, 0.9), 9.0);
    }
}
