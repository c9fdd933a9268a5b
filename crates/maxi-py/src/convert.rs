//! Conversions between Python objects and what maxi takes: kwargs (JSON values and model
//! objects) and arrays.

use maxi::ndarray::ArrayD;
use maxi::serde_json::{Map, Number, Value};
use numpy::{PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The floating-point type arrays are handed back in: the input's when it is float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// numpy.float32
    F32,
    /// numpy.float64
    F64,
}

/// A Python value as a JSON value (for a kwarg named `what`).
pub fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract::<bool>()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyValueError::new_err(format!(
            "{what}: the integer {obj} is out of range (at most 64 bits)"
        )));
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        return Number::from_f64(f).map(Value::Number).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what}: {f} is not finite; every number must be finite (leave a bound out for no bound)"
            ))
        });
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::String(obj.extract()?));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in dict.iter() {
            let key: String = k.extract().map_err(|_| {
                PyValueError::new_err(format!("{what}: dict keys must be strings, got {k:?}"))
            })?;
            let inner = format!("{what}[{key:?}]");
            map.insert(key, to_json(&v, &inner)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, v) in obj.try_iter()?.enumerate() {
            items.push(to_json(&v?, &format!("{what}[{i}]"))?);
        }
        return Ok(Value::Array(items));
    }
    let py = obj.py();
    let np = py.import("numpy")?;
    // numpy arrays (flattened in C order, as maxi's per-entry kwargs are) and scalars
    if obj.is_instance(&np.getattr("ndarray")?)? && obj.getattr("ndim")?.extract::<usize>()? > 0 {
        return to_json(&obj.call_method0("ravel")?.call_method0("tolist")?, what);
    }
    if obj.is_instance(&np.getattr("ndarray")?)? || obj.is_instance(&np.getattr("generic")?)? {
        return to_json(&obj.call_method0("tolist")?, what);
    }
    // paths (pathlib.Path, os.PathLike)
    if obj.hasattr("__fspath__")? {
        let os = py.import("os")?;
        return to_json(&os.call_method1("fspath", (obj,))?, what);
    }
    Err(PyValueError::new_err(format!(
        "{what}: a value of type `{}` cannot be a kwarg; use a number, string, bool, None, list, \
         dict or numpy array (model kwargs such as `AE` also take a callable or an ONNX path)",
        obj.get_type().name()?
    )))
}

/// A Python dict of kwargs as `(name, value)` pairs, for a component kind `kind`.
pub fn kwargs_items<'py>(
    obj: Option<&Bound<'py, PyAny>>,
    kind: &str,
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    let dict = obj.cast::<PyDict>().map_err(|_| {
        PyValueError::new_err(format!(
            "{kind}_kwargs must be a dict of kwarg names to values, got `{}`",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let mut items = Vec::new();
    for (k, v) in dict.iter() {
        let key: String = k.extract().map_err(|_| {
            PyValueError::new_err(format!("{kind}_kwargs: keys must be strings, got {k:?}"))
        })?;
        items.push((key, v));
    }
    Ok(items)
}

/// An array-like as a float64 array, with the float type to hand results back in.
pub fn to_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(ArrayD<f64>, Float)> {
    if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
        return Ok((a.readonly().as_array().to_owned(), Float::F64));
    }
    if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
        return Ok((a.readonly().as_array().mapv(f64::from), Float::F32));
    }
    let py = obj.py();
    let np = py.import("numpy")?;
    let converted = np
        .call_method1("asarray", (obj, np.getattr("float64")?))
        .map_err(|e| {
            PyValueError::new_err(format!(
                "{what} must be a numeric array (numpy.ndarray or anything numpy.asarray takes): {e}"
            ))
        })?;
    let a = converted.cast::<PyArrayDyn<f64>>().map_err(|_| {
        PyValueError::new_err(format!(
            "{what}: numpy.asarray did not give a float64 array"
        ))
    })?;
    Ok((a.readonly().as_array().to_owned(), Float::F64))
}

/// A float64 array as a numpy array of `float`.
pub fn to_numpy<'py>(py: Python<'py>, a: ArrayD<f64>, float: Float) -> Bound<'py, PyAny> {
    match float {
        Float::F64 => PyArrayDyn::from_owned_array(py, a).into_any(),
        Float::F32 => PyArrayDyn::from_owned_array(py, a.mapv(|v| v as f32)).into_any(),
    }
}
