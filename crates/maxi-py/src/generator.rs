//! `maxi.ExplanationGenerator` (MAXi's constructor and `run`) and `maxi.Explanation` (the full
//! record of a run).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use maxi::serde_json::{self, Value, json};
use maxi::{
    ExplanationGenerator as Generator, Kwargs, Model as MaxiModel, Observer, SearchKwargs,
    StepRecord,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::convert::{Float, kwargs_items, to_array, to_json, to_numpy};
use crate::errors::{Failure, run_failed, to_py};
use crate::model::{PyCallableModel, PyModel, load};

/// MAXi's `loss_kwargs` when none are given (`ExplanationGenerator.__init__`).
fn maxi_default_loss_kwargs() -> Value {
    json!({"mode": "PP", "gamma": 75, "K": 10})
}

/// The float type Python models of a run receive, shared by the generator's callables.
#[derive(Clone, Default)]
pub struct SharedFloat(Arc<AtomicBool>);

impl SharedFloat {
    fn set(&self, f: Float) {
        self.0.store(f == Float::F32, Ordering::Relaxed);
    }
    fn get(&self) -> Float {
        if self.0.load(Ordering::Relaxed) {
            Float::F32
        } else {
            Float::F64
        }
    }
}

/// Stops a run when a Python model raised or Ctrl-C was pressed; prints steps when verbose.
struct PythonSide {
    failure: Failure,
    verbose: bool,
}

impl Observer for PythonSide {
    fn on_step(&self, r: &StepRecord) {
        if self.verbose {
            eprintln!(
                "iter {:>5}  attack loss {:>10.4}  l1 {:>9.3}  objective {:>10.4}  rows {}",
                r.iteration, r.attack_loss, r.l1_norm, r.objective, r.model_rows
            );
        }
    }
    fn should_stop(&self) -> bool {
        if self.failure.is_set() {
            return true;
        }
        // signals (Ctrl-C) are only seen while Python runs: look once per update
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(e) => {
                self.failure.keep(e);
                true
            }
        }
    }
}

/// A component given by name (a string) or by a class (its `__name__`, as in MAXi).
fn component_name(obj: Option<&Bound<'_, PyAny>>, kind: &str, default: &str) -> PyResult<String> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(default.to_string());
    };
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_string());
    }
    if let Ok(name) = obj.getattr("__name__").and_then(|n| n.extract::<String>()) {
        return Ok(name);
    }
    Err(PyTypeError::new_err(format!(
        "{kind} must be a component name such as \"{}\" (see maxi.list_components()), got `{}`",
        match kind {
            "loss" => "TF_CEMLoss",
            "optimizer" => "AoExpGradOptimizer",
            _ => "URVGradientEstimator",
        },
        obj.get_type().name()?
    )))
}

/// True when `obj` names a file (a string or an `os.PathLike`).
fn is_path(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")?)
}

