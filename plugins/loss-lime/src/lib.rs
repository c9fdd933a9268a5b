//! LIME (Ribeiro et al. 2016): a linear surrogate of the model around `x`, fitted by weighted
//! least squares; the optimiser's variable is its weight vector `w`.
//!
//! - **Features**: with a segmentation, one per segment; without, the input's entries that
//!   differ from `no_info_val` (the others keep weight 0).
//! - **Samples** (drawn once, when the loss is built, from `rng_for(seed, SAMPLE_STREAM)`): row
//!   0 keeps every feature; every other row keeps a random part of them (`sampling`):
//!   `subset` — a size `k` uniform in `1..=m`, then `k` of the `m` features; `bernoulli` —
//!   each feature with probability ½ (the `lime` package); `uniform` — a `subset` whose kept
//!   features get a weight uniform in `[0, 1]` (MAXi's superpixel mode). A sample's vector
//!   `z_i ∈ [0, 1]^p` is shown to the model as `x_i = no_info_val + z_i·(x − no_info_val)` on
//!   each feature's entries — MAXi's `generate_img_from_weight_vector`; hiding a feature paints
//!   it with `no_info_val` (the "hide colour").
//! - **Kernel** `π_i = exp(−D_i²/σ²)`, `D_i = ‖x − x_i‖₂`, `σ = kernel_width` or `max_i D_i`.
//! - **Targets** `f_i = f(x_i)_t`, `t = target` or `argmax f(x)`.
//! - **Objective** `L(w) = (1/n) Σ_i π_i (f_i − b − z_i·w)²` and its exact gradient
//!   `∇L = (2/n) Σ_i π_i (z_i·w + b − f_i) z_i`, with the intercept `b` at its optimum for
//!   `w` (`intercept = true`: `f` and `z` centred on their π-weighted means, so the envelope
//!   theorem makes the formula exact) or `b = 0` (`intercept = false`, SPEC's formula as is).
//!   MAXi squares the weighted sum instead and differentiates another function; here loss and
//!   gradient are one pair.
//!
//! Each weight lies in `[−max_weight, max_weight]` (default 10 × the targets' spread): the
//! exponentiated-gradient optimisers need a box to keep early steps finite.
//!
//! The `n` model rows are sent once, in batches of at most 2 MiB of input, through the run's
//! counted model; the optimisation itself calls no model.
#![warn(missing_docs)]

use std::sync::Arc;

use maxi_core::ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, IxDyn};
use maxi_core::{
    Bounds, Description, Factory, KwargProblem, KwargsSpec, Loss, LossContext, LossKind, MaxiError,
    Result, Shown, Valid, VariableSpace,
};
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// The generator stream (see `maxi_core::rng_for`) of LIME's samples.
pub const SAMPLE_STREAM: u64 = 0x4C49_4D45_5F5A; // "LIME_Z"

/// Most samples accepted.
pub const MAX_SAMPLES: usize = 1_000_000;

/// Most entries of the design matrix (samples × features): 256 MiB of f64.
pub const MAX_DESIGN: usize = 1 << 25;

/// Input bytes sent to the model per call while the samples are evaluated: one buffer of
/// this size is reused, small enough to stay in cache (a fresh 16 MiB buffer costs more in
/// page faults than building the samples).
const BATCH_BYTES: usize = 2 << 20;

/// How a sample keeps features (see the crate docs).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// A size uniform in `1..=m`, then that many features at random (all-or-nothing).
    #[default]
    Subset,
    /// Each feature kept with probability ½ (the `lime` package).
    Bernoulli,
    /// A `subset` whose kept features get weights uniform in `[0, 1]` (MAXi's superpixel mode).
    Uniform,
}

fn default_samples() -> usize {
    1000
}
fn yes() -> bool {
    true
}

