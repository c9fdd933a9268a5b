//! The problem an optimiser works on: a loss plus evaluation bookkeeping.

use std::cell::{Cell, RefCell};

use ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD, Axis};

use crate::error::{MaxiError, Result};
use crate::loss::{Bounds, Loss};

/// A loss as seen by gradients and optimisers: validated, counted batch evaluations, and a
/// one-point memo so that the value at a gradient's base point is reused for the step record.
pub struct Problem {
    loss: Box<dyn Loss>,
    shape: Vec<usize>,
    rows: Cell<u64>,
    memo: RefCell<Option<(ArrayD<f64>, f64)>>,
}

impl Problem {
    /// Wraps `loss` for variables of the given item shape.
    pub fn new(loss: Box<dyn Loss>, shape: Vec<usize>) -> Self {
        Problem {
            loss,
            shape,
            rows: Cell::new(0),
            memo: RefCell::new(None),
        }
    }

    /// Item shape of the variable.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of entries of one item (`d`).
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// The loss's box.
    pub fn bounds(&self) -> &Bounds {
        self.loss.bounds()
    }

    /// The underlying loss.
    pub fn loss(&self) -> &dyn Loss {
        self.loss.as_ref()
    }

    /// Loss rows evaluated so far.
    pub fn loss_rows(&self) -> u64 {
        self.rows.get()
    }

    /// Loss values of a batch `[B, ...item]`, checked for length and finiteness.
    pub fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        self.check_shape(batch.shape())?;
        let b = batch.shape()[0];
        let values = self.loss.eval_batch(batch)?;
        self.checked(b, values)
    }

    /// [`Problem::eval_batch`] on a batch the caller no longer needs: the loss may overwrite
    /// it (see [`Loss::eval_batch_mut`]).
    pub fn eval_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Array1<f64>> {
        self.check_shape(batch.shape())?;
        let b = batch.shape()[0];
        let values = self.loss.eval_batch_mut(batch)?;
        self.checked(b, values)
    }

    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if shape.len() != self.shape.len() + 1 || shape[1..] != self.shape[..] {
            return Err(MaxiError::Other(format!(
                "loss evaluated on shape {shape:?}; expected [B, {:?}]",
                self.shape
            )));
        }
        Ok(())
    }

    /// Counts the rows and checks the loss's answer for a batch of `b` rows.
    fn checked(&self, b: usize, values: Array1<f64>) -> Result<Array1<f64>> {
        self.rows.set(self.rows.get() + b as u64);
        if values.len() != b {
            return Err(MaxiError::Other(format!(
                "loss returned {} values for a batch of {b}",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(MaxiError::Other(format!(
                "loss value {} is not finite (row {i} of a batch of {b})",
                values[i]
            )));
        }
        Ok(values)
    }

    /// Loss value at one point (from the memo when it holds that point).
    pub fn eval(&self, y: ArrayViewD<'_, f64>) -> Result<f64> {
        if let Some(v) = self.cached(y.view()) {
            return Ok(v);
        }
        let v = self.eval_batch(y.view().insert_axis(Axis(0)))?[0];
        self.remember(y, v);
        Ok(v)
    }

    /// Loss at `base` and at every row of `others` (`[q, ...item]`) in one batched call.
    pub fn eval_with_base(
        &self,
        base: ArrayViewD<'_, f64>,
        others: ArrayViewD<'_, f64>,
    ) -> Result<(f64, Array1<f64>)> {
        let base_row = base.view().insert_axis(Axis(0));
        let all = ndarray::concatenate(Axis(0), &[base_row, others.view()])
            .map_err(|e| MaxiError::Other(format!("cannot stack base and perturbations: {e}")))?;
        let values = self.eval_batch(all.view())?;
        let base_value = values[0];
        self.remember(base, base_value);
        Ok((base_value, values.slice(ndarray::s![1..]).to_owned()))
    }

    /// Loss values of a batch whose first row is the base point of an estimate, on a batch
    /// the caller no longer needs: the loss may overwrite it (see [`Loss::eval_batch_mut`]).
    /// The base value is remembered for the step record (before the loss can overwrite the
    /// row). Saves the copy that [`Problem::eval_with_base`] makes.
    pub fn eval_with_base_row_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Array1<f64>> {
        if batch.ndim() == 0 || batch.shape()[0] == 0 {
            return Err(MaxiError::Other(
                "eval_with_base_row_mut needs at least the base row".into(),
            ));
        }
        let base = batch.index_axis(Axis(0), 0).to_owned();
        let values = self.eval_batch_mut(batch)?;
        *self.memo.borrow_mut() = Some((base, values[0]));
        Ok(values)
    }

    /// Records the loss value at a point for later reuse.
    pub fn remember(&self, y: ArrayViewD<'_, f64>, value: f64) {
        *self.memo.borrow_mut() = Some((y.to_owned(), value));
    }

    /// The remembered value at exactly this point, if any.
    pub fn cached(&self, y: ArrayViewD<'_, f64>) -> Option<f64> {
        let memo = self.memo.borrow();
        match memo.as_ref() {
            Some((p, v)) if p.view() == y => Some(*v),
            _ => None,
        }
    }

    /// The loss's exact gradient, if it has one.
    pub fn analytic_gradient(&self, y: ArrayViewD<'_, f64>) -> Option<Result<ArrayD<f64>>> {
        self.loss.gradient(y)
    }
}
