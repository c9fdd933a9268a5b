//! The loss contract: the explanation objective that the optimiser minimises.

use ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD};

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
                    "lower bound has shape {:?} but upper bound has shape {:?}; give both the input's shape",
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

/// An explanation objective over the optimiser's variable `y` (shaped like the input).
pub trait Loss: Send {
    /// Loss values for a batch of variables `[B, ...item]` → `B` values.
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>>;

    /// [`Loss::eval_batch`] on a batch the caller no longer needs: the loss may overwrite it
    /// (e.g. shift it in place rather than into a copy). Must return the same values as
    /// `eval_batch` on the original batch; the default calls `eval_batch`.
    fn eval_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Array1<f64>> {
        self.eval_batch(batch.view())
    }

    /// Box constraints on the variable.
    fn bounds(&self) -> &Bounds;

    /// The variable the optimiser starts from.
    fn start(&self) -> ArrayD<f64>;

    /// Maps a variable to the explanation shown to users (e.g. adds the no-information value).
    fn candidate(&self, y: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        y.to_owned()
    }

    /// The exact gradient at `y`, for losses that have one in closed form.
    fn gradient(&self, _y: ArrayViewD<'_, f64>) -> Option<Result<ArrayD<f64>>> {
        None
    }
}
