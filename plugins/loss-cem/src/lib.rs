//! CEM: the loss of the Contrastive Explanation Method (Dhurandhar et al. 2018).
//!
//! With `t = argmax f(x)` and `top_other(s) = max_{i≠t} s_i`:
//! - PP (pertinent positive, what must be present): the candidate `δ` alone is shown.
//!   `L = c·max(top_other(f(δ)) − f(δ)_t, −K) + γ·‖δ − AE(δ)‖₂²`
//! - PN (pertinent negative, what must be absent): `x + δ` is shown.
//!   `L = c·max(f(x+δ)_t − top_other(f(x+δ)), −K) + γ·‖(x+δ) − AE(x+δ)‖₂²`
//!   (`pn_target` fixes the other class).
//! - PPSMOOTH / PNSMOOTH replace the hinge `max(a, −K)` by its smooth version
//!   `softplus(a + K) − K` (equal to `log(1 + e^a)` at `K = 0`), computed stably.
//!
//! The optimiser's variable is the offset from the no-information value (`no_info_val`,
//! default 0): for PP the candidate is `no_info_val + y`, so `y = 0` — where the l1 term
//! pulls — means "no information". PP candidates lie between `no_info_val` and `x`
//! elementwise; PN perturbations lie in `[-1, 1]` by default, intersected with
//! `input_range − x` when an input range is given. PP starts at `x`, PN at zero; the `x0`
//! kwarg chooses another start: `zeros` (no information), `uniform` (each entry drawn between
//! the input's minimum and that entry, MAXi's `generate_rand_image`) or `gaussian` (N(0, 1)
//! per entry, MAXi's PN start), both seeded from the run's seed and clipped to the box.
//!
//! Per segment (a run with a segmentation): the variable is one weight per segment. PP keeps
//! the share `v_s ∈ [0, 1]` of each segment, `candidate = no_info_val + v_s·(x − no_info_val)`
//! on the segment's pixels (MAXi's `generate_img_from_weight_vector`; `variable` is then always
//! `fraction`); PN adds `v_s` to every entry of segment `s`, with `lower`/`upper` (scalars,
//! default ±1) intersected with `input_range − x` over the segment's entries.
#![warn(missing_docs)]

use std::sync::Arc;

use maxi_core::ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD, Axis, IxDyn};
use maxi_core::{
    Bounds, CountingModel, Description, Evaluation, Factory, KwargProblem, KwargsSpec, Loss,
    LossContext, LossKind, MaxiError, Model, ModelRef, Reduce, Result, Shown, Valid, VariableSpace,
};
use serde::{Deserialize, Serialize};

/// Which explanation CEM computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CemMode {
    /// Pertinent positive: a minimal part of the input that alone keeps the class.
    #[serde(rename = "PP", alias = "pp")]
    Pp,
    /// Pertinent negative: a minimal addition that changes the class.
    #[serde(rename = "PN", alias = "pn")]
    Pn,
    /// PP with a smooth hinge.
    #[serde(rename = "PPSMOOTH", alias = "ppsmooth")]
    PpSmooth,
    /// PN with a smooth hinge.
    #[serde(rename = "PNSMOOTH", alias = "pnsmooth")]
    PnSmooth,
}

impl CemMode {
    fn is_pp(self) -> bool {
        matches!(self, CemMode::Pp | CemMode::PpSmooth)
    }
    fn is_smooth(self) -> bool {
        matches!(self, CemMode::PpSmooth | CemMode::PnSmooth)
    }
}

/// A bound given as one value for every entry or as one value per entry (row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BoundSpec {
    /// The same bound for every entry.
    Scalar(f64),
    /// One bound per entry, flattened row-major.
    PerEntry(Vec<f64>),
}

fn one() -> f64 {
    1.0
}
fn ten() -> f64 {
    10.0
}

/// Where the optimisation starts (the `x0` kwarg). The values are candidates: for PP the
/// explanation itself (the variable is the candidate minus `no_info_val`), for PN the
/// perturbation; every start is clipped to the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CemStart {
    /// The input itself (PP's default: every entry kept; for PN the same as `zeros`).
    Input,
    /// No information: PP `no_info_val` everywhere, PN no change (PN's default).
    #[serde(alias = "zero")]
    Zeros,
    /// Each entry uniform between the input's minimum and that entry (MAXi's
    /// `generate_rand_image`).
    Uniform,
    /// Each entry from N(0, 1) (MAXi's PN start, `generate_from_gaussian`).
    Gaussian,
}

/// The generator stream (see `maxi_core::rng_for`) of CEM's random start points.
pub const START_STREAM: u64 = 0x4345_4D5F_5830; // "CEM_X0"