/// Kwargs of the LIME loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimeKwargs {
    /// Samples (model rows), including the unperturbed input; 2..=1,000,000. Default 1000.
    /// The `lime` package's name `num_samples` is accepted too.
    #[serde(default = "default_samples", alias = "num_samples")]
    pub n_samples: usize,
    /// `subset` (default), `bernoulli` (the `lime` package) or `uniform` (MAXi's superpixels).
    #[serde(default)]
    pub sampling: Sampling,
    /// Kernel width σ in input units (> 0); default: the largest sample distance.
    #[serde(default)]
    pub kernel_width: Option<f64>,
    /// The value a hidden feature takes (the "hide colour"); default 0 (black on 0..255
    /// images). `hide_color` is accepted too.
    #[serde(default, alias = "hide_color")]
    pub no_info_val: f64,
    /// The class explained; default the model's class for `x`.
    #[serde(default)]
    pub target: Option<usize>,
    /// Fit an intercept (default true); false fits `f ≈ z·w`.
    #[serde(default = "yes")]
    pub intercept: bool,
    /// Bound on each weight's magnitude (> 0), keeping the optimiser's steps finite; default
    /// 10 × the spread (max − min) of the targets.
    #[serde(default)]
    pub max_weight: Option<f64>,
}

/// Most features for which the loss keeps the `p × p` normal equations (an evaluation costs
/// `O(p²)` instead of `O(n·p)`); above, it evaluates through the samples.
pub const MAX_GRAM: usize = 1024;

impl Default for LimeKwargs {
    fn default() -> Self {
        LimeKwargs {
            n_samples: default_samples(),
            sampling: Sampling::default(),
            kernel_width: None,
            no_info_val: 0.0,
            target: None,
            intercept: true,
            max_weight: None,
        }
    }
}

impl KwargsSpec for LimeKwargs {
    const ALIASES: &'static [(&'static str, &'static str)] =
        &[("num_samples", "n_samples"), ("hide_color", "no_info_val")];

    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        if !(2..=MAX_SAMPLES).contains(&self.n_samples) {
            return Err(KwargProblem::new(
                "n_samples",
                format!(
                    "must be between 2 and {MAX_SAMPLES}, got {}; 1000 is the default",
                    self.n_samples
                ),
            ));
        }
        if let Some(k) = self.kernel_width
            && !(k.is_finite() && k > 0.0)
        {
            return Err(KwargProblem::new(
                "kernel_width",
                format!(
                    "must be a finite number > 0, got {k}; omit it for the largest sample distance"
                ),
            ));
        }
        if let Some(m) = self.max_weight
            && !(m.is_finite() && m > 0.0)
        {
            return Err(KwargProblem::new(
                "max_weight",
                format!(
                    "must be a finite number > 0, got {m}; omit it for 10 × the targets' spread"
                ),
            ));
        }
        if !self.no_info_val.is_finite() {
            return Err(KwargProblem::new("no_info_val", "must be finite"));
        }
        Ok(())
    }
}

/// The LIME loss for one input: the samples, their kernel weights and targets, fixed when it
/// is built.
pub struct LimeLoss {
    /// Design matrix `[n, p]` over the variable's entries, centred when fitting an intercept.
    z: Array2<f64>,
    /// Targets `[n]`, centred likewise.
    f: Array1<f64>,
    /// Kernel weights `[n]`.
    pi: Array1<f64>,
    /// The normal equations `L(w) = wᵀAw − 2bᵀw + c` when there are at most [`MAX_GRAM`]
    /// features.
    gram: Option<(Array2<f64>, Array1<f64>, f64)>,
    shape: Vec<usize>,
    space: Arc<dyn VariableSpace>,
    target: usize,
    bounds: Bounds,
    /// π-weighted means of the targets and of each feature (zeros without intercept).
    f_mean: f64,
    z_mean: Array1<f64>,
}

fn invalid(p: KwargProblem) -> MaxiError {
    MaxiError::InvalidKwarg {
        kind: maxi_core::Kind::Loss,
        component: "lime".into(),
        field: p.field,
        message: p.message,
    }
}

/// Index of the largest score.
fn argmax(row: ArrayViewD<'_, f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in row.iter().enumerate() {
        if *v > best.1 {
            best = (i, *v);
        }
    }
    best.0
}

