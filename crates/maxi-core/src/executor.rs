//! The executor: owns the optimisation loop — asking the optimiser where it needs a gradient,
//! having the gradient method compute it, counting, step records, savepoints, observers and
//! termination — so that optimisers and gradient methods each do one thing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ndarray::{ArrayD, ArrayViewD};
use serde::Serialize;

use crate::error::{Kind, MaxiError, Result};
use crate::gradient::{Gradient, Request};
use crate::loss::Assessed;
use crate::model::{CountingModel, ModelStats};
use crate::optimizer::{Optimizer, Regularization};
use crate::problem::Problem;
use crate::rng::MaxiRng;

/// The record of one optimiser update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepRecord {
    /// 1-based update number (within its round).
    pub iteration: usize,
    /// Search round the update belongs to (0 without a search).
    pub round: usize,
    /// `L(v)`: the loss at the new iterate.
    pub attack_loss: f64,
    /// Whether the new iterate is a valid explanation (`None`: the loss cannot tell).
    pub valid: Option<bool>,
    /// `‖v‖₁` of the new iterate.
    pub l1_norm: f64,
    /// `‖v‖₂²` of the new iterate.
    pub l2_norm_sq: f64,
    /// `L(v) + l1·‖v‖₁ + (l2/2)·‖v‖₂²` with the optimiser's weights.
    pub objective: f64,
    /// Model rows sent up to and including this update's gradient (the row that evaluates
    /// `L(v)` of this iterate rides along with the next call and is counted there).
    pub model_rows: u64,
    /// Model calls made up to and including this update's gradient.
    pub model_calls: u64,
}

/// Which round of a search a run is.
#[derive(Debug, Clone, Serialize)]
pub struct RoundInfo {
    /// 0-based round number.
    pub index: usize,
    /// Most rounds the search will run.
    pub of: usize,
    /// The kwargs this round changes (e.g. `{"c": 5.0}`).
    pub settings: serde_json::Value,
}

/// What a run is about to do, given to observers first.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Updates to perform (at most).
    pub num_iter: usize,
    /// Shape of the optimiser's variable.
    pub shape: Vec<usize>,
    /// Seed of the run's generator.
    pub seed: u64,
    /// The search round, when the run is one.
    pub round: Option<RoundInfo>,
}

/// A hook into a run: logging, progress, savepoint writers, early stopping.
pub trait Observer: Send + Sync {
    /// Called once before the first update of a run (of each round of a search).
    fn on_start(&self, _info: &RunInfo) {}
    /// Called once per update with its record.
    fn on_step(&self, _record: &StepRecord) {}
    /// Called for each savepoint with the candidate (in the input's shape).
    fn on_savepoint(&self, _iteration: usize, _candidate: ArrayViewD<'_, f64>) {}
    /// Asked after every update; `true` ends the run early (e.g. on Ctrl-C).
    fn should_stop(&self) -> bool {
        false
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All `num_iter` updates were made.
    Completed,
    /// An observer asked to stop (e.g. Ctrl-C).
    Observer,
    /// The next update would have exceeded the model-row budget.
    Budget,
    /// The best valid iterate did not improve for `patience` updates.
    Converged,
    /// No valid iterate within `give_up` updates.
    GaveUp,
}

/// When savepoints are taken: after update 1, every `every`-th update and the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Updates to perform (≥ 1).
    pub num_iter: usize,
    /// Savepoint period; `None`: only the first and the last update.
    pub every: Option<usize>,
}

impl Schedule {
    /// True when update `t` is a savepoint.
    pub fn is_savepoint(&self, t: usize) -> bool {
        t == 1 || t == self.num_iter || self.every.is_some_and(|f| t.is_multiple_of(f))
    }
}

/// Ends a run before `num_iter` updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Termination {
    /// Rows the explained model may have received in all when the run ends (rows sent before
    /// the run count too): no update starts that could cross it.
    pub budget_rows: Option<u64>,
    /// Stop once there is a valid iterate and the best one has not improved for this many
    /// updates.
    pub patience: Option<usize>,
    /// Stop when this many updates have not produced a single valid iterate (for a loss that
    /// tells validity).
    pub give_up: Option<usize>,
    /// Rows of the budget to leave unused by the updates (for checks after the run).
    pub reserve_rows: u64,
}