/// Kwargs of the CEM loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CemKwargs {
    /// `PP`, `PN`, `PPSMOOTH` or `PNSMOOTH`.
    pub mode: CemMode,
    /// Weight of the class-margin (attack) term.
    #[serde(default = "one")]
    pub c: f64,
    /// Weight of the autoencoder term (used only when `AE` is given).
    #[serde(default = "ten")]
    pub gamma: f64,
    /// Confidence margin κ of the hinge.
    #[serde(rename = "K", alias = "kappa", default = "ten")]
    pub k: f64,
    /// Autoencoder for the `γ·‖z − AE(z)‖²` term; omitted when null.
    #[serde(rename = "AE", default)]
    pub ae: Option<ModelRef>,
    /// PN only: the class the perturbed input should move to (default: any other class).
    #[serde(default)]
    pub pn_target: Option<usize>,
    /// The value that means "no information" (e.g. the background); default 0.
    #[serde(default)]
    pub no_info_val: Option<f64>,
    /// The model's valid input range `[low, high]`; PN keeps `x + δ` inside it.
    #[serde(default)]
    pub input_range: Option<[f64; 2]>,
    /// Lower bound of the candidate (PP: δ; PN: the perturbation); default from the mode.
    #[serde(default)]
    pub lower: Option<BoundSpec>,
    /// Upper bound of the candidate (PP: δ; PN: the perturbation); default from the mode.
    #[serde(default)]
    pub upper: Option<BoundSpec>,
    /// Start point: `input`, `zeros`, `uniform` or `gaussian` (random ones seeded from the
    /// run's seed); `null`: PP `input`, PN `zeros` (for PN `input` is `zeros`).
    #[serde(default)]
    pub x0: Option<CemStart>,
    /// PP only: what the optimiser's variable is. `offset`: the candidate's offset from the
    /// no-information value, `candidate = no_info_val + v` with `v` between 0 and
    /// `x − no_info_val`; `fraction`: the share of each entry that is kept,
    /// `candidate = no_info_val + v·(x − no_info_val)` with `v ∈ [0, 1]`, so the L1 term
    /// counts entries whatever their intensity.
    #[serde(default)]
    pub variable: CemVariable,
}

/// What a PP's optimiser variable stands for (see [`CemKwargs::variable`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CemVariable {
    /// The offset from the no-information value.
    #[default]
    Offset,
    /// The kept share of each entry, in `[0, 1]`.
    Fraction,
}

impl KwargsSpec for CemKwargs {
    const ALIASES: &'static [(&'static str, &'static str)] = &[("kappa", "K")];

    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        for (name, v) in [("c", self.c), ("gamma", self.gamma), ("K", self.k)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(KwargProblem::new(
                    name,
                    format!("must be a finite number ≥ 0, got {v}"),
                ));
            }
        }
        if let Some(v) = self.no_info_val
            && !v.is_finite()
        {
            return Err(KwargProblem::new("no_info_val", "must be finite"));
        }
        if let Some([lo, hi]) = self.input_range
            && !(lo.is_finite() && hi.is_finite() && lo < hi)
        {
            return Err(KwargProblem::new(
                "input_range",
                format!("needs finite low < high, got [{lo}, {hi}]"),
            ));
        }
        if self.variable == CemVariable::Fraction && !self.mode.is_pp() {
            return Err(KwargProblem::new(
                "variable",
                "`fraction` applies to PP modes only; remove it or use mode = \"PP\"",
            ));
        }
        if self.pn_target.is_some() && self.mode.is_pp() {
            return Err(KwargProblem::new(
                "pn_target",
                "only applies to PN modes; remove it or use mode = \"PN\"",
            ));
        }
        Ok(())
    }
}

/// The CEM loss for one input.
pub struct CemLoss {
    mode: CemMode,
    c: f64,
    gamma: f64,
    k: f64,
    ae: Option<Arc<dyn Model>>,
    model: Arc<dyn Model>,
    x: ArrayD<f64>,
    target: usize,
    classes: usize,
    pn_target: Option<usize>,
    offset: f64,
    /// PP `fraction`: `x − no_info_val`, the candidate per unit of the variable.
    scale: Option<ArrayD<f64>>,
    input_range: Option<[f64; 2]>,
    bounds: Bounds,
    start: ArrayD<f64>,
    /// The segment space, when the variable is one weight per segment.
    segments: Option<Arc<dyn VariableSpace>>,
}

/// The start of a PP whose variable is the kept share of each entry (`variable = fraction`).
fn fraction_start(x0: CemStart, x: &ArrayD<f64>, seed: u64) -> ArrayD<f64> {
    use rand::RngExt;
    let mut rng = maxi_core::rng_for(seed, START_STREAM);
    match x0 {
        CemStart::Input => ArrayD::ones(x.shape()),
        CemStart::Zeros => ArrayD::zeros(x.shape()),
        CemStart::Uniform => x.mapv(|_| rng.random::<f64>()),
        CemStart::Gaussian => x.mapv(|_| {
            let z: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
            z
        }),
    }
}

