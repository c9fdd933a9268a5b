//! maxi's errors as Python exceptions: usage errors (names, kwargs, settings, inputs, files)
//! become `ValueError`, failures while running `RuntimeError`; an exception raised by a Python
//! model is re-raised as it is, with its traceback.

use std::sync::{Arc, Mutex};

use maxi::{Kind, MaxiError};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The first exception a Python model raised during a run, kept to be re-raised as is.
#[derive(Clone, Default)]
pub struct Failure(Arc<Mutex<Option<PyErr>>>);

impl Failure {
    /// Keeps `err` unless an earlier one is kept.
    pub fn keep(&self, err: PyErr) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(err);
        }
    }

    /// The kept exception, if any (and forgets it).
    pub fn take(&self) -> Option<PyErr> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// True when an exception is kept.
    pub fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

/// The accepted kwargs of component `name` of `kind`, for messages.
fn accepted_kwargs(kind: Kind, name: &str) -> Option<Vec<String>> {
    let registry = maxi::registry::global().ok()?;
    let metas = registry.metas(Some(kind));
    let meta = metas.iter().find(|m| m.matches(name))?;
    Some(meta.accepted_kwargs())
}

/// A Python exception for a maxi error.
pub fn to_py(err: MaxiError) -> PyErr {
    let message = match &err {
        MaxiError::InvalidKwarg {
            kind, component, ..
        } => match accepted_kwargs(*kind, component) {
            Some(accepted) => format!("{err}; accepted kwargs: {}", accepted.join(", ")),
            None => err.to_string(),
        },
        _ => err.to_string(),
    };
    if err.is_usage() {
        PyValueError::new_err(message)
    } else {
        PyRuntimeError::new_err(message)
    }
}

/// The Python exception for a failed run: the Python model's own exception if one raised,
/// else the maxi error.
pub fn run_failed(err: MaxiError, failure: &Failure) -> PyErr {
    match failure.take() {
        Some(py_err) => py_err,
        None => to_py(err),
    }
}
