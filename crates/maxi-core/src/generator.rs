//! The explanation generator: builds the pipeline from names and kwargs and runs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array2, ArrayD, ArrayViewD};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{MaxiError, Result};
use crate::executor::{
    Executor, History, Names, Observer, RoundInfo, Savepoints, Schedule, Scored, Size, StepRecord,
    StopReason, Termination,
};
use crate::kwargs::Kwargs;
use crate::loss::Description;
use crate::model::{CountingModel, Model, ModelStats};
use crate::problem::Problem;
use crate::registry::{
    Entry, GradientContext, GradientKind, InRegistry, LossContext, LossKind, OptimizerContext,
    OptimizerKind, Prepared, Registry, SegmentationContext, SegmentationKind,
};
use crate::rng::rng_from_seed;
use crate::search::{SearchKwargs, SearchMethod, SearchState};
use crate::segmentation::{SegmentSpace, Segmentation, image_view};
use crate::space::{Identity, Unit, VariableSpace};
use crate::spec::Valid;

/// The explanation a run settles on: the best valid iterate of all rounds, else the iterate
/// of the lowest loss.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The explanation in the input's shape (what `explanation.npy` holds).
    #[serde(skip)]
    pub candidate: ArrayD<f64>,
    /// The optimiser's variable behind it (one weight per segment with a segmentation; the
    /// variable is the candidate's offset otherwise).
    #[serde(skip)]
    pub variable: ArrayD<f64>,
    /// Whether it is a valid explanation (`None`: the loss cannot tell).
    pub valid: Option<bool>,
    /// Search round it comes from (0 without a search).
    pub round: usize,
    /// Update (within that round) that produced it.
    pub iteration: usize,
    /// Its loss value.
    pub loss: f64,
    /// Its size (entries used, elastic-net size).
    pub size: Size,
    /// The iterate with every entry it uses at full strength ([`crate::Loss::full_strength`])
    /// replaced it, being valid too.
    pub full_strength: bool,
}

/// One round of a search (the only round without one).
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// 0-based round number.
    pub round: usize,
    /// The kwargs this round changed (`{}` without a search).
    pub settings: Value,
    /// Updates made.
    pub iterations: usize,
    /// Model rows this round sent.
    pub model_rows: u64,
    /// Whether its last iterate was valid (the search's notion of success).
    pub succeeded: bool,
    /// Size of its best valid iterate, if it had one.
    pub best_valid: Option<Size>,
    /// Why it ended.
    pub stop: StopReason,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Savepoints of the round the outcome comes from: update number → candidate (shaped
    /// like the input).
    #[serde(skip)]
    pub savepoints: BTreeMap<usize, ArrayD<f64>>,
    /// One record per update, every round.
    pub history: Vec<StepRecord>,
    /// The explanation the run settles on.
    pub outcome: Outcome,
    /// The rounds of the search (one without a search).
    pub rounds: Vec<Round>,
    /// What the explanation is (from the loss).
    pub description: Description,
    /// The canonical names of the loss, gradient method and optimiser.
    pub names: Names,
    /// What one variable entry stands for.
    pub unit: Unit,
    /// The label map `[H, W]` when the run worked on one weight per segment.
    #[serde(skip)]
    pub segments: Option<Array2<i32>>,
    /// Entries of the variable above this magnitude count as used ([`Size::support`]).
    pub support_threshold: f64,
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
    /// Why the last round ended.
    pub stop: StopReason,
}

impl Explanation {
    /// The last savepoint of the outcome's round.
    pub fn final_candidate(&self) -> Option<&ArrayD<f64>> {
        self.savepoints.values().next_back()
    }

    /// The record of the last update.
    pub fn last_record(&self) -> Option<&StepRecord> {
        self.history.last()
    }

    /// True when an observer stopped the run before `num_iter` updates.
    pub fn stopped_early(&self) -> bool {
        self.stop == StopReason::Observer
    }
}

/// A component chosen by name, with checked kwargs, ready to be built for each run.
struct Chosen<K: InRegistry> {
    entry: Arc<Entry<K>>,
    kwargs: Kwargs,
    prepared: Arc<dyn Prepared<K>>,
}

impl<K: InRegistry> Chosen<K> {
    fn new(registry: &Registry, name: &str, kwargs: &Kwargs) -> Result<Self> {
        let entry = registry.get::<K>(name)?;
        let prepared = entry.prepare(kwargs)?;
        Ok(Chosen {
            entry,
            kwargs: kwargs.clone(),
            prepared,
        })
    }

