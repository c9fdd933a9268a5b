//! AO-ExpGrad optimiser for maxi: accelerated optimistic exponentiated gradient with
//! elastic-net regularisation and box constraints.
//!
//! The crate also exports the maths shared with the AdaExpGrad optimiser: the mirror map
//! ([`mirror`]), an overflow-free `W(e^s)` ([`w_of_exp`]) and the elastic-net proximal step of
//! the exponentiated-gradient family ([`prox`]).
#![warn(missing_docs)]

use maxi_core::ndarray::{ArrayD, ArrayViewD, Zip};
use maxi_core::{
    Bounds, Gradient, KwargProblem, KwargsSpec, MaxiError, Optimizer, OptimizerContext,
    OptimizerFactory, Problem, Regularization, Result,
};
use maxi_core::{MaxiRng, register_optimizer};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Shared maths
// ---------------------------------------------------------------------------------------------

/// Below this `s`, `W(e^s) = e^s` to double precision (`e^s < 2⁻⁵⁷`).
const W_TINY: f64 = -40.0;
/// From this `s` on, [`w_of_exp`] solves `w + ln w = s` by Newton's method instead of calling
/// `lambert_w0(e^s)`.
pub const W_OF_EXP_SWITCH: f64 = 40.0;

/// `sign(x)` with `sign(0) = 0` (like NumPy), unlike [`f64::signum`].
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// One Newton step on `f(w) = w + ln w − s` (`f'(w) = 1 + 1/w`); returns the correction
/// to subtract.
fn newton_correction(w: f64, s: f64) -> f64 {
    let f = (w - s) + w.ln();
    f * w / (1.0 + w)
}

/// `W(e^s)`, the principal branch of the Lambert W function at `e^s`, i.e. the solution `w > 0`
/// of `w + ln w = s`, for any `s` without overflow.
///
/// For `s < -40` the result is `e^s` (exact to double precision); for
/// `s <` [`W_OF_EXP_SWITCH`] it is `lambert_w0(e^s)` polished by one Newton step on
/// `w + ln w = s`; above that, Newton's method on the same equation from `w₀ = s − ln s`.
/// Both branches converge to the correctly rounded root up to a few ulps, so the function is
/// continuous across the switch. `s = +∞` gives `+∞`, NaN gives NaN.
pub fn w_of_exp(s: f64) -> f64 {
    if s.is_nan() {
        return f64::NAN;
    }
    if s == f64::INFINITY {
        return f64::INFINITY;
    }
    if s < W_TINY {
        return s.exp();
    }
    if s < W_OF_EXP_SWITCH {
        let w = lambert_w::lambert_w0(s.exp());
        if w > 0.0 && w.is_finite() {
            return w - newton_correction(w, s);
        }
        return w;
    }
    // s ≥ 40: w ≥ 36, so s − ln s is within 0.1 of the root and Newton converges in a few steps.
    let mut w = s - s.ln();
    for _ in 0..32 {
        let dw = newton_correction(w, s);
        w -= dw;
        if dw.abs() <= 4.0 * f64::EPSILON * w {
            break;
        }
    }
    w
}

/// The mirror map of exponentiated gradient with scale `beta`: `sign(x)·ln(|x|/β + 1)`.
pub fn mirror(x: f64, beta: f64) -> f64 {
    sign(x) * (x.abs() / beta).ln_1p()
}

/// The signed elastic-net proximal step of exponentiated gradient, `sign(z)·v`.
///
/// `z` is the mirror coordinate after the gradient step, `threshold` the L1 shift (`l1/α`-like,
/// ≥ 0), `beta` the mirror scale `a = β > 0`, and `b` the L2 weight (`l2/α`-like, ≥ 0).
/// With `r = max(|z| − threshold, 0)`, `v ≥ 0` minimises
/// `h(v) = (v+a)·ln(v/a+1) − v − r·v + (b/2)·v²`, i.e. solves `ln((v+a)/a) + b·v = r`:
///
/// * `b == 0`: `v = a·(e^r − 1)` (soft threshold in the mirror space);
/// * `b > 0`: `v = W(e^s)/b − a` with `s = r + ln(ab) + ab` (see [`w_of_exp`]), refined by one
///   Newton step on the stationarity condition for full relative accuracy when `v` is small.
///
/// Returns exactly `0` when `|z| ≤ threshold`.
pub fn prox(z: f64, threshold: f64, beta: f64, b: f64) -> f64 {
    let r = (z.abs() - threshold).max(0.0);
    if r == 0.0 || z.is_nan() {
        // NaN z stays NaN; otherwise the coordinate is thresholded to zero.
        return if z.is_nan() { f64::NAN } else { 0.0 };
    }
    let a = beta;
    let v = if b == 0.0 {
        a * r.exp_m1()
    } else {
        let s = r + a.ln() + b.ln() + a * b;
        let w = w_of_exp(s);
        let v = if w > 0.0 {
            (w / b - a).max(0.0)
        } else {
            // W(e^s) underflowed: b·(v + a) is negligible, so the soft threshold is exact.
            a * r.exp_m1()
        };
        if v > 0.0 && v.is_finite() {
            let phi = (v / a).ln_1p() + b * v - r;
            let dphi = 1.0 / (v + a) + b;
            (v - phi / dphi).max(0.0)
        } else {
            v
        }
    };
    sign(z) * v
}