/// The start variable for `x0` (see [`CemStart`]), before clipping: candidates minus
/// `offset`; random draws come from the run's seed.
fn start_point(x0: CemStart, pp: bool, x: &ArrayD<f64>, offset: f64, seed: u64) -> ArrayD<f64> {
    use rand::RngExt;
    let mut rng = maxi_core::rng_for(seed, START_STREAM);
    match x0 {
        CemStart::Input if pp => x.mapv(|v| v - offset),
        CemStart::Input => ArrayD::zeros(x.shape()),
        CemStart::Zeros => ArrayD::zeros(x.shape()),
        CemStart::Uniform => {
            let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
            x.mapv(|v| lo + (v - lo) * rng.random::<f64>() - offset)
        }
        CemStart::Gaussian => x.mapv(|_| {
            let z: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
            z - offset
        }),
    }
}

fn bound_array(
    spec: &BoundSpec,
    shape: &[usize],
    which: &str,
) -> std::result::Result<ArrayD<f64>, KwargProblem> {
    match spec {
        BoundSpec::Scalar(v) => Ok(ArrayD::from_elem(shape, *v)),
        BoundSpec::PerEntry(v) => {
            let d: usize = shape.iter().product();
            if v.len() != d {
                return Err(KwargProblem::new(
                    which,
                    format!(
                        "has {} entries but the input has {d} (shape {shape:?}); give one value or one per entry",
                        v.len()
                    ),
                ));
            }
            ArrayD::from_shape_vec(IxDyn(shape), v.clone())
                .map_err(|e| KwargProblem::new(which, e.to_string()))
        }
    }
}

/// The per-segment box `(offset, lower, upper)`: PP the kept share `[0, 1]` of each segment
/// that carries information; PN the scalar `lower`/`upper` (default ±1) intersected with
/// `input_range − x` over each segment's entries.
fn segment_box(
    kw: &CemKwargs,
    space: &dyn VariableSpace,
    x: &ArrayD<f64>,
    no_info: f64,
) -> std::result::Result<(f64, ArrayD<f64>, ArrayD<f64>), KwargProblem> {
    let scalar = |b: &Option<BoundSpec>, which: &str, default: f64| match b {
        None => Ok(default),
        Some(BoundSpec::Scalar(v)) => Ok(*v),
        Some(BoundSpec::PerEntry(_)) => Err(KwargProblem::new(
            which,
            "with a segmentation the bound is one number for every segment; give a scalar",
        )),
    };
    let shape = space.shape();
    if kw.mode.is_pp() {
        if kw.lower.is_some() || kw.upper.is_some() {
            return Err(KwargProblem::new(
                "lower",
                "with a segmentation a PP keeps a share in [0, 1] of each segment; remove lower/upper",
            ));
        }
        let info = space.reduce(x.mapv(|v| (v - no_info).abs()).view(), Reduce::Max);
        let upper = info.mapv(|m| if m > 0.0 { 1.0 } else { 0.0 });
        return Ok((no_info, ArrayD::zeros(IxDyn(shape)), upper));
    }
    let mut lower = ArrayD::from_elem(IxDyn(shape), scalar(&kw.lower, "lower", -1.0)?);
    let mut upper = ArrayD::from_elem(IxDyn(shape), scalar(&kw.upper, "upper", 1.0)?);
    if let Some([lo, hi]) = kw.input_range {
        let min_x = space.reduce(x.view(), Reduce::Min);
        let max_x = space.reduce(x.view(), Reduce::Max);
        ndarray::Zip::from(&mut lower)
            .and(&mut upper)
            .and(&min_x)
            .and(&max_x)
            .for_each(|l, u, &mn, &mx| {
                *l = l.max(lo - mn);
                *u = u.min(hi - mx);
            });
    }
    Ok((0.0, lower, upper))
}

/// `softplus(a) = ln(1 + e^a)` without overflow.
pub fn softplus(a: f64) -> f64 {
    a.max(0.0) + (-a.abs()).exp().ln_1p()
}

/// Index of the largest score.
fn argmax<'a>(scores: impl Iterator<Item = &'a f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in scores.enumerate() {
        if *v > best.1 {
            best = (i, *v);
        }
    }
    best.0
}

