//! Calling an inner model on a large batch a few rows at a time, so that an adapter's own
//! copy of the batch stays small.

use maxi_core::ndarray::{ArrayD, ArrayViewD, Axis, concatenate};
use maxi_core::{MaxiError, Result};

/// Bytes of f64 buffer an adapter builds per inner call (32 MiB: 27 rows of a 224×224×3
/// image). Batches of small items go through in one call.
pub const CHUNK_BYTES: usize = 32 << 20;

/// Rows per inner call for items of `item_len` entries (at least 1).
pub fn rows_per_call(item_len: usize) -> usize {
    (CHUNK_BYTES / 8 / item_len.max(1)).max(1)
}

/// Runs `f` on consecutive row ranges `[start, end)` of a batch of `b` rows (each range at
/// most `rows` long) and stacks the outputs along the batch axis.
pub fn stacked(
    b: usize,
    rows: usize,
    mut f: impl FnMut(usize, usize) -> Result<ArrayD<f64>>,
) -> Result<ArrayD<f64>> {
    if b <= rows {
        return f(0, b);
    }
    let mut parts = Vec::with_capacity(b.div_ceil(rows));
    let mut start = 0;
    while start < b {
        let end = (start + rows).min(b);
        parts.push(f(start, end)?);
        start = end;
    }
    let views: Vec<ArrayViewD<'_, f64>> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views)
        .map_err(|e| MaxiError::Other(format!("cannot stack the outputs of the model: {e}")))
}