// ---------------------------------------------------------------------------------------------
// Kwargs
// ---------------------------------------------------------------------------------------------

fn default_l1() -> f64 {
    0.5
}
fn default_l2() -> f64 {
    0.5
}
fn default_eta() -> f64 {
    1.0
}

/// Kwargs of the exponentiated-gradient optimisers (`ao_exp_grad` and `ada_exp_grad`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpGradKwargs {
    /// Weight of the L1 penalty `l1·‖y‖₁` (≥ 0); larger values give sparser explanations.
    #[serde(default = "default_l1")]
    pub l1: f64,
    /// Weight of the L2 penalty `(l2/2)·‖y‖₂²` (≥ 0).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Step-size scale (> 0): the adaptive denominator of the gradient step is `eta·√λ`
    /// (divided by `√ln(d+1)` in AO-ExpGrad); larger values take smaller steps.
    #[serde(default = "default_eta")]
    pub eta: f64,
}

impl Default for ExpGradKwargs {
    fn default() -> Self {
        ExpGradKwargs {
            l1: default_l1(),
            l2: default_l2(),
            eta: default_eta(),
        }
    }
}

impl KwargsSpec for ExpGradKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        for (field, value, what) in [("l1", self.l1, "L1"), ("l2", self.l2, "L2")] {
            if !value.is_finite() || value < 0.0 {
                return Err(KwargProblem::new(
                    field,
                    format!(
                        "must be a finite number >= 0, got {value}; use 0 to switch the {what} penalty off"
                    ),
                ));
            }
        }
        if !self.eta.is_finite() || self.eta <= 0.0 {
            return Err(KwargProblem::new(
                "eta",
                format!(
                    "must be a finite number > 0, got {}; use a positive step-size scale such as 1.0",
                    self.eta
                ),
            ));
        }
        Ok(())
    }
}

/// Kwargs of `ao_exp_grad`.
pub type AoExpGradKwargs = ExpGradKwargs;

// ---------------------------------------------------------------------------------------------
// Shared state checks
// ---------------------------------------------------------------------------------------------

/// Checks that the start point is non-empty, finite and shaped like the bounds; returns the
/// mirror scale `β = 1/d`.
pub fn check_start(start: ArrayViewD<'_, f64>, bounds: &Bounds) -> Result<f64> {
    if start.shape() != bounds.lower().shape() {
        return Err(MaxiError::input(
            "start point",
            format!(
                "shape {:?} differs from the bounds' shape {:?}",
                start.shape(),
                bounds.lower().shape()
            ),
        ));
    }
    if start.is_empty() {
        return Err(MaxiError::input(
            "start point",
            "has no entries; the optimiser needs at least one variable",
        ));
    }
    if let Some(i) = start.iter().position(|v| !v.is_finite()) {
        return Err(MaxiError::input(
            "start point",
            format!("entry {i} is not finite"),
        ));
    }
    Ok(1.0 / start.len() as f64)
}

/// Checks a gradient returned by a gradient method: same shape as the point, finite entries.
pub fn check_gradient(g: &ArrayD<f64>, shape: &[usize]) -> Result<()> {
    if g.shape() != shape {
        return Err(MaxiError::Other(format!(
            "gradient has shape {:?}, expected {:?}",
            g.shape(),
            shape
        )));
    }
    if let Some(i) = g.iter().position(|v| !v.is_finite()) {
        return Err(MaxiError::Other(format!(
            "gradient entry {i} is not finite ({})",
            g.iter().nth(i).copied().unwrap_or(f64::NAN)
        )));
    }
    Ok(())
}

/// `‖a‖∞` (0 for an empty array).
fn max_abs<'a>(a: impl IntoIterator<Item = &'a f64>) -> f64 {
    a.into_iter().fold(0.0, |m, v| m.max(v.abs()))
}

// ---------------------------------------------------------------------------------------------
// The optimiser
// ---------------------------------------------------------------------------------------------

/// The AO-ExpGrad optimiser (accelerated optimistic exponentiated gradient).
///
/// Minimises `L(y) + l1·‖y‖₁ + (l2/2)·‖y‖₂²` over a box; the gradient is taken at the averaged
/// iterate `y`, which is what [`Optimizer::step`] returns.
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
        kwargs: &ExpGradKwargs,
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

    /// The current averaged iterate `y`.
    pub fn y(&self) -> &ArrayD<f64> {
        &self.y
    }
}

impl Optimizer for AoExpGrad {
    fn step(
        &mut self,
        problem: &Problem,
        gradient: &mut dyn Gradient,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>> {
        let g = gradient.gradient(problem, self.y.view(), rng)?;
        check_gradient(&g, self.y.shape())?;
        self.t += 1.0;
        self.s_sum += self.t;
        let t = self.t;

        let diff = max_abs(Zip::from(&g).and(&self.h).map_collect(|g, h| g - h).iter());
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
                let z = mirror(*x, beta) - (t * g - t * h + (t + 1.0) * g) / alpha;
                *x = prox(z, threshold, beta, b).clamp(lo, hi);
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
        self.h = g;
        Ok(self.y.clone())
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

impl OptimizerFactory for AoExpGradFactory {
    type Kwargs = ExpGradKwargs;
    fn build(kwargs: &Self::Kwargs, ctx: &OptimizerContext<'_>) -> Result<Box<dyn Optimizer>> {
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

#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
