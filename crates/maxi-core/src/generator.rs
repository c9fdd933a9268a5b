//! The explanation generator: builds the pipeline from names and kwargs and runs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{MaxiError, Result};
use crate::executor::{
    Executor, History, Names, Observer, Savepoints, Schedule, StepRecord, StopReason,
};
use crate::kwargs::{Kwargs, ModelResolver};
use crate::loss::Description;
use crate::model::{CountingModel, Model, ModelStats};
use crate::problem::Problem;
use crate::registry::{
    GradientContext, GradientKind, InRegistry, LossContext, LossKind, OptimizerContext,
    OptimizerKind, Prepared, Registry,
};
use crate::rng::rng_from_seed;
use crate::space::{Identity, Unit, VariableSpace};

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Savepoints: update number → candidate (shaped like the input).
    #[serde(skip)]
    pub savepoints: BTreeMap<usize, ArrayD<f64>>,
    /// One record per update.
    pub history: Vec<StepRecord>,
    /// What the explanation is (from the loss).
    pub description: Description,
    /// The canonical names of the loss, gradient method and optimiser.
    pub names: Names,
    /// What one variable entry stands for.
    pub unit: Unit,
    /// Usage of the explained model.
    pub model: ModelStats,
    /// Loss rows evaluated (a loss may call several models per row).
    pub loss_rows: u64,
    /// Wall-clock seconds of the run.
    pub wall_seconds: f64,
    /// Seed of the run.
    pub seed: u64,
    /// The resolved configuration (every default filled in).
    pub config: Value,
    /// Metadata given to the generator.
    pub metadata: Map<String, Value>,
    /// Why the run ended.
    pub stop: StopReason,
}

impl Explanation {
    /// The last savepoint (the final candidate).
    pub fn final_candidate(&self) -> Option<&ArrayD<f64>> {
        self.savepoints.values().next_back()
    }

    /// The record of the last update.
    pub fn last_record(&self) -> Option<&StepRecord> {
        self.history.last()
    }

    /// True when an observer stopped the run before `num_iter` updates.
    pub fn stopped_early(&self) -> bool {
        self.stop != StopReason::Completed
    }
}

/// A component chosen by name, with checked kwargs, ready to be built for each run.
struct Chosen<K: InRegistry> {
    name: String,
    prepared: Arc<dyn Prepared<K>>,
    resolver: ModelResolver,
}

impl<K: InRegistry> Chosen<K> {
    fn new(registry: &Registry, name: &str, kwargs: &Kwargs) -> Result<Self> {
        let entry = registry.get::<K>(name)?;
        Ok(Chosen {
            name: entry.meta.name.clone(),
            prepared: entry.prepare(kwargs)?,
            resolver: kwargs.resolver(),
        })
    }

    fn config(&self) -> Value {
        let mut v = self.prepared.kwargs_json();
        if let Value::Object(m) = &mut v {
            m.insert("name".into(), Value::String(self.name.clone()));
        }
        v
    }
}

/// Builder of an [`ExplanationGenerator`].
pub struct GeneratorBuilder {
    loss: Option<(String, Kwargs)>,
    optimizer: Option<(String, Kwargs)>,
    gradient: Option<(String, Kwargs)>,
    num_iter: usize,
    save_freq: Option<usize>,
    seed: u64,
    observers: Vec<Arc<dyn Observer>>,
    metadata: Map<String, Value>,
    registry: Option<Arc<Registry>>,
}