/// A Python kwargs dict as maxi kwargs: callables and `maxi.Model`s become model objects.
fn kwargs(
    items: Vec<(String, Bound<'_, PyAny>)>,
    kind: &str,
    float: &SharedFloat,
    failure: &Failure,
) -> PyResult<Kwargs> {
    let mut k = Kwargs::new();
    for (key, v) in items {
        if let Ok(m) = v.cast::<PyModel>() {
            k = k.with_model(key, m.get().inner.clone());
        } else if v.is_callable() && !is_path(&v)? {
            let role: &'static str = if key == "AE" { "AE" } else { "model kwarg" };
            let model = CallableWithSharedFloat {
                float: float.clone(),
                inner: PyCallableModel::new(&v, role, Float::F64, failure.clone()),
                f32: PyCallableModel::new(&v, role, Float::F32, failure.clone()),
            };
            k = k.with_model(key, Arc::new(model));
        } else {
            let value = to_json(&v, &format!("{kind} kwarg `{key}`"))?;
            k = k.set(key, value).map_err(to_py)?;
        }
    }
    Ok(k)
}

/// A callable kwarg (e.g. `AE`) that takes batches in the float type of the current run.
struct CallableWithSharedFloat {
    float: SharedFloat,
    inner: PyCallableModel,
    f32: PyCallableModel,
}

impl MaxiModel for CallableWithSharedFloat {
    fn predict(
        &self,
        batch: maxi::ndarray::ArrayViewD<'_, f64>,
    ) -> maxi::Result<maxi::ndarray::ArrayD<f64>> {
        match self.float.get() {
            Float::F32 => self.f32.predict(batch),
            Float::F64 => self.inner.predict(batch),
        }
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Explains a classifier's prediction by optimisation, with MAXi's constructor: components by
/// name (canonical or MAXi's class names), kwargs as dicts.
#[pyclass(name = "ExplanationGenerator", module = "maxi", frozen)]
pub struct PyGenerator {
    inner: Arc<Generator>,
    float: SharedFloat,
    failure: Failure,
    last: Mutex<Option<Py<PyExplanation>>>,
}

#[pymethods]
impl PyGenerator {
    #[new]
    #[pyo3(signature = (
        loss=None, optimizer=None, gradient=None,
        loss_kwargs=None, optimizer_kwargs=None, gradient_kwargs=None,
        num_iter=None, save_freq=None, seed=0, verbose=false, search=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        loss: Option<&Bound<'_, PyAny>>,
        optimizer: Option<&Bound<'_, PyAny>>,
        gradient: Option<&Bound<'_, PyAny>>,
        loss_kwargs: Option<&Bound<'_, PyAny>>,
        optimizer_kwargs: Option<&Bound<'_, PyAny>>,
        gradient_kwargs: Option<&Bound<'_, PyAny>>,
        num_iter: Option<&Bound<'_, PyAny>>,
        save_freq: Option<&Bound<'_, PyAny>>,
        seed: u64,
        verbose: bool,
        search: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // MAXi's defaults: CEMLoss, AdaExpGradOptimizer, URVGradientEstimator, 30 updates
        let (loss, optimizer, gradient) = (
            component_name(loss, "loss", "CEMLoss")?,
            component_name(optimizer, "optimizer", "AdaExpGradOptimizer")?,
            component_name(gradient, "gradient", "URVGradientEstimator")?,
        );
        let float = SharedFloat::default();
        let failure = Failure::default();
        let loss_kwargs = match loss_kwargs.filter(|o| !o.is_none()) {
            Some(k) => kwargs(kwargs_items(Some(k), "loss")?, "loss", &float, &failure)?,
            None => {
                let is_cem = maxi::registry::global()
                    .map_err(to_py)?
                    .get::<maxi::LossKind>(&loss)
                    .is_ok_and(|e| e.meta.name == "cem");
                if is_cem {
                    Kwargs::try_from(maxi_default_loss_kwargs()).map_err(to_py)?
                } else {
                    Kwargs::new()
                }
            }
        };
        let optimizer_kwargs = kwargs(
            kwargs_items(optimizer_kwargs, "optimizer")?,
            "optimizer",
            &float,
            &failure,
        )?;
        let gradient_kwargs = kwargs(
            kwargs_items(gradient_kwargs, "gradient")?,
            "gradient",
            &float,
            &failure,
        )?;
        let num_iter = match num_iter {
            None => 30,
            Some(n) => count(n, "num_iter")?
                .ok_or_else(|| PyValueError::new_err("num_iter must be a whole number >= 1"))?,
        };
        let save_freq = match save_freq {
            None => None,
            Some(s) => count(s, "save_freq")?,
        };
        let mut builder = Generator::builder()
            .loss(loss, loss_kwargs)
            .optimizer(optimizer, optimizer_kwargs)
            .gradient(gradient, gradient_kwargs)
            .num_iter(num_iter)
            .seed(seed)
            .observer(Arc::new(PythonSide {
                failure: failure.clone(),
                verbose,
            }));
        if let Some(every) = save_freq {
            // MAXi's save_freq is at most num_iter
            builder = builder.save_freq(every.min(num_iter));
        }
        if let Some(search) = search.filter(|s| !s.is_none()) {
            let value = to_json(search, "search")?;
            let search: SearchKwargs = serde_json::from_value(value)
                .map_err(|e| PyValueError::new_err(format!("search: {e}")))?;
            builder = builder.search(search);
        }
        let inner = py.detach(move || builder.build()).map_err(to_py)?;
        Ok(PyGenerator {
            inner: Arc::new(inner),
            float,
            failure,
            last: Mutex::new(None),
        })
    }

    /// Explains `inference_call`'s prediction on `image` (one item, no batch axis); returns
    /// `(savepoints, meta_data)` like MAXi: `savepoints` maps the update number (a string, as
    /// in MAXi) to the explanation at that update. The full record is `last_explanation`.
    #[pyo3(signature = (image, inference_call, meta_data=None))]
    fn run<'py>(
        slf: &Bound<'py, Self>,
        image: &Bound<'py, PyAny>,
        inference_call: &Bound<'py, PyAny>,
        meta_data: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let e = Self::explain(slf, image, inference_call)?;
        let points = PyDict::new(py);
        for (k, v) in e.borrow().savepoints.bind(py).iter() {
            points.set_item(k.str()?, v)?;
        }
        let meta = meta_data.unwrap_or_else(|| py.None().into_bound(py));
        PyTuple::new(py, [points.into_any(), meta])
    }

    /// Explains `inference_call`'s prediction on `image`; returns the full `Explanation`.
    fn explain<'py>(
        slf: &Bound<'py, Self>,
        image: &Bound<'py, PyAny>,
        inference_call: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyExplanation>> {
        let py = slf.py();
        let this = slf.get();
        let (x, float) = to_array(image, "image")?;
        let model: Arc<dyn MaxiModel> = if let Ok(m) = inference_call.cast::<PyModel>() {
            m.get().inner.clone()
        } else if is_path(inference_call)? {
            let path: std::path::PathBuf = inference_call.extract()?;
            py.detach(|| load(path, None, Kwargs::new()))
                .map_err(to_py)?
        } else if inference_call.is_callable() {
            Arc::new(PyCallableModel::new(
                inference_call,
                "inference_call",
                float,
                this.failure.clone(),
            ))
        } else {
            return Err(PyTypeError::new_err(format!(
                "inference_call must be a callable taking a batch [B, ...] and returning scores \
                 [B, classes], a path to an .onnx file or a maxi.Model; got `{}`",
                inference_call.get_type().name()?
            )));
        };
        this.float.set(float);
        this.failure.take();
        let generator = this.inner.clone();
        let result = py.detach(move || generator.run(x.view(), model));
        if let Some(err) = this.failure.take() {
            return Err(err);
        }
        let e = result.map_err(|e| run_failed(e, &this.failure))?;
        let e = Bound::new(py, PyExplanation::new(py, e, float)?)?;
        *this.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone().unbind());
        Ok(e)
    }

    /// The `Explanation` of the last `run` or `explain` (None before the first).
    #[getter]
    fn last_explanation(&self, py: Python<'_>) -> Option<Py<PyExplanation>> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| e.clone_ref(py))
    }

    /// The resolved configuration: canonical names, every kwarg with its default, settings.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.config())
    }

    fn __repr__(&self) -> String {
        let n = self.inner.names();
        format!(
            "maxi.ExplanationGenerator(loss={:?}, optimizer={:?}, gradient={:?})",
            n.loss, n.optimizer, n.gradient
        )
    }
}