impl CemLoss {
    /// Builds the loss for input `x`.
    pub fn new(kw: &Valid<CemKwargs>, ctx: &LossContext<'_>) -> Result<Self> {
        let invalid = |p: KwargProblem| MaxiError::InvalidKwarg {
            kind: maxi_core::Kind::Loss,
            component: "cem".into(),
            field: p.field,
            message: p.message,
        };
        let x = ctx.x.to_owned();
        let shape = x.shape().to_vec();
        let scores = ctx.model.predict(x.view().insert_axis(Axis(0)))?;
        if scores.ndim() != 2 || scores.shape()[1] < 2 {
            // the model does not fit the loss: a setup problem, found before the run
            return Err(MaxiError::InvalidSetting {
                name: "model".into(),
                message: format!(
                    "{} returns shape {:?} for one input, but CEM needs class scores of shape [1, classes ≥ 2]; choose a classifier (for a model with several outputs, pick one with `output = NAME` in [model])",
                    ctx.model.describe(),
                    scores.shape()
                ),
            });
        }
        let classes = scores.shape()[1];
        let target = argmax(scores.index_axis(Axis(0), 0).iter());
        if let Some(p) = kw.pn_target {
            if p >= classes {
                return Err(invalid(KwargProblem::new(
                    "pn_target",
                    format!(
                        "is {p} but the model has {classes} classes (0..{})",
                        classes - 1
                    ),
                )));
            }
            if p == target {
                return Err(invalid(KwargProblem::new(
                    "pn_target",
                    format!(
                        "is the original class {target}; a pertinent negative must move to another class"
                    ),
                )));
            }
        }
        if let Some([lo, hi]) = kw.input_range
            && let Some(i) = x.iter().position(|v| *v < lo || *v > hi)
        {
            return Err(MaxiError::input(
                "x",
                format!(
                    "entry {i} is {} which is outside input_range [{lo}, {hi}]",
                    x.iter().nth(i).copied().unwrap_or(f64::NAN)
                ),
            ));
        }
        let no_info = kw.no_info_val.unwrap_or(0.0);
        let segments = (!ctx.space.is_identity()).then(|| ctx.space.clone());
        let (offset, lower, upper) = if let Some(space) = &segments {
            segment_box(kw, space.as_ref(), &x, no_info).map_err(invalid)?
        } else if kw.mode.is_pp() {
            let lower = match &kw.lower {
                Some(b) => bound_array(b, &shape, "lower").map_err(invalid)?,
                None => x.mapv(|v| v.min(no_info)),
            };
            let upper = match &kw.upper {
                Some(b) => bound_array(b, &shape, "upper").map_err(invalid)?,
                None => x.mapv(|v| v.max(no_info)),
            };
            if kw.variable == CemVariable::Fraction {
                // the kept share of each entry: [0, 1] where the input carries information
                let free = x.mapv(|v| if v == no_info { 0.0 } else { 1.0 });
                (no_info, ArrayD::zeros(IxDyn(&shape)), free)
            } else {
                (no_info, lower - no_info, upper - no_info)
            }
        } else {
            let mut lower = match &kw.lower {
                Some(b) => bound_array(b, &shape, "lower").map_err(invalid)?,
                None => ArrayD::from_elem(IxDyn(&shape), -1.0),
            };
            let mut upper = match &kw.upper {
                Some(b) => bound_array(b, &shape, "upper").map_err(invalid)?,
                None => ArrayD::from_elem(IxDyn(&shape), 1.0),
            };
            if let Some([lo, hi]) = kw.input_range {
                ndarray::Zip::from(&mut lower)
                    .and(&mut upper)
                    .and(&x)
                    .for_each(|l, u, &xv| {
                        *l = l.max(lo - xv);
                        *u = u.min(hi - xv);
                    });
            }
            (0.0, lower, upper)
        };
        let bounds = Bounds::new(lower, upper).map_err(|e| {
            invalid(KwargProblem::new(
                "lower",
                format!("{e}; check lower/upper/no_info_val/input_range"),
            ))
        })?;
        let ae = match &kw.ae {
            Some(r) => Some(Arc::new(CountingModel::new(ctx.models.resolve(r)?)) as Arc<dyn Model>),
            None => None,
        };
        let scale = (kw.mode.is_pp()
            && (kw.variable == CemVariable::Fraction || segments.is_some()))
        .then(|| x.mapv(|v| v - no_info));
        let x0 = kw.x0.unwrap_or(if kw.mode.is_pp() {
            CemStart::Input
        } else {
            CemStart::Zeros
        });
        let mut start = match (&scale, &segments) {
            // the kept share of each entry: all of it, none, or a random share
            (Some(_), None) => fraction_start(x0, &x, ctx.seed),
            (None, None) => start_point(x0, kw.mode.is_pp(), &x, offset, ctx.seed),
            // per segment: a share (PP) or a change (PN) per segment
            (_, Some(space)) => {
                let v = ArrayD::zeros(space.shape());
                let x0 = match x0 {
                    CemStart::Input if !kw.mode.is_pp() => CemStart::Zeros,
                    other => other,
                };
                fraction_start(x0, &v, ctx.seed)
            }
        };
        bounds.clip(&mut start);
        Ok(CemLoss {
            start,
            mode: kw.mode,
            c: kw.c,
            gamma: kw.gamma,
            k: kw.k,
            ae,
            model: ctx.model.clone(),
            x,
            target,
            classes,
            pn_target: kw.pn_target,
            offset,
            scale,
            input_range: kw.input_range,
            bounds,
            segments,
        })
    }

    /// The inputs shown to the model for a batch of per-segment variables.
    fn show_segments(&self, space: &dyn VariableSpace, batch: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let mut shape = vec![batch.shape()[0]];
        shape.extend_from_slice(space.input_shape());
        let mut shown = ArrayD::zeros(IxDyn(&shape));
        space.expand(batch, shown.view_mut());
        self.show_in_place(&mut shown.view_mut());
        shown
    }

