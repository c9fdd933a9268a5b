//! One registered component: its names, documentation, kwargs schema and how its kwargs are
//! parsed into a [`Prepared`] component.

use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;

use super::kinds::{ComponentKind, Factory, Prepared, Typed};
use crate::error::{Kind, MaxiError, Result};
use crate::kwargs::Kwargs;
use crate::spec::{KwargProblem, KwargsSpec, Valid};

/// What every component shows in listings and messages.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The component's kind.
    pub kind: Kind,
    /// Canonical name.
    pub name: String,
    /// Other accepted names (e.g. MAXi's class names).
    pub aliases: Vec<String>,
    /// One-line description.
    pub doc: String,
    /// JSON schema of the kwargs (types, defaults, docs).
    pub schema: Value,
    /// Alternative kwarg spellings (`alias → canonical`).
    pub kwarg_aliases: Vec<(String, String)>,
    /// Where the component comes from (crate or plugin file).
    pub origin: String,
    /// File extensions (without dot) a model backend opens by default; empty otherwise.
    pub extensions: Vec<String>,
}

impl Meta {
    /// The kwargs whose values are models ([`crate::ModelRef`] in the schema), sorted.
    pub fn model_kwargs(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .filter(|(_, s)| s.to_string().contains("\"#/$defs/ModelRef\""))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Every kwarg name accepted (schema properties and aliases), sorted.
    pub fn accepted_kwargs(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        keys.extend(self.kwarg_aliases.iter().map(|(a, _)| a.clone()));
        keys.sort();
        keys.dedup();
        keys
    }

    /// True when `name` is the canonical name or an alias.
    pub fn matches(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }

    /// The canonical name followed by the aliases.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    fn invalid(&self, field: String, message: String) -> MaxiError {
        MaxiError::InvalidKwarg {
            kind: self.kind,
            component: self.name.clone(),
            field,
            message,
        }
    }
}

/// Why kwargs could not be turned into a prepared component.
pub enum ParseFailure {
    /// The kwargs did not deserialise (wrong type, missing field); serde's error.
    Serde(erased_serde::Error),
    /// They deserialised but failed validation.
    Invalid(KwargProblem),
}

/// Parses kwargs (from any serde deserialiser) into a prepared component.
pub type ParseFn<K> = Arc<
    dyn Fn(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> std::result::Result<Arc<dyn Prepared<K>>, ParseFailure>
        + Send
        + Sync,
>;

/// A registered component of kind `K`.
pub struct Entry<K: ComponentKind> {
    /// Names, docs, schema.
    pub meta: Meta,
    parse: ParseFn<K>,
}

impl<K: ComponentKind> Clone for Entry<K> {
    fn clone(&self) -> Self {
        Entry {
            meta: self.meta.clone(),
            parse: self.parse.clone(),
        }
    }
}

fn schema_of<T: KwargsSpec>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

impl<K: ComponentKind> Entry<K> {
    /// The entry of a statically typed factory.
    pub fn of<F: Factory<K>>(name: &str, aliases: &[&str], doc: &str) -> Self {
        let parse: ParseFn<K> = Arc::new(|de| {
            let kwargs: F::Kwargs = erased_serde::deserialize(de).map_err(ParseFailure::Serde)?;
            let kwargs = Valid::check(kwargs).map_err(ParseFailure::Invalid)?;
            Ok(Arc::new(Typed::<F, K> {
                kwargs,
                _kind: PhantomData,
            }) as Arc<dyn Prepared<K>>)
        });
        Entry {
            meta: Meta {
                kind: K::KIND,
                name: name.to_string(),
                aliases: aliases.iter().map(|s| s.to_string()).collect(),
                doc: doc.to_string(),
                schema: schema_of::<F::Kwargs>(),
                kwarg_aliases: <F::Kwargs as KwargsSpec>::ALIASES
                    .iter()
                    .map(|(a, c)| (a.to_string(), c.to_string()))
                    .collect(),
                origin: "built-in".to_string(),
                extensions: Vec::new(),
            },
            parse,
        }
    }

    /// An entry assembled from parts (used by the dynamic plugin host). `meta.kind` is set to
    /// `K`'s kind.
    pub fn from_parts(mut meta: Meta, parse: ParseFn<K>) -> Self {
        meta.kind = K::KIND;
        Entry { meta, parse }
    }

    /// Sets where the component comes from.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.meta.origin = origin.into();
        self
    }

    /// Sets the file extensions a model backend opens by default.
    pub fn with_extensions(mut self, extensions: &[&str]) -> Self {
        self.meta.extensions = extensions.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Parses and validates kwargs: unknown keys, wrong types and invalid values are errors
    /// that name the kwarg.
    pub fn prepare(&self, kwargs: &Kwargs) -> Result<Arc<dyn Prepared<K>>> {
        let meta = &self.meta;
        let has_props = meta
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some();
        if has_props || meta.schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            let accepted = meta.accepted_kwargs();
            if let Some(key) = kwargs.values().keys().find(|k| !accepted.contains(k)) {
                return Err(MaxiError::UnknownKwarg {
                    kind: meta.kind,
                    component: meta.name.clone(),
                    key: key.clone(),
                    accepted,
                });
            }
        }
        let value = Value::Object(kwargs.values().clone());
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(&value, &mut track);
        let mut erased = <dyn erased_serde::Deserializer>::erase(de);
        match (self.parse)(&mut erased) {
            Ok(p) => Ok(p),
            Err(ParseFailure::Invalid(p)) => Err(meta.invalid(p.field, p.message)),
            Err(ParseFailure::Serde(e)) => {
                let path = track.path().to_string();
                let message = e.to_string();
                let field = if path.is_empty() || path == "." {
                    field_from_message(&message).unwrap_or_else(|| "?".to_string())
                } else {
                    path
                };
                Err(meta.invalid(field, message))
            }
        }
    }
}

/// serde reports a missing field as "missing field `x`" with an empty path.
fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}
