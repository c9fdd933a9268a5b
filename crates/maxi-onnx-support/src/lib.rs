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
