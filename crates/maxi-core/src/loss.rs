//! The loss contract: the explanation objective that the optimiser minimises, and what the
//! explanation is.

use ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD};
use serde::Serialize;

use crate::error::{MaxiError, Result};

/// Elementwise box constraints on the optimiser's variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    lower: ArrayD<f64>,
    upper: ArrayD<f64>,
}

impl Bounds {
    /// Checks that both arrays have the same shape, no NaN, and `lower <= upper` everywhere.
    pub fn new(lower: ArrayD<f64>, upper: ArrayD<f64>) -> Result<Self> {
        if lower.shape() != upper.shape() {
            return Err(MaxiError::input(
                "bounds",
                format!(
                    "lower bound has shape {:?} but upper bound has shape {:?}; give both the variable's shape",
                    lower.shape(),
                    upper.shape()
                ),
            ));
        }
        for (i, (l, u)) in lower.iter().zip(upper.iter()).enumerate() {
            if l.is_nan() || u.is_nan() {
                return Err(MaxiError::input(
                    "bounds",
                    format!("NaN bound at flat index {i}"),
                ));
            }
            if l > u {
                return Err(MaxiError::input(
                    "bounds",
                    format!("lower bound {l} > upper bound {u} at flat index {i}"),
                ));
            }
        }
        Ok(Bounds { lower, upper })
    }

    /// Unbounded box of the given shape.
    pub fn unbounded(shape: &[usize]) -> Self {
        Bounds {
            lower: ArrayD::from_elem(shape, f64::NEG_INFINITY),
            upper: ArrayD::from_elem(shape, f64::INFINITY),
        }
    }

    /// Lower bounds.
    pub fn lower(&self) -> &ArrayD<f64> {
        &self.lower
    }

    /// Upper bounds.
    pub fn upper(&self) -> &ArrayD<f64> {
        &self.upper
    }

    /// Projects `y` onto the box in place.
    pub fn clip(&self, y: &mut ArrayD<f64>) {
        ndarray::Zip::from(y)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|v, &l, &u| *v = v.clamp(l, u));
    }
}

/// Loss values of a batch and, for losses that can tell, whether each row is a valid
/// explanation (e.g. a pertinent positive that keeps the class).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// One loss value per row.
    pub values: Array1<f64>,
    /// One verdict per row, or `None` when the loss cannot tell.
    pub valid: Option<Vec<bool>>,
}

impl Evaluation {
    /// Values without verdicts.
    pub fn values(values: Array1<f64>) -> Self {
        Evaluation {
            values,
            valid: None,
        }
    }

    /// Row `i`'s value and verdict.
    pub fn at(&self, i: usize) -> Assessed {
        Assessed {
            value: self.values[i],
            valid: self.valid.as_ref().and_then(|v| v.get(i).copied()),
        }
    }
}

/// The loss value at one point and, when the loss can tell, whether it is a valid explanation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assessed {
    /// `L(v)`.
    pub value: f64,
    /// Whether `v` is a valid explanation (`None`: the loss cannot tell).
    pub valid: Option<bool>,
}

/// How a candidate relates to what the model is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// The candidate alone is shown (e.g. a pertinent positive).
    Candidate,
    /// The input plus the candidate is shown (e.g. a pertinent negative).
    InputPlusCandidate,
    /// The candidate is not an input but a weight per entry (e.g. LIME coefficients).
    Weights,
}

/// What an explanation is, supplied by its loss: used by reports, summaries and the CLI
/// instead of reading the loss's kwargs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    /// Short label, e.g. `PP`.
    pub label: String,
    /// What it is, e.g. `pertinent positive`.
    pub name: String,
    /// How the candidate is shown to the model.
    pub shown: Shown,
    /// The candidate value that carries no information: an entry is part of the explanation
    /// when its candidate value differs from this (PP: the background; PN: 0, no change).
    pub no_info_val: f64,
    /// The class the explanation is about (`argmax f(x)`), when the loss knows it.
    pub class: Option<usize>,
    /// The model's valid input range `[low, high]`, when the loss knows it (used to draw
    /// inputs).
    pub input_range: Option<[f64; 2]>,
    /// The loss's value at a valid explanation apart from its penalty terms (CEM: `−c·K`), so
    /// that valid explanations from runs with different weights rank by their penalties; 0
    /// when the loss has no such part.
    pub attack_floor: f64,
}

impl Description {
    /// A description for a loss that says nothing more: candidates are shown as they are.
    pub fn generic(label: impl Into<String>) -> Self {
        let label = label.into();
        Description {
            name: label.clone(),
            label,
            shown: Shown::Candidate,
            no_info_val: 0.0,
            class: None,
            input_range: None,
            attack_floor: 0.0,
        }
    }
}

/// An explanation objective over the optimiser's variable `v` (see
/// [`VariableSpace`](crate::space::VariableSpace)).
pub trait Loss: Send {
    /// Loss values for a batch of variables `[B, ...shape]` → `B` values.
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>>;

    /// [`Loss::eval_batch`] on a batch the caller no longer needs: the loss may overwrite it
    /// (e.g. shift it in place rather than into a copy). Must return the same values as
    /// `eval_batch` on the original batch; the default calls `eval_batch`.
    fn eval_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Array1<f64>> {
        self.eval_batch(batch.view())
    }

    /// Values and, when the loss can tell, validity of a batch the caller no longer needs
    /// (the loss may overwrite it). The default gives [`Loss::eval_batch_mut`]'s values and no
    /// verdicts.
    fn assess_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Evaluation> {
        Ok(Evaluation::values(self.eval_batch_mut(batch)?))
    }

    /// Box constraints on the variable.
    fn bounds(&self) -> &Bounds;

    /// The variable the optimiser starts from.
    fn start(&self) -> ArrayD<f64>;

    /// Maps a variable to the explanation shown to users, in the input's shape (e.g. adds the
    /// no-information value). The default returns the variable itself.
    fn candidate(&self, v: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        v.to_owned()
    }

    /// Forms of the iterate `v` with the entries it uses at full strength (e.g. a pertinent
    /// positive's support at the input's own values), sparsest first. A run prefers the
    /// first that is valid too: such an explanation is faithful to its support. `threshold`
    /// is the magnitude above which an entry counts as used. The default: none.
    fn full_strength(&self, _v: ArrayViewD<'_, f64>, _threshold: f64) -> Vec<ArrayD<f64>> {
        Vec::new()
    }

    /// What the explanation is.
    fn describe(&self) -> Description {
        Description::generic("loss")
    }

    /// The exact gradient at `v`, for losses that have one in closed form.
    fn gradient(&self, _v: ArrayViewD<'_, f64>) -> Option<Result<ArrayD<f64>>> {
        None
    }
}
