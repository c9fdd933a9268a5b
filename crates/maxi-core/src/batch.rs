//! Many inputs, one pipeline: [`Batch`] explains a list of inputs with one
//! [`ExplanationGenerator`] and one shared model on `n_workers` threads.
//!
//! - One result per input, in the caller's hands: `Ok(explanation)` or that input's own error
//!   (a failing input never stops or hides the others).
//! - Input `i` runs with the seed [`input_seed`]`(seed, i)`, where `i` is the input's index in
//!   the whole list (not its position in a worker's queue or in a shard), so every result is
//!   the same whatever the number of workers, the order in which they finish, or how the list
//!   is split across machines.
//! - The model is shared (`Arc`); [`ThreadSplit`] says how many cores go to inputs (workers) and
//!   how many to the rows of one model call (the backend's `threads`).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use ndarray::ArrayD;

use crate::error::{MaxiError, Result};
use crate::generator::{Explanation, ExplanationGenerator};
use crate::model::Model;

/// The seed of input `index` of a batch run with `seed`: a well-mixed function of both, so
/// neighbouring inputs get unrelated generators and the result does not depend on which
/// worker, shard or machine explains the input.
pub fn input_seed(seed: u64, index: u64) -> u64 {
    crate::rng::mix(seed ^ crate::rng::mix(index.wrapping_add(0x6261_7463_685f_6964)))
}

/// How `cores` are used by a batch: inputs explained at once, and the backend's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSplit {
    /// Inputs explained at once.
    pub workers: usize,
    /// Threads of the model backend, shared by the workers' calls.
    pub model_threads: usize,
}

impl ThreadSplit {
    /// Uses `cores` for `inputs` inputs: by default one worker per core (small inputs run
    /// fastest as whole explanations side by side: one worker's serial steps — directions,
    /// loss, optimiser, writing files — overlap another's model call), never more workers
    /// than inputs. The backend keeps one thread per core (`model_threads`, unless given):
    /// its pool is shared by every worker's calls, so its threads — for ONNX Runtime its
    /// sessions — are never fewer than the calls that can be in flight at once.
    pub fn new(
        cores: usize,
        inputs: usize,
        workers: Option<usize>,
        model_threads: Option<usize>,
    ) -> ThreadSplit {
        let cores = cores.max(1);
        let workers = workers.unwrap_or(cores).clamp(1, inputs.max(1));
        ThreadSplit {
            workers,
            model_threads: model_threads.unwrap_or(cores).max(1),
        }
    }
}

/// Explains many inputs with one generator and one model.
pub struct Batch<'g> {
    generator: &'g ExplanationGenerator,
    workers: usize,
    stop: Option<Arc<AtomicBool>>,
}

impl<'g> Batch<'g> {
    /// A batch over `generator`'s pipeline and seed, one worker.
    pub fn new(generator: &'g ExplanationGenerator) -> Self {
        Batch {
            generator,
            workers: 1,
            stop: None,
        }
    }

    /// Explains up to `n` inputs at once (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// No input is started once `flag` is true (inputs in flight finish, or stop through the
    /// generator's own observers).
    pub fn stop(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Explains every input; result `i` belongs to `inputs[i]` and used
    /// [`input_seed`]`(generator seed, i)`.
    pub fn run(&self, inputs: &[ArrayD<f64>], model: Arc<dyn Model>) -> Vec<Result<Explanation>> {
        let mut out: Vec<Option<Result<Explanation>>> = (0..inputs.len()).map(|_| None).collect();
        self.for_each(
            inputs.len(),
            |i| {
                Ok::<_, std::convert::Infallible>(Job {
                    index: i as u64,
                    x: inputs[i].clone(),
                    generator: None,
                })
            },
            model,
            |_, r| match r {
                Ok((_, r)) => r,
                Err(never) => match never {},
            },
            |i, r| {
                out[i] = Some(r);
                ControlFlow::Continue(())
            },
        );
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(MaxiError::Other("stopped before this input".into()))))
            .collect()
    }

    /// The streaming form, for inputs that are loaded and results that are written one at a
    /// time (memory stays flat in the number of inputs). For each position `p` in `0..n`, on a
    /// worker thread: `load(p)` gives the [`Job`] (or the input's own load error), the job is
    /// explained, and `finish(p, outcome)` turns `(x, result)` or the load error into a `T`
    /// (e.g. writes its files). `done(p, t)` then runs on the calling thread, in completion
    /// order; returning `Break` starts no further input. Positions are handed out in order.
    pub fn for_each<T, E, L, F, D>(
        &self,
        n: usize,
        load: L,
        model: Arc<dyn Model>,
        finish: F,
        mut done: D,
    ) where
        T: Send,
        L: Fn(usize) -> std::result::Result<Job<'g>, E> + Sync,
        F: Fn(usize, std::result::Result<(ArrayD<f64>, Result<Explanation>), E>) -> T + Sync,
        D: FnMut(usize, T) -> ControlFlow<()>,
    {
        let next = AtomicUsize::new(0);
        let halted = AtomicBool::new(false);
        let stopped = || {
            halted.load(Ordering::SeqCst)
                || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
        };
        let seed = self.generator.seed();
        let workers = self.workers.min(n).max(1);
        // a small queue: results are handed over as they come, never piled up
        let (tx, rx) = mpsc::sync_channel::<(usize, T)>(workers);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, load, finish, model) = (&next, &load, &finish, model.clone());
                let stopped = &stopped;
                scope.spawn(move || {
                    loop {
                        if stopped() {
                            break;
                        }
                        let p = next.fetch_add(1, Ordering::SeqCst);
                        if p >= n {
                            break;
                        }
                        let t = match load(p) {
                            Ok(job) => {
                                let g = job.generator.unwrap_or(self.generator);
                                let r = g.run_seeded(
                                    job.x.view(),
                                    model.clone(),
                                    input_seed(seed, job.index),
                                );
                                finish(p, Ok((job.x, r)))
                            }
                            Err(e) => finish(p, Err(e)),
                        };
                        if tx.send((p, t)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (p, t) in rx {
                if done(p, t).is_break() {
                    halted.store(true, Ordering::SeqCst);
                }
            }
        });
    }
}

/// One input of [`Batch::for_each`].
pub struct Job<'g> {
    /// The input's index in the whole list: its seed is [`input_seed`]`(seed, index)`.
    pub index: u64,
    /// The input.
    pub x: ArrayD<f64>,
    /// Another pipeline for this input (e.g. with its own target class); `None`: the batch's.
    /// Its seed is ignored: every input is seeded from the batch's generator.
    pub generator: Option<&'g ExplanationGenerator>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_input_and_run() {
        let a: Vec<u64> = (0..1000).map(|i| input_seed(7, i)).collect();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "no two inputs share a seed");
        assert_ne!(input_seed(7, 0), input_seed(8, 0));
        assert_eq!(input_seed(7, 3), a[3], "a pure function of (seed, index)");
    }

    #[test]
    fn thread_split() {
        let s = |c, i, w, m| {
            let t = ThreadSplit::new(c, i, w, m);
            (t.workers, t.model_threads)
        };
        assert_eq!(s(2, 100, None, None), (2, 2));
        assert_eq!(s(8, 100, Some(2), None), (2, 8));
        assert_eq!(
            s(8, 3, None, None),
            (3, 8),
            "never more workers than inputs"
        );
        assert_eq!(s(2, 100, Some(8), Some(1)), (8, 1));
        assert_eq!(s(0, 0, None, None), (1, 1));
    }
}
