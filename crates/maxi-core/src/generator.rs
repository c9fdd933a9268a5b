//! The explanation generator: builds the pipeline from names and kwargs and runs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{Kind, MaxiError, Result};
use crate::gradient::Gradient;
use crate::kwargs::{Kwargs, ModelResolver};
use crate::model::{CountingModel, Model, ModelStats};
use crate::problem::Problem;
use crate::registry::{
    Builder, Component, GradientContext, LossContext, OptimizerContext, ParsedKwargs, Registry,
};
use crate::rng::rng_from_seed;

/// The record of one optimiser update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepRecord {
    /// 1-based update number.
    pub iteration: usize,
    /// `L(y)`: the loss at the new iterate.
    pub attack_loss: f64,
    /// `‖y‖₁` of the new iterate.
    pub l1_norm: f64,
    /// `‖y‖₂²` of the new iterate.
    pub l2_norm_sq: f64,
    /// `L(y) + l1·‖y‖₁ + (l2/2)·‖y‖₂²` with the optimiser's weights.
    pub objective: f64,
    /// Model rows used so far (cumulative, after this update).
    pub model_rows: u64,
    /// Model calls made so far (cumulative, after this update).
    pub model_calls: u64,
}

/// What a run is about to do, given to observers first.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Updates to perform.
    pub num_iter: usize,
    /// Item shape.
    pub shape: Vec<usize>,
    /// Seed of the run's generator.
    pub seed: u64,
}

/// A hook into a run: logging, progress, savepoint writers, early stopping.
pub trait Observer: Send + Sync {
    /// Called once before the first update.
    fn on_start(&self, _info: &RunInfo) {}
    /// Called once per update with its record.
    fn on_step(&self, _record: &StepRecord) {}
    /// Called for each savepoint with the candidate (shaped like the input).
    fn on_savepoint(&self, _iteration: usize, _candidate: ArrayViewD<'_, f64>) {}
    /// Asked after every update; `true` ends the run early (e.g. on Ctrl-C).
    fn should_stop(&self) -> bool {
        false
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Savepoints: update number → candidate (shaped like the input).
    #[serde(skip)]
    pub savepoints: BTreeMap<usize, ArrayD<f64>>,
    /// One record per update.
    pub history: Vec<StepRecord>,
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
    /// True when an observer stopped the run before `num_iter` updates.
    pub stopped_early: bool,
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
}

struct Prepared {
    component: Arc<Component>,
    kwargs: Arc<dyn ParsedKwargs>,
    resolver: ModelResolver,
}

impl Prepared {
    fn new(registry: &Registry, kind: Kind, name: &str, kwargs: &Kwargs) -> Result<Self> {
        let component = registry.get(kind, name)?;
        let parsed = component.parse_kwargs(kwargs)?;
        Ok(Prepared {
            component,
            kwargs: Arc::from(parsed),
            resolver: kwargs.resolver(),
        })
    }

    fn config(&self) -> Value {
        let mut v = self.kwargs.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("name".into(), Value::String(self.component.name.clone()));
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
    registry: Option<Registry>,
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
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
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
        let global;
        let registry: &Registry = match &self.registry {
            Some(r) => r,
            None => {
                global = crate::registry::global()?;
                &global
            }
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
        let loss = Prepared::new(registry, Kind::Loss, ln, lk)?;
        let optimizer = Prepared::new(registry, Kind::Optimizer, on, ok)?;
        let gradient = Prepared::new(registry, Kind::Gradient, gn, gk)?;
        Ok(ExplanationGenerator {
            loss,
            optimizer,
            gradient,
            num_iter: self.num_iter,
            save_freq: self.save_freq,
            seed: self.seed,
            observers: self.observers,
            metadata: self.metadata,
        })
    }
}

/// Builds a loss, a gradient method and an optimiser from names and kwargs, and runs the
/// optimisation on an input. Reusable: runs share no state.
pub struct ExplanationGenerator {
    loss: Prepared,
    optimizer: Prepared,
    gradient: Prepared,
    num_iter: usize,
    save_freq: Option<usize>,
    seed: u64,
    observers: Vec<Arc<dyn Observer>>,
    metadata: Map<String, Value>,
}

impl std::fmt::Debug for ExplanationGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExplanationGenerator({})", self.config())
    }
}

/// Passes gradient calls through and notes whether one failed, so that an error is attributed
/// to the gradient method rather than to the optimiser that called it.
struct Tagged<'a> {
    inner: &'a mut dyn Gradient,
    failed: bool,
}

