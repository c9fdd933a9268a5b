//! Spectral AO-ExpGrad optimiser for maxi: the AO-ExpGrad update (Shao, Sivrikaya, Albayrak
//! 2022) applied to the **singular values** of each 2-D slice of the variable, as MAXi's
//! `SpectralAoExpGradOptimizer`. The L1 penalty becomes the nuclear norm (sum of singular
//! values), so the iterates are pulled towards *low rank* rather than towards sparsity.
//!
//! The variable is cut into matrices: a 2-D variable `[rows, cols]` is one matrix; a 3-D one is
//! one matrix per channel, `[C, H, W]` (`channels_first = true`) or `[H, W, C]`
//! (`channels_first = false`). With `n = min(rows, cols)` and `β = 1/n`, one update with the
//! gradient `G` at `Y` is, per matrix:
//!
//! ```text
//! t += 1; S += t
//! λ += (t · max_slices σ_max(G − H))²          (σ_max: largest singular value)
//! α = η·√λ / √ln(n+1)                          (α = 1e-6 if 0)
//! X = U diag(σ) Vᵀ                             (SVD of the current x)
//! Z = U diag(ln(σ/β + 1)) Vᵀ − (t·G − t·H + (t+1)·G)/α
//! Z = U' diag(ζ) V'ᵀ                           (SVD)
//! x = clip(U' diag(prox(ζ, l1·(t+1)/α, β, l2·(t+1)/α)) V'ᵀ, lower, upper)
//! y = (t/S)·x + ((S − t)/S)·y;  H = G
//! ```
//!
//! `prox` is the elastic-net proximal step of [`maxi_expgrad::prox`] (overflow-free Lambert W).
//! On a diagonal matrix this is exactly the vector AO-ExpGrad on the diagonal (tested).
//!
//! Differences from MAXi, each so that the spectral and the vector update agree:
//! MAXi's `SpectralAOExpGrad` uses `ln(n)` (0 for `n = 1`: α infinite) and thresholds with
//! `l1·t/α`, `l2·t/α`, while its vector AO-ExpGrad uses `ln(n+1)` and `t+1`; here both use the
//! vector form. MAXi's λ accumulates an array when there are several slices; here it is the
//! largest singular value over all slices (the dual norm of the summed nuclear norms). MAXi
//! takes the SVD over the last two axes whatever `channels_first` says; here the slices
//! follow `channels_first`, and its default (`null`) guesses the channel axis from the shape
//! (MAXi's default `true` would cut an `[H, W, 1]` image into `H` matrices of `W × 1`).
//!
//! SVDs come from `nalgebra` (about 0.1 ms at 28×28 and 10 ms at 224×224 per decomposition;
//! an update takes three per slice).
#![warn(missing_docs)]

use maxi_core::ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMutD, Axis, Zip};
use maxi_core::{
    Bounds, Factory, KwargProblem, KwargsSpec, MaxiError, Optimizer, OptimizerContext,
    OptimizerKind, Regularization, Result, Valid, register_optimizer,
};
use maxi_expgrad::{check_penalties, check_start, prox};
use nalgebra::DMatrix;
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

/// Kwargs of `spectral_ao_exp_grad` (MAXi's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpectralAoExpGradKwargs {
    /// Weight of the nuclear-norm penalty `l1·Σσ` (≥ 0); larger values give lower-rank
    /// explanations.
    #[serde(default = "default_l1")]
    pub l1: f64,
    /// Weight of the Frobenius penalty `(l2/2)·‖V‖²` (≥ 0).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Step-size scale (> 0): the adaptive denominator is `eta·√λ/√ln(n+1)`; larger values
    /// take smaller steps.
    #[serde(default = "default_eta")]
    pub eta: f64,
    /// 3-D variables: `true` for `[C, H, W]`, `false` for `[H, W, C]`; one matrix per channel.
    /// `null`: guessed from the shape (the axis of size ≤ 4 at either end is the channel axis).
    /// 2-D variables are one matrix whatever this says.
    #[serde(default)]
    pub channels_first: Option<bool>,
}

impl Default for SpectralAoExpGradKwargs {
    fn default() -> Self {
        SpectralAoExpGradKwargs {
            l1: default_l1(),
            l2: default_l2(),
            eta: default_eta(),
            channels_first: None,
        }
    }
}

impl KwargsSpec for SpectralAoExpGradKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        check_penalties(self.l1, self.l2, self.eta)
    }
}

/// How the variable is cut into matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slicing {
    /// The variable is one matrix.
    Matrix,
    /// One matrix per index of this axis (0: channels first, 2: channels last).
    PerChannel(usize),
}

