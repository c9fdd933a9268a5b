//! A one-look summary of an explanation: classes, size and cost, read from the explanation's
//! own [`Description`](maxi_core::Description).

use maxi_core::ndarray::{ArrayD, ArrayViewD};
use maxi_core::{Explanation, MaxiError, Model, Result, Shown, predict_class};
use serde::Serialize;

/// What an explanation shows and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The explanation's short label (e.g. `PP`, `PN`).
    pub mode: String,
    /// Class of the original input.
    pub original_class: usize,
    /// Class of what the explanation shows the model (the PP alone, `x + PN`).
    pub explanation_class: usize,
    /// Entries whose candidate differs from the no-information value by more than the
    /// explanation's support threshold.
    pub nonzero: usize,
    /// `‖·‖₁` of the same difference.
    pub l1: f64,
    /// Loss at the outcome.
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

/// The input an explanation's outcome shows to the model: the candidate itself, or
/// `x + candidate`. Explanations whose candidates are weights (not inputs) show nothing: an
/// error.
pub fn shown_input(e: &Explanation, x: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
    let last = &e.outcome.candidate;
    match e.description.shown {
        Shown::Candidate => Ok(last.clone()),
        Shown::InputPlusCandidate => Ok(&x + last),
        Shown::Weights => Err(MaxiError::Other(format!(
            "a {} explanation is a weight per entry, not an input the model can be shown",
            e.description.name
        ))),
    }
}

/// Summarises the outcome of an explanation of `x` by `model` whose candidates are inputs
/// (e.g. CEM).
pub fn summarize(e: &Explanation, x: ArrayViewD<'_, f64>, model: &dyn Model) -> Result<Summary> {
    let last = &e.outcome.candidate;
    let (original_class, _) = predict_class(model, x.view())?;
    let shown = shown_input(e, x.view())?;
    let (explanation_class, _) = predict_class(model, shown.view())?;
    let reference = e.description.no_info_val;
    let diffs: Vec<f64> = last.iter().map(|v| (v - reference).abs()).collect();
    Ok(Summary {
        mode: e.description.label.clone(),
        original_class,
        explanation_class,
        nonzero: diffs.iter().filter(|d| **d > e.support_threshold).count(),
        l1: diffs.iter().sum(),
        attack_loss: e.outcome.loss,
        model_rows: e.model.rows,
        model_calls: e.model.calls,
        wall_s: e.wall_seconds,
        model_s: e.model.seconds,
    })
}
