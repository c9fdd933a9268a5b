//! The gradient contract.

use ndarray::{ArrayD, ArrayViewD};

use crate::error::Result;
use crate::loss::Assessed;
use crate::problem::Problem;
use crate::rng::MaxiRng;

/// What a gradient method is asked for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The point at which the gradient is wanted.
    pub at: ArrayViewD<'a, f64>,
    /// Another point whose loss value the caller needs (e.g. the iterate of the step record
    /// when the optimiser takes its gradient elsewhere). A method that evaluates the loss in
    /// batches can add it to its batch and return its value in [`Estimate::also`].
    pub also: Option<ArrayViewD<'a, f64>>,
    /// True when another request will follow on this run: a method may prepare work for it
    /// that does not depend on the point (e.g. draw the next random directions).
    pub more: bool,
}

impl<'a> Request<'a> {
    /// A request for the gradient at `at` and nothing else.
    pub fn at(at: ArrayViewD<'a, f64>) -> Self {
        Request {
            at,
            also: None,
            more: false,
        }
    }
}

/// A gradient method's answer: the gradient and, when it evaluated them, the loss at the
/// requested points.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// (An estimate of) `∇L` at [`Request::at`], shaped like it.
    pub gradient: ArrayD<f64>,
    /// `L` at [`Request::at`], if evaluated.
    pub at: Option<Assessed>,
    /// `L` at [`Request::also`], if evaluated.
    pub also: Option<Assessed>,
}

impl Estimate {
    /// A gradient with no loss values.
    pub fn new(gradient: ArrayD<f64>) -> Self {
        Estimate {
            gradient,
            at: None,
            also: None,
        }
    }
}

/// A method that returns (an estimate of) the loss gradient at a point.
pub trait Gradient: Send {
    /// Answers `request` on `problem`'s loss; every random draw comes from `rng`.
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        rng: &mut MaxiRng,
    ) -> Result<Estimate>;

    /// The gradient alone at `at`: [`Gradient::estimate`] of [`Request::at`].
    fn gradient_at(
        &mut self,
        problem: &Problem,
        at: ArrayViewD<'_, f64>,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>> {
        Ok(self.estimate(problem, &Request::at(at), rng)?.gradient)
    }
}