impl Gradient for Tagged<'_> {
    fn gradient(
        &mut self,
        problem: &Problem,
        y: ArrayViewD<'_, f64>,
        rng: &mut crate::rng::MaxiRng,
    ) -> Result<ArrayD<f64>> {
        let r = self.inner.gradient(problem, y, rng);
        self.failed |= r.is_err();
        r
    }
}

fn l1(y: &ArrayD<f64>) -> f64 {
    y.iter().map(|v| v.abs()).sum()
}

fn l2sq(y: &ArrayD<f64>) -> f64 {
    y.iter().map(|v| v * v).sum()
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
            "generator": {"num_iter": self.num_iter, "save_freq": self.save_freq, "seed": self.seed},
            "loss": self.loss.config(),
            "optimizer": self.optimizer.config(),
            "gradient": self.gradient.config(),
        })
    }

    /// The seed used by runs.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn is_savepoint(&self, t: usize) -> bool {
        t == 1 || t == self.num_iter || self.save_freq.is_some_and(|f| t.is_multiple_of(f))
    }

    /// Explains `model`'s output on `x` (one item, no batch axis).
    pub fn run(&self, x: ArrayViewD<'_, f64>, model: Arc<dyn Model>) -> Result<Explanation> {
        let started = Instant::now();
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
        let shape = x.shape().to_vec();
        let counting = Arc::new(CountingModel::new(model));
        let mut rng = rng_from_seed(self.seed);

        let loss = match self.loss.component.builder() {
            Builder::Loss(b) => b(
                self.loss.kwargs.as_ref(),
                &LossContext {
                    x: x.view(),
                    model: counting.clone(),
                    models: &self.loss.resolver,
                },
            )?,
            _ => {
                return Err(MaxiError::Other(
                    "internal: loss builder of wrong kind".into(),
                ));
            }
        };
        let bounds = loss.bounds().clone();
        if bounds.lower().shape() != shape.as_slice() {
            return Err(MaxiError::input(
                "bounds",
                format!(
                    "shape {:?} differs from the input's {:?}",
                    bounds.lower().shape(),
                    shape
                ),
            ));
        }
        let start = loss.start();
        if start.shape() != shape.as_slice() {
            return Err(MaxiError::input(
                "start point",
                format!(
                    "shape {:?} differs from the input's {:?}",
                    start.shape(),
                    shape
                ),
            ));
        }
        let mut gradient = match self.gradient.component.builder() {
            Builder::Gradient(b) => b(
                self.gradient.kwargs.as_ref(),
                &GradientContext { shape: &shape },
            )?,
            _ => {
                return Err(MaxiError::Other(
                    "internal: gradient builder of wrong kind".into(),
                ));
            }
        };
        let mut optimizer = match self.optimizer.component.builder() {
            Builder::Optimizer(b) => b(
                self.optimizer.kwargs.as_ref(),
                &OptimizerContext {
                    start: start.view(),
                    bounds: &bounds,
                },
            )?,
            _ => {
                return Err(MaxiError::Other(
                    "internal: optimizer builder of wrong kind".into(),
                ));
            }
        };
        let reg = optimizer.regularization();
        let problem = Problem::new(loss, shape.clone());

        let info = RunInfo {
            num_iter: self.num_iter,
            shape: shape.clone(),
            seed: self.seed,
        };
        for o in &self.observers {
            o.on_start(&info);
        }

        let mut savepoints = BTreeMap::new();
        let mut history = Vec::with_capacity(self.num_iter);
        // (iteration, iterate, cumulative model stats) whose loss value is still to be found.
        let mut pending: Option<(usize, ArrayD<f64>, ModelStats)> = None;
        let mut stopped_early = false;
        let runtime = |kind: Kind, name: &str, t: usize, e: MaxiError| -> MaxiError {
            if e.is_usage() {
                return e;
            }
            let (kind, name) = match &e {
                MaxiError::ModelRun { model, .. } => (Kind::Model, model.clone()),
                _ => (kind, name.to_string()),
            };
            let message = match e {
                MaxiError::ModelRun { message, .. } => message,
                other => other.to_string(),
            };
            MaxiError::Runtime {
                kind,
                component: name,
                iteration: t,
                message,
            }
        };
        let record = |t: usize, y: &ArrayD<f64>, stats: ModelStats, value: f64| {
            let (a, b) = (l1(y), l2sq(y));
            StepRecord {
                iteration: t,
                attack_loss: value,
                l1_norm: a,
                l2_norm_sq: b,
                objective: value + reg.l1 * a + 0.5 * reg.l2 * b,
                model_rows: stats.rows,
                model_calls: stats.calls,
            }
        };
        let mut last_t = 0;
        for t in 1..=self.num_iter {
            let mut tagged = Tagged {
                inner: gradient.as_mut(),
                failed: false,
            };
            let y = optimizer
                .step(&problem, &mut tagged, &mut rng)
                .map_err(|e| {
                    if tagged.failed {
                        runtime(Kind::Gradient, &self.gradient.component.name, t, e)
                    } else {
                        runtime(Kind::Optimizer, &self.optimizer.component.name, t, e)
                    }
                })?;
            if y.shape() != shape.as_slice() {
                return Err(runtime(
                    Kind::Optimizer,
                    &self.optimizer.component.name,
                    t,
                    MaxiError::Other(format!(
                        "returned shape {:?}, expected {:?}",
                        y.shape(),
                        shape
                    )),
                ));
            }
            if y.iter().any(|v| !v.is_finite()) {
                return Err(runtime(
                    Kind::Optimizer,
                    &self.optimizer.component.name,
                    t,
                    MaxiError::Other("returned a non-finite iterate".into()),
                ));
            }
            let stats = counting.stats();
            if let Some((pt, py, pstats)) = pending.take() {
                let v = problem
                    .eval(py.view())
                    .map_err(|e| runtime(Kind::Loss, &self.loss.component.name, pt, e))?;
                let r = record(pt, &py, pstats, v);
                self.observers.iter().for_each(|o| o.on_step(&r));
                history.push(r);
            }
            if self.is_savepoint(t) {
                let c = problem.loss().candidate(y.view());
                self.observers
                    .iter()
                    .for_each(|o| o.on_savepoint(t, c.view()));
                savepoints.insert(t, c);
            }
            pending = Some((t, y, stats));
            last_t = t;
            if t < self.num_iter && self.observers.iter().any(|o| o.should_stop()) {
                stopped_early = true;
                break;
            }
        }
        if let Some((pt, py, _)) = pending.take() {
            if let std::collections::btree_map::Entry::Vacant(slot) = savepoints.entry(pt) {
                // an early stop: the last iterate is always a savepoint
                let c = problem.loss().candidate(py.view());
                self.observers
                    .iter()
                    .for_each(|o| o.on_savepoint(pt, c.view()));
                slot.insert(c);
            }
            let v = problem
                .eval(py.view())
                .map_err(|e| runtime(Kind::Loss, &self.loss.component.name, pt, e))?;
            let r = record(pt, &py, counting.stats(), v);
            self.observers.iter().for_each(|o| o.on_step(&r));
            history.push(r);
        }
        debug_assert_eq!(history.len(), last_t);
        Ok(Explanation {
            savepoints,
            history,
            model: counting.stats(),
            loss_rows: problem.loss_rows(),
            wall_seconds: started.elapsed().as_secs_f64(),
            seed: self.seed,
            config: self.config(),
            metadata: self.metadata.clone(),
            stopped_early,
        })
    }
}