/// The canonical names of a pipeline's components (reported when they fail).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Names {
    /// The loss's canonical name.
    pub loss: String,
    /// The gradient method's canonical name.
    pub gradient: String,
    /// The optimiser's canonical name.
    pub optimizer: String,
}

/// How large (costly) a valid explanation is. Valid explanations are ranked by their
/// penalty — the objective `L(v) + l1·‖v‖₁ + (l2/2)·‖v‖₂²` less the attack term's value at a
/// valid point ([`crate::Description::attack_floor`]), so that runs with different weights of
/// the attack term compare — then by the entries they use, then by IBM's elastic-net size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Size {
    /// `L(v) − attack floor + l1·‖v‖₁ + (l2/2)·‖v‖₂²`: the penalties of the objective (sparsity,
    /// and e.g. CEM's autoencoder term).
    pub penalty: f64,
    /// Entries of the variable whose magnitude exceeds the support threshold.
    pub support: usize,
    /// `l1·‖v‖₁ + ‖v‖₂²` with the run's L1 weight.
    pub elastic: f64,
}

impl Size {
    /// Of `v` with loss value `value`, `threshold`, the regularisation and the attack floor.
    pub fn of(
        v: ArrayViewD<'_, f64>,
        value: f64,
        threshold: f64,
        reg: Regularization,
        floor: f64,
    ) -> Size {
        let (mut support, mut a, mut b) = (0usize, 0.0f64, 0.0f64);
        for x in v.iter() {
            support += usize::from(x.abs() > threshold);
            a += x.abs();
            b += x * x;
        }
        Size {
            penalty: value - floor + reg.l1 * a + 0.5 * reg.l2 * b,
            support,
            elastic: reg.l1 * a + b,
        }
    }

    /// True when `self` ranks strictly before `other`.
    pub fn smaller_than(&self, other: &Size) -> bool {
        (self.penalty, self.support, self.elastic) < (other.penalty, other.support, other.elastic)
    }
}

/// An iterate with its value, verdict and size.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Update that produced it (within its round).
    pub iteration: usize,
    /// The iterate (variable space).
    pub iterate: ArrayD<f64>,
    /// Its loss value and verdict.
    pub value: Assessed,
    /// Its size.
    pub size: Size,
}

/// What the executor knows at the end of a run.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Updates made.
    pub iterations: usize,
    /// Why the run ended.
    pub stop: StopReason,
    /// The last iterate, unless the run could not make a single update.
    pub last: Option<Scored>,
    /// The valid iterate of the smallest [`Size`] (the earliest among equals).
    pub best_valid: Option<Scored>,
    /// The smallest valid iterates with distinct supports, smallest first (at most
    /// [`RUNNERS_UP`]), the best one included.
    pub valid: Vec<Scored>,
    /// The iterate of the lowest loss value (the latest among equals).
    pub lowest: Option<Scored>,
}

impl Finished {
    /// The run's result: the best valid iterate, else the lowest-loss one.
    pub fn result(&self) -> Option<&Scored> {
        self.best_valid.as_ref().or(self.lowest.as_ref())
    }
}

/// Runs an optimiser with a gradient method on a problem (see the module docs).
pub struct Executor<'a> {
    problem: &'a Problem,
    model: &'a CountingModel,
    gradient: &'a mut dyn Gradient,
    optimizer: &'a mut dyn Optimizer,
    names: Names,
    schedule: Schedule,
    termination: Termination,
    observers: Vec<Arc<dyn Observer>>,
    seed: u64,
    round: Option<RoundInfo>,
    /// The loss's attack floor (see [`Size`]).
    floor: f64,
}

/// An iterate whose loss value is still to be found, with the counters at its update.
struct Pending {
    t: usize,
    iterate: ArrayD<f64>,
    stats: ModelStats,
}

/// Best iterates seen so far.
/// Valid iterates [`Finished::valid`] keeps.
pub const RUNNERS_UP: usize = 8;

/// The run's best, runners-up, lowest and last iterates.
struct Tracker {
    /// Entries above this count as support (the problem's, computed once per run).
    threshold: f64,
    best_valid: Option<Scored>,
    valid: Vec<Scored>,
    lowest: Option<Scored>,
    last: Option<Scored>,
    improved_at: usize,
}

