//! Checks of a session's declared input and first output.

use std::path::Path;

use maxi_core::{MaxiError, Result};
use maxi_onnx_support::{OutputRef, select_output};
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

pub(crate) fn load_error(path: &Path, message: impl Into<String>) -> MaxiError {
    MaxiError::ModelLoad {
        path: path.display().to_string(),
        message: message.into(),
    }
}

pub(crate) fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`inspect`] learns about the (single) input.
pub(crate) struct InputInfo {
    pub(crate) item_shape: Vec<usize>,
    /// The batch axis is fixed to 1 in the file: every call must have one row.
    pub(crate) batch_fixed_to_one: bool,
    /// Position of the returned output among the model's outputs.
    pub(crate) output: usize,
}

/// Checks the session's input and first output declarations and reads the item shape.
pub(crate) fn inspect(
    path: &Path,
    session: &Session,
    output: Option<&OutputRef>,
) -> Result<InputInfo> {
    let inputs = session.inputs();
    if inputs.len() != 1 {
        return Err(load_error(
            path,
            format!(
                "the model has {} inputs; only models with exactly one input tensor are supported \
                 (re-export it with a single input, e.g. by folding the others into constants)",
                inputs.len()
            ),
        ));
    }
    let fix = "re-export the model with a declared input shape [batch, ...item], e.g. [N,28,28,1] \
               with a symbolic or size-1 batch axis and fixed item axes";
    let (ty, shape) = match inputs[0].dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
        other => {
            return Err(load_error(
                path,
                format!("the input is a {other}, not a tensor; {fix}"),
            ));
        }
    };
    if ty != TensorElementType::Float32 {
        return Err(load_error(
            path,
            format!(
                "the input is of type {ty}; only float32 inputs are supported (re-export the \
                 model with a float32 input)"
            ),
        ));
    }
    if shape.len() < 2 {
        return Err(load_error(
            path,
            format!(
                "the input has rank {}; a batch axis followed by at least one item axis is \
                 needed; {fix}",
                shape.len()
            ),
        ));
    }
    let batch_fixed_to_one = match shape[0] {
        d if d < 0 => false,
        1 => true,
        v => {
            return Err(load_error(
                path,
                format!(
                    "the batch axis (first input axis) is fixed to {v}; it must be symbolic or 1; \
                     {fix}"
                ),
            ));
        }
    };
    let mut item_shape = Vec::with_capacity(shape.len() - 1);
    for (axis, &d) in shape.iter().enumerate().skip(1) {
        if d <= 0 {
            let shown = if d < 0 {
                "a symbolic or unknown size".to_string()
            } else {
                "size 0".to_string()
            };
            return Err(load_error(
                path,
                format!(
                    "input axis {axis} has {shown}; every axis after the batch axis needs a fixed \
                     positive size; {fix}"
                ),
            ));
        }
        item_shape.push(d as usize);
    }
    let names: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let chosen = select_output(&names, output).map_err(|m| load_error(path, m))?;
    match session.outputs()[chosen].dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => {}
        ValueType::Tensor { ty, .. } => {
            return Err(load_error(
                path,
                format!(
                    "the first output is of type {ty}; only float32 outputs are supported \
                     (re-export the model with a float32 output, e.g. add a Cast)"
                ),
            ));
        }
        other => {
            return Err(load_error(
                path,
                format!("the first output is a {other}; only a float32 tensor is supported"),
            ));
        }
    }
    Ok(InputInfo {
        item_shape,
        batch_fixed_to_one,
        output: chosen,
    })
}