    /// The class being explained (`argmax f(x)`).
    pub fn target(&self) -> usize {
        self.target
    }

    fn hinge(&self, a: f64) -> f64 {
        if self.mode.is_smooth() {
            softplus(a + self.k) - self.k
        } else {
            a.max(-self.k)
        }
    }

    /// Shifts a batch of variables into the inputs shown to the model, in place.
    fn show_in_place(&self, batch: &mut ArrayViewMutD<'_, f64>) {
        if self.mode.is_pp() {
            match &self.scale {
                Some(scale) => {
                    let d = scale.len().max(1);
                    match (batch.as_slice_mut(), scale.as_slice()) {
                        (Some(flat), Some(s)) => {
                            for row in flat.chunks_exact_mut(d) {
                                row.iter_mut()
                                    .zip(s)
                                    .for_each(|(v, s)| *v = self.offset + *v * s);
                            }
                        }
                        _ => {
                            *batch *= &scale.view().insert_axis(Axis(0));
                            batch.mapv_inplace(|v| v + self.offset);
                        }
                    }
                }
                None if self.offset != 0.0 => batch.mapv_inplace(|v| v + self.offset),
                None => {}
            }
            return;
        }
        let d = self.x.len().max(1);
        match (batch.as_slice_mut(), self.x.as_slice()) {
            (Some(flat), Some(x)) => {
                for row in flat.chunks_exact_mut(d) {
                    row.iter_mut().zip(x).for_each(|(v, x)| *v += x);
                }
            }
            _ => *batch += &self.x.view().insert_axis(Axis(0)),
        }
    }

    /// Loss values and verdicts of the inputs shown to the model.
    fn assess_shown(&self, shown: ArrayViewD<'_, f64>) -> Result<Evaluation> {
        let b = shown.shape()[0];
        let scores = self.model.predict(shown.view())?;
        if scores.ndim() != 2 || scores.shape()[1] != self.classes {
            return Err(MaxiError::ModelRun {
                model: self.model.describe(),
                message: format!(
                    "returned scores of shape {:?}; expected [{b}, {}] (the class count it gave for the input)",
                    scores.shape(),
                    self.classes
                ),
            });
        }
        let t = self.target;
        let mut values = Array1::<f64>::zeros(b);
        let mut valid = Vec::with_capacity(b);
        for (i, row) in scores.outer_iter().enumerate() {
            let best_other = |skip: usize| {
                row.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != skip)
                    .map(|(_, v)| *v)
                    .fold(f64::NEG_INFINITY, f64::max)
            };
            let other = match self.pn_target {
                Some(p) => row[p],
                None => best_other(t),
            };
            let margin = if self.mode.is_pp() {
                other - row[t]
            } else {
                row[t] - other
            };
            values[i] = self.c * self.hinge(margin);
            // the attack succeeds with margin K, and the intended class strictly wins
            let wins = match (self.mode.is_pp(), self.pn_target) {
                (true, _) => row[t] > best_other(t),
                (false, None) => best_other(t) > row[t],
                (false, Some(p)) => row[p] > best_other(p),
            };
            valid.push(wins && -margin >= self.k);
        }
        if let (Some(ae), true) = (&self.ae, self.gamma > 0.0) {
            let rec = ae.predict(shown.view())?;
            if rec.shape() != shown.shape() {
                return Err(MaxiError::ModelRun {
                    model: ae.describe(),
                    message: format!(
                        "autoencoder returned shape {:?} for inputs of shape {:?}",
                        rec.shape(),
                        shown.shape()
                    ),
                });
            }
            for (i, (s, r)) in shown.outer_iter().zip(rec.outer_iter()).enumerate() {
                let err: f64 = s.iter().zip(r.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
                values[i] += self.gamma * err;
            }
        }
        Ok(Evaluation {
            values,
            valid: Some(valid),
        })
    }
}

