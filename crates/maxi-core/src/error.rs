//! The one error type of maxi.

use std::fmt;

/// Which kind of component a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An explanation objective (CEM, LIME, ...).
    Loss,
    /// A gradient method (URV, USRV, analytic, ...).
    Gradient,
    /// An optimiser (AO-ExpGrad, AdaExpGrad, ...).
    Optimizer,
    /// A model backend (ONNX, ...).
    Model,
    /// An image segmentation (superpixels: SLIC, watershed, ...).
    Segmentation,
}

impl Kind {
    /// All kinds, in display order.
    pub const ALL: [Kind; 5] = [
        Kind::Loss,
        Kind::Gradient,
        Kind::Optimizer,
        Kind::Model,
        Kind::Segmentation,
    ];

    /// Lower-case name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Loss => "loss",
            Kind::Gradient => "gradient",
            Kind::Optimizer => "optimizer",
            Kind::Model => "model",
            Kind::Segmentation => "segmentation",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown kind `{s}`; known kinds: loss, gradient, optimizer, model, segmentation")
            })
    }
}

/// Everything that can go wrong while building or running an explanation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MaxiError {
    /// No component of this kind has that name.
    #[error("unknown {kind} `{name}`; known {kind} components: {}", known.join(", "))]
    UnknownComponent {
        /// Kind looked up.
        kind: Kind,
        /// Name asked for.
        name: String,
        /// Known names of that kind, closest match first.
        known: Vec<String>,
    },
    /// Two components claim the same name.
    #[error(
        "duplicate {kind} name `{name}`: registered by {first} and by {second}; rename one of them"
    )]
    DuplicateComponent {
        /// Kind of both components.
        kind: Kind,
        /// Name claimed twice.
        name: String,
        /// Where the first registration came from.
        first: String,
        /// Where the second registration came from.
        second: String,
    },
    /// A kwarg that the component does not accept.
    #[error("{kind} `{component}` has no kwarg `{key}`; accepted kwargs: {}", accepted.join(", "))]
    UnknownKwarg {
        /// Kind of the component.
        kind: Kind,
        /// Canonical name of the component.
        component: String,
        /// The offending key.
        key: String,
        /// Accepted keys.
        accepted: Vec<String>,
    },
    /// A kwarg of the wrong type or out of its valid range, or a required one missing.
    #[error("{kind} `{component}`: kwarg `{field}`: {message}")]
    InvalidKwarg {
        /// Kind of the component.
        kind: Kind,
        /// Canonical name of the component.
        component: String,
        /// The field (or `?` when serde could not tell).
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A generator setting (num_iter, save_freq, ...) is invalid.
    #[error("invalid setting `{name}`: {message}")]
    InvalidSetting {
        /// Setting name.
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// An input array is unusable (wrong shape, NaN, out of range, ...).
    #[error("invalid input `{name}`: {message}")]
    InvalidInput {
        /// Which input.
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A model could not be loaded.
    #[error("cannot load model {path}: {message}")]
    ModelLoad {
        /// The file or reference.
        path: String,
        /// The reason.
        message: String,
    },
    /// A model failed or returned unusable output while running.
    #[error("model {model} failed: {message}")]
    ModelRun {
        /// Which model.
        model: String,
        /// The reason.
        message: String,
    },
    /// A component failed at run time (e.g. produced NaN).
    #[error("{kind} `{component}` failed at iteration {iteration}: {message}")]
    Runtime {
        /// Kind of the component.
        kind: Kind,
        /// Component name.
        component: String,
        /// 1-based iteration (0 = set-up).
        iteration: usize,
        /// The reason.
        message: String,
    },
    /// A dynamically loaded plugin could not be used.
    #[error("plugin {path}: {message}")]
    Plugin {
        /// Library path.
        path: String,
        /// The reason.
        message: String,
    },
    /// Any other failure with a message.
    #[error("{0}")]
    Other(String),
}

impl MaxiError {
    /// True when the error comes from what the user asked for (names, kwargs, settings, inputs,
    /// files) rather than from a failure while running.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            MaxiError::ModelRun { .. } | MaxiError::Runtime { .. } | MaxiError::Other(_)
        )
    }

    /// Shorthand for an [`MaxiError::InvalidInput`].
    pub fn input(name: impl Into<String>, message: impl Into<String>) -> Self {
        MaxiError::InvalidInput {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// Result alias used across maxi.
pub type Result<T, E = MaxiError> = std::result::Result<T, E>;
