//! The optimiser contract.

use ndarray::ArrayViewD;

use crate::error::Result;

/// Regularisation weights the optimiser applies: the objective is
/// `L(v) + l1·‖v‖₁ + (l2/2)·‖v‖₂²`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Regularization {
    /// Weight of `‖v‖₁`.
    pub l1: f64,
    /// Weight of `(1/2)‖v‖₂²`.
    pub l2: f64,
}

/// An iterative first-order optimiser, driven by an executor: one update takes one gradient.
///
/// The executor asks for [`query`](Optimizer::query), has the gradient there computed, hands it
/// to [`update`](Optimizer::update), and reports [`iterate`](Optimizer::iterate) as the
/// candidate. The optimiser never calls the model itself, so counting, budgets and
/// parallelism stay with the executor.
pub trait Optimizer: Send {
    /// The point at which the next gradient is needed (shaped like the variable).
    fn query(&self) -> ArrayViewD<'_, f64>;

    /// One update with the gradient at [`query`](Optimizer::query) (shape and finiteness are
    /// checked by the caller).
    fn update(&mut self, gradient: ArrayViewD<'_, f64>) -> Result<()>;

    /// The current iterate, reported as the candidate (before the first update: the start).
    fn iterate(&self) -> ArrayViewD<'_, f64>;

    /// The regularisation used for the objective in the step record.
    fn regularization(&self) -> Regularization {
        Regularization::default()
    }
}