    fn name(&self) -> &str {
        &self.entry.meta.name
    }

    /// The component with some kwargs changed (checked again).
    fn with(&self, changes: &Value) -> Result<Arc<dyn Prepared<K>>> {
        let Value::Object(changes) = changes else {
            return Ok(self.prepared.clone());
        };
        if changes.is_empty() {
            return Ok(self.prepared.clone());
        }
        let mut kwargs = self.kwargs.clone();
        for (k, v) in changes {
            kwargs = kwargs.set(k.clone(), v)?;
        }
        self.entry.prepare(&kwargs)
    }

    /// A resolved numeric kwarg (for a search's starting value).
    fn number(&self, key: &str) -> Option<f64> {
        self.prepared.kwargs_json().get(key).and_then(Value::as_f64)
    }

    fn config(&self) -> Value {
        let mut v = self.prepared.kwargs_json();
        if let Value::Object(m) = &mut v {
            m.insert("name".into(), Value::String(self.name().to_string()));
        }
        v
    }
}

/// Builder of an [`ExplanationGenerator`].
pub struct GeneratorBuilder {
    loss: Option<(String, Kwargs)>,
    optimizer: Option<(String, Kwargs)>,
    gradient: Option<(String, Kwargs)>,
    segmentation: Option<(String, Kwargs)>,
    num_iter: usize,
    save_freq: Option<usize>,
    seed: u64,
    observers: Vec<Arc<dyn Observer>>,
    metadata: Map<String, Value>,
    registry: Option<Arc<Registry>>,
    search: SearchKwargs,
    model_loader: Option<ModelLoader>,
}

/// Opens a model file named by a model-valued kwarg (e.g. CEM's `AE`).
pub type ModelLoader = Arc<dyn Fn(&std::path::Path) -> Result<Arc<dyn Model>> + Send + Sync>;

