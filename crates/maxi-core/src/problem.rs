//! The problem gradients and optimisers work on: a loss over a variable space, with checked,
//! counted batch evaluations.

use std::cell::Cell;
use std::sync::Arc;

use ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD, Axis};

use crate::error::{MaxiError, Result};
use crate::loss::{Assessed, Bounds, Evaluation, Loss};
use crate::space::{Identity, VariableSpace};

/// A loss as seen by gradients and optimisers: its variable space and checked, counted batch
/// evaluations.
pub struct Problem {
    loss: Box<dyn Loss>,
    space: Arc<dyn VariableSpace>,
    rows: Cell<u64>,
}

impl Problem {
    /// Wraps `loss` over `space`.
    pub fn new(loss: Box<dyn Loss>, space: Arc<dyn VariableSpace>) -> Self {
        Problem {
            loss,
            space,
            rows: Cell::new(0),
        }
    }

    /// Wraps `loss` over the identity space of variables shaped `shape`.
    pub fn identity(loss: Box<dyn Loss>, shape: &[usize]) -> Self {
        Self::new(loss, Arc::new(Identity::new(shape)))
    }

    /// Shape of the variable.
    pub fn shape(&self) -> &[usize] {
        self.space.shape()
    }

    /// Number of entries of the variable (`d`).
    pub fn dim(&self) -> usize {
        self.shape().iter().product()
    }

    /// The variable space.
    pub fn space(&self) -> &Arc<dyn VariableSpace> {
        &self.space
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

    /// Loss values of a batch `[B, ...shape]`, checked for length and finiteness.
    pub fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        self.check_shape(batch.shape())?;
        let b = batch.shape()[0];
        let values = self.loss.eval_batch(batch)?;
        self.checked(b, Evaluation::values(values))
            .map(|e| e.values)
    }

    /// [`Problem::eval_batch`] on a batch the caller no longer needs: the loss may overwrite
    /// it (see [`Loss::eval_batch_mut`]).
    pub fn eval_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Array1<f64>> {
        self.check_shape(batch.shape())?;
        let b = batch.shape()[0];
        let values = self.loss.eval_batch_mut(batch)?;
        self.checked(b, Evaluation::values(values))
            .map(|e| e.values)
    }

    /// Values and verdicts of a batch the caller no longer needs (see
    /// [`Loss::assess_batch_mut`]), checked for length and finiteness.
    pub fn assess_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Evaluation> {
        self.check_shape(batch.shape())?;
        let b = batch.shape()[0];
        let e = self.loss.assess_batch_mut(batch)?;
        self.checked(b, e)
    }

    /// The loss at `base` and at every row of `others` (`[q, ...shape]`), in one batched
    /// evaluation: the base's value and verdict, and the others' values.
    pub fn eval_with_base(
        &self,
        base: ArrayViewD<'_, f64>,
        others: ArrayViewD<'_, f64>,
    ) -> Result<(Assessed, Array1<f64>)> {
        let mut all = ndarray::concatenate(Axis(0), &[base.insert_axis(Axis(0)), others.view()])
            .map_err(|e| MaxiError::Other(format!("cannot stack base and perturbations: {e}")))?;
        let e = self.assess_batch_mut(all.view_mut())?;
        let base_value = e.at(0);
        Ok((base_value, e.values.slice(ndarray::s![1..]).to_owned()))
    }

    /// Loss value and verdict at one point (one row).
    pub fn assess(&self, v: ArrayViewD<'_, f64>) -> Result<Assessed> {
        let mut row = v.insert_axis(Axis(0)).to_owned();
        Ok(self.assess_batch_mut(row.view_mut())?.at(0))
    }

    /// Loss value at one point (one row).
    pub fn eval(&self, v: ArrayViewD<'_, f64>) -> Result<f64> {
        Ok(self.eval_batch(v.insert_axis(Axis(0)))?[0])
    }

    /// The loss's exact gradient, if it has one.
    pub fn analytic_gradient(&self, v: ArrayViewD<'_, f64>) -> Option<Result<ArrayD<f64>>> {
        self.loss.gradient(v)
    }

    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        let item = self.shape();
        if shape.len() != item.len() + 1 || shape[1..] != item[..] {
            return Err(MaxiError::Other(format!(
                "loss evaluated on shape {shape:?}; expected [B, {item:?}]"
            )));
        }
        Ok(())
    }

    /// Counts the rows and checks the loss's answer for a batch of `b` rows.
    fn checked(&self, b: usize, e: Evaluation) -> Result<Evaluation> {
        self.rows.set(self.rows.get() + b as u64);
        if e.values.len() != b {
            return Err(MaxiError::Other(format!(
                "loss returned {} values for a batch of {b}",
                e.values.len()
            )));
        }
        if let Some(valid) = &e.valid
            && valid.len() != b
        {
            return Err(MaxiError::Other(format!(
                "loss returned {} verdicts for a batch of {b}",
                valid.len()
            )));
        }
        if let Some(i) = e.values.iter().position(|v| !v.is_finite()) {
            return Err(MaxiError::Other(format!(
                "loss value {} is not finite (row {i} of a batch of {b})",
                e.values[i]
            )));
        }
        Ok(e)
    }
}