impl Tracker {
    fn new(threshold: f64) -> Self {
        Tracker {
            threshold,
            best_valid: None,
            valid: Vec::new(),
            lowest: None,
            last: None,
            improved_at: 0,
        }
    }

    fn see(&mut self, s: Scored) {
        if s.value.valid == Some(true)
            && self
                .best_valid
                .as_ref()
                .is_none_or(|b| s.size.smaller_than(&b.size))
        {
            self.improved_at = s.iteration;
            self.best_valid = Some(s.clone());
        }
        if s.value.valid == Some(true)
            && !self.valid.iter().any(|v| v.size.support == s.size.support)
        {
            let at = self
                .valid
                .iter()
                .position(|v| s.size.smaller_than(&v.size))
                .unwrap_or(self.valid.len());
            if at < RUNNERS_UP {
                self.valid.insert(at, s.clone());
                self.valid.truncate(RUNNERS_UP);
            }
        }
        if self
            .lowest
            .as_ref()
            .is_none_or(|b| s.value.value <= b.value.value)
        {
            self.lowest = Some(s.clone());
        }
        self.last = Some(s);
    }
}

fn l1(v: &ArrayD<f64>) -> f64 {
    v.iter().map(|x| x.abs()).sum()
}

fn l2sq(v: &ArrayD<f64>) -> f64 {
    v.iter().map(|x| x * x).sum()
}

impl<'a> Executor<'a> {
    /// An executor for `problem`; `model` is the counted model the loss calls.
    pub fn new(
        problem: &'a Problem,
        model: &'a CountingModel,
        gradient: &'a mut dyn Gradient,
        optimizer: &'a mut dyn Optimizer,
        schedule: Schedule,
    ) -> Self {
        Executor {
            problem,
            model,
            gradient,
            optimizer,
            names: Names::default(),
            schedule,
            termination: Termination::default(),
            observers: Vec::new(),
            seed: 0,
            round: None,
            floor: problem.loss().describe().attack_floor,
        }
    }

    /// Names the components in runtime errors.
    pub fn names(mut self, names: Names) -> Self {
        self.names = names;
        self
    }

    /// Ends the run early on a row budget or when the best valid iterate stops improving.
    pub fn termination(mut self, termination: Termination) -> Self {
        self.termination = termination;
        self
    }

