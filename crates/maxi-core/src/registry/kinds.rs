//! The component kinds, what each is built from, and the factory trait a component implements.

use std::path::Path;
use std::sync::Arc;

use ndarray::ArrayViewD;

use crate::error::{Kind, Result};
use crate::gradient::Gradient;
use crate::kwargs::ModelResolver;
use crate::loss::{Bounds, Loss};
use crate::model::Model;
use crate::optimizer::Optimizer;
use crate::segmentation::Segmenter;
use crate::space::VariableSpace;
use crate::spec::{KwargsSpec, Valid};

/// A kind of component: what it builds and from what. One registry table per kind.
pub trait ComponentKind: Sized + 'static {
    /// The kind's name in messages and listings.
    const KIND: Kind;
    /// What a component of this kind builds.
    type Output;
    /// What it is built from (besides its kwargs).
    type Context<'a>;
}

/// What a loss is built from.
pub struct LossContext<'a> {
    /// The input to explain (item shape, no batch axis).
    pub x: ArrayViewD<'a, f64>,
    /// The model being explained (counted and checked).
    pub model: Arc<dyn Model>,
    /// Resolves model-valued kwargs.
    pub models: &'a ModelResolver,
    /// The optimiser's variable and how it maps onto the input.
    pub space: Arc<dyn VariableSpace>,
    /// The run's seed, for losses that draw at random (e.g. a random start point): draw from
    /// [`rng_for`](crate::rng::rng_for)`(seed, stream)`, not from the run's main generator.
    pub seed: u64,
}

/// What a gradient method is built from.
pub struct GradientContext<'a> {
    /// Shape of the optimiser's variable.
    pub shape: &'a [usize],
}

/// What an optimiser is built from.
pub struct OptimizerContext<'a> {
    /// Start point (shaped like the variable).
    pub start: ArrayViewD<'a, f64>,
    /// Box constraints on the variable.
    pub bounds: &'a Bounds,
}

/// What a model backend is built from.
pub struct ModelContext<'a> {
    /// Folder that relative paths are resolved against.
    pub base_dir: Option<&'a Path>,
}

impl ModelContext<'_> {
    /// `path` as given when absolute or when there is no base folder, else joined onto it.
    pub fn resolve_path(&self, path: &str) -> std::path::PathBuf {
        let given = Path::new(path);
        match self.base_dir {
            Some(base) if given.is_relative() => base.join(given),
            _ => given.to_path_buf(),
        }
    }
}

/// What a segmentation is built from (nothing yet: it sees the image when it runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentationContext;

/// Losses: explanation objectives.
pub struct LossKind;
/// Gradient methods.
pub struct GradientKind;
/// Optimisers.
pub struct OptimizerKind;
/// Model backends.
pub struct ModelKind;
/// Image segmentations (superpixels).
pub struct SegmentationKind;

impl ComponentKind for LossKind {
    const KIND: Kind = Kind::Loss;
    type Output = Box<dyn Loss>;
    type Context<'a> = LossContext<'a>;
}

impl ComponentKind for GradientKind {
    const KIND: Kind = Kind::Gradient;
    type Output = Box<dyn Gradient>;
    type Context<'a> = GradientContext<'a>;
}

impl ComponentKind for OptimizerKind {
    const KIND: Kind = Kind::Optimizer;
    type Output = Box<dyn Optimizer>;
    type Context<'a> = OptimizerContext<'a>;
}

impl ComponentKind for ModelKind {
    const KIND: Kind = Kind::Model;
    type Output = Arc<dyn Model>;
    type Context<'a> = ModelContext<'a>;
}

impl ComponentKind for SegmentationKind {
    const KIND: Kind = Kind::Segmentation;
    type Output = Box<dyn Segmenter>;
    type Context<'a> = SegmentationContext;
}

/// A component: its kwargs type and how it is built from checked kwargs. Implement
/// `Factory<LossKind>` for a loss, `Factory<GradientKind>` for a gradient method, and so on.
pub trait Factory<K: ComponentKind>: 'static {
    /// The kwargs struct.
    type Kwargs: KwargsSpec;
    /// Builds the component for one run.
    fn build(kwargs: &Valid<Self::Kwargs>, ctx: &K::Context<'_>) -> Result<K::Output>;
}

/// A component of kind `K` whose kwargs are parsed and checked: it can be built any number of
/// times (once per run) and shows its resolved kwargs.
pub trait Prepared<K: ComponentKind>: Send + Sync {
    /// Builds the component for one run.
    fn build(&self, ctx: &K::Context<'_>) -> Result<K::Output>;
    /// The kwargs with every default filled in.
    fn kwargs_json(&self) -> serde_json::Value;
}

/// [`Prepared`] for a statically typed factory.
pub(crate) struct Typed<F: Factory<K>, K: ComponentKind> {
    pub(crate) kwargs: Valid<F::Kwargs>,
    pub(crate) _kind: std::marker::PhantomData<fn() -> (F, K)>,
}

impl<F: Factory<K>, K: ComponentKind> Prepared<K> for Typed<F, K> {
    fn build(&self, ctx: &K::Context<'_>) -> Result<K::Output> {
        F::build(&self.kwargs, ctx)
    }
    fn kwargs_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.kwargs).unwrap_or(serde_json::Value::Null)
    }
}
