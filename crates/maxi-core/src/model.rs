//! The model contract: anything that maps a batch of inputs to a batch of outputs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD};

use crate::error::{MaxiError, Result};

/// A black-box model queried in batches.
///
/// `predict` receives `[B, ...item]` and returns an array whose first axis is `B`: class scores
/// `[B, classes]` for a classifier, `[B, ...item]` for an autoencoder.
pub trait Model: Send + Sync {
    /// Outputs for a batch of inputs.
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>>;

    /// Short human-readable name used in errors and reports.
    fn describe(&self) -> String {
        "model".to_string()
    }

    /// The item shape the model expects (without the batch axis), when known.
    fn input_shape(&self) -> Option<Vec<usize>> {
        None
    }
}

/// A [`Model`] made from a closure.
pub struct FnModel<F> {
    f: F,
    name: String,
}

impl<F> FnModel<F>
where
    F: Fn(ArrayViewD<'_, f64>) -> ArrayD<f64> + Send + Sync,
{
    /// Wraps `f` as a model named `name`.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnModel {
            f,
            name: name.into(),
        }
    }
}

impl<F> Model for FnModel<F>
where
    F: Fn(ArrayViewD<'_, f64>) -> ArrayD<f64> + Send + Sync,
{
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        Ok((self.f)(batch))
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Wraps a closure as a shared model.
pub fn model_fn<F>(name: impl Into<String>, f: F) -> Arc<dyn Model>
where
    F: Fn(ArrayViewD<'_, f64>) -> ArrayD<f64> + Send + Sync + 'static,
{
    Arc::new(FnModel::new(name, f))
}

/// Usage counters of a [`CountingModel`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ModelStats {
    /// Rows (items) sent to the model.
    pub rows: u64,
    /// Calls made to the model.
    pub calls: u64,
    /// Seconds spent inside the model.
    pub seconds: f64,
}

/// A model wrapper that counts rows, calls and time, and checks every output
/// (batch axis, finiteness) before anything else sees it.
pub struct CountingModel {
    inner: Arc<dyn Model>,
    rows: AtomicU64,
    calls: AtomicU64,
    nanos: AtomicU64,
}

impl CountingModel {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Model>) -> Self {
        CountingModel {
            inner,
            rows: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ModelStats {
        ModelStats {
            rows: self.rows.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }
}

impl Model for CountingModel {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        let b = batch.shape().first().copied().unwrap_or(0);
        let start = Instant::now();
        let out = self.inner.predict(batch)?;
        self.nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.rows.fetch_add(b as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        if out.ndim() == 0 || out.shape()[0] != b {
            return Err(MaxiError::ModelRun {
                model: self.inner.describe(),
                message: format!(
                    "returned shape {:?} for a batch of {b}; the first axis must be the batch",
                    out.shape()
                ),
            });
        }
        if let Some(pos) = out.iter().position(|v| !v.is_finite()) {
            return Err(MaxiError::ModelRun {
                model: self.inner.describe(),
                message: format!(
                    "returned a non-finite value ({}) at flat index {pos} of its output",
                    out.iter().nth(pos).copied().unwrap_or(f64::NAN)
                ),
            });
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        self.inner.input_shape()
    }
}

/// The class with the highest score for one item (no batch axis), with the scores.
pub fn predict_class(model: &dyn Model, x: ArrayViewD<'_, f64>) -> Result<(usize, Vec<f64>)> {
    let out = model.predict(x.insert_axis(ndarray::Axis(0)))?;
    if out.ndim() != 2 || out.shape()[0] != 1 || out.shape()[1] == 0 {
        return Err(MaxiError::ModelRun {
            model: model.describe(),
            message: format!(
                "expected class scores [1, classes], got shape {:?}",
                out.shape()
            ),
        });
    }
    let scores: Vec<f64> = out.iter().copied().collect();
    let best = scores
        .iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
        )
        .0;
    Ok((best, scores))
}

/// One worker per available core (1 when that cannot be told): the default thread count of
/// model backends.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}