impl GeneratorBuilder {
    /// How model-valued kwargs given as paths are opened (once, by [`Self::build`]); the
    /// default is the registry's backend for the file's extension with its default kwargs.
    pub fn model_loader(mut self, loader: ModelLoader) -> Self {
        self.model_loader = Some(loader);
        self
    }

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
    /// Works on one weight per segment of the input image, segmented by the named
    /// segmentation with its kwargs (default: one variable per input entry).
    pub fn segmentation(mut self, name: impl Into<String>, kwargs: Kwargs) -> Self {
        self.segmentation = Some((name.into(), kwargs));
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
    /// Searches over a setting, with a row budget and early stopping (see [`crate::search`]).
    pub fn search(mut self, search: SearchKwargs) -> Self {
        self.search = search;
        self
    }

    /// Uses this registry instead of the process-wide one.
    pub fn registry(mut self, registry: impl Into<Arc<Registry>>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// Resolves every name and validates every kwarg and setting.
    pub fn build(self) -> Result<ExplanationGenerator> {
        if self.num_iter == 0 || self.num_iter > MAX_NUM_ITER {
            return Err(MaxiError::InvalidSetting {
                name: "num_iter".into(),
                message: format!(
                    "must be between 1 and {MAX_NUM_ITER}, got {}; for longer runs use several rounds (`search`) or resume from a savepoint",
                    self.num_iter
                ),
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
        let search = Valid::check(self.search).map_err(|p| MaxiError::InvalidSetting {
            name: format!("search.{}", p.field),
            message: p.message,
        })?;
        // model files named by the loss's kwargs are opened once, here, not on every run
        let mut lk = lk.clone();
        let loss_entry = registry.get::<LossKind>(ln)?;
        let models = loss_entry.meta.model_kwargs();
        if !models.is_empty() {
            let by_extension = |p: &std::path::Path| registry.load_model_file(p);
            match &self.model_loader {
                Some(load) => lk.preload(&models, load.as_ref())?,
                None => lk.preload(&models, &by_extension)?,
            }
        }
        let generator = ExplanationGenerator {
            loss: Chosen::new(&registry, ln, &lk)?,
            optimizer: Chosen::new(&registry, on, ok)?,
            gradient: Chosen::new(&registry, gn, gk)?,
            segmentation: match &self.segmentation {
                Some((sn, sk)) => Some(Chosen::new(&registry, sn, sk)?),
                None => None,
            },
            schedule: Schedule {
                num_iter: self.num_iter,
                every: self.save_freq,
            },
            seed: self.seed,
            observers: self.observers,
            metadata: self.metadata,
            search,
        };
        generator.search_start()?;
        Ok(generator)
    }
}

/// Builds a loss, a gradient method and an optimiser from names and kwargs, and runs the
/// optimisation on an input. Reusable: runs share no state.
pub struct ExplanationGenerator {
    loss: Chosen<LossKind>,
    optimizer: Chosen<OptimizerKind>,
    gradient: Chosen<GradientKind>,
    segmentation: Option<Chosen<SegmentationKind>>,
    schedule: Schedule,
    seed: u64,
    observers: Vec<Arc<dyn Observer>>,
    metadata: Map<String, Value>,
    search: Valid<SearchKwargs>,
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
            segmentation: None,
            num_iter: 30,
            save_freq: None,
            seed: 0,
            observers: Vec::new(),
            metadata: Map::new(),
            registry: None,
            search: SearchKwargs::default(),
            model_loader: None,
        }
    }

    /// The resolved configuration: names, every kwarg with defaults, and the settings.
    pub fn config(&self) -> Value {
        let mut config = json!({
            "generator": {
                "num_iter": self.schedule.num_iter,
                "save_freq": self.schedule.every,
                "seed": self.seed,
            },
            "loss": self.loss.config(),
            "optimizer": self.optimizer.config(),
            "gradient": self.gradient.config(),
            "search": serde_json::to_value(&*self.search).unwrap_or(Value::Null),
        });
        if let Some(s) = &self.segmentation {
            config["segmentation"] = s.config();
        }
        config
    }

    /// The variable space of a run on `x`: one weight per segment when a segmentation is
    /// configured, else the input itself.
    pub fn space_for(&self, x: ArrayViewD<'_, f64>) -> Result<Arc<dyn VariableSpace>> {
        let Some(chosen) = &self.segmentation else {
            return Ok(Arc::new(Identity::new(x.shape())));
        };
        let image = image_view(&x)?;
        let (h, w, _) = image.dim();
        let segmenter = chosen.prepared.build(&SegmentationContext)?;
        let labels = segmenter.segment(image)?;
        let segmentation = Segmentation::new(labels, h, w, chosen.name())?;
        Ok(Arc::new(SegmentSpace::new(segmentation, x.shape())?))
    }

    /// The canonical names of the chosen components.
    pub fn names(&self) -> Names {
        Names {
            loss: self.loss.name().to_string(),
            gradient: self.gradient.name().to_string(),
            optimizer: self.optimizer.name().to_string(),
        }
    }

    /// The search's state before its first round; checks that the searched kwargs exist.
    fn search_start(&self) -> Result<SearchState> {
        let method = self.search.method;
        let need = |chosen: Option<f64>, kind: &str, name: &str, key: &str| {
            chosen.ok_or_else(|| MaxiError::InvalidSetting {
                name: "search.method".into(),
                message: format!(
                    "`{method:?}` searches over the {kind}'s `{key}`, but {kind} `{name}` has no numeric kwarg `{key}`; use method = \"none\" or a {kind} with one (cem has `c`; ao_exp_grad and ada_exp_grad have `l1` and `l2`)"
                ),
            })
        };
        let (c, l1, l2) = match method {
            SearchMethod::None => (0.0, 0.0, 0.0),
            SearchMethod::C => (
                need(self.loss.number("c"), "loss", self.loss.name(), "c")?,
                0.0,
                0.0,
            ),
            SearchMethod::L1 => (
                0.0,
                need(
                    self.optimizer.number("l1"),
                    "optimizer",
                    self.optimizer.name(),
                    "l1",
                )?,
                need(
                    self.optimizer.number("l2"),
                    "optimizer",
                    self.optimizer.name(),
                    "l2",
                )?,
            ),
        };
        Ok(SearchState::start(method, c, l1, l2))
    }

    /// The seed used by runs.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Explains `model`'s output on `x` (one item, no batch axis).
    pub fn run(&self, x: ArrayViewD<'_, f64>, model: Arc<dyn Model>) -> Result<Explanation> {
        self.run_seeded(x, model, self.seed)
    }

    /// Like [`ExplanationGenerator::run`], with `seed` in place of the generator's seed (e.g.
    /// one seed per input of a batch, see [`crate::batch`]).
    pub fn run_seeded(
        &self,
        x: ArrayViewD<'_, f64>,
        model: Arc<dyn Model>,
        seed: u64,
    ) -> Result<Explanation> {
        let started = Instant::now();
        check_input(x.view(), model.as_ref())?;
        let counting = Arc::new(CountingModel::new(model));
        let space = self.space_for(x.view())?;
        let mut search = self.search_start()?;
        let rounds_planned = self.search.rounds();
        let termination = Termination {
            budget_rows: self.search.budget_rows,
            patience: self.search.patience,
            give_up: self.search.give_up,
            reserve_rows: if self.search.budget_rows.is_some() {
                FULL_STRENGTH_CHECKS as u64
            } else {
                0
            },
        };
        let history = Arc::new(History::default());
        let mut rounds: Vec<Round> = Vec::new();
        // the outcome so far
        let mut best: Option<Best> = None;
        let mut warm: Option<ArrayD<f64>> = None;
        let mut loss_rows = 0;
        let mut stop = StopReason::Completed;
        for round in 0..rounds_planned {
            let settings = search.settings();
            let (loss_changes, optimizer_changes) = match self.search.method {
                SearchMethod::C => (settings.clone(), json!({})),
                SearchMethod::L1 => (json!({}), settings.clone()),
                SearchMethod::None => (json!({}), json!({})),
            };
            let rows_before = counting.stats().rows;
            let loss = self.loss.with(&loss_changes)?.build(&LossContext {
                x: x.view(),
                model: counting.clone(),
                models: &self.loss.kwargs.resolver(),
                space: space.clone(),
                seed,
            })?;
            let bounds = loss.bounds().clone();
            check_variable_shape("bounds", bounds.lower().shape(), space.as_ref())?;
            let mut start = loss.start();
            check_variable_shape("start point", start.shape(), space.as_ref())?;
            if let (true, Some(w)) = (self.search.warm_start, warm.take()) {
                start = w;
                bounds.clip(&mut start);
            }
            let description = loss.describe();
            let mut gradient = self.gradient.prepared.build(&GradientContext {
                shape: space.shape(),
            })?;
            let mut optimizer =
                self.optimizer
                    .with(&optimizer_changes)?
                    .build(&OptimizerContext {
                        start: start.view(),
                        bounds: &bounds,
                    })?;
            let problem = Problem::new(loss, space.clone());
            let savepoints = Arc::new(Savepoints::default());
            let mut executor = Executor::new(
                &problem,
                &counting,
                gradient.as_mut(),
                optimizer.as_mut(),
                self.schedule,
            )
            .names(self.names())
            .termination(termination)
            .seed(seed)
            .observer(history.clone())
            .observer(savepoints.clone());
            if self.search.method != SearchMethod::None {
                executor = executor.round(RoundInfo {
                    index: round,
                    of: rounds_planned,
                    settings: settings.clone(),
                });
            }
            for o in &self.observers {
                executor = executor.observer(o.clone());
            }
            let mut rng = round_rng(seed, round);
            let finished = executor.run(&mut rng)?;
            loss_rows += problem.loss_rows();
            stop = finished.stop;
            let succeeded = finished
                .last
                .as_ref()
                .is_some_and(|l| l.value.valid.unwrap_or(l.value.value < 0.0));
            let reg = optimizer.regularization();
            let strong =
                full_strength(&problem, &finished, &counting, self.search.budget_rows, reg)?;
            let full = strong.is_some();
            rounds.push(Round {
                round,
                settings,
                iterations: finished.iterations,
                // the round's rows include its full-strength checks
                model_rows: counting.stats().rows - rows_before,
                succeeded,
                best_valid: finished.best_valid.as_ref().map(|b| b.size),
                stop: finished.stop,
            });
            if let Some(result) = strong.as_ref().or(finished.result())
                && best
                    .as_ref()
                    .is_none_or(|b| better((result, full), (&b.scored, b.full)))
            {
                best = Some(Best {
                    round,
                    candidate: problem.loss().candidate(result.iterate.view()),
                    variable: result.iterate.clone(),
                    scored: result.clone(),
                    full,
                    savepoints: savepoints.take(),
                    description,
                    support_threshold: problem.support_threshold(),
                });
            }
            // a failed round is continued (its last iterate is on its way, and its gradient is
            // informative); after a round that ended valid the next starts afresh: from a
            // valid point the attack term is flat and gives the optimiser nothing to go on
            warm = if succeeded {
                None
            } else {
                finished.last.as_ref().map(|l| l.iterate.clone())
            };
            search.advance(succeeded);
            if search.finished()
                || matches!(finished.stop, StopReason::Budget | StopReason::Observer)
            {
                break;
            }
        }
        let best = best.ok_or_else(|| MaxiError::InvalidSetting {
            name: "search.budget_rows".into(),
            message: format!(
                "{} model rows are not enough for a single update; raise budget_rows",
                self.search.budget_rows.unwrap_or(0)
            ),
        })?;
        Ok(Explanation {
            savepoints: best.savepoints,
            history: history.take(),
            outcome: Outcome {
                candidate: best.candidate,
                variable: best.variable,
                valid: best.scored.value.valid,
                round: best.round,
                iteration: best.scored.iteration,
                loss: best.scored.value.value,
                size: best.scored.size,
                full_strength: best.full,
            },
            rounds,
            description: best.description,
            names: self.names(),
            unit: space.unit(),
            segments: space.segments().map(|s| s.labels().to_owned()),
            support_threshold: best.support_threshold,
            model: counting.stats(),
            loss_rows,
            wall_seconds: started.elapsed().as_secs_f64(),
            seed,
            config: self.config(),
            metadata: self.metadata.clone(),
            stop,
        })
    }
}

/// The best outcome of the rounds so far, with what the explanation needs from its round.
struct Best {
    round: usize,
    scored: Scored,
    full: bool,
    candidate: ArrayD<f64>,
    variable: ArrayD<f64>,
    savepoints: BTreeMap<usize, ArrayD<f64>>,
    description: Description,
    support_threshold: f64,
}

/// The run's generator for round `round`: the seed's own stream for round 0 (a run without a
/// search), an independent stream derived from the seed for the others.
fn round_rng(seed: u64, round: usize) -> crate::rng::MaxiRng {
    if round == 0 {
        return rng_from_seed(seed);
    }
    // splitmix64 of (seed, round): well-mixed, independent of how much earlier rounds drew
    let mut z = seed ^ (round as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    rng_from_seed(z ^ (z >> 31))
}

/// Most updates per round: ten million (MNIST runs take hundreds; the bound keeps a mistyped
/// number from meaning days of work).
pub const MAX_NUM_ITER: usize = 10_000_000;

/// Most full-strength forms of a round's valid iterates that are tried.
const FULL_STRENGTH_CHECKS: usize = 24;

/// The smallest valid full-strength form of a round's smallest valid iterates, trying at most
/// [`FULL_STRENGTH_CHECKS`] forms (one model row each) within the budget.
fn full_strength(
    problem: &Problem,
    finished: &crate::executor::Finished,
    counting: &CountingModel,
    budget: Option<u64>,
    reg: crate::optimizer::Regularization,
) -> Result<Option<Scored>> {
    let threshold = problem.support_threshold();
    let floor = problem.loss().describe().attack_floor;
    let mut best: Option<Scored> = None;
    let mut checks = 0;
    for candidate in &finished.valid {
        for strong in problem
            .loss()
            .full_strength(candidate.iterate.view(), threshold)
        {
            if checks == FULL_STRENGTH_CHECKS
                || budget.is_some_and(|b| counting.stats().rows + 1 > b)
            {
                return Ok(best);
            }
            checks += 1;
            let value = problem.assess(strong.view())?;
            let size = Size::of(strong.view(), value.value, threshold, reg, floor);
            if value.valid == Some(true) && best.as_ref().is_none_or(|b| size.smaller_than(&b.size))
            {
                best = Some(Scored {
                    iteration: candidate.iteration,
                    iterate: strong,
                    value,
                    size,
                });
            }
        }
    }
    Ok(best)
}

/// True when `a` is a better outcome than `b` (each with whether it is a full-strength form):
/// valid beats not valid; among valid, full strength beats partial, then the smaller size;
/// otherwise the lower loss.
fn better((a, a_full): (&Scored, bool), (b, b_full): (&Scored, bool)) -> bool {
    match (a.value.valid == Some(true), b.value.valid == Some(true)) {
        (true, false) => true,
        (false, true) => false,
        (true, true) if a_full != b_full => a_full,
        (true, true) => a.size.smaller_than(&b.size),
        (false, false) => a.value.value < b.value.value,
    }
}
