//! AdaExpGrad optimiser for maxi: adaptive exponentiated gradient with elastic-net
//! regularisation and box constraints.
//!
//! The mirror map and the proximal step are shared with AO-ExpGrad
//! ([`maxi_optimizer_ao_exp_grad::mirror`], [`maxi_optimizer_ao_exp_grad::prox`]).
#![warn(missing_docs)]

use maxi_core::ndarray::{ArrayD, ArrayViewD, Zip};
use maxi_core::{
    Bounds, Gradient, MaxiRng, Optimizer, OptimizerContext, OptimizerFactory, Problem,
    Regularization, Result, register_optimizer,
};
use maxi_optimizer_ao_exp_grad::{check_gradient, check_start, mirror, prox};

pub use maxi_optimizer_ao_exp_grad::ExpGradKwargs;

/// Kwargs of `ada_exp_grad` (the same `l1`, `l2`, `eta` as AO-ExpGrad, same defaults).
pub type AdaExpGradKwargs = ExpGradKwargs;

/// The AdaExpGrad optimiser (adaptive exponentiated gradient).
///
/// Minimises `L(y) + l1·‖y‖₁ + (l2/2)·‖y‖₂²` over a box; the gradient is taken at the current
/// iterate `x`, and [`Optimizer::step`] returns the running average `y` of the iterates.
#[derive(Debug, Clone)]
pub struct AdaExpGrad {
    l1: f64,
    l2: f64,
    eta: f64,
    lower: ArrayD<f64>,
    upper: ArrayD<f64>,
    x: ArrayD<f64>,
    y: ArrayD<f64>,
    lambda: f64,
    t: f64,
    beta: f64,
}

impl AdaExpGrad {
    /// A fresh optimiser at `start` (`x = y = start`, `λ = 1`, `t = 0`, `β = 1/d`).
    pub fn new(
        kwargs: &ExpGradKwargs,
        start: ArrayViewD<'_, f64>,
        bounds: &Bounds,
    ) -> Result<Self> {
        let beta = check_start(start.view(), bounds)?;
        Ok(AdaExpGrad {
            l1: kwargs.l1,
            l2: kwargs.l2,
            eta: kwargs.eta,
            lower: bounds.lower().clone(),
            upper: bounds.upper().clone(),
            x: start.to_owned(),
            y: start.to_owned(),
            lambda: 1.0,
            t: 0.0,
            beta,
        })
    }

    /// The current iterate `x` (where the next gradient is taken).
    pub fn x(&self) -> &ArrayD<f64> {
        &self.x
    }

    /// The current averaged iterate `y`.
    pub fn y(&self) -> &ArrayD<f64> {
        &self.y
    }
}

impl Optimizer for AdaExpGrad {
    fn step(
        &mut self,
        problem: &Problem,
        gradient: &mut dyn Gradient,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>> {
        let g = gradient.gradient(problem, self.x.view(), rng)?;
        check_gradient(&g, self.x.shape())?;
        self.t += 1.0;
        let t = self.t;
        let g_max = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        self.lambda += g_max * g_max;
        let alpha = self.eta * self.lambda.sqrt();
        let threshold = self.l1 / alpha;
        let b = self.l2 / alpha;
        let beta = self.beta;

        Zip::from(&mut self.x)
            .and(&g)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|x, &g, &lo, &hi| {
                let z = mirror(*x, beta) - g / alpha;
                *x = prox(z, threshold, beta, b).clamp(lo, hi);
            });
        // From t = 1 on (weight 1 on x at t = 1), y is a convex combination of points in the
        // box; the clamp only removes rounding overshoot.
        let wy = 1.0 - 1.0 / t;
        Zip::from(&mut self.y)
            .and(&self.x)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|y, &x, &lo, &hi| *y = (x / t + wy * *y).clamp(lo, hi));
        Ok(self.y.clone())
    }

    fn regularization(&self) -> Regularization {
        Regularization {
            l1: self.l1,
            l2: self.l2,
        }
    }
}

/// Registry factory of [`AdaExpGrad`].
pub struct AdaExpGradFactory;

impl OptimizerFactory for AdaExpGradFactory {
    type Kwargs = ExpGradKwargs;
    fn build(kwargs: &Self::Kwargs, ctx: &OptimizerContext<'_>) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(AdaExpGrad::new(
            kwargs,
            ctx.start.view(),
            ctx.bounds,
        )?))
    }
}

register_optimizer!(
    AdaExpGradFactory,
    "ada_exp_grad",
    aliases = ["AdaExpGradOptimizer", "AdaExpGrad"],
    doc = "AdaExpGrad: adaptive exponentiated gradient with L1/L2 penalties and box constraints"
);

#[cfg(test)]
mod tests;