/// A whole number >= 1, or None for `float('inf')` (MAXi's "never").
fn count(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<usize>> {
    if let Ok(f) = obj.extract::<f64>()
        && f.is_infinite()
        && f > 0.0
    {
        return Ok(None);
    }
    match obj.extract::<usize>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(PyValueError::new_err(format!(
            "{what} must be a whole number >= 1 (save_freq also takes float('inf')), got {obj}"
        ))),
    }
}

/// A JSON value as Python objects (through the `json` module).
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// The full record of a run: savepoints, the explanation the run settles on and whether it is
/// valid, the per-update history and the model's usage.
#[pyclass(name = "Explanation", module = "maxi", frozen)]
pub struct PyExplanation {
    /// Update number → explanation at that update (same shape and float type as the image).
    #[pyo3(get)]
    savepoints: Py<PyDict>,
    /// The explanation the run settles on (the best valid iterate, else the lowest loss).
    #[pyo3(get)]
    candidate: Py<PyAny>,
    /// Whether `candidate` is a valid explanation (None: the loss cannot tell).
    #[pyo3(get)]
    valid: Option<bool>,
    /// The update that produced `candidate`.
    #[pyo3(get)]
    iteration: usize,
    /// One dict per update: iteration, round, attack_loss, valid, l1_norm, l2_norm_sq,
    /// objective, model_rows, model_calls.
    #[pyo3(get)]
    history: Py<PyAny>,
    /// Rows sent to the explained model.
    #[pyo3(get)]
    model_rows: u64,
    /// Calls made to the explained model.
    #[pyo3(get)]
    model_calls: u64,
    /// Seconds spent inside the explained model (for a Python callable: inside the call,
    /// including the conversions to and from numpy).
    #[pyo3(get)]
    model_seconds: f64,
    /// Seconds of the whole run.
    #[pyo3(get)]
    wall_seconds: f64,
    /// The run's seed.
    #[pyo3(get)]
    seed: u64,
    record: Py<PyAny>,
}

impl PyExplanation {
    fn new(py: Python<'_>, e: maxi::Explanation, float: Float) -> PyResult<Self> {
        let savepoints = PyDict::new(py);
        let record =
            serde_json::to_value(&e).map_err(|err| PyValueError::new_err(err.to_string()))?;
        for (t, a) in e.savepoints {
            savepoints.set_item(t, to_numpy(py, a, float))?;
        }
        Ok(PyExplanation {
            savepoints: savepoints.unbind(),
            candidate: to_numpy(py, e.outcome.candidate, float).unbind(),
            valid: e.outcome.valid,
            iteration: e.outcome.iteration,
            history: json_to_py(py, &record["history"])?.unbind(),
            model_rows: e.model.rows,
            model_calls: e.model.calls,
            model_seconds: e.model.seconds,
            wall_seconds: e.wall_seconds,
            seed: e.seed,
            record: json_to_py(py, &record)?.unbind(),
        })
    }
}

#[pymethods]
impl PyExplanation {
    /// Everything maxi records about the run as plain Python objects (what the CLI's
    /// `report.json` is made from): outcome, rounds, description, names, model usage, config.
    fn to_dict(&self, py: Python<'_>) -> Py<PyAny> {
        self.record.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "maxi.Explanation(iteration={}, valid={}, model_rows={})",
            self.iteration,
            match self.valid {
                Some(true) => "True",
                Some(false) => "False",
                None => "None",
            },
            self.model_rows
        )
    }
}
