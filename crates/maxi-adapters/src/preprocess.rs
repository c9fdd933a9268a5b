//! `preprocess`: a chain of steps from the image the user explains to what the model takes —
//! layout, channel order, scale, per-channel mean and std — so the explanation stays in the
//! image's own space (e.g. RGB `[H, W, 3]` in 0..255) whatever the model expects (e.g.
//! SqueezeNet's BGR `[3, H, W]` minus the Caffe mean).

use std::sync::Arc;

use maxi_core::ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use maxi_core::{KwargProblem, KwargsSpec, MaxiError, Model, Result, Valid};
use serde::{Deserialize, Serialize};

use crate::chunks::{rows_per_call, stacked};
use crate::layout::ImageAxes;

/// A change of layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LayoutChange {
    /// `[H, W, C]` → `[C, H, W]`.
    #[serde(rename = "hwc_to_chw", alias = "HWC->CHW", alias = "hwc->chw")]
    HwcToChw,
    /// `[C, H, W]` → `[H, W, C]`.
    #[serde(rename = "chw_to_hwc", alias = "CHW->HWC", alias = "chw->hwc")]
    ChwToHwc,
}

/// One step of a preprocessing chain; in a config, a table with one key, e.g.
/// `{ layout = "hwc_to_chw" }`, `{ reorder = [2, 1, 0] }`, `{ scale = 255.0 }`,
/// `{ mean = [104, 117, 123] }`, `{ std = [58.4, 57.1, 57.4] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Transpose the item: `"hwc_to_chw"` or `"chw_to_hwc"`.
    Layout(LayoutChange),
    /// Reorder the channels: output channel `k` is input channel `reorder[k]` (RGB → BGR:
    /// `[2, 1, 0]`).
    Reorder(Vec<usize>),
    /// Multiply every entry by this number.
    Scale(f64),
    /// Subtract this per-channel mean (one value, or one per channel in the current order).
    Mean(Vec<f64>),
    /// Divide by this per-channel standard deviation (one value, or one per channel).
    Std(Vec<f64>),
}

/// Kwargs of the `preprocess` adapter: the steps, applied in order to the image being
/// explained to give what the model takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreprocessKwargs {
    /// The chain, applied in order.
    pub steps: Vec<Step>,
}