    /// Adds an observer.
    pub fn observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observers.push(o);
        self
    }

    /// The seed reported to observers.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The search round this run is, reported to observers and in the records.
    pub fn round(mut self, round: RoundInfo) -> Self {
        self.round = Some(round);
        self
    }

    /// A failure while running, attributed to the component that failed.
    fn runtime(&self, kind: Kind, t: usize, e: MaxiError) -> MaxiError {
        if e.is_usage() {
            return e;
        }
        let (kind, component) = match &e {
            MaxiError::ModelRun { model, .. } => (Kind::Model, model.clone()),
            _ => (
                kind,
                match kind {
                    Kind::Loss => self.names.loss.clone(),
                    Kind::Gradient => self.names.gradient.clone(),
                    _ => self.names.optimizer.clone(),
                },
            ),
        };
        let message = match e {
            MaxiError::ModelRun { message, .. } => message,
            other => other.to_string(),
        };
        MaxiError::Runtime {
            kind,
            component,
            iteration: t,
            message,
        }
    }

    fn record(&self, p: &Pending, value: Assessed, reg: Regularization) -> StepRecord {
        let (a, b) = (l1(&p.iterate), l2sq(&p.iterate));
        StepRecord {
            iteration: p.t,
            round: self.round.as_ref().map_or(0, |r| r.index),
            attack_loss: value.value,
            valid: value.valid,
            l1_norm: a,
            l2_norm_sq: b,
            objective: value.value + reg.l1 * a + 0.5 * reg.l2 * b,
            model_rows: p.stats.rows,
            model_calls: p.stats.calls,
        }
    }

    /// Emits the record of `p` and tracks it.
    fn settle(&self, p: Pending, value: Assessed, reg: Regularization, tracker: &mut Tracker) {
        let r = self.record(&p, value, reg);
        self.observers.iter().for_each(|o| o.on_step(&r));
        let size = Size::of(
            p.iterate.view(),
            value.value,
            tracker.threshold,
            reg,
            self.floor,
        );
        tracker.see(Scored {
            iteration: p.t,
            iterate: p.iterate,
            value,
            size,
        });
    }

    fn savepoint(&self, t: usize, iterate: &ArrayD<f64>) {
        let c = self.problem.loss().candidate(iterate.view());
        self.observers
            .iter()
            .for_each(|o| o.on_savepoint(t, c.view()));
    }

    fn check_array(&self, kind: Kind, t: usize, what: &str, a: ArrayViewD<'_, f64>) -> Result<()> {
        let shape = self.problem.shape();
        if a.shape() != shape {
            return Err(self.runtime(
                kind,
                t,
                MaxiError::Other(format!(
                    "returned {what} of shape {:?}, expected {shape:?}",
                    a.shape()
                )),
            ));
        }
        if let Some(i) = a.iter().position(|v| !v.is_finite()) {
            return Err(self.runtime(
                kind,
                t,
                MaxiError::Other(format!(
                    "returned {what} with a non-finite value ({}) at flat index {i}",
                    a.iter().nth(i).copied().unwrap_or(f64::NAN)
                )),
            ));
        }
        Ok(())
    }

    /// True when update `t` (with or without an extra point) could cross the row budget,
    /// keeping one evaluation for the final iterate.
    fn over_budget(&self, with_also: bool, per_loss_row: u64) -> Result<bool> {
        let Some(budget) = self.termination.budget_rows else {
            return Ok(false);
        };
        let cost = self.gradient.rows_per_estimate(with_also).ok_or_else(|| {
            MaxiError::InvalidSetting {
                name: "budget_rows".into(),
                message: format!(
                    "needs a gradient method that tells how many rows a gradient costs; `{}` does not (remove budget_rows or choose urv/usrv)",
                    self.names.gradient
                ),
            }
        })?;
        let used = self.model.stats().rows + self.termination.reserve_rows;
        let next = (cost + 1).saturating_mul(per_loss_row);
        Ok(used.saturating_add(next) > budget)
    }

    /// Runs the updates, drawing from `rng`.
    pub fn run(self, rng: &mut MaxiRng) -> Result<Finished> {
        let num_iter = self.schedule.num_iter;
        let info = RunInfo {
            num_iter,
            shape: self.problem.shape().to_vec(),
            seed: self.seed,
            round: self.round.clone(),
        };
        self.observers.iter().for_each(|o| o.on_start(&info));
        let reg = self.optimizer.regularization();
        let mut tracker = Tracker::new(self.problem.support_threshold());
        let mut pending: Option<Pending> = None;
        let mut stop = StopReason::Completed;
        // model rows per loss row, learnt from the first gradient (1 until then)
        let mut per_loss_row = 1u64;
        for t in 1..=num_iter {
            let query = self.optimizer.query();
            // the iterate of the last update still needs its value: from the gradient's own
            // evaluation when it is the query point, else as an extra row of its batch
            let also = pending
                .as_ref()
                .filter(|p| p.iterate.view() != query)
                .map(|p| p.iterate.view());
            let at_query = also.is_none();
            if self.over_budget(!at_query, per_loss_row)? {
                stop = StopReason::Budget;
                break;
            }
            let request = Request {
                at: query,
                also,
                more: t < num_iter,
            };
            let (rows_before, loss_before) = (self.model.stats().rows, self.problem.loss_rows());
            let estimate = self
                .gradient
                .estimate(self.problem, &request, rng)
                .map_err(|e| self.runtime(Kind::Gradient, t, e))?;
            let loss_rows = self.problem.loss_rows() - loss_before;
            if t == 1 && loss_rows > 0 {
                let model_rows = self.model.stats().rows - rows_before;
                per_loss_row = model_rows.div_ceil(loss_rows).max(1);
            }
            self.check_array(Kind::Gradient, t, "a gradient", estimate.gradient.view())?;
            if let Some(p) = pending.take() {
                let known = if at_query { estimate.at } else { estimate.also };
                let value = match known {
                    Some(v) => v,
                    None => self
                        .problem
                        .assess(p.iterate.view())
                        .map_err(|e| self.runtime(Kind::Loss, p.t, e))?,
                };
                self.settle(p, value, reg, &mut tracker);
            }
            self.optimizer
                .update(estimate.gradient.view())
                .map_err(|e| self.runtime(Kind::Optimizer, t, e))?;
            let iterate = self.optimizer.iterate();
            self.check_array(Kind::Optimizer, t, "an iterate", iterate.view())?;
            let iterate = iterate.to_owned();
            if self.schedule.is_savepoint(t) {
                self.savepoint(t, &iterate);
            }
            pending = Some(Pending {
                t,
                iterate,
                stats: self.model.stats(),
            });
            if t == num_iter {
                break;
            }
            if self.observers.iter().any(|o| o.should_stop()) {
                stop = StopReason::Observer;
                break;
            }
            if let Some(patience) = self.termination.patience
                && tracker.best_valid.is_some()
                && t.saturating_sub(tracker.improved_at) >= patience
            {
                stop = StopReason::Converged;
                break;
            }
            if let Some(give_up) = self.termination.give_up
                && tracker.best_valid.is_none()
                && tracker
                    .last
                    .as_ref()
                    .is_some_and(|l| l.value.valid.is_some())
                && t >= give_up
            {
                stop = StopReason::GaveUp;
                break;
            }
        }
        let Some(p) = pending else {
            // not a single update fitted in the budget
            return Ok(Finished {
                iterations: 0,
                stop,
                last: None,
                best_valid: None,
                valid: Vec::new(),
                lowest: None,
            });
        };
        if !self.schedule.is_savepoint(p.t) {
            // an early stop: the last iterate is always a savepoint
            self.savepoint(p.t, &p.iterate);
        }
        let value = self
            .problem
            .assess(p.iterate.view())
            .map_err(|e| self.runtime(Kind::Loss, p.t, e))?;
        let iterations = p.t;
        self.settle(p, value, reg, &mut tracker);
        Ok(Finished {
            iterations,
            stop,
            last: tracker.last,
            best_valid: tracker.best_valid,
            valid: tracker.valid,
            lowest: tracker.lowest,
        })
    }
}