/// Row `i` of the sample matrix over the free features `free` (indices into the variable).
fn draw_row(
    sampling: Sampling,
    free: &[usize],
    order: &mut [usize],
    rng: &mut maxi_core::MaxiRng,
    row: &mut [f64],
) {
    let m = free.len();
    match sampling {
        Sampling::Bernoulli => {
            for &j in free {
                row[j] = if rng.random::<bool>() { 1.0 } else { 0.0 };
            }
        }
        Sampling::Subset | Sampling::Uniform => {
            let k = rng.random_range(1..=m);
            for (i, o) in order.iter_mut().enumerate() {
                *o = i;
            }
            for j in 0..k {
                let pick = rng.random_range(j..m);
                order.swap(j, pick);
            }
            for &o in &order[..k] {
                row[free[o]] = if sampling == Sampling::Uniform {
                    rng.random::<f64>()
                } else {
                    1.0
                };
            }
        }
    }
}

impl LimeLoss {
    /// Draws the samples and evaluates them on the model (`n_samples` rows).
    pub fn new(kw: &Valid<LimeKwargs>, ctx: &LossContext<'_>) -> Result<Self> {
        let space = ctx.space.clone();
        let x = ctx.x.as_standard_layout().into_owned();
        let shape = space.shape().to_vec();
        let p: usize = shape.iter().product();
        let d = x.len();
        let n = kw.n_samples;
        let no_info = kw.no_info_val;
        // the free features: every segment, or the entries that carry information
        let free: Vec<usize> = if space.is_identity() {
            (0..p)
                .filter(|&j| x.as_slice().is_none_or(|s| s[j] != no_info))
                .collect()
        } else {
            (0..p).collect()
        };
        if free.is_empty() {
            return Err(MaxiError::input(
                "x",
                format!(
                    "every entry equals no_info_val = {no_info}: hiding features changes nothing; set no_info_val to the value that means \"absent\" (e.g. 0 for black)"
                ),
            ));
        }
        if n.saturating_mul(p) > MAX_DESIGN {
            return Err(invalid(KwargProblem::new(
                "n_samples",
                format!(
                    "{n} samples × {p} features is more than {MAX_DESIGN} design entries; use a [segmentation] (one feature per segment) or fewer samples"
                ),
            )));
        }
        // samples, row 0 keeps everything
        let mut rng = maxi_core::rng_for(ctx.seed, SAMPLE_STREAM);
        let mut z = Array2::<f64>::zeros((n, p));
        let mut order = vec![0; free.len()];
        for (i, mut row) in z.outer_iter_mut().enumerate() {
            let row = row
                .as_slice_mut()
                .ok_or_else(|| MaxiError::Other("layout".into()))?;
            if i == 0 {
                free.iter().for_each(|&j| row[j] = 1.0);
            } else {
                draw_row(kw.sampling, &free, &mut order, &mut rng, row);
            }
        }
        // the model's view of each sample, in batches: targets and distances
        let span = x.mapv(|v| v - no_info);
        let span_flat = span.as_slice().map(<[f64]>::to_vec).unwrap_or_default();
        // D_i² = Σ_j (1 − z_ij)² S_j, S_j = the squared span of feature j's entries
        let weight_sq = space.reduce(span.mapv(|v| v * v).view(), maxi_core::Reduce::Sum);
        let weight_sq: Vec<f64> = weight_sq.iter().copied().collect();
        let dist = Array1::from_iter(z.outer_iter().map(|row| {
            row.iter()
                .zip(&weight_sq)
                .map(|(z, s)| (1.0 - z) * (1.0 - z) * s)
                .sum::<f64>()
                .sqrt()
        }));
        let chunk = (BATCH_BYTES / (8 * d.max(1))).clamp(1, n);
        let mut targets = Array1::<f64>::zeros(n);
        let mut target = kw.target;
        let mut input_shape = vec![chunk];
        input_shape.extend_from_slice(space.input_shape());
        let mut buffer = ArrayD::<f64>::zeros(IxDyn(&input_shape));
        let mut start = 0;
        while start < n {
            let rows = chunk.min(n - start);
            let mut shown = buffer.slice_axis_mut(Axis(0), (0..rows).into());
            let zs = z.slice(maxi_core::ndarray::s![start..start + rows, ..]);
            let zs = zs
                .into_shape_with_order(IxDyn(&[&[rows][..], &shape[..]].concat()))
                .map_err(|e| MaxiError::Other(format!("sample shape: {e}")))?;
            space.expand(zs, shown.view_mut());
            let flat = shown
                .as_slice_mut()
                .ok_or_else(|| MaxiError::Other("layout".into()))?;
            for img in flat.chunks_exact_mut(d) {
                for (v, s) in img.iter_mut().zip(&span_flat) {
                    *v = no_info + *v * s;
                }
            }
            let scores = ctx.model.predict(shown.view())?;
            if scores.ndim() != 2 || scores.shape()[0] != rows {
                return Err(MaxiError::ModelRun {
                    model: ctx.model.describe(),
                    message: format!(
                        "LIME needs scores of shape [B, classes], got {:?} for {rows} rows",
                        scores.shape()
                    ),
                });
            }
            let classes = scores.shape()[1];
            let t = match target {
                Some(t) if t < classes => t,
                Some(t) => {
                    return Err(invalid(KwargProblem::new(
                        "target",
                        format!("is {t} but the model has {classes} classes (0..{classes})"),
                    )));
                }
                // row 0 is the input itself
                None => argmax(scores.index_axis(Axis(0), 0)),
            };
            target = Some(t);
            for i in 0..rows {
                targets[start + i] = scores[[i, t]];
            }
            start += rows;
        }
        if let Some(i) = targets.iter().position(|v| !v.is_finite()) {
            return Err(MaxiError::ModelRun {
                model: ctx.model.describe(),
                message: format!("returned a non-finite score for sample {i}"),
            });
        }
        let sigma = kw
            .kernel_width
            .unwrap_or_else(|| dist.iter().copied().fold(0.0, f64::max));
        let pi = if sigma > 0.0 {
            dist.mapv(|d| (-(d * d) / (sigma * sigma)).exp())
        } else {
            Array1::ones(n)
        };
        let (f_mean, z_mean) = if kw.intercept {
            let total = pi.sum();
            (pi.dot(&targets) / total, z.t().dot(&pi) / total)
        } else {
            (0.0, Array1::zeros(p))
        };
        let spread = targets.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - targets.iter().copied().fold(f64::INFINITY, f64::min);
        let bound = kw.max_weight.unwrap_or((10.0 * spread).max(1e-9));
        let f = targets - f_mean;
        z -= &z_mean.view().insert_axis(Axis(0));
        let mut lower = ArrayD::from_elem(IxDyn(&shape), 0.0);
        let mut upper = ArrayD::from_elem(IxDyn(&shape), 0.0);
        if let (Some(lo), Some(up)) = (lower.as_slice_mut(), upper.as_slice_mut()) {
            for &j in &free {
                lo[j] = -bound;
                up[j] = bound;
            }
        }
        let bounds = Bounds::new(lower, upper)?;
        let gram = (p <= MAX_GRAM).then(|| {
            let weighted = &z * &pi.view().insert_axis(Axis(1));
            let nf = n as f64;
            let a = z.t().dot(&weighted) / nf;
            let b = weighted.t().dot(&f) / nf;
            let c = pi.iter().zip(&f).map(|(p, f)| p * f * f).sum::<f64>() / nf;
            (a, b, c)
        });
        Ok(LimeLoss {
            z,
            f,
            pi,
            gram,
            shape,
            space,
            target: target.unwrap_or(0),
            bounds,
            f_mean,
            z_mean,
        })
    }

