//! AO-ExpGrad optimiser for maxi: accelerated optimistic exponentiated gradient with
//! elastic-net regularisation and box constraints (Shao, Sivrikaya, Albayrak 2022).
//!
//! State `x = y = x0`, `h = 0`, `λ = 0`, `t = 0`, `S = 0`, `β = 1/d`. One update with the
//! gradient `g` at `y`:
//! `t += 1; S += t; λ += (t·‖g − h‖∞)²; α = η·√λ / √ln(d+1)` (`α = 1e-6` if 0);
//! `z = sign(x)·ln(|x|/β + 1) − (t·g − t·h + (t+1)·g)/α`;
//! `x = clip(prox(z, l1·(t+1)/α, β, l2·(t+1)/α))`; `y = (t/S)·x + ((S − t)/S)·y`; `h = g`.
//! The mirror map and proximal step come from [`maxi_expgrad`].
#![warn(missing_docs)]

use maxi_core::ndarray::{ArrayD, ArrayViewD, Zip};
use maxi_core::{
    Bounds, Factory, KwargProblem, KwargsSpec, Optimizer, OptimizerContext, OptimizerKind,
    Regularization, Result, Valid, register_optimizer,
};
use maxi_expgrad::{check_penalties, check_start, mirror_step};
use serde::{Deserialize, Serialize};

fn default_l1() -> f64 {
    0.5
}
fn default_l2() -> f64 {
    0.5
}
fn default_eta() -> f64 {
    1.0
}

/// Kwargs of `ao_exp_grad`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AoExpGradKwargs {
    /// Weight of the L1 penalty `l1·‖v‖₁` (≥ 0); larger values give sparser explanations.
    #[serde(default = "default_l1")]
    pub l1: f64,
    /// Weight of the L2 penalty `(l2/2)·‖v‖₂²` (≥ 0).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Step-size scale (> 0): the adaptive denominator of the gradient step is
    /// `eta·√λ/√ln(d+1)`; larger values take smaller steps.
    #[serde(default = "default_eta")]
    pub eta: f64,
}

impl Default for AoExpGradKwargs {
    fn default() -> Self {
        AoExpGradKwargs {
            l1: default_l1(),
            l2: default_l2(),
            eta: default_eta(),
        }
    }
}

impl KwargsSpec for AoExpGradKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        check_penalties(self.l1, self.l2, self.eta)
    }
}

/// The AO-ExpGrad optimiser (see the crate docs).
///
/// Minimises `L(v) + l1·‖v‖₁ + (l2/2)·‖v‖₂²` over a box; the gradient is taken at the
/// averaged iterate `y`, which is also the reported iterate.
#[derive(Debug, Clone)]
pub struct AoExpGrad {
    l1: f64,
    l2: f64,
    eta: f64,
    lower: ArrayD<f64>,
    upper: ArrayD<f64>,
    x: ArrayD<f64>,
    y: ArrayD<f64>,
    h: ArrayD<f64>,
    lambda: f64,
    t: f64,
    s_sum: f64,
    beta: f64,
    ln_d1: f64,
}

impl AoExpGrad {
    /// A fresh optimiser at `start` (`x = y = start`, `h = 0`, `λ = 0`, `t = 0`, `β = 1/d`).
    pub fn new(
        kwargs: &Valid<AoExpGradKwargs>,
        start: ArrayViewD<'_, f64>,
        bounds: &Bounds,
    ) -> Result<Self> {
        let beta = check_start(start.view(), bounds)?;
        let d = start.len() as f64;
        Ok(AoExpGrad {
            l1: kwargs.l1,
            l2: kwargs.l2,
            eta: kwargs.eta,
            lower: bounds.lower().clone(),
            upper: bounds.upper().clone(),
            x: start.to_owned(),
            y: start.to_owned(),
            h: ArrayD::zeros(start.shape()),
            lambda: 0.0,
            t: 0.0,
            s_sum: 0.0,
            beta,
            ln_d1: (d + 1.0).ln(),
        })
    }

    /// The current (non-averaged) iterate `x`.
    pub fn x(&self) -> &ArrayD<f64> {
        &self.x
    }
}

impl Optimizer for AoExpGrad {
    fn query(&self) -> ArrayViewD<'_, f64> {
        self.y.view()
    }

    fn update(&mut self, g: ArrayViewD<'_, f64>) -> Result<()> {
        self.t += 1.0;
        self.s_sum += self.t;
        let t = self.t;

        let diff = Zip::from(&g)
            .and(&self.h)
            .fold(0.0f64, |m, g, h| m.max((g - h).abs()));
        self.lambda += (t * diff).powi(2);
        let mut alpha = self.eta * self.lambda.sqrt() / self.ln_d1.sqrt();
        if alpha == 0.0 {
            alpha = 1e-6;
        }
        let threshold = self.l1 * (t + 1.0) / alpha;
        let b = self.l2 * (t + 1.0) / alpha;
        let beta = self.beta;

        Zip::from(&mut self.x)
            .and(&g)
            .and(&self.h)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|x, &g, &h, &lo, &hi| {
                let descent = (t * g - t * h + (t + 1.0) * g) / alpha;
                *x = mirror_step(*x, descent, threshold, beta, b, lo, hi);
            });
        // From t = 1 on (wx = 1 at t = 1), y is a convex combination of points in the box; the
        // clamp only removes rounding overshoot.
        let wx = t / self.s_sum;
        let wy = (self.s_sum - t) / self.s_sum;
        Zip::from(&mut self.y)
            .and(&self.x)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|y, &x, &lo, &hi| *y = (wx * x + wy * *y).clamp(lo, hi));
        self.h.assign(&g);
        Ok(())
    }

    fn iterate(&self) -> ArrayViewD<'_, f64> {
        self.y.view()
    }

    fn regularization(&self) -> Regularization {
        Regularization {
            l1: self.l1,
            l2: self.l2,
        }
    }
}

/// Registry factory of [`AoExpGrad`].
pub struct AoExpGradFactory;

impl Factory<OptimizerKind> for AoExpGradFactory {
    type Kwargs = AoExpGradKwargs;
    fn build(
        kwargs: &Valid<AoExpGradKwargs>,
        ctx: &OptimizerContext<'_>,
    ) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(AoExpGrad::new(
            kwargs,
            ctx.start.view(),
            ctx.bounds,
        )?))
    }
}

register_optimizer!(
    AoExpGradFactory,
    "ao_exp_grad",
    aliases = ["AoExpGradOptimizer", "AOExpGrad"],
    doc = "AO-ExpGrad: accelerated optimistic exponentiated gradient with L1/L2 penalties and box constraints"
);

#[cfg(test)]
mod tests;
