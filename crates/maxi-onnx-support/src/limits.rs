//! Upper bounds on the numbers a user gives a file backend (`threads`, `batch_size`), checked
//! by [`check_file_backend_kwargs`](crate::check_file_backend_kwargs) and again by the
//! backends' constructors before any thread or session is started or any buffer allocated.
//!
//! - [`MAX_THREADS`] = 256: the largest machines this runs on have 256 hardware threads (two
//!   64-core CPUs with SMT); results do not depend on `threads`, so a config written on a large
//!   machine keeps working on a small one (with tract, extra threads only cost their stacks;
//!   with ONNX Runtime each thread has its own session, i.e. its own copy of the weights).
//! - [`MAX_BATCH_SIZE`] = 1024 rows per call, and at most [`MAX_CALL_BYTES`] (64 MiB) of
//!   `f32` input per call (`batch_size × item entries × 4`, checked at load when the item shape
//!   is known): 4× the largest call found useful (256 rows, ONNX Runtime's own default cap).
//!   Intermediate activations cost far more than the input: with tract, which pads every call
//!   to `batch_size` rows, the bundled CNN peaks at ≈ 0.8 GB RSS with 1024 rows (≈ 3 GB with
//!   4096, ≈ 0.2 GB with 256; row by row, the default and fastest: 40 MB). ONNX Runtime does
//!   not pad (≈ 80 MB RSS with 1024).

use maxi_core::KwargProblem;

/// Most worker threads (ONNX Runtime: sessions) a backend starts.
pub const MAX_THREADS: usize = 256;
/// Most rows in one model call.
pub const MAX_BATCH_SIZE: usize = 1024;
/// Most bytes of `f32` input in one model call.
pub const MAX_CALL_BYTES: usize = 64 << 20;

/// Checks `threads` against [`MAX_THREADS`] and `batch_size` against [`MAX_BATCH_SIZE`]
/// (`None` is always within bounds).
pub fn check_counts(
    threads: Option<usize>,
    batch_size: Option<usize>,
) -> std::result::Result<(), KwargProblem> {
    if let Some(t) = threads
        && t > MAX_THREADS
    {
        return Err(KwargProblem::new(
            "threads",
            format!(
                "{t} is more than the {MAX_THREADS} worker threads (or sessions) a backend starts; give at most {MAX_THREADS} (or null for one per core)"
            ),
        ));
    }
    if let Some(n) = batch_size
        && n > MAX_BATCH_SIZE
    {
        return Err(KwargProblem::new(
            "batch_size",
            format!(
                "{n} is more than the {MAX_BATCH_SIZE} rows one model call may take; give at most {MAX_BATCH_SIZE}"
            ),
        ));
    }
    Ok(())
}

/// Checks that a call of `rows` rows of items of `item_shape` stays within
/// [`MAX_CALL_BYTES`]; the error says the largest `batch_size` that fits.
pub fn check_call_bytes(rows: usize, item_shape: &[usize]) -> std::result::Result<(), String> {
    let item_bytes = item_shape
        .iter()
        .try_fold(4usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    let fits = MAX_CALL_BYTES / item_bytes.max(1);
    if rows > fits {
        return Err(format!(
            "{rows} rows of items of shape {item_shape:?} ({item_bytes} bytes each as float32) exceed the {} MiB one model call may take; give batch_size ≤ {}",
            MAX_CALL_BYTES >> 20,
            fits.max(1)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bytes() {
        assert!(check_counts(Some(MAX_THREADS), Some(MAX_BATCH_SIZE)).is_ok());
        assert!(check_counts(None, None).is_ok());
        let e = check_counts(Some(100_000), None).expect_err("threads");
        assert_eq!(e.field, "threads");
        assert!(e.message.contains("256"), "{}", e.message);
        let e = check_counts(None, Some(1025)).expect_err("rows");
        assert_eq!(e.field, "batch_size");
        assert!(e.message.contains("at most 1024"), "{}", e.message);
        // 1024 rows of 28x28 digits are 3 MiB; of 1024x1024x3 images, 12 GiB
        assert!(check_call_bytes(1024, &[28, 28, 1]).is_ok());
        let e = check_call_bytes(1024, &[1024, 1024, 3]).expect_err("bytes");
        assert!(e.contains("batch_size ≤ 5"), "{e}");
        assert!(check_call_bytes(5, &[1024, 1024, 3]).is_ok());
        assert!(check_call_bytes(1, &[usize::MAX, 2]).is_err());
    }
}
