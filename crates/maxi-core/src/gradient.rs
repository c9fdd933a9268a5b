//! The gradient contract.

use ndarray::{ArrayD, ArrayViewD};

use crate::error::Result;
use crate::problem::Problem;
use crate::rng::MaxiRng;

/// A method that returns (an estimate of) the loss gradient at a point.
pub trait Gradient: Send {
    /// Gradient of `problem`'s loss at `y`; every random draw comes from `rng`.
    fn gradient(
        &mut self,
        problem: &Problem,
        y: ArrayViewD<'_, f64>,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>>;
}