/// Collects the step records of a run.
#[derive(Default)]
pub struct History {
    records: Mutex<Vec<StepRecord>>,
}

impl History {
    /// The records so far.
    pub fn take(&self) -> Vec<StepRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Observer for History {
    fn on_start(&self, info: &RunInfo) {
        // records of every round accumulate; never reserved from a number the user typed
        let mut r = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        r.reserve(info.num_iter.min(1024));
    }
    fn on_step(&self, record: &StepRecord) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(*record);
    }
}

/// Collects the savepoints of a run.
#[derive(Default)]
pub struct Savepoints {
    points: Mutex<BTreeMap<usize, ArrayD<f64>>>,
}

impl Savepoints {
    /// The savepoints so far.
    pub fn take(&self) -> BTreeMap<usize, ArrayD<f64>> {
        std::mem::take(&mut *self.points.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Observer for Savepoints {
    fn on_start(&self, _info: &RunInfo) {
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
    fn on_savepoint(&self, iteration: usize, candidate: ArrayViewD<'_, f64>) {
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(iteration, candidate.to_owned());
    }
}

/// One update outside an executor (for tests and experiments): the gradient at the optimiser's
/// query point, checked for shape and finiteness, then the update. Returns the new iterate.
pub fn step_once(
    problem: &Problem,
    gradient: &mut dyn Gradient,
    optimizer: &mut dyn Optimizer,
    rng: &mut MaxiRng,
) -> Result<ArrayD<f64>> {
    let request = Request::at(optimizer.query());
    let estimate = gradient.estimate(problem, &request, rng)?;
    let g = estimate.gradient;
    if g.shape() != problem.shape() {
        return Err(MaxiError::Other(format!(
            "gradient of shape {:?}, expected {:?}",
            g.shape(),
            problem.shape()
        )));
    }
    if let Some(i) = g.iter().position(|v| !v.is_finite()) {
        return Err(MaxiError::Other(format!(
            "gradient entry {i} is not finite ({})",
            g.iter().nth(i).copied().unwrap_or(f64::NAN)
        )));
    }
    optimizer.update(g.view())?;
    Ok(optimizer.iterate().to_owned())
}