    /// The class explained.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The surrogate's intercept for weights `w`: `b = f̄ − z̄·w` (0 without intercept).
    pub fn intercept(&self, w: ArrayViewD<'_, f64>) -> f64 {
        let w = w.iter().copied().collect::<Array1<f64>>();
        self.f_mean - self.z_mean.dot(&w)
    }

    /// Residuals `z̃·w − f̃` of every sample for a batch of weights `[B, p]` → `[n, B]`.
    fn residuals(&self, w: &Array2<f64>) -> Array2<f64> {
        let mut r = self.z.dot(&w.t());
        r -= &self.f.view().insert_axis(Axis(1));
        r
    }

    fn flat_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array2<f64>> {
        let b = batch.shape()[0];
        let p = self.z.ncols();
        batch
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((b, p))
            .map_err(|e| MaxiError::Other(format!("lime: batch of shape {:?}: {e}", batch.shape())))
    }
}

impl Loss for LimeLoss {
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        let w = self.flat_batch(batch)?;
        if let Some((a, b, c)) = &self.gram {
            // wᵀAw − 2bᵀw + c (≥ 0 up to rounding)
            let aw = w.dot(a);
            return Ok(Array1::from_iter(
                aw.outer_iter()
                    .zip(w.outer_iter())
                    .map(|(aw, w)| (aw.dot(&w) - 2.0 * b.dot(&w) + c).max(0.0)),
            ));
        }
        let r = self.residuals(&w);
        let n = self.f.len() as f64;
        Ok(Array1::from_iter(r.columns().into_iter().map(|col| {
            col.iter()
                .zip(&self.pi)
                .map(|(r, p)| p * r * r)
                .sum::<f64>()
                / n
        })))
    }

    fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    fn start(&self) -> ArrayD<f64> {
        ArrayD::zeros(IxDyn(&self.shape))
    }

    fn candidate(&self, v: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        // each feature's weight on its entries (a heat map in the input's shape)
        let mut out = ArrayD::zeros(self.space.input_shape());
        self.space
            .expand(v.insert_axis(Axis(0)), out.view_mut().insert_axis(Axis(0)));
        out
    }

    fn describe(&self) -> Description {
        Description {
            label: "LIME".into(),
            name: "local linear surrogate".into(),
            shown: Shown::Weights,
            no_info_val: 0.0,
            class: Some(self.target),
            input_range: None,
            attack_floor: 0.0,
        }
    }

    fn gradient(&self, v: ArrayViewD<'_, f64>) -> Option<Result<ArrayD<f64>>> {
        Some((|| {
            if let Some((a, b, _)) = &self.gram {
                let w: Array1<f64> = v.iter().copied().collect();
                let g = (a.dot(&w) - b) * 2.0;
                return g
                    .into_shape_with_order(IxDyn(&self.shape))
                    .map_err(|e| MaxiError::Other(format!("lime gradient shape: {e}")));
            }
            let w = self.flat_batch(v.insert_axis(Axis(0)))?;
            let r = self.residuals(&w);
            let n = self.f.len() as f64;
            let weighted = Array1::from_iter(
                r.column(0)
                    .iter()
                    .zip(&self.pi)
                    .map(|(r, p)| 2.0 * p * r / n),
            );
            let g = self.z.t().dot(&weighted);
            g.into_shape_with_order(IxDyn(&self.shape))
                .map_err(|e| MaxiError::Other(format!("lime gradient shape: {e}")))
        })())
    }
}

