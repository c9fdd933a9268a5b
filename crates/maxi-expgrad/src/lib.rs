//! The maths shared by maxi's exponentiated-gradient optimisers (AO-ExpGrad, AdaExpGrad and
//! their relatives): the mirror map ([`mirror`]), an overflow-free `W(e^s)` ([`w_of_exp`]), the
//! elastic-net proximal step of the family ([`prox`]), and the checks of their settings.
//!
//! Not a component: each optimiser is its own crate under `plugins/` and uses this one.
#![warn(missing_docs)]

use maxi_core::ndarray::ArrayViewD;
use maxi_core::{Bounds, KwargProblem, MaxiError, Result};

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

/// One exponentiated-gradient coordinate update: `x` mapped to the mirror space, moved by
/// `descent` (the scaled gradient step), pulled back through [`prox`] with the penalties
/// `threshold` and `b`, and clamped to `[lo, hi]`.
pub fn mirror_step(
    x: f64,
    descent: f64,
    threshold: f64,
    beta: f64,
    b: f64,
    lo: f64,
    hi: f64,
) -> f64 {
    prox(mirror(x, beta) - descent, threshold, beta, b).clamp(lo, hi)
}

/// Checks the penalty weights and step-size scale every optimiser of the family takes:
/// `l1, l2` finite and ≥ 0, `eta` finite and > 0.
pub fn check_penalties(l1: f64, l2: f64, eta: f64) -> std::result::Result<(), KwargProblem> {
    for (field, value, what) in [("l1", l1, "L1"), ("l2", l2, "L2")] {
        if !value.is_finite() || value < 0.0 {
            return Err(KwargProblem::new(
                field,
                format!(
                    "must be a finite number >= 0, got {value}; use 0 to switch the {what} penalty off"
                ),
            ));
        }
    }
    if !eta.is_finite() || eta <= 0.0 {
        return Err(KwargProblem::new(
            "eta",
            format!(
                "must be a finite number > 0, got {eta}; use a positive step-size scale such as 1.0"
            ),
        ));
    }
    Ok(())
}

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

/// `‖a‖∞` (0 for an empty array).
pub fn max_abs<'a>(a: impl IntoIterator<Item = &'a f64>) -> f64 {
    a.into_iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
