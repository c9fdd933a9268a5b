//! The `maxi` Python module: MAXi's `ExplanationGenerator` on maxi's Rust components, with any
//! Python callable (or an ONNX file run in Rust) as the model. Built with maturin into an abi3
//! wheel (`pip install ./crates/maxi-py`); the tests are in `tests/` (pytest).
//!
//! Every run releases the GIL; a Python model takes it back only for its own call.

mod convert;
mod errors;
mod generator;
mod model;

use std::path::PathBuf;

use maxi::Kind;
use maxi::serde_json::json;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::to_py;
use crate::generator::json_to_py;

/// Every registered component (of `kind`: "loss", "gradient", "optimizer" or "model", or all),
/// each a dict: kind, name, aliases, doc, schema (the kwargs' JSON schema), kwarg_aliases,
/// origin.
#[pyfunction]
#[pyo3(signature = (kind=None))]
fn list_components<'py>(py: Python<'py>, kind: Option<&str>) -> PyResult<Bound<'py, PyList>> {
    let kind = kind
        .map(|k| k.parse::<Kind>())
        .transpose()
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    let registry = maxi::registry::global().map_err(to_py)?;
    let list = PyList::empty(py);
    for m in registry.metas(kind) {
        let kwarg_aliases: maxi::serde_json::Map<_, _> = m
            .kwarg_aliases
            .iter()
            .map(|(a, c)| (a.clone(), json!(c)))
            .collect();
        let v = json!({
            "kind": m.kind.as_str(),
            "name": m.name,
            "aliases": m.aliases,
            "doc": m.doc,
            "schema": m.schema,
            "kwarg_aliases": kwarg_aliases,
            "origin": m.origin,
        });
        list.append(json_to_py(py, &v)?)?;
    }
    Ok(list)
}

/// Loads a maxi plugin library (`.so`, C ABI v1) and registers its components; returns their
/// names. Loading the same file again registers nothing. Generators built afterwards find them.
#[pyfunction]
fn load_plugin(py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
    py.detach(|| maxi_plugin_host::load_plugin(&path))
        .map_err(to_py)
}

/// The module: `ExplanationGenerator`, `Explanation`, `Model`, `list_components`,
/// `load_plugin`, and every component's names as string constants (so `maxi.TF_CEMLoss` can
/// stand where MAXi's class stood).
#[pymodule]
#[pyo3(name = "maxi")]
fn maxi_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<generator::PyGenerator>()?;
    m.add_class::<generator::PyExplanation>()?;
    m.add_class::<model::PyModel>()?;
    m.add_function(wrap_pyfunction!(list_components, m)?)?;
    m.add_function(wrap_pyfunction!(load_plugin, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let registry = maxi::registry::global().map_err(to_py)?;
    for meta in registry.metas(None) {
        if meta.kind == Kind::Model {
            continue;
        }
        // MAXi's class names (aliases that are identifiers starting with a capital)
        for alias in &meta.aliases {
            let identifier = alias.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if identifier && !m.hasattr(alias.as_str())? {
                m.add(alias.as_str(), alias.as_str())?;
            }
        }
    }
    Ok(())
}