impl Loss for CemLoss {
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        if let Some(space) = &self.segments {
            let shown = self.show_segments(space.as_ref(), batch);
            return Ok(self.assess_shown(shown.view())?.values);
        }
        if self.mode.is_pp() && self.offset == 0.0 && self.scale.is_none() {
            // PP with no_info_val = 0 shows the batch itself
            return Ok(self.assess_shown(batch)?.values);
        }
        let mut shown = batch.as_standard_layout().into_owned();
        self.eval_batch_mut(shown.view_mut())
    }

    fn eval_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> Result<Array1<f64>> {
        Ok(self.assess_batch_mut(batch)?.values)
    }

    fn assess_batch_mut(&self, mut batch: ArrayViewMutD<'_, f64>) -> Result<Evaluation> {
        if let Some(space) = &self.segments {
            let shown = self.show_segments(space.as_ref(), batch.view());
            return self.assess_shown(shown.view());
        }
        self.show_in_place(&mut batch);
        self.assess_shown(batch.view())
    }

    fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    fn start(&self) -> ArrayD<f64> {
        self.start.clone()
    }

    fn candidate(&self, y: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let expanded;
        let y = match &self.segments {
            Some(space) => {
                let mut e = ArrayD::zeros(space.input_shape());
                space.expand(y.insert_axis(Axis(0)), e.view_mut().insert_axis(Axis(0)));
                expanded = e;
                expanded.view()
            }
            None => y,
        };
        match &self.scale {
            Some(scale) => &y * scale + self.offset,
            None => y.mapv(|v| v + self.offset),
        }
    }

    fn full_strength(&self, v: ArrayViewD<'_, f64>, threshold: f64) -> Vec<ArrayD<f64>> {
        // the entries the explanation uses at least half of its range, a quarter of it, or at
        // all, each at the end of its range (PP: the input's own value; PN: the largest
        // change allowed)
        let mut forms: Vec<ArrayD<f64>> = Vec::new();
        for share in [0.5, 0.25, 0.0] {
            let mut strong = v.to_owned();
            ndarray::Zip::from(&mut strong)
                .and(self.bounds.lower())
                .and(self.bounds.upper())
                .for_each(|s, &l, &u| {
                    let end = if *s >= 0.0 { u } else { l };
                    let used = if end != 0.0 { *s / end } else { 0.0 };
                    *s = if s.abs() > threshold && used > share {
                        end
                    } else {
                        0.0
                    };
                });
            if strong != v && !forms.contains(&strong) && strong.iter().any(|x| *x != 0.0) {
                forms.push(strong);
            }
        }
        forms
    }

    fn describe(&self) -> Description {
        let (label, name, shown, no_info_val) = if self.mode.is_pp() {
            ("PP", "pertinent positive", Shown::Candidate, self.offset)
        } else {
            ("PN", "pertinent negative", Shown::InputPlusCandidate, 0.0)
        };
        Description {
            label: label.into(),
            name: name.into(),
            shown,
            no_info_val,
            class: Some(self.target),
            input_range: self.input_range,
            attack_floor: -self.c * self.k,
        }
    }
}

/// Registry factory of [`CemLoss`].
pub struct CemFactory;

impl Factory<LossKind> for CemFactory {
    type Kwargs = CemKwargs;
    fn build(kwargs: &Valid<CemKwargs>, ctx: &LossContext<'_>) -> Result<Box<dyn Loss>> {
        Ok(Box::new(CemLoss::new(kwargs, ctx)?))
    }
}

