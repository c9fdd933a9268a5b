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
    /// 1-based update number.
    pub iteration: usize,
    /// `L(v)`: the loss at the new iterate.
    pub attack_loss: f64,
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

/// What a run is about to do, given to observers first.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Updates to perform.
    pub num_iter: usize,
    /// Shape of the optimiser's variable.
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

/// What the executor knows at the end of a run.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Updates made.
    pub iterations: usize,
    /// Why the run ended.
    pub stop: StopReason,
    /// The last iterate (variable space).
    pub iterate: ArrayD<f64>,
    /// Its loss value and verdict.
    pub value: Assessed,
}

/// Runs an optimiser with a gradient method on a problem (see the module docs).
pub struct Executor<'a> {
    problem: &'a Problem,
    model: &'a CountingModel,
    gradient: &'a mut dyn Gradient,
    optimizer: &'a mut dyn Optimizer,
    names: Names,
    schedule: Schedule,
    observers: Vec<Arc<dyn Observer>>,
    seed: u64,
}

/// An iterate whose loss value is still to be found, with the counters at its update.
struct Pending {
    t: usize,
    iterate: ArrayD<f64>,
    stats: ModelStats,
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
            observers: Vec::new(),
            seed: 0,
        }
    }

    /// Names the components in runtime errors.
    pub fn names(mut self, names: Names) -> Self {
        self.names = names;
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
            attack_loss: value.value,
            l1_norm: a,
            l2_norm_sq: b,
            objective: value.value + reg.l1 * a + 0.5 * reg.l2 * b,
            model_rows: p.stats.rows,
            model_calls: p.stats.calls,
        }
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

    /// Runs the updates, drawing from `rng`.
    pub fn run(self, rng: &mut MaxiRng) -> Result<Finished> {
        let num_iter = self.schedule.num_iter;
        let info = RunInfo {
            num_iter,
            shape: self.problem.shape().to_vec(),
            seed: self.seed,
        };
        self.observers.iter().for_each(|o| o.on_start(&info));
        let reg = self.optimizer.regularization();
        let mut pending: Option<Pending> = None;
        let mut stop = StopReason::Completed;
        for t in 1..=num_iter {
            let query = self.optimizer.query();
            // the iterate of the last update still needs its value: from the gradient's own
            // evaluation when it is the query point, else as an extra row of its batch
            let also = pending
                .as_ref()
                .filter(|p| p.iterate.view() != query)
                .map(|p| p.iterate.view());
            let at_query = also.is_none();
            let request = Request {
                at: query,
                also,
                more: t < num_iter,
            };
            let estimate = self
                .gradient
                .estimate(self.problem, &request, rng)
                .map_err(|e| self.runtime(Kind::Gradient, t, e))?;
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
                let r = self.record(&p, value, reg);
                self.observers.iter().for_each(|o| o.on_step(&r));
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
            if t < num_iter && self.observers.iter().any(|o| o.should_stop()) {
                stop = StopReason::Observer;
                break;
            }
        }
        let p = pending.ok_or_else(|| MaxiError::InvalidSetting {
            name: "num_iter".into(),
            message: "must be at least 1".into(),
        })?;
        if !self.schedule.is_savepoint(p.t) {
            // an early stop: the last iterate is always a savepoint
            self.savepoint(p.t, &p.iterate);
        }
        let value = self
            .problem
            .assess(p.iterate.view())
            .map_err(|e| self.runtime(Kind::Loss, p.t, e))?;
        let r = self.record(&p, value, reg);
        self.observers.iter().for_each(|o| o.on_step(&r));
        Ok(Finished {
            iterations: p.t,
            stop,
            iterate: p.iterate,
            value,
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
        let mut r = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        r.clear();
        // grows with the run; never reserved from a number the user typed
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
