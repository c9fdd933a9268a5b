//! Models from Python: any callable on a batch (`PyCallableModel`), and maxi's own backends
//! (ONNX through tract or ONNX Runtime) as a Python object (`Model`) that runs without the GIL.

use std::path::PathBuf;
use std::sync::Arc;

use maxi::Kwargs;
use maxi::ndarray::{ArrayD, ArrayViewD};
use maxi::{MaxiError, Model as MaxiModel};
use numpy::{PyArray1, PyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{Float, to_array, to_json, to_numpy};
use crate::errors::{Failure, to_py};

/// A Python callable as a maxi model: called with the GIL held on a numpy batch `[B, ...]`
/// (float32 when the explained image is float32, else float64); its result goes through
/// `numpy.asarray` and must have `B` rows of finite numbers.
pub struct PyCallableModel {
    callable: Py<PyAny>,
    name: String,
    role: &'static str,
    float: Float,
    failure: Failure,
}

impl PyCallableModel {
    /// Wraps `callable`; `role` names it in messages (`inference_call`, `AE`).
    pub fn new(
        callable: &Bound<'_, PyAny>,
        role: &'static str,
        float: Float,
        failure: Failure,
    ) -> Self {
        let name = callable
            .getattr("__qualname__")
            .or_else(|_| callable.getattr("__name__"))
            .and_then(|n| n.extract::<String>())
            .unwrap_or_else(|_| {
                callable
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "callable".into())
            });
        PyCallableModel {
            callable: callable.clone().unbind(),
            name,
            role,
            float,
            failure,
        }
    }

    fn error(&self, message: String) -> MaxiError {
        MaxiError::ModelRun {
            model: self.describe(),
            message,
        }
    }

    fn call(&self, py: Python<'_>, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>, MaxiError> {
        let rows = batch.shape().first().copied().unwrap_or(0);
        let input = batch_to_numpy(py, batch.view(), self.float)
            .map_err(|e| self.error(format!("the batch could not be handed to Python: {e}")))?;
        let raised = |e: PyErr| {
            let what = e.to_string();
            self.failure.keep(e);
            self.error(format!("raised {what}"))
        };
        let out = self.callable.bind(py).call1((input,)).map_err(raised)?;
        let (out, _) = to_array(&out, &format!("the result of {}", self.role)).map_err(raised)?;
        if out.ndim() < 2 || out.shape()[0] != rows {
            return Err(self.error(format!(
                "returned shape {:?} for a batch of shape {:?}; {} must map a batch [B, ...] to \
                 an array with B rows (scores [B, classes] for a classifier)",
                out.shape(),
                batch.shape(),
                self.role
            )));
        }
        if let Some(pos) = out.iter().position(|v| !v.is_finite()) {
            let cols = out.len() / rows.max(1);
            return Err(self.error(format!(
                "returned a non-finite value ({}) in row {} (flat index {pos}) of its output; {} \
                 must return finite numbers",
                out.iter().nth(pos).copied().unwrap_or(f64::NAN),
                pos / cols.max(1),
                self.role
            )));
        }
        Ok(out)
    }
}

/// A batch as a new numpy array of `float`, copied in one pass (ndarray's element-wise path
/// for dynamic dimensions is several times slower than a slice copy).
fn batch_to_numpy<'py>(
    py: Python<'py>,
    batch: ArrayViewD<'_, f64>,
    float: Float,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = batch.shape().to_vec();
    let flat = match (batch.as_slice(), float) {
        (Some(s), Float::F64) => PyArray1::from_slice(py, s).into_any(),
        (Some(s), Float::F32) => {
            PyArray1::from_vec(py, s.iter().map(|&v| v as f32).collect()).into_any()
        }
        (None, Float::F64) => PyArrayDyn::from_array(py, &batch).into_any(),
        (None, Float::F32) => PyArrayDyn::from_owned_array(py, batch.mapv(|v| v as f32)).into_any(),
    };
    flat.call_method1("reshape", (shape,))
}

impl MaxiModel for PyCallableModel {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> maxi::Result<ArrayD<f64>> {
        if self.failure.is_set() {
            return Err(self.error("an earlier call raised an exception".into()));
        }
        Python::attach(|py| self.call(py, batch))
    }

    fn describe(&self) -> String {
        format!("{} (Python callable `{}`)", self.role, self.name)
    }
}

/// A model run by maxi itself (no GIL): an ONNX file through tract (`onnx`) or ONNX Runtime
/// (`onnxruntime`), or a model a plugin registered.
#[pyclass(name = "Model", module = "maxi", frozen)]
pub struct PyModel {
    pub(crate) inner: Arc<dyn MaxiModel>,
}

/// Loads `path` with `backend` (or the backend registered for its extension) and `kwargs`.
pub fn load(
    path: PathBuf,
    backend: Option<&str>,
    kwargs: Kwargs,
) -> maxi::Result<Arc<dyn MaxiModel>> {
    let registry = maxi::registry::global()?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    // the Python way to name a backend, for an existing file no backend opens
    if backend.is_none() && path.is_file() && registry.model_for_extension(ext).is_none() {
        return Err(MaxiError::ModelLoad {
            path: path.display().to_string(),
            message: format!(
                "no model backend opens `.{ext}` files; name one with backend=... (see maxi.list_components('model'))"
            ),
        });
    }
    registry.open_model(&path, backend, kwargs)
}

#[pymethods]
impl PyModel {
    /// Loads a model file: `Model(path, backend=None, **kwargs)`. `backend` is a model
    /// component (`"onnx"`: tract, pure Rust; `"onnxruntime"`: ONNX Runtime); `None` picks the
    /// one registered for the file's extension. `kwargs` are the backend's (`threads`,
    /// `batch_size`, `output`, `squeeze`; see `maxi.list_components("model")`).
    #[new]
    #[pyo3(signature = (path, backend=None, **kwargs))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        backend: Option<String>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut k = Kwargs::new();
        if let Some(kwargs) = kwargs {
            for (key, v) in kwargs.iter() {
                let key: String = key.extract()?;
                let value = to_json(&v, &format!("model kwarg `{key}`"))?;
                k = k.set(key, value).map_err(to_py)?;
            }
        }
        let inner = py
            .detach(|| load(path, backend.as_deref(), k))
            .map_err(to_py)?;
        Ok(PyModel { inner })
    }

    /// Runs the model on a batch `[B, ...item]`; returns its output `[B, ...]` (float64).
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (x, _) = to_array(batch, "the batch")?;
        if x.ndim() < 1 || x.is_empty() {
            return Err(PyValueError::new_err(format!(
                "the batch has shape {:?}; give [B, ...item] with B >= 1",
                x.shape()
            )));
        }
        let inner = self.inner.clone();
        let out = py.detach(move || inner.predict(x.view())).map_err(to_py)?;
        Ok(to_numpy(py, out, Float::F64))
    }

    /// The item shape the model takes (without the batch axis), when it says.
    #[getter]
    fn input_shape(&self) -> Option<Vec<usize>> {
        self.inner.input_shape()
    }

    fn __repr__(&self) -> String {
        format!("maxi.Model({})", self.inner.describe())
    }
}