maxi_core::register_loss!(
    CemFactory,
    "cem",
    aliases = ["CEMLoss", "TF_CEMLoss", "Torch_CEMLoss"],
    doc = "Contrastive explanation: pertinent positives (PP) and negatives (PN), optional autoencoder term",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::ndarray::{ArrayD, arr1};
    use maxi_core::{Identity, Kwargs, model_fn};

    /// Three classes over two inputs: s = W·z + b.
    fn linear() -> Arc<dyn Model> {
        model_fn("linear", |b: ArrayViewD<'_, f64>| {
            let w = maxi_core::ndarray::arr2(&[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]);
            let n = b.shape()[0];
            let z = b.to_shape((n, 2)).expect("shape");
            (z.dot(&w.t()) + arr1(&[0.0, 0.1, 0.0])).into_dyn()
        })
    }

    fn kwargs(v: serde_json::Value) -> CemKwargs {
        serde_json::from_value(v).expect("kwargs")
    }

    fn loss(v: serde_json::Value, x: &[f64], ae: Option<Arc<dyn Model>>) -> CemLoss {
        let x = ArrayD::from_shape_vec(vec![2], x.to_vec()).expect("x");
        let mut kw = kwargs(v);
        let mut k = Kwargs::new();
        if let Some(ae) = ae {
            k = k.with_model("AE", ae);
            kw.ae = Some(ModelRef("<in-memory model `AE`>".into()));
        }
        let resolver = k.resolver();
        CemLoss::new(
            &Valid::check(kw).expect("valid kwargs"),
            &LossContext {
                x: x.view(),
                model: linear(),
                models: &resolver,
                space: Arc::new(Identity::new(&[2])),
                seed: 0,
            },
        )
        .expect("loss")
    }

    /// The loss values of `rows`, checked to be the same (bit for bit) by every route: a
    /// contiguous batch, a strided view, and the in-place evaluation.
    fn eval(l: &CemLoss, rows: &[[f64; 2]]) -> Vec<f64> {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let b = ArrayD::from_shape_vec(vec![rows.len(), 2], flat).expect("batch");
        let values = l.eval_batch(b.view()).expect("eval").to_vec();
        // every other row of a batch with a junk row after each one
        let padded: Vec<f64> = rows.iter().flat_map(|r| [r[0], r[1], 9.0, 9.0]).collect();
        let padded = ArrayD::from_shape_vec(vec![2 * rows.len(), 2], padded).expect("batch");
        let strided = padded.slice(maxi_core::ndarray::s![..;2, ..]).into_dyn();
        assert!(rows.len() < 2 || strided.as_slice().is_none());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&values),
            bits(&l.eval_batch(strided).expect("eval").to_vec())
        );
        let mut owned = b.clone();
        let in_place = l.eval_batch_mut(owned.view_mut()).expect("eval").to_vec();
        assert_eq!(bits(&values), bits(&in_place));
        values
    }

    #[test]
    fn pp_is_the_hinge_of_the_class_margin_of_the_candidate_alone() {
        // x = (0.9, 0.2): scores (0.9, 0.3, 0.55) → class 0
        let l = loss(
            json(r#"{"mode": "PP", "c": 2.0, "K": 0.3}"#),
            &[0.9, 0.2],
            None,
        );
        assert_eq!(l.target(), 0);
        // δ = (0.4, 0.1): scores (0.4, 0.2, 0.25): top_other − s_0 = −0.15 → 2·(−0.15)
        // δ = (0.0, 0.8): scores (0.0, 0.9, 0.4): 0.9 → 1.8; δ = (1, 0): −0.5 clipped at −K
        let v = eval(&l, &[[0.4, 0.1], [0.0, 0.8], [1.0, 0.0]]);
        let expect = [2.0 * -0.15, 2.0 * 0.9, 2.0 * -0.3];
        for (a, b) in v.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{v:?}");
        }
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn pn_shows_x_plus_delta_and_can_fix_the_target() {
        let l = loss(
            json(r#"{"mode": "PN", "c": 1.0, "K": 5.0}"#),
            &[0.9, 0.2],
            None,
        );
        // x + δ = (0.9, 0.7): scores (0.9, 0.8, 0.8) → s_0 − top_other = 0.1
        let v = eval(&l, &[[0.0, 0.5]]);
        assert!((v[0] - 0.1).abs() < 1e-12);
        let l = loss(
            json(r#"{"mode": "PN", "pn_target": 2, "K": 5.0}"#),
            &[0.9, 0.2],
            None,
        );
        // s_0 − s_2 = 0.9 − 0.8
        assert!((eval(&l, &[[0.0, 0.5]])[0] - 0.1).abs() < 1e-12);
        // default box [-1, 1] intersected with input_range − x
        let l = loss(
            json(r#"{"mode": "PN", "input_range": [0.0, 1.0]}"#),
            &[0.9, 0.2],
            None,
        );
        assert_eq!(l.bounds().lower().as_slice().expect("slice"), &[-0.9, -0.2]);
        assert!((l.bounds().upper()[[0]] - 0.1).abs() < 1e-12);
        assert_eq!(l.bounds().upper()[[1]], 0.8);
        assert_eq!(l.start(), ArrayD::<f64>::zeros(vec![2]));
    }

    #[test]
    fn smooth_modes_use_the_softplus_hinge() {
        let l = loss(
            json(r#"{"mode": "PPSMOOTH", "c": 1.0, "K": 0.0}"#),
            &[0.9, 0.2],
            None,
        );
        let v = eval(&l, &[[0.4, 0.1]]);
        assert!((v[0] - (1.0 + (-0.15f64).exp()).ln()).abs() < 1e-12);
        let l = loss(json(r#"{"mode": "PNSMOOTH", "K": 2.0}"#), &[0.9, 0.2], None);
        let v = eval(&l, &[[0.0, 0.5]]);
        assert!((v[0] - (softplus(0.1 + 2.0) - 2.0)).abs() < 1e-12);
        assert_eq!(softplus(1000.0), 1000.0);
        assert!(softplus(-1000.0) >= 0.0 && softplus(-1000.0) < 1e-300);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
    }

    fn build_with(model: Arc<dyn Model>) -> Result<CemLoss> {
        let x = ArrayD::from_shape_vec(vec![2], vec![0.9, 0.2]).expect("x");
        let resolver = Kwargs::new().resolver();
        CemLoss::new(
            &Valid::check(kwargs(json(r#"{"mode": "PP"}"#))).expect("valid kwargs"),
            &LossContext {
                x: x.view(),
                model,
                models: &resolver,
                space: Arc::new(Identity::new(&[2])),
                seed: 0,
            },
        )
    }

    #[test]
    fn models_that_do_not_return_class_scores_are_refused_and_never_panic() {
        // one class, a 1-D output, an image-shaped output: setup errors naming `model`
        for (name, out) in [
            ("one class", vec![1usize]),
            ("1-D", vec![]),
            ("image", vec![2, 1]),
        ] {
            let shape = out.clone();
            let m = model_fn(name, move |b: ArrayViewD<'_, f64>| {
                let mut s = vec![b.shape()[0]];
                s.extend(&shape);
                ArrayD::zeros(s)
            });
            match build_with(m) {
                Err(MaxiError::InvalidSetting { name: n, message }) => {
                    assert_eq!(n, "model");
                    assert!(message.contains("class scores"), "{message}");
                }
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name}: accepted"),
            }
        }
        // a model that gives 3 classes for the input and then 2: an error, not an index panic
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let shrinking = model_fn("shrinking", move |b: ArrayViewD<'_, f64>| {
            let first = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            ArrayD::zeros(vec![b.shape()[0], if first { 3 } else { 2 }])
        });
        let l = build_with(shrinking).expect("built on the first answer");
        let batch = ArrayD::zeros(vec![4, 2]);
        let err = l.eval_batch(batch.view()).expect_err("fewer classes");
        assert!(err.to_string().contains("[4, 3]"), "{err}");
    }

    #[test]
    fn smooth_modes_in_batches_at_positive_k_follow_the_closed_form() {
        // the hinge with a huge K is `c·a` itself: it gives each row's margin `a`, and the
        // smooth modes must give `c·(ln(1 + e^(a + K)) − K)` for every row of one batch
        let rows = [[0.4, 0.1], [0.0, 0.5], [0.3, 0.3], [-0.2, 0.6]];
        for (hinge, smooth) in [("PP", "PPSMOOTH"), ("PN", "PNSMOOTH")] {
            let margins = eval(
                &loss(
                    json(&format!(r#"{{"mode": "{hinge}", "c": 1.0, "K": 1000.0}}"#)),
                    &[0.9, 0.2],
                    None,
                ),
                &rows,
            );
            let k = 1.5;
            let c = 3.0;
            let v = eval(
                &loss(
                    json(&format!(r#"{{"mode": "{smooth}", "c": {c}, "K": {k}}}"#)),
                    &[0.9, 0.2],
                    None,
                ),
                &rows,
            );
            let h = eval(
                &loss(
                    json(&format!(r#"{{"mode": "{hinge}", "c": {c}, "K": {k}}}"#)),
                    &[0.9, 0.2],
                    None,
                ),
                &rows,
            );
            for ((a, v), h) in margins.iter().zip(&v).zip(&h) {
                let expected = c * ((1.0 + (a + k).exp()).ln() - k);
                assert!(
                    (v - expected).abs() < 1e-12,
                    "{smooth}: a = {a}: {v} vs {expected}"
                );
                // the smooth hinge lies above the hinge, by at most c·ln 2
                assert!(*v >= *h && v - h <= c * 2f64.ln() + 1e-12, "{v} {h}");
            }
        }
    }

    #[test]
    fn autoencoder_term_adds_gamma_times_the_reconstruction_error() {
        let half = model_fn("half", |b: ArrayViewD<'_, f64>| b.mapv(|v| 0.5 * v));
        let l = loss(
            json(r#"{"mode": "PP", "c": 0.0, "gamma": 3.0}"#),
            &[0.9, 0.2],
            Some(half),
        );
        // ‖δ − δ/2‖² = 0.25·(0.16 + 0.01)
        let v = eval(&l, &[[0.4, 0.1]]);
        assert!((v[0] - 3.0 * 0.25 * 0.17).abs() < 1e-12, "{v:?}");
    }

    #[test]
    fn pp_variable_is_the_offset_from_the_no_information_value() {
        let l = loss(
            json(r#"{"mode": "PP", "no_info_val": -0.5}"#),
            &[0.3, -0.5],
            None,
        );
        assert_eq!(l.bounds().lower(), &arr1(&[0.0, 0.0]).into_dyn());
        assert_eq!(l.bounds().upper(), &arr1(&[0.8, 0.0]).into_dyn());
        assert_eq!(l.start(), arr1(&[0.8, 0.0]).into_dyn());
        let y = arr1(&[0.0, 0.0]).into_dyn();
        assert_eq!(l.candidate(y.view()), arr1(&[-0.5, -0.5]).into_dyn());
    }

    #[test]
    fn a_batch_equals_its_rows_one_at_a_time() {
        let l = loss(
            json(r#"{"mode": "PN", "c": 3.0, "K": 0.2}"#),
            &[0.9, 0.2],
            None,
        );
        let rows = [[0.1, 0.3], [-0.2, 0.6], [0.0, 0.0]];
        let all = eval(&l, &rows);
        for (r, v) in rows.iter().zip(&all) {
            assert_eq!(eval(&l, &[*r])[0], *v);
        }
    }

    #[test]
    fn kwargs_are_checked() {
        let k: CemKwargs = kwargs(json(r#"{"mode": "pp", "kappa": 3.0}"#));
        assert_eq!((k.mode, k.k, k.c, k.gamma), (CemMode::Pp, 3.0, 1.0, 10.0));
        let bad = kwargs(json(r#"{"mode": "PP", "pn_target": 1}"#));
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "pn_target");
        let bad = kwargs(json(r#"{"mode": "PN", "input_range": [1.0, 0.0]}"#));
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "input_range");
    }
}
