//! Typed kwargs: what a component accepts, and the checked form that constructors require.

use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A problem with one kwarg found by [`KwargsSpec::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct KwargProblem {
    /// The kwarg's name.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl KwargProblem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        KwargProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for KwargProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kwarg `{}`: {}", self.field, self.message)
    }
}

/// A component's kwargs: deserialised with `deny_unknown_fields` and defaults, described by a
/// JSON schema, and checked for valid ranges by [`KwargsSpec::validate`].
pub trait KwargsSpec:
    DeserializeOwned + Serialize + schemars::JsonSchema + Send + Sync + 'static
{
    /// Alternative spellings accepted by serde (`alias → canonical`), listed among accepted keys.
    const ALIASES: &'static [(&'static str, &'static str)] = &[];

    /// Range and consistency checks beyond the types.
    fn validate(&self) -> Result<(), KwargProblem> {
        Ok(())
    }
}

/// Kwargs that passed [`KwargsSpec::validate`]. [`Valid::check`] is the only way to make one,
/// so a component constructor that takes `Valid<K>` never sees unchecked values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Valid<K>(K);

impl<K: KwargsSpec> Valid<K> {
    /// Validates `kwargs`.
    pub fn check(kwargs: K) -> Result<Self, KwargProblem> {
        kwargs.validate()?;
        Ok(Valid(kwargs))
    }

    /// The checked kwargs, to change and check again.
    pub fn into_inner(self) -> K {
        self.0
    }
}

impl<K> Deref for Valid<K> {
    type Target = K;
    fn deref(&self) -> &K {
        &self.0
    }
}
