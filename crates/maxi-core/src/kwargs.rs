//! Keyword arguments of components: a JSON-like map plus model objects passed from Rust.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{MaxiError, Result};
use crate::model::Model;

/// The kwargs map handed to a component: plain values (from JSON, TOML or Rust) and, for kwargs
/// that are models (CEM's `AE`), model objects.
#[derive(Clone, Default)]
pub struct Kwargs {
    values: Map<String, Value>,
    models: BTreeMap<String, Arc<dyn Model>>,
    base_dir: Option<PathBuf>,
}

impl fmt::Debug for Kwargs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kwargs")
            .field("values", &self.values)
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

impl Kwargs {
    /// No kwargs: every component default applies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Kwargs from any serialisable map (a `serde_json::json!({...})`, a TOML table, a struct).
    /// `null` means no kwargs.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let v = serde_json::to_value(value)
            .map_err(|e| MaxiError::Other(format!("kwargs cannot be serialised: {e}")))?;
        match v {
            Value::Null => Ok(Self::new()),
            Value::Object(values) => Ok(Kwargs {
                values,
                ..Self::default()
            }),
            other => Err(MaxiError::Other(format!(
                "kwargs must be a map of names to values, got {other}"
            ))),
        }
    }

    /// Sets one plain kwarg.
    pub fn set(mut self, key: impl Into<String>, value: impl Serialize) -> Result<Self> {
        let key = key.into();
        let v = serde_json::to_value(value)
            .map_err(|e| MaxiError::Other(format!("kwarg `{key}` cannot be serialised: {e}")))?;
        self.values.insert(key, v);
        Ok(self)
    }

    /// Sets a kwarg whose value is a model object (e.g. CEM's `AE`).
    pub fn with_model(mut self, key: impl Into<String>, model: Arc<dyn Model>) -> Self {
        let key = key.into();
        let token = format!("<in-memory model `{key}`>");
        self.values.insert(key, Value::String(token.clone()));
        self.models.insert(token, model);
        self
    }

    /// Directory that relative model paths are resolved against (a config file's folder).
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// The plain values (model kwargs appear as reference strings).
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// Loads the model files named by `keys` (model-valued kwargs given as paths) once, with
    /// `load`, so every run reuses them; keys that are absent, null or in-memory models are left
    /// as they are. A missing or unreadable file is an error here, before any run.
    pub fn preload(
        &mut self,
        keys: &[String],
        load: &dyn Fn(&std::path::Path) -> Result<Arc<dyn Model>>,
    ) -> Result<()> {
        for key in keys {
            let Some(Value::String(reference)) = self.values.get(key) else {
                continue;
            };
            if self.models.contains_key(reference) {
                continue;
            }
            let path = crate::registry::ModelContext {
                base_dir: self.base_dir.as_deref(),
            }
            .resolve_path(reference);
            let model = load(&path).map_err(|e| match e {
                MaxiError::ModelLoad { path, message } => MaxiError::ModelLoad {
                    path,
                    message: format!("{message} (kwarg `{key}`)"),
                },
                other => other,
            })?;
            self.models.insert(reference.clone(), model);
        }
        Ok(())
    }

    /// Resolver for the model-valued kwargs.
    pub fn resolver(&self) -> ModelResolver {
        ModelResolver {
            models: self.models.clone(),
            base_dir: self.base_dir.clone(),
        }
    }
}

impl TryFrom<Value> for Kwargs {
    type Error = MaxiError;
    fn try_from(v: Value) -> Result<Self> {
        Kwargs::from_serialize(&v)
    }
}

/// A kwarg that names a model: a file path (relative to the config) or an in-memory model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
#[schemars(
    description = "a model: path to a model file (e.g. ONNX) or a model object passed from Rust"
)]
pub struct ModelRef(pub String);

/// Turns [`ModelRef`]s into models.
#[derive(Clone, Default)]
pub struct ModelResolver {
    models: BTreeMap<String, Arc<dyn Model>>,
    base_dir: Option<PathBuf>,
}

impl ModelResolver {
    /// The model a reference names: an in-memory model, or a file loaded by the model backend
    /// registered for its extension.
    pub fn resolve(&self, r: &ModelRef) -> Result<Arc<dyn Model>> {
        if let Some(m) = self.models.get(&r.0) {
            return Ok(m.clone());
        }
        let path = crate::registry::ModelContext {
            base_dir: self.base_dir.as_deref(),
        }
        .resolve_path(&r.0);
        crate::registry::load_model_file(&path)
    }
}
