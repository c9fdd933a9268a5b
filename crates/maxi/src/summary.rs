//! A one-look summary of a CEM explanation: classes, sparsity and cost.

use maxi_core::ndarray::{ArrayD, ArrayViewD};
use maxi_core::{Explanation, MaxiError, Model, Result, predict_class};
use serde::Serialize;

/// Entries whose change exceeds this count as part of the explanation.
pub const NONZERO_THRESHOLD: f64 = 1e-3;

/// What a CEM explanation shows and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CemSummary {
    /// `PP` or `PN` (smooth modes included).
    pub mode: String,
    /// Class of the original input.
    pub original_class: usize,
    /// Class of the PP alone, or of `x + PN`.
    pub explanation_class: usize,
    /// Entries that differ from the no-information value (PP) or from `x` (PN) by > 1e-3.
    pub nonzero: usize,
    /// `‖·‖₁` of the same difference.
    pub l1: f64,
    /// Loss at the final iterate.
    pub attack_loss: f64,
    /// Rows sent to the explained model.
    pub model_rows: u64,
    /// Calls made to the explained model.
    pub model_calls: u64,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
    /// Seconds spent in the explained model.
    pub model_s: f64,
}

/// The image a CEM explanation shows to the model: the PP itself, or `x + PN`.
pub fn shown_input(e: &Explanation, x: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
    let last = e
        .final_candidate()
        .ok_or_else(|| MaxiError::Other("the explanation has no savepoint".into()))?;
    Ok(if is_pn(e) { &x + last } else { last.clone() })
}

fn is_pn(e: &Explanation) -> bool {
    e.config["loss"]["mode"]
        .as_str()
        .is_some_and(|m| m.starts_with("PN"))
}

/// Summarises a CEM explanation of `x` by `model`.
pub fn cem_summary(
    e: &Explanation,
    x: ArrayViewD<'_, f64>,
    model: &dyn Model,
) -> Result<CemSummary> {
    let last = e
        .final_candidate()
        .ok_or_else(|| MaxiError::Other("the explanation has no savepoint".into()))?;
    let (original_class, _) = predict_class(model, x.view())?;
    let shown = shown_input(e, x.view())?;
    let (explanation_class, _) = predict_class(model, shown.view())?;
    let reference = if is_pn(e) {
        0.0
    } else {
        e.config["loss"]["no_info_val"].as_f64().unwrap_or(0.0)
    };
    let diffs: Vec<f64> = last.iter().map(|v| (v - reference).abs()).collect();
    Ok(CemSummary {
        mode: e.config["loss"]["mode"].as_str().unwrap_or("?").to_string(),
        original_class,
        explanation_class,
        nonzero: diffs.iter().filter(|d| **d > NONZERO_THRESHOLD).count(),
        l1: diffs.iter().sum(),
        attack_loss: e.last_record().map_or(f64::NAN, |r| r.attack_loss),
        model_rows: e.model.rows,
        model_calls: e.model.calls,
        wall_s: e.wall_seconds,
        model_s: e.model.seconds,
    })
}
