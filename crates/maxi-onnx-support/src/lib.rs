//! What maxi's two ONNX backends (`onnx` with tract, `onnxruntime`) share: the checks of their
//! common kwargs and their [`limits`], the batch-shape check, the f32 conversion of batches and
//! the assembly of outputs.
#![warn(missing_docs)]

pub mod limits;

use maxi_core::ndarray::{self, ArrayD, ArrayViewD};
use maxi_core::{KwargProblem, MaxiError, Result};

pub use maxi_core::model::default_threads;

/// Checks the kwargs every file-based model backend shares: a non-empty `path`, and `threads`
/// and `batch_size` that are either unset or at least 1 and within [`limits`].
/// `batch_size_unset` says what leaving `batch_size` unset does in this backend.
pub fn check_file_backend_kwargs(
    path: &str,
    threads: Option<usize>,
    batch_size: Option<usize>,
    batch_size_unset: &str,
) -> std::result::Result<(), KwargProblem> {
    if path.trim().is_empty() {
        return Err(KwargProblem::new("path", "must name an .onnx file"));
    }
    if threads == Some(0) {
        return Err(KwargProblem::new(
            "threads",
            "must be at least 1 (or null for one per core)",
        ));
    }
    if batch_size == Some(0) {
        return Err(KwargProblem::new(
            "batch_size",
            format!("must be at least 1 (or null {batch_size_unset})"),
        ));
    }
    limits::check_counts(threads, batch_size)
}

/// The batch's entries as `f32`, row-major (what ONNX backends feed their runtimes).
pub fn to_f32_row_major(batch: ArrayViewD<'_, f64>) -> Vec<f32> {
    match batch.as_slice() {
        Some(flat) => flat.iter().map(|&v| v as f32).collect(),
        None => batch.iter().map(|&v| v as f32).collect(),
    }
}

/// Checks that a batch has shape `[B, ...item_shape]`; the error names the model and both shapes.
pub fn check_batch_shape(model: &str, item_shape: &[usize], batch_shape: &[usize]) -> Result<()> {
    if batch_shape.len() == item_shape.len() + 1 && batch_shape[1..] == item_shape[..] {
        return Ok(());
    }
    let dims: Vec<String> = item_shape.iter().map(|d| d.to_string()).collect();
    Err(MaxiError::input(
        "batch",
        format!(
            "{model} expects batches of shape [B, {}] (items of shape {item_shape:?}), got {batch_shape:?}",
            dims.join(", ")
        ),
    ))
}

/// Shapes the row-major outputs of `b` items, each of shape `output_item_shape`, as
/// `[b, ...output_item_shape]`.
pub fn assemble_batch(
    model: &str,
    b: usize,
    output_item_shape: &[usize],
    flat: Vec<f64>,
) -> Result<ArrayD<f64>> {
    let mut shape = Vec::with_capacity(output_item_shape.len() + 1);
    shape.push(b);
    shape.extend_from_slice(output_item_shape);
    ArrayD::from_shape_vec(ndarray::IxDyn(&shape), flat).map_err(|e| MaxiError::ModelRun {
        model: model.to_string(),
        message: format!("cannot assemble the output: {e}"),
    })
}

/// Which model output a backend returns: by name (`"logits"`) or by position (`0` is the
/// first). Left unset, backends return the first output.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(untagged)]
pub enum OutputRef {
    /// The output's position among the model's outputs (from 0).
    Index(usize),
    /// The output's name in the ONNX graph.
    Name(String),
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputRef::Index(i) => write!(f, "{i}"),
            OutputRef::Name(n) => write!(f, "\"{n}\""),
        }
    }
}

/// Checks the `output` kwarg by itself: a name must not be empty.
pub fn check_output_kwarg(output: Option<&OutputRef>) -> std::result::Result<(), KwargProblem> {
    match output {
        Some(OutputRef::Name(n)) if n.trim().is_empty() => Err(KwargProblem::new(
            "output",
            "must be an output name or a position (0 for the first); got an empty name",
        )),
        _ => Ok(()),
    }
}

/// The position of the output `wanted` names among the model's outputs `names` (the first
/// when `None`). The error lists the outputs there are.
pub fn select_output(
    names: &[String],
    wanted: Option<&OutputRef>,
) -> std::result::Result<usize, String> {
    let listing = || {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i}: \"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names.is_empty() {
        return Err("the model declares no output; re-export it with one".into());
    }
    match wanted {
        None => Ok(0),
        Some(OutputRef::Index(i)) if *i < names.len() => Ok(*i),
        Some(OutputRef::Index(i)) => Err(format!(
            "output {i} does not exist: the model has {} output(s) ({}); set `output` to one \
             of these names or positions",
            names.len(),
            listing()
        )),
        Some(OutputRef::Name(n)) => names.iter().position(|m| m == n).ok_or_else(|| {
            format!(
                "the model has no output named \"{n}\"; its outputs are {}; set `output` to one \
                 of these names or positions",
                listing()
            )
        }),
    }
}

/// `shape` without its trailing axes of size 1, keeping at least one axis (SqueezeNet's
/// `[1000, 1, 1]` → `[1000]`; `[1]` stays `[1]`).
pub fn squeeze_trailing(shape: &[usize]) -> Vec<usize> {
    let mut out = shape.to_vec();
    while out.len() > 1 && out.last() == Some(&1) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_found_by_name_or_position() {
        let names = vec!["probs".to_string(), "logits".to_string()];
        assert_eq!(select_output(&names, None), Ok(0));
        assert_eq!(select_output(&names, Some(&OutputRef::Index(1))), Ok(1));
        assert_eq!(
            select_output(&names, Some(&OutputRef::Name("logits".into()))),
            Ok(1)
        );
        let e = select_output(&names, Some(&OutputRef::Name("scores".into()))).unwrap_err();
        assert!(
            e.contains("no output named \"scores\"") && e.contains("1: \"logits\""),
            "{e}"
        );
        let e = select_output(&names, Some(&OutputRef::Index(2))).unwrap_err();
        assert!(
            e.contains("output 2 does not exist") && e.contains("2 output(s)"),
            "{e}"
        );
        assert!(check_output_kwarg(Some(&OutputRef::Name(" ".into()))).is_err());
        let parsed: OutputRef = serde_json::from_value(serde_json::json!("logits")).expect("name");
        assert_eq!(parsed, OutputRef::Name("logits".into()));
        let parsed: OutputRef = serde_json::from_value(serde_json::json!(1)).expect("index");
        assert_eq!(parsed, OutputRef::Index(1));
    }

    #[test]
    fn squeezes_only_trailing_unit_axes() {
        assert_eq!(squeeze_trailing(&[1000, 1, 1]), vec![1000]);
        assert_eq!(squeeze_trailing(&[28, 28, 1]), vec![28, 28]);
        assert_eq!(squeeze_trailing(&[1, 10]), vec![1, 10]);
        assert_eq!(squeeze_trailing(&[1, 1]), vec![1]);
        assert_eq!(squeeze_trailing(&[10]), vec![10]);
    }
}