impl KwargsSpec for PreprocessKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        if self.steps.is_empty() {
            return Err(KwargProblem::new(
                "preprocess",
                "is an empty chain; remove it or give steps such as { layout = \"hwc_to_chw\" }",
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            let bad = |m: String| Err(KwargProblem::new("preprocess", format!("step {i}: {m}")));
            match step {
                Step::Layout(_) => {}
                Step::Reorder(p) => {
                    let mut seen = p.clone();
                    seen.sort_unstable();
                    if p.is_empty() || seen.iter().enumerate().any(|(k, v)| k != *v) {
                        return bad(format!(
                            "reorder {p:?} is not a permutation of 0..{}; e.g. [2, 1, 0] swaps \
                             RGB and BGR",
                            p.len()
                        ));
                    }
                }
                Step::Scale(s) if !(s.is_finite() && *s != 0.0) => {
                    return bad(format!("scale must be a finite non-zero number, got {s}"));
                }
                Step::Scale(_) => {}
                Step::Mean(m) => {
                    if m.is_empty() || m.iter().any(|v| !v.is_finite()) {
                        return bad(format!("mean must be finite numbers, got {m:?}"));
                    }
                }
                Step::Std(s) => {
                    if s.is_empty() || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                        return bad(format!("std must be positive finite numbers, got {s:?}"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A model that preprocesses its inputs with a chain of [`Step`]s before calling the inner
/// model; its item shape is the image's (before the chain).
///
/// The chain is compiled when the adapter is built into one gather with an affine map per
/// entry: entry `i` of what the model sees is `a[i]·image[src[i]] + b[i]`, so a batch costs
/// one pass (scale, mean and std compose into `a`, `b`; reorder and layout into `src`).
pub struct Preprocessed {
    inner: Arc<dyn Model>,
    outer_shape: Vec<usize>,
    inner_shape: Vec<usize>,
    src: Vec<usize>,
    a: Vec<f64>,
    b: Vec<f64>,
}

fn layout_error(message: String) -> MaxiError {
    MaxiError::InvalidSetting {
        name: "[model] preprocess".into(),
        message,
    }
}

impl Preprocessed {
    /// Wraps `inner`, whose item shape must be known; checks that every step fits the shapes
    /// and channel counts along the chain.
    pub fn new(inner: Arc<dyn Model>, kwargs: &Valid<PreprocessKwargs>) -> Result<Self> {
        let inner_shape = inner.input_shape().ok_or_else(|| {
            layout_error(format!(
                "the model {} does not tell its input shape, which the chain needs",
                inner.describe()
            ))
        })?;
        // walk back from the model's item shape to the image's
        let mut shape = inner_shape.clone();
        for step in kwargs.steps.iter().rev() {
            if let Step::Layout(change) = step {
                shape = match (change, shape.as_slice()) {
                    (LayoutChange::HwcToChw, [c, h, w]) => vec![*h, *w, *c],
                    (LayoutChange::ChwToHwc, [h, w, c]) => vec![*c, *h, *w],
                    _ => {
                        return Err(layout_error(format!(
                            "a layout step needs a 3-D item, but it would produce {shape:?}"
                        )));
                    }
                };
            }
        }
        let outer_shape = shape.clone();
        // the channel axis before the first step: from the first layout step, else the shape
        let mut channel = match kwargs.steps.iter().find_map(|s| match s {
            Step::Layout(c) => Some(*c),
            _ => None,
        }) {
            Some(LayoutChange::HwcToChw) => Some(2),
            Some(LayoutChange::ChwToHwc) => Some(0),
            None => ImageAxes::of(&outer_shape, "[model] preprocess")
                .map(|a| a.channel)
                .unwrap_or(None),
        };
        let mut channel_axes = Vec::with_capacity(kwargs.steps.len());
        let mut shape = outer_shape.clone();
        for (i, step) in kwargs.steps.iter().enumerate() {
            channel_axes.push(channel);
            let channels = channel.map_or(1, |a| shape[a]);
            let per_channel = |what: &str, n: usize| -> Result<()> {
                if n == 1 || n == channels {
                    Ok(())
                } else {
                    let give = if channels == 1 {
                        "give one value (the item has no channel axis there)".to_string()
                    } else {
                        format!("give 1 or {channels}")
                    };
                    Err(layout_error(format!(
                        "step {i}: {what} has {n} values but the image has {channels} \
                         channel(s) at that point (item shape {shape:?}); {give}"
                    )))
                }
            };
            match step {
                Step::Layout(LayoutChange::HwcToChw) => {
                    shape = vec![shape[2], shape[0], shape[1]];
                    channel = Some(0);
                }
                Step::Layout(LayoutChange::ChwToHwc) => {
                    shape = vec![shape[1], shape[2], shape[0]];
                    channel = Some(2);
                }
                Step::Reorder(p) if p.len() != channels => {
                    return Err(layout_error(format!(
                        "step {i}: reorder {p:?} lists {} channels but the image has \
                         {channels} at that point (item shape {shape:?})",
                        p.len()
                    )));
                }
                Step::Mean(m) => per_channel("mean", m.len())?,
                Step::Std(s) => per_channel("std", s.len())?,
                Step::Reorder(_) | Step::Scale(_) => {}
            }
        }
        let (src, a, b) = compile(&kwargs.steps, &channel_axes, &outer_shape);
        if src.len() != inner_shape.iter().product::<usize>() {
            return Err(layout_error(format!(
                "the chain gives {} entries but the model takes {inner_shape:?}",
                src.len()
            )));
        }
        Ok(Preprocessed {
            inner,
            outer_shape,
            inner_shape,
            src,
            a,
            b,
        })
    }

    /// The item shape of the model inside.
    pub fn inner_shape(&self) -> &[usize] {
        &self.inner_shape
    }

    /// What the inner model is shown for a batch `[B, ...image]`: `[B, ...inner item]`.
    pub fn apply(&self, batch: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let rows = batch.shape()[0];
        let d = self.src.len();
        let mut out = vec![0.0; rows * d];
        let standard = batch.as_standard_layout();
        let flat = standard.as_slice().unwrap_or(&[]);
        let item = self.outer_shape.iter().product::<usize>();
        for (row, dst) in flat
            .chunks_exact(item.max(1))
            .zip(out.chunks_exact_mut(d.max(1)))
        {
            for (((o, &s), &a), &b) in dst.iter_mut().zip(&self.src).zip(&self.a).zip(&self.b) {
                *o = a * row[s] + b;
            }
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(&self.inner_shape);
        ArrayD::from_shape_vec(IxDyn(&shape), out).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&shape)))
    }
}

/// Compiles the chain into `(src, a, b)` over the entries of the model's item (row-major):
/// entry `i` is `a[i]·image[src[i]] + b[i]`.
fn compile(
    steps: &[Step],
    channel_axes: &[Option<usize>],
    outer_shape: &[usize],
) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let n: usize = outer_shape.iter().product();
    let shape = IxDyn(outer_shape);
    let mut src = ArrayD::from_shape_vec(shape.clone(), (0..n).collect::<Vec<usize>>())
        .unwrap_or_else(|_| ArrayD::zeros(shape.clone()));
    let mut a = ArrayD::from_elem(shape.clone(), 1.0);
    let mut b = ArrayD::from_elem(shape, 0.0);
    for (step, channel) in steps.iter().zip(channel_axes) {
        let axis = channel.map(Axis);
        match step {
            Step::Layout(change) => {
                let order = match change {
                    LayoutChange::HwcToChw => [2, 0, 1],
                    LayoutChange::ChwToHwc => [1, 2, 0],
                };
                src = src
                    .permuted_axes(IxDyn(&order))
                    .as_standard_layout()
                    .into_owned();
                a = a
                    .permuted_axes(IxDyn(&order))
                    .as_standard_layout()
                    .into_owned();
                b = b
                    .permuted_axes(IxDyn(&order))
                    .as_standard_layout()
                    .into_owned();
            }
            Step::Reorder(p) => {
                if let Some(ax) = axis {
                    src = src.select(ax, p);
                    a = a.select(ax, p);
                    b = b.select(ax, p);
                }
            }
            Step::Scale(s) => {
                a.mapv_inplace(|v| v * s);
                b.mapv_inplace(|v| v * s);
            }
            Step::Mean(m) => per_channel(&mut b, axis, m, |v, m| v - m),
            Step::Std(sd) => {
                per_channel(&mut a, axis, sd, |v, s| v / s);
                per_channel(&mut b, axis, sd, |v, s| v / s);
            }
        }
    }
    let flat = |x: ArrayD<f64>| x.as_standard_layout().iter().copied().collect::<Vec<f64>>();
    (
        src.as_standard_layout().iter().copied().collect(),
        flat(a),
        flat(b),
    )
}

/// Applies `f(v, value of v's channel)` to every entry (`values` has 1 or one per channel).
fn per_channel(
    a: &mut ArrayD<f64>,
    axis: Option<Axis>,
    values: &[f64],
    f: impl Fn(f64, f64) -> f64,
) {
    match (axis, values) {
        (_, [one]) => a.mapv_inplace(|v| f(v, *one)),
        (Some(ax), _) => {
            for (mut lane, value) in a.axis_iter_mut(ax).zip(values) {
                lane.mapv_inplace(|v| f(v, *value));
            }
        }
        (None, _) => {}
    }
}

impl Model for Preprocessed {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        let shape = batch.shape();
        if shape.len() != self.outer_shape.len() + 1 || shape[1..] != self.outer_shape[..] {
            return Err(MaxiError::input(
                "batch",
                format!(
                    "the preprocessing chain takes batches [B, {:?}], got {shape:?}",
                    self.outer_shape
                ),
            ));
        }
        let item_len: usize = self.outer_shape.iter().product();
        let b = shape[0];
        stacked(b, rows_per_call(item_len), |start, end| {
            let part = batch.slice_axis(Axis(0), (start..end).into());
            let shown = self.apply(part);
            self.inner.predict(shown.view())
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        Some(self.outer_shape.clone())
    }
}
