//! A composite test problem with a closed-form answer, shared by the tests of the
//! exponentiated-gradient optimisers (through this crate's `testing` feature): `min ½‖y − c‖² + l1‖y‖₁ + (l2/2)‖y‖²` on a box, solved coordinate by coordinate.

use maxi_core::ndarray::{Array1, ArrayD, ArrayViewD, IxDyn, arr1};
use maxi_core::{Bounds, Estimate, Gradient, Loss, MaxiError, MaxiRng, Problem, Request, Result};

/// The centre `c` of the test problem.
pub const C: [f64; 5] = [3.0, -2.0, 0.3, -0.4, 1.2];
/// Lower bound of every coordinate.
pub const LO: f64 = -0.8;
/// Upper bound of every coordinate.
pub const HI: f64 = 1.5;

/// The box `[lo, hi]^d`.
pub fn bounds_of(lo: f64, hi: f64, d: usize) -> Bounds {
    Bounds::new(
        ArrayD::from_elem(IxDyn(&[d]), lo),
        ArrayD::from_elem(IxDyn(&[d]), hi),
    )
    .expect("valid bounds")
}

/// `L(y) = ½‖y − c‖²` on a box, with its exact gradient.
pub struct Quadratic {
    /// The centre.
    pub c: ArrayD<f64>,
    /// The box.
    pub bounds: Bounds,
}

impl Loss for Quadratic {
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        Ok(batch
            .outer_iter()
            .map(|row| {
                0.5 * row
                    .iter()
                    .zip(&self.c)
                    .map(|(y, c)| (y - c).powi(2))
                    .sum::<f64>()
            })
            .collect())
    }
    fn bounds(&self) -> &Bounds {
        &self.bounds
    }
    fn start(&self) -> ArrayD<f64> {
        ArrayD::zeros(self.c.raw_dim())
    }
    fn gradient(&self, y: ArrayViewD<'_, f64>) -> Option<Result<ArrayD<f64>>> {
        Some(Ok(&y - &self.c))
    }
}

/// The exact gradient, recording where it was asked for.
#[derive(Default)]
pub struct Exact {
    /// The points the gradient was evaluated at, in order.
    pub points: Vec<ArrayD<f64>>,
}

impl Gradient for Exact {
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        _rng: &mut MaxiRng,
    ) -> Result<Estimate> {
        self.points.push(request.at.to_owned());
        problem
            .analytic_gradient(request.at.view())
            .unwrap_or_else(|| Err(MaxiError::Other("no analytic gradient".into())))
            .map(Estimate::new)
    }
}

/// The [`Quadratic`] around `c` on `[lo, hi]^d` as a problem.
pub fn problem(c: &[f64], lo: f64, hi: f64) -> Problem {
    let c = arr1(c).into_dyn();
    let d = c.len();
    Problem::identity(
        Box::new(Quadratic {
            c,
            bounds: bounds_of(lo, hi, d),
        }),
        &[d],
    )
}

/// Per-coordinate minimiser of `½(y−c)² + l1|y| + (l2/2)y²` on `[lo, hi]`.
pub fn minimiser(c: &[f64], l1: f64, l2: f64, lo: f64, hi: f64) -> Vec<f64> {
    c.iter()
        .map(|&c| (c.signum() * (c.abs() - l1).max(0.0) / (1.0 + l2)).clamp(lo, hi))
        .collect()
}

/// The regularised objective at `y`.
pub fn objective(y: &[f64], c: &[f64], l1: f64, l2: f64) -> f64 {
    y.iter()
        .zip(c)
        .map(|(y, c)| 0.5 * (y - c).powi(2) + l1 * y.abs() + 0.5 * l2 * y * y)
        .sum()
}
