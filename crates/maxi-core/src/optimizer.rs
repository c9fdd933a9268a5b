//! The optimiser contract.

use ndarray::ArrayD;

use crate::error::Result;
use crate::gradient::Gradient;
use crate::problem::Problem;
use crate::rng::MaxiRng;

/// Regularisation weights the optimiser applies: the objective is
/// `L(y) + l1·‖y‖₁ + (l2/2)·‖y‖₂²`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Regularization {
    /// Weight of `‖y‖₁`.
    pub l1: f64,
    /// Weight of `(1/2)‖y‖₂²`.
    pub l2: f64,
}

/// An iterative optimiser: one call to `step` is one update.
pub trait Optimizer: Send {
    /// Performs one update and returns the new iterate (shaped like the start point).
    fn step(
        &mut self,
        problem: &Problem,
        gradient: &mut dyn Gradient,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>>;

    /// The regularisation used for the objective in the step record.
    fn regularization(&self) -> Regularization {
        Regularization::default()
    }
}
