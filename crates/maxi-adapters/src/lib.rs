//! Model adapters: MAXi's inference wrapper (`preprocess → model → quantizer`, and the
//! selective region processor) as [`Model`]s that wrap another model. Each is configured by a
//! typed, validated kwargs struct and checked against the inner model when it is built:
//!
//! | adapter | kwargs | what it does |
//! |---|---|---|
//! | [`Preprocessed`] | [`PreprocessKwargs`] | a chain of steps (layout, channel order, scale, per-channel mean/std) from the image being explained to what the model takes |
//! | [`Quantized`] | [`QuantizerKwargs`] | turns outputs into class scores (`identity`, `binary_confidence`) |
//! | [`Region`] | [`RegionKwargs`] | explains the rectangle `(x, y, w, h)` of a larger image, pasting each candidate into a copy of it |
//!
//! Picking one output of a model with several, and dropping trailing axes of size 1, are
//! kwargs of the ONNX backends (`output`, `squeeze`), not adapters.
//!
//! [`AdapterSpec`] reads the adapters from the keys of a config's `[model]` table
//! (`preprocess`, `quantizer`, `region`) and wraps a model with them; [`catalog`] describes
//! them for listings.
#![warn(missing_docs)]

mod chunks;
mod layout;
pub mod preprocess;
pub mod quantize;
pub mod region;

use std::sync::Arc;

use maxi_core::{KwargsSpec, MaxiError, Model, Result, Valid};
use serde_json::{Map, Value, json};

pub use chunks::{CHUNK_BYTES, rows_per_call};
pub use layout::ImageAxes;
pub use preprocess::{LayoutChange, PreprocessKwargs, Preprocessed, Step};
pub use quantize::{Quantized, QuantizerKwargs, QuantizerName, binary_confidence};
pub use region::{Region, RegionKwargs};

/// One adapter as listings show it: its `[model]` key, a line of doc and its kwargs' schema.
#[derive(Debug, Clone)]
pub struct AdapterInfo {
    /// The key in `[model]`.
    pub key: &'static str,
    /// What it does, and an example.
    pub doc: &'static str,
    /// JSON schema of its kwargs.
    pub schema: Value,
}

fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// Every adapter, in the order they wrap a model (innermost first).
pub fn catalog() -> Vec<AdapterInfo> {
    vec![
        AdapterInfo {
            key: "preprocess",
            doc: "steps from the explained image to the model's input, applied in order; each \
                  one of { layout = \"hwc_to_chw\" | \"chw_to_hwc\" }, { reorder = [2, 1, 0] } \
                  (channel k takes channel reorder[k]), { scale = s }, { mean = [per channel] } \
                  (subtracted), { std = [per channel] } (divided), e.g. [{ reorder = [2, 1, 0] }, \
                  { mean = [104, 117, 123] }, { layout = \"hwc_to_chw\" }]",
            schema: schema_of::<PreprocessKwargs>(),
        },
        AdapterInfo {
            key: "quantizer",
            doc: "outputs → class scores: \"identity\" or \"binary_confidence\" (conf = \
                  mean/max_value → [-(2conf-1), 2conf-1]), e.g. { name = \"binary_confidence\", \
                  max_value = 1.0 }",
            schema: schema_of::<QuantizerKwargs>(),
        },
        AdapterInfo {
            key: "region",
            doc: "explain the rectangle [x, y, w, h] of the image: candidates are pasted into a \
                  copy of the full image",
            schema: schema_of::<RegionKwargs>(),
        },
    ]
}

/// The adapters of one model, read from `[model]` keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterSpec {
    /// `preprocess`.
    pub preprocess: Option<Valid<PreprocessKwargs>>,
    /// `quantizer`.
    pub quantizer: Option<Valid<QuantizerKwargs>>,
    /// `region`.
    pub region: Option<Valid<RegionKwargs>>,
}

fn invalid(key: &str, message: String) -> MaxiError {
    MaxiError::InvalidSetting {
        name: format!("[model] {key}"),
        message,
    }
}

fn parse<K: KwargsSpec>(key: &str, value: Value, example: &str) -> Result<Valid<K>> {
    let k: K = serde_json::from_value(value.clone()).map_err(|e| {
        invalid(
            key,
            format!("{value} is not accepted ({e}); write it like {example}"),
        )
    })?;
    Valid::check(k).map_err(|p| invalid(key, p.message))
}

impl AdapterSpec {
    /// The `[model]` keys that are adapters.
    pub const KEYS: [&'static str; 3] = ["preprocess", "quantizer", "region"];

    /// Takes the adapter keys out of `model_table` (the rest is for the model backend) and
    /// checks them.
    pub fn take_from(model_table: &mut Map<String, Value>) -> Result<AdapterSpec> {
        let mut spec = AdapterSpec::default();
        if let Some(v) = model_table.remove("preprocess") {
            let steps = match v {
                Value::Array(_) => json!({ "steps": v }),
                other => other,
            };
            spec.preprocess = Some(parse(
                "preprocess",
                steps,
                "[{ reorder = [2, 1, 0] }, { mean = [104, 117, 123] }, { layout = \"hwc_to_chw\" }]",
            )?);
        }
        if let Some(v) = model_table.remove("quantizer") {
            let table = match v {
                Value::String(name) => json!({ "name": name }),
                other => other,
            };
            spec.quantizer = Some(parse(
                "quantizer",
                table,
                "\"binary_confidence\" or { name = \"binary_confidence\", max_value = 255.0 }",
            )?);
        }
        if let Some(v) = model_table.remove("region") {
            spec.region = Some(parse(
                "region",
                v,
                "[x, y, w, h] (pixels, e.g. [80, 60, 64, 64]) or { x = 80, y = 60, w = 64, h = 64 }",
            )?);
        }
        Ok(spec)
    }

    /// True when no adapter is set.
    pub fn is_empty(&self) -> bool {
        self.preprocess.is_none() && self.quantizer.is_none() && self.region.is_none()
    }

    /// Wraps `model` with the preprocessing chain and the quantizer (the region needs the
    /// image: see [`AdapterSpec::region`]).
    pub fn wrap(&self, model: Arc<dyn Model>) -> Result<Arc<dyn Model>> {
        let mut model = model;
        if let Some(p) = &self.preprocess {
            model = Arc::new(Preprocessed::new(model, p)?);
        }
        if let Some(q) = &self.quantizer {
            model = Arc::new(Quantized::new(model, q));
        }
        Ok(model)
    }

    /// The region adapter around `model` (already [wrapped](AdapterSpec::wrap)) and the full
    /// `image`, when a region is set.
    pub fn region(&self, model: Arc<dyn Model>, image: ArrayDOwned) -> Result<Option<Region>> {
        match &self.region {
            Some(r) => Region::new(model, image, r).map(Some),
            None => Ok(None),
        }
    }

    /// The adapters' resolved kwargs, for reports.
    pub fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(p) = &self.preprocess {
            m.insert("preprocess".into(), json!(p.steps));
        }
        if let Some(q) = &self.quantizer {
            m.insert("quantizer".into(), json!(q));
        }
        if let Some(r) = &self.region {
            m.insert("region".into(), json!([r.x, r.y, r.w, r.h]));
        }
        m
    }
}

/// An owned array of any shape (the image a region is cut from).
pub type ArrayDOwned = maxi_core::ndarray::ArrayD<f64>;

#[cfg(test)]
mod tests;