impl GeneratorBuilder {
    /// The loss by name, with its kwargs.
    pub fn loss(mut self, name: impl Into<String>, kwargs: Kwargs) -> Self {
        self.loss = Some((name.into(), kwargs));
        self
    }
    /// The optimiser by name, with its kwargs.
    pub fn optimizer(mut self, name: impl Into<String>, kwargs: Kwargs) -> Self {
        self.optimizer = Some((name.into(), kwargs));
        self
    }
    /// The gradient method by name, with its kwargs.
    pub fn gradient(mut self, name: impl Into<String>, kwargs: Kwargs) -> Self {
        self.gradient = Some((name.into(), kwargs));
        self
    }
    /// Number of updates (default 30).
    pub fn num_iter(mut self, n: usize) -> Self {
        self.num_iter = n;
        self
    }
    /// Savepoint every `n` updates (besides the first and the last; default: only those two).
    pub fn save_freq(mut self, n: usize) -> Self {
        self.save_freq = Some(n);
        self
    }
    /// Seed of the run's random generator (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Adds an observer.
    pub fn observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observers.push(o);
        self
    }
    /// Adds a metadata entry, returned with the explanation.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.metadata.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
    /// Uses this registry instead of the process-wide one.
    pub fn registry(mut self, registry: impl Into<Arc<Registry>>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// Resolves every name and validates every kwarg and setting.
    pub fn build(self) -> Result<ExplanationGenerator> {
        if self.num_iter == 0 {
            return Err(MaxiError::InvalidSetting {
                name: "num_iter".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.save_freq == Some(0) {
            return Err(MaxiError::InvalidSetting {
                name: "save_freq".into(),
                message: "must be at least 1 (omit it to save only the first and last update)"
                    .into(),
            });
        }
        let registry = match self.registry {
            Some(r) => r,
            None => crate::registry::global()?,
        };
        let missing = |what: &str| MaxiError::InvalidSetting {
            name: what.into(),
            message: format!("no {what} given; name one (see the registry's list of {what}s)"),
        };
        let (ln, lk) = self.loss.as_ref().ok_or_else(|| missing("loss"))?;
        let (on, ok) = self
            .optimizer
            .as_ref()
            .ok_or_else(|| missing("optimizer"))?;
        let (gn, gk) = self.gradient.as_ref().ok_or_else(|| missing("gradient"))?;
        Ok(ExplanationGenerator {
            loss: Chosen::new(&registry, ln, lk)?,
            optimizer: Chosen::new(&registry, on, ok)?,
            gradient: Chosen::new(&registry, gn, gk)?,
            schedule: Schedule {
                num_iter: self.num_iter,
                every: self.save_freq,
            },
            seed: self.seed,
            observers: self.observers,
            metadata: self.metadata,
        })
    }
}

/// Builds a loss, a gradient method and an optimiser from names and kwargs, and runs the
/// optimisation on an input. Reusable: runs share no state.
pub struct ExplanationGenerator {
    loss: Chosen<LossKind>,
    optimizer: Chosen<OptimizerKind>,
    gradient: Chosen<GradientKind>,
    schedule: Schedule,
    seed: u64,
    observers: Vec<Arc<dyn Observer>>,
    metadata: Map<String, Value>,
}

impl std::fmt::Debug for ExplanationGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExplanationGenerator({})", self.config())
    }
}

/// Checks that the input is non-empty, finite and of the model's shape.
fn check_input(x: ArrayViewD<'_, f64>, model: &dyn Model) -> Result<()> {
    if x.is_empty() {
        return Err(MaxiError::input("x", "the input has no entries"));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(MaxiError::input(
            "x",
            format!(
                "entry {i} (flat index) is {}; inputs must be finite",
                x.iter().nth(i).copied().unwrap_or(f64::NAN)
            ),
        ));
    }
    if let Some(expected) = model.input_shape()
        && expected != x.shape()
    {
        return Err(MaxiError::input(
            "x",
            format!(
                "shape {:?} does not match the model's input shape {:?}",
                x.shape(),
                expected
            ),
        ));
    }
    Ok(())
}

fn check_variable_shape(what: &str, got: &[usize], space: &dyn VariableSpace) -> Result<()> {
    if got != space.shape() {
        return Err(MaxiError::input(
            what,
            format!(
                "shape {got:?} differs from the variable's {:?}",
                space.shape()
            ),
        ));
    }
    Ok(())
}

impl ExplanationGenerator {
    /// Starts a builder.
    pub fn builder() -> GeneratorBuilder {
        GeneratorBuilder {
            loss: None,
            optimizer: None,
            gradient: None,
            num_iter: 30,
            save_freq: None,
            seed: 0,
            observers: Vec::new(),
            metadata: Map::new(),
            registry: None,
        }
    }

    /// The resolved configuration: names, every kwarg with defaults, and the settings.
    pub fn config(&self) -> Value {
        json!({
            "generator": {
                "num_iter": self.schedule.num_iter,
                "save_freq": self.schedule.every,
                "seed": self.seed,
            },
            "loss": self.loss.config(),
            "optimizer": self.optimizer.config(),
            "gradient": self.gradient.config(),
        })
    }

    /// The canonical names of the chosen components.
    pub fn names(&self) -> Names {
        Names {
            loss: self.loss.name.clone(),
            gradient: self.gradient.name.clone(),
            optimizer: self.optimizer.name.clone(),
        }
    }

    /// The seed used by runs.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Explains `model`'s output on `x` (one item, no batch axis).
    pub fn run(&self, x: ArrayViewD<'_, f64>, model: Arc<dyn Model>) -> Result<Explanation> {
        let started = Instant::now();
        check_input(x.view(), model.as_ref())?;
        let counting = Arc::new(CountingModel::new(model));
        let space: Arc<dyn VariableSpace> = Arc::new(Identity::new(x.shape()));
        let loss = self.loss.prepared.build(&LossContext {
            x: x.view(),
            model: counting.clone(),
            models: &self.loss.resolver,
            space: space.clone(),
            seed: self.seed,
        })?;
        let bounds = loss.bounds().clone();
        check_variable_shape("bounds", bounds.lower().shape(), space.as_ref())?;
        let start = loss.start();
        check_variable_shape("start point", start.shape(), space.as_ref())?;
        let description = loss.describe();
        let mut gradient = self.gradient.prepared.build(&GradientContext {
            shape: space.shape(),
        })?;
        let mut optimizer = self.optimizer.prepared.build(&OptimizerContext {
            start: start.view(),
            bounds: &bounds,
        })?;
        let problem = Problem::new(loss, space.clone());

        let history = Arc::new(History::default());
        let savepoints = Arc::new(Savepoints::default());
        let mut executor = Executor::new(
            &problem,
            &counting,
            gradient.as_mut(),
            optimizer.as_mut(),
            self.schedule,
        )
        .names(self.names())
        .seed(self.seed)
        .observer(history.clone())
        .observer(savepoints.clone());
        for o in &self.observers {
            executor = executor.observer(o.clone());
        }
        let mut rng = rng_from_seed(self.seed);
        let finished = executor.run(&mut rng)?;
        Ok(Explanation {
            savepoints: savepoints.take(),
            history: history.take(),
            description,
            names: self.names(),
            unit: space.unit(),
            model: counting.stats(),
            loss_rows: problem.loss_rows(),
            wall_seconds: started.elapsed().as_secs_f64(),
            seed: self.seed,
            config: self.config(),
            metadata: self.metadata.clone(),
            stop: finished.stop,
        })
    }
}