/// Registry factory of [`LimeLoss`].
pub struct LimeFactory;

impl Factory<LossKind> for LimeFactory {
    type Kwargs = LimeKwargs;
    fn build(kwargs: &Valid<LimeKwargs>, ctx: &LossContext<'_>) -> Result<Box<dyn Loss>> {
        Ok(Box::new(LimeLoss::new(kwargs, ctx)?))
    }
}

maxi_core::register_loss!(
    LimeFactory,
    "lime",
    aliases = ["LimeLoss", "SuperpixelLimeLoss"],
    doc = "LIME: weighted least squares of a local linear surrogate, per entry or per segment (with [segmentation]); exact gradient",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::ndarray::{Array2 as A2, arr1};
    use maxi_core::{Identity, Kwargs, Model, SegmentSpace, Segmentation, model_fn};

    /// 4×4 RGB image in four 2×2 quadrant segments.
    fn quadrant_space() -> Arc<dyn VariableSpace> {
        let labels = A2::from_shape_fn((4, 4), |(r, c)| ((r / 2) * 2 + c / 2) as i32);
        let seg = Segmentation::new(labels, 4, 4, "test").expect("segmentation");
        Arc::new(SegmentSpace::new(seg, &[4, 4, 3]).expect("space"))
    }

    /// Class 1 scores `0.3 + Σ_s c_s · mean(segment s)`, class 0 a constant: exactly linear
    /// in the kept share of each segment when x = 1 and hidden pixels are 0.
    fn linear_in_segments(c: [f64; 4]) -> Arc<dyn Model> {
        model_fn("linear_in_segments", move |b: ArrayViewD<'_, f64>| {
            let n = b.shape()[0];
            let mut out = ArrayD::zeros(IxDyn(&[n, 2]));
            for (i, item) in b.axis_iter(Axis(0)).enumerate() {
                let mut s = 0.3;
                for ((r, col, _), v) in item
                    .into_dimensionality::<maxi_core::ndarray::Ix3>()
                    .expect("3d")
                    .indexed_iter()
                {
                    s += c[(r / 2) * 2 + col / 2] * v / 12.0;
                }
                out[[i, 0]] = 0.0;
                out[[i, 1]] = s;
            }
            out
        })
    }

    /// A smooth non-linear two-class model.
    fn wavy() -> Arc<dyn Model> {
        model_fn("wavy", |b: ArrayViewD<'_, f64>| {
            let n = b.shape()[0];
            let mut out = ArrayD::zeros(IxDyn(&[n, 2]));
            for (i, item) in b.axis_iter(Axis(0)).enumerate() {
                let s: f64 = item
                    .iter()
                    .enumerate()
                    .map(|(j, v)| (j as f64 * 0.3).sin() * v)
                    .sum();
                out[[i, 0]] = 0.1;
                out[[i, 1]] = s.tanh() + 0.5;
            }
            out
        })
    }

    fn build(
        kw: serde_json::Value,
        model: Arc<dyn Model>,
        space: Arc<dyn VariableSpace>,
        seed: u64,
    ) -> LimeLoss {
        let kw: LimeKwargs = serde_json::from_value(kw).expect("kwargs");
        let x = ArrayD::from_elem(IxDyn(space.input_shape()), 1.0);
        let resolver = Kwargs::new().resolver();
        LimeLoss::new(
            &Valid::check(kw).expect("valid"),
            &LossContext {
                x: x.view(),
                model,
                models: &resolver,
                space,
                seed,
            },
        )
        .expect("loss")
    }

    fn finite_difference(l: &LimeLoss, w: &ArrayD<f64>) -> ArrayD<f64> {
        let h = 1e-5;
        let mut g = ArrayD::zeros(w.raw_dim());
        for j in 0..w.len() {
            let mut plus = w.clone();
            let mut minus = w.clone();
            plus.as_slice_mut().expect("flat")[j] += h;
            minus.as_slice_mut().expect("flat")[j] -= h;
            let lp = l
                .eval_batch(plus.view().insert_axis(Axis(0)))
                .expect("eval")[0];
            let lm = l
                .eval_batch(minus.view().insert_axis(Axis(0)))
                .expect("eval")[0];
            g.as_slice_mut().expect("flat")[j] = (lp - lm) / (2.0 * h);
        }
        g
    }

    #[test]
    fn exact_gradient_matches_finite_differences() {
        for (sampling, intercept) in [("subset", true), ("bernoulli", false), ("uniform", true)] {
            let l = build(
                serde_json::json!({"n_samples": 200, "sampling": sampling, "intercept": intercept}),
                wavy(),
                quadrant_space(),
                1,
            );
            let w = arr1(&[0.3, -0.7, 1.1, 0.05]).into_dyn();
            let exact = l.gradient(w.view()).expect("has one").expect("gradient");
            let fd = finite_difference(&l, &w);
            for (a, b) in exact.iter().zip(fd.iter()) {
                assert!(
                    (a - b).abs() < 1e-7 * (1.0 + b.abs()),
                    "{sampling}: {exact} vs {fd}"
                );
            }
        }
        // per entry (no segmentation): 48 features
        let l = build(
            serde_json::json!({"n_samples": 100}),
            wavy(),
            Arc::new(Identity::new(&[4, 4, 3])),
            2,
        );
        let w = ArrayD::from_shape_fn(IxDyn(&[4, 4, 3]), |i| {
            ((i[0] + 2 * i[1] + 3 * i[2]) as f64 * 0.7).sin()
        });
        let exact = l.gradient(w.view()).expect("has one").expect("gradient");
        let fd = finite_difference(&l, &w);
        let err = (&exact - &fd).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
        assert!(err < 1e-7, "max error {err}");
    }

    #[test]
    fn a_model_linear_in_the_segments_is_fitted_exactly_by_its_coefficients() {
        let c = [0.4, -0.2, 0.9, 0.0];
        let l = build(
            serde_json::json!({"n_samples": 50}),
            linear_in_segments(c),
            quadrant_space(),
            3,
        );
        assert_eq!(l.target(), 1);
        let w = arr1(&c).into_dyn();
        let at = l.eval_batch(w.view().insert_axis(Axis(0))).expect("eval")[0];
        assert!(at.abs() < 1e-14, "loss at the coefficients {at}");
        let g = l.gradient(w.view()).expect("has one").expect("gradient");
        assert!(g.iter().all(|v| v.abs() < 1e-12), "{g}");
        assert!((l.intercept(w.view()) - 0.3).abs() < 1e-12);
        let off = arr1(&[0.4, -0.2, 0.8, 0.0]).into_dyn();
        assert!(l.eval_batch(off.view().insert_axis(Axis(0))).expect("eval")[0] > 1e-4);
    }

    #[test]
    fn normal_equations_and_samples_give_the_same_loss_and_gradient() {
        let l = build(
            serde_json::json!({"n_samples": 80, "sampling": "uniform"}),
            wavy(),
            quadrant_space(),
            4,
        );
        let mut plain = build(
            serde_json::json!({"n_samples": 80, "sampling": "uniform"}),
            wavy(),
            quadrant_space(),
            4,
        );
        plain.gram = None;
        let w = arr1(&[0.5, 0.1, -0.3, 0.2]).into_dyn();
        let batch = w.view().insert_axis(Axis(0));
        let (a, b) = (
            l.eval_batch(batch.view()).expect("a")[0],
            plain.eval_batch(batch).expect("b")[0],
        );
        assert!((a - b).abs() < 1e-12 * (1.0 + b), "{a} vs {b}");
        let ga = l.gradient(w.view()).expect("a").expect("a");
        let gb = plain.gradient(w.view()).expect("b").expect("b");
        for (a, b) in ga.iter().zip(gb.iter()) {
            assert!((a - b).abs() < 1e-12, "{ga} vs {gb}");
        }
        // past MAX_GRAM features only the samples path exists
        let big = Arc::new(Identity::new(&[40, 40]));
        let l = build(serde_json::json!({"n_samples": 4}), wavy(), big, 0);
        assert!(l.gram.is_none());
    }

    #[test]
    fn samples_are_seeded() {
        let bits = |seed| {
            let l = build(
                serde_json::json!({"n_samples": 64}),
                wavy(),
                quadrant_space(),
                seed,
            );
            l.z.iter()
                .chain(l.pi.iter())
                .chain(l.f.iter())
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(5), bits(5));
        assert_ne!(bits(5), bits(6));
    }

    #[test]
    fn model_rows_are_the_samples_and_row_zero_is_the_input() {
        let counting = Arc::new(maxi_core::CountingModel::new(wavy()));
        let l = build(
            serde_json::json!({"n_samples": 37, "intercept": false}),
            counting.clone(),
            quadrant_space(),
            0,
        );
        assert_eq!(counting.stats().rows, 37);
        assert!(l.z.row(0).iter().all(|v| *v == 1.0));
        // subset sampling keeps 1..=m features in every row
        for row in l.z.outer_iter() {
            let kept = row.iter().filter(|v| **v == 1.0).count();
            assert!((1..=4).contains(&kept));
        }
        assert_eq!(l.pi[0], 1.0);
    }

    #[test]
    fn kwargs_are_checked() {
        let bad = |v: serde_json::Value| {
            let k: LimeKwargs = serde_json::from_value(v).expect("parse");
            Valid::check(k).expect_err("invalid").field
        };
        assert_eq!(bad(serde_json::json!({"n_samples": 1})), "n_samples");
        assert_eq!(
            bad(serde_json::json!({"kernel_width": 0.0})),
            "kernel_width"
        );
        assert!(serde_json::from_value::<LimeKwargs>(serde_json::json!({"samples": 3})).is_err());
        let k: LimeKwargs =
            serde_json::from_value(serde_json::json!({"num_samples": 10, "hide_color": 5.0}))
                .expect("aliases");
        assert_eq!((k.n_samples, k.no_info_val), (10, 5.0));
    }
}
