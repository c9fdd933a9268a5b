//! Core of maxi: the contracts every component implements ([`Model`], [`Loss`], [`Gradient`],
//! [`Optimizer`]), the variable space between optimiser and model, the typed registry that finds
//! components by name, the [`Executor`] that runs one optimisation and the
//! [`ExplanationGenerator`] that builds a pipeline from names and runs it.
//!
//! See `docs/architecture.md` in the repository for how the pieces fit together.
#![warn(missing_docs)]

pub mod batch;
pub mod error;
pub mod executor;
pub mod generator;
pub mod gradient;
pub mod kwargs;
pub mod loss;
pub mod model;
pub mod optimizer;
pub mod problem;
pub mod registry;
pub mod rng;
pub mod search;
pub mod segmentation;
pub mod space;
pub mod spec;

pub use error::{Kind, MaxiError, Result};
pub use executor::{
    Executor, Observer, RoundInfo, RunInfo, Schedule, Size, StepRecord, StopReason, Termination,
    step_once,
};
pub use generator::{
    Explanation, ExplanationGenerator, GeneratorBuilder, MAX_NUM_ITER, ModelLoader, Outcome, Round,
};
pub use gradient::{Estimate, Gradient, Request};
pub use kwargs::{Kwargs, ModelRef, ModelResolver};
pub use loss::{Assessed, Bounds, Description, Evaluation, Loss, Shown};
pub use model::{CountingModel, FnModel, Model, ModelStats, model_fn, predict_class};
pub use optimizer::{Optimizer, Regularization};
pub use problem::Problem;
pub use registry::{
    Factory, GradientContext, GradientKind, LossContext, LossKind, ModelContext, ModelKind,
    OptimizerContext, OptimizerKind, Registry, SegmentationContext, SegmentationKind,
};
pub use rng::{MaxiRng, rng_for, rng_from_seed};
pub use search::{SearchKwargs, SearchMethod};
pub use segmentation::{SegmentSpace, Segmentation, Segmenter, image_view};
pub use space::{Identity, Reduce, Unit, VariableSpace};
pub use spec::{KwargProblem, KwargsSpec, Valid};

#[doc(hidden)]
pub use inventory;
pub use ndarray;
pub use schemars;
pub use serde;
pub use serde_json;
