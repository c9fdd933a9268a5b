//! `quantizer`: turns what a model returns into class scores, so that a model whose output is
//! a mask or an image can be explained as a decision (MAXi's quantizers).

use std::sync::Arc;

use maxi_core::ndarray::{Array2, ArrayD, ArrayViewD, Axis};
use maxi_core::{KwargProblem, KwargsSpec, MaxiError, Model, Result, Valid};
use serde::{Deserialize, Serialize};

/// The quantizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuantizerName {
    /// Scores are the model's output as it is (MAXi's `IdentityMethod`).
    #[serde(alias = "IdentityMethod")]
    Identity,
    /// Two scores from the mean output: `conf = mean/max_value`,
    /// `[−(2·conf − 1), 2·conf − 1]` (MAXi's `BinaryConfidenceMethod`): class 1 when the mean
    /// is above half of `max_value`.
    #[serde(alias = "BinaryConfidenceMethod")]
    BinaryConfidence,
}

/// Kwargs of the `quantizer` adapter; in a config either a name
/// (`quantizer = "binary_confidence"`) or a table
/// (`quantizer = { name = "binary_confidence", max_value = 1.0 }`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuantizerKwargs {
    /// `identity` or `binary_confidence`.
    pub name: QuantizerName,
    /// `binary_confidence` only: the output value of full confidence (> 0; default 255, a
    /// mask in 0..255).
    #[serde(default)]
    pub max_value: Option<f64>,
}

impl KwargsSpec for QuantizerKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        match (self.name, self.max_value) {
            (QuantizerName::Identity, Some(_)) => Err(KwargProblem::new(
                "quantizer",
                "max_value only applies to binary_confidence; remove it",
            )),
            (_, Some(m)) if !(m.is_finite() && m > 0.0) => Err(KwargProblem::new(
                "quantizer",
                format!("max_value must be a positive finite number, got {m}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Default full-confidence value of `binary_confidence`.
pub const DEFAULT_MAX_VALUE: f64 = 255.0;

/// `binary_confidence` of one output row: `[−(2·conf − 1), 2·conf − 1]` with
/// `conf = mean(row)/max_value`.
pub fn binary_confidence<'a>(row: impl IntoIterator<Item = &'a f64>, max_value: f64) -> [f64; 2] {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in row {
        sum += v;
        n += 1;
    }
    let conf = sum / n.max(1) as f64 / max_value;
    let s = 2.0 * conf - 1.0;
    [-s, s]
}

/// A model whose outputs go through a quantizer.
pub struct Quantized {
    inner: Arc<dyn Model>,
    kwargs: QuantizerKwargs,
}

impl Quantized {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Model>, kwargs: &Valid<QuantizerKwargs>) -> Self {
        Quantized {
            inner,
            kwargs: **kwargs,
        }
    }
}

impl Model for Quantized {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        let out = self.inner.predict(batch)?;
        match self.kwargs.name {
            QuantizerName::Identity => Ok(out),
            QuantizerName::BinaryConfidence => {
                if out.ndim() == 0 || out.is_empty() {
                    return Err(MaxiError::ModelRun {
                        model: self.inner.describe(),
                        message: format!(
                            "returned shape {:?}; binary_confidence needs one output per row",
                            out.shape()
                        ),
                    });
                }
                let max_value = self.kwargs.max_value.unwrap_or(DEFAULT_MAX_VALUE);
                let b = out.shape()[0];
                let mut scores = Array2::zeros((b, 2));
                for (i, row) in out.axis_iter(Axis(0)).enumerate() {
                    let [lo, hi] = binary_confidence(row.iter(), max_value);
                    scores[[i, 0]] = lo;
                    scores[[i, 1]] = hi;
                }
                Ok(scores.into_dyn())
            }
        }
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        self.inner.input_shape()
    }
}