/// Picks the slicing of a variable of `shape` (see [`SpectralAoExpGradKwargs::channels_first`]).
pub fn slicing(shape: &[usize], channels_first: Option<bool>) -> Result<Slicing> {
    let invalid = |message: String| MaxiError::InvalidKwarg {
        kind: maxi_core::Kind::Optimizer,
        component: "spectral_ao_exp_grad".into(),
        field: "channels_first".into(),
        message,
    };
    match (shape, channels_first) {
        ([_, _], _) => Ok(Slicing::Matrix),
        ([_, _, _], Some(true)) => Ok(Slicing::PerChannel(0)),
        ([_, _, _], Some(false)) => Ok(Slicing::PerChannel(2)),
        ([a, _, c], None) => match (*a <= 4, *c <= 4) {
            (false, true) => Ok(Slicing::PerChannel(2)),
            (true, false) => Ok(Slicing::PerChannel(0)),
            _ => Err(invalid(format!(
                "cannot tell the channel axis of a variable of shape {shape:?}; set \
                 channels_first = true ([C, H, W]) or false ([H, W, C])"
            ))),
        },
        _ => Err(MaxiError::input(
            "start point",
            format!(
                "spectral_ao_exp_grad works on matrices: a 2-D variable or a 3-D image \
                 ([C, H, W] or [H, W, C]), got shape {shape:?}; use ao_exp_grad for other shapes"
            ),
        )),
    }
}

/// Convergence tolerance of the SVDs: nalgebra's default, 5ε (with ε itself nalgebra returns a
/// wrong decomposition of some exactly rank-deficient matrices; see the tests).
const SVD_EPS: f64 = 5.0 * f64::EPSILON;

/// An upper bound on the QR sweeps of one SVD of an `r×c` matrix (a few per singular value
/// are typical), so that no input can loop for ever.
fn svd_max_iter(r: usize, c: usize) -> usize {
    1000 + 200 * r.min(c)
}

/// Singular value decomposition `m = U diag(σ) Vᵀ` (thin); errors if it does not converge.
fn svd(m: ArrayView2<'_, f64>) -> Result<(DMatrix<f64>, Vec<f64>, DMatrix<f64>)> {
    let (r, c) = m.dim();
    let dm = DMatrix::from_fn(r, c, |i, j| m[[i, j]]);
    let fail = || MaxiError::Other(format!("the SVD of a {r}×{c} slice did not converge"));
    let s = dm
        .try_svd(true, true, SVD_EPS, svd_max_iter(r, c))
        .ok_or_else(fail)?;
    let (Some(u), Some(v_t)) = (s.u, s.v_t) else {
        return Err(fail());
    };
    Ok((u, s.singular_values.iter().copied().collect(), v_t))
}

/// The largest singular value of `m`.
fn spectral_norm(m: ArrayView2<'_, f64>) -> Result<f64> {
    let (r, c) = m.dim();
    let dm = DMatrix::from_fn(r, c, |i, j| m[[i, j]]);
    let s = dm
        .try_svd(false, false, SVD_EPS, svd_max_iter(r, c))
        .ok_or_else(|| MaxiError::Other(format!("the SVD of a {r}×{c} slice did not converge")))?;
    Ok(s.singular_values.iter().fold(0.0, |m, v| m.max(*v)))
}

/// `U diag(w) Vᵀ` as an ndarray matrix.
fn compose(mut u: DMatrix<f64>, w: &[f64], v_t: &DMatrix<f64>) -> Array2<f64> {
    for (mut col, w) in u.column_iter_mut().zip(w) {
        col *= *w;
    }
    let m = u * v_t;
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

/// The spectral AO-ExpGrad optimiser (see the crate docs).
#[derive(Debug, Clone)]
pub struct SpectralAoExpGrad {
    l1: f64,
    l2: f64,
    eta: f64,
    slicing: Slicing,
    lower: ArrayD<f64>,
    upper: ArrayD<f64>,
    x: ArrayD<f64>,
    y: ArrayD<f64>,
    h: ArrayD<f64>,
    lambda: f64,
    t: f64,
    s_sum: f64,
    beta: f64,
    ln_n1: f64,
}

/// The 2-D slices of `a` (views).
fn slices<'a>(a: &'a ArrayD<f64>, slicing: Slicing) -> Vec<ArrayView2<'a, f64>> {
    let views: Vec<ArrayViewD<'a, f64>> = match slicing {
        Slicing::Matrix => vec![a.view()],
        Slicing::PerChannel(axis) => a.axis_iter(Axis(axis)).collect(),
    };
    views
        .into_iter()
        .filter_map(|v| v.into_dimensionality().ok())
        .collect()
}

/// The 2-D slices of `a` (mutable views).
fn slices_mut(
    a: &mut ArrayD<f64>,
    slicing: Slicing,
) -> Vec<maxi_core::ndarray::ArrayViewMut2<'_, f64>> {
    let views: Vec<ArrayViewMutD<'_, f64>> = match slicing {
        Slicing::Matrix => vec![a.view_mut()],
        Slicing::PerChannel(axis) => a.axis_iter_mut(Axis(axis)).collect(),
    };
    views
        .into_iter()
        .filter_map(|v| v.into_dimensionality().ok())
        .collect()
}

