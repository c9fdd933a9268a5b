//! Core of maxi: the contracts every component implements ([`Model`], [`Loss`], [`Gradient`],
//! [`Optimizer`]), the registry that finds components by name, and the
//! [`ExplanationGenerator`] that runs a pipeline.
#![warn(missing_docs)]

pub mod error;
pub mod generator;
pub mod gradient;
pub mod kwargs;
pub mod loss;
pub mod model;
pub mod optimizer;
pub mod problem;
pub mod registry;
pub mod rng;

pub use error::{Kind, MaxiError, Result};
pub use generator::{
    Explanation, ExplanationGenerator, GeneratorBuilder, Observer, RunInfo, StepRecord,
};
pub use gradient::Gradient;
pub use kwargs::{Kwargs, ModelRef, ModelResolver};
pub use loss::{Bounds, Loss};
pub use model::{CountingModel, FnModel, Model, ModelStats, model_fn, predict_class};
pub use optimizer::{Optimizer, Regularization};
pub use problem::Problem;
pub use registry::{
    Component, GradientContext, GradientFactory, KwargProblem, KwargsSpec, LossContext,
    LossFactory, ModelContext, ModelFactory, OptimizerContext, OptimizerFactory, Registry,
};
pub use rng::{MaxiRng, rng_from_seed};

#[doc(hidden)]
pub use inventory;
pub use ndarray;
pub use schemars;
pub use serde;
pub use serde_json;