impl SpectralAoExpGrad {
    /// A fresh optimiser at `start` (`x = y = start`, `H = 0`, `λ = 0`, `t = 0`,
    /// `β = 1/min(rows, cols)`).
    pub fn new(
        kwargs: &Valid<SpectralAoExpGradKwargs>,
        start: ArrayViewD<'_, f64>,
        bounds: &Bounds,
    ) -> Result<Self> {
        check_start(start.view(), bounds)?;
        let slicing = slicing(start.shape(), kwargs.channels_first)?;
        let shape = start.shape();
        let (rows, cols) = match slicing {
            Slicing::Matrix => (shape[0], shape[1]),
            Slicing::PerChannel(0) => (shape[1], shape[2]),
            Slicing::PerChannel(_) => (shape[0], shape[1]),
        };
        let n = rows.min(cols) as f64;
        Ok(SpectralAoExpGrad {
            l1: kwargs.l1,
            l2: kwargs.l2,
            eta: kwargs.eta,
            slicing,
            lower: bounds.lower().clone(),
            upper: bounds.upper().clone(),
            x: start.to_owned(),
            y: start.to_owned(),
            h: ArrayD::zeros(start.shape()),
            lambda: 0.0,
            t: 0.0,
            s_sum: 0.0,
            beta: 1.0 / n,
            ln_n1: (n + 1.0).ln(),
        })
    }

    /// The current (non-averaged) iterate `x`.
    pub fn x(&self) -> &ArrayD<f64> {
        &self.x
    }

    /// How the variable is cut into matrices.
    pub fn slicing(&self) -> Slicing {
        self.slicing
    }
}

impl Optimizer for SpectralAoExpGrad {
    fn query(&self) -> ArrayViewD<'_, f64> {
        self.y.view()
    }

    fn update(&mut self, g: ArrayViewD<'_, f64>) -> Result<()> {
        self.t += 1.0;
        self.s_sum += self.t;
        let t = self.t;
        let g = g.to_owned();
        // the optimistic gradient t·g − t·h + (t+1)·g and g − h, shaped like the variable
        let diff = &g - &self.h;
        let step = Zip::from(&g)
            .and(&self.h)
            .map_collect(|&g, &h| t * g - t * h + (t + 1.0) * g);

        let mut sigma_max: f64 = 0.0;
        for m in slices(&diff, self.slicing) {
            sigma_max = sigma_max.max(spectral_norm(m)?);
        }
        self.lambda += (t * sigma_max).powi(2);
        let mut alpha = self.eta * self.lambda.sqrt() / self.ln_n1.sqrt();
        if alpha == 0.0 {
            alpha = 1e-6;
        }
        let threshold = self.l1 * (t + 1.0) / alpha;
        let b = self.l2 * (t + 1.0) / alpha;
        let beta = self.beta;

        let steps = slices(&step, self.slicing);
        for (mut x, st) in slices_mut(&mut self.x, self.slicing).into_iter().zip(steps) {
            let (u, sigma, v_t) = svd(x.view())?;
            let mirrored: Vec<f64> = sigma.iter().map(|s| (s / beta).ln_1p()).collect();
            let mut z = compose(u, &mirrored, &v_t);
            Zip::from(&mut z).and(&st).for_each(|z, &s| *z -= s / alpha);
            let (u, zeta, v_t) = svd(z.view())?;
            let shrunk: Vec<f64> = zeta.iter().map(|&s| prox(s, threshold, beta, b)).collect();
            x.assign(&compose(u, &shrunk, &v_t));
        }
        Zip::from(&mut self.x)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|x, &lo, &hi| *x = x.clamp(lo, hi));
        let wx = t / self.s_sum;
        let wy = (self.s_sum - t) / self.s_sum;
        Zip::from(&mut self.y)
            .and(&self.x)
            .and(&self.lower)
            .and(&self.upper)
            .for_each(|y, &x, &lo, &hi| *y = (wx * x + wy * *y).clamp(lo, hi));
        self.h = g;
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

/// Registry factory of [`SpectralAoExpGrad`].
pub struct SpectralAoExpGradFactory;

impl Factory<OptimizerKind> for SpectralAoExpGradFactory {
    type Kwargs = SpectralAoExpGradKwargs;
    fn build(
        kwargs: &Valid<SpectralAoExpGradKwargs>,
        ctx: &OptimizerContext<'_>,
    ) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(SpectralAoExpGrad::new(
            kwargs,
            ctx.start.view(),
            ctx.bounds,
        )?))
    }
}

register_optimizer!(
    SpectralAoExpGradFactory,
    "spectral_ao_exp_grad",
    aliases = ["SpectralAoExpGradOptimizer", "SpectralAOExpGrad"],
    doc = "Spectral AO-ExpGrad: AO-ExpGrad on the singular values of each 2-D slice (nuclear-norm \
           penalty: low-rank explanations) with box constraints"
);

#[cfg(test)]
mod tests;
