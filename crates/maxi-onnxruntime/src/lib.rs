//! ONNX models as maxi [`Model`]s, run with [ONNX Runtime](https://onnxruntime.ai) through the
//! [`ort`] crate. The library is **opened at run time**: building this crate downloads and links
//! nothing.
//!
//! ```no_run
//! use maxi_core::Model;
//! # fn main() -> maxi_core::Result<()> {
//! // Needs ONNX Runtime: `python3 -m pip install onnxruntime==1.32.*` (or ORT_DYLIB_PATH).
//! let model = maxi_onnxruntime::OrtModel::load("fixtures/mnist/mnist_cnn.onnx")?;
//! assert_eq!(model.input_shape(), Some(vec![28, 28, 1]));
//! let batch = ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[4, 28, 28, 1]));
//! let logits = model.predict(batch.view())?; // [4, 10]
//! # Ok(())
//! # }
//! ```
//!
//! The backend is registered as the model component `onnxruntime` (alias `ort`); its kwargs
//! are [`OrtKwargs`] (`path`, `threads`, `batch_size`, `output`, `squeeze`). It claims no file extension: `.onnx`
//! files open with the pure-Rust `onnx` (tract) backend unless `onnxruntime` is named.
//!
//! # Finding the library
//!
//! On first use ([`runtime`]) the backend looks for `libonnxruntime` in this order:
//!
//! 1. the environment variable `ORT_DYLIB_PATH` (a library file, or a folder that holds one);
//! 2. the installed Python package `onnxruntime`: `python3` (then `python`) is asked where it
//!    is, and its `capi/libonnxruntime.so.1.*` is used — the PyPI wheel ships it, so
//!    `python3 -m pip install onnxruntime==1.32.*` is all it takes;
//! 3. otherwise loading a model fails with [`MaxiError::ModelLoad`](maxi_core::MaxiError::ModelLoad)
//!    saying exactly that.
//!
//! The library's version is then checked: the `ort` release this crate is pinned to
//! ([`ORT_CRATE_VERSION`]) uses the C API of ONNX Runtime 1.[`MIN_ORT_MINOR`], so older
//! libraries are refused with a message naming the version found and the fix. The search
//! itself is the pure function [`locate_library`], which takes its inputs explicitly.
//!
//! # Inputs and outputs
//!
//! As with the `onnx` backend: exactly one `float32` input `[batch, ...item]` whose batch axis
//! is symbolic or 1 and whose item axes are fixed; inputs are converted from `f64` to `f32`;
//! the **first** output (or the one the `output` kwarg names, by name or position) must be
//! `float32` and is returned as `f64`, shaped `[B, ...]`, with its trailing axes of size 1
//! dropped when `squeeze` is set.
//!
//! # Execution strategy: N single-threaded sessions sharing each batch
//!
//! [`OrtModel`] opens `threads` ONNX Runtime sessions of the same file, each with **one**
//! intra-op thread, and a `rayon` pool of `threads` workers, worker `k` using session `k`. A
//! batch given to [`Model::predict`] is cut into calls ([`Chunking`]) that the workers run in
//! parallel:
//!
//! * `batch_size` given: fixed chunks of that many rows (the last may be shorter). The chunk
//!   boundaries do not depend on `threads` and every chunk runs single-threaded through
//!   identical sessions, so the output is **bit-identical for any `threads`, for any model**.
//! * `batch_size` not given (the default): the batch is split evenly over the sessions — one
//!   call per session for up to `threads ×` [`MAX_ROWS_PER_CALL`] rows. This is the fastest
//!   split (no worker waits for another's extra chunk), and it is bit-identical for any
//!   `threads` as long as the model computes each row independently of the other rows of its
//!   call. That holds for ONNX Runtime's CPU kernels of convolutions, matrix products and
//!   element-wise operations, but it is a property of the kernels, not a promise of ONNX
//!   Runtime, so it is **checked at load** on 5 rows (one call, calls of 3 + 2, single rows;
//!   [`OrtModel::rows_independent`]); a model that fails the check gets fixed chunks of
//!   [`FALLBACK_BATCH_SIZE`] rows instead.
//!
//! Why not one session with `threads` intra-op threads (as fast, ≈ 9,200–9,700 rows/s below):
//! intra-op threading lets ONNX Runtime split a kernel's work by the number of threads, which
//! may change the order of float additions, so results could depend on `threads`.
//!
//! Measured on the development machine (2 cores, ONNX Runtime 1.32.0 from the PyPI wheel)
//! with the MNIST CNN fixture and batches of 101 rows (one URV step with q = 100); the machine
//! is shared with other builds, so only 0.4 s windows in which other processes used under 5 %
//! of the CPU count (median of the quiet windows):
//!
//! | configuration | rows/s |
//! |---|---|
//! | Python `onnxruntime` 1.32, batch 100, 1 intra-op thread | ≈ 4,950 |
//! | `threads = 1`: one call of 101 rows (default) / fixed chunks of 4–51 rows | ≈ 5,000 / 4,400–5,050 |
//! | `threads = 2`: two calls of 51 + 50 rows (default) / fixed chunks of 4–51 rows | ≈ 8,950–9,200 / 8,900–9,650 |
//!
//! Within a 200-step CEM PP (the `backends` benchmark of the `maxi` crate) the model time
//! gave ≈ 4,950 rows/s with `threads = 1` and ≈ 9,200 rows/s with `threads = 2`. A call costs
//! ≈ 50 µs besides the arithmetic (Python, 1 thread: ≈ 3,950 rows/s in calls of 1 row, ≈ 4,950
//! in calls of 100), so chunks of 4 rows or more lose little. The ignored test `throughput`
//! (`cargo test --release -p maxi-onnxruntime -- --ignored --nocapture throughput`) repeats
//! the measurement.
//!
//! # Layout
//!
//! `library` finds, version-checks and initialises libonnxruntime (including asking Python
//! where the `onnxruntime` package is), `inspect` checks a session's declared input and output,
//! `model` is [`OrtModel`] (sessions, worker pool, load-time probe, prediction) and `chunking`
//! cuts batches into calls. Their public items are re-exported here.
#![warn(missing_docs)]

mod chunking;
mod inspect;
mod library;
mod model;

use std::sync::Arc;

use maxi_core::{Factory, KwargProblem, KwargsSpec, Model, ModelContext, ModelKind, Result, Valid};
use maxi_onnx_support::{OutputRef, check_file_backend_kwargs, check_output_kwarg};
use serde::{Deserialize, Serialize};

pub use chunking::{
    Chunking, FALLBACK_BATCH_SIZE, MAX_ENTRIES_PER_CALL, MAX_ROWS_PER_CALL, max_rows_per_call,
};
pub use library::{
    ENV_VAR, LibrarySource, MIN_ORT_MINOR, ORT_CRATE_VERSION, OrtRuntime, RECOMMENDED_WHEEL,
    RuntimeUnavailable, check_version, find_library_in, install_command, is_available,
    locate_library, python_package_dir, runtime,
};
pub use model::OrtModel;

/// The number of sessions (and worker threads) used when none is given: the available cores.
pub fn default_threads() -> usize {
    maxi_onnx_support::default_threads()
}

/// Kwargs of the `onnxruntime` model backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrtKwargs {
    /// Path of the `.onnx` file; a relative path is resolved against the folder of the config
    /// file (or the current directory when there is none).
    pub path: String,
    /// ONNX Runtime sessions, each with one intra-op thread and its own worker, that share the
    /// chunks of a batch (1 to 256). `null`: one per available core. Results are
    /// bit-identical for any value.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Rows per ONNX Runtime call: each batch is cut into chunks of this many rows (the last
    /// may be shorter), spread over the sessions (1 to 1024, and at most 64 MiB of float32
    /// input per call); results are then bit-identical for any `threads` with any model.
    /// `null`: split each batch evenly over the sessions (at most 256 rows per call), the
    /// fastest, when a load-time check finds that the model computes each row independently
    /// (else chunks of 16). Ignored (1) when the model's batch axis is fixed to 1.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// The output to return, by name (e.g. `"logits"`) or position (0 for the first).
    /// `null`: the first output.
    #[serde(default)]
    pub output: Option<OutputRef>,
    /// Drop the output's trailing axes of size 1 (e.g. `[N, 1000, 1, 1]` → `[N, 1000]`).
    #[serde(default)]
    pub squeeze: bool,
}

impl KwargsSpec for OrtKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        check_file_backend_kwargs(
            &self.path,
            self.threads,
            self.batch_size,
            "to split batches evenly over the sessions",
        )?;
        check_output_kwarg(self.output.as_ref())
    }
}

/// The `onnxruntime` model backend: builds an [`OrtModel`] from [`OrtKwargs`].
pub struct OrtFactory;

impl Factory<ModelKind> for OrtFactory {
    type Kwargs = OrtKwargs;
    // No extensions: `.onnx` files open with the pure-Rust `onnx` backend unless this one is
    // named.

    fn build(kwargs: &Valid<OrtKwargs>, ctx: &ModelContext<'_>) -> Result<Arc<dyn Model>> {
        let path = ctx.resolve_path(&kwargs.path);
        let threads = kwargs.threads.unwrap_or_else(default_threads);
        Ok(Arc::new(OrtModel::with_output(
            path,
            threads,
            kwargs.batch_size,
            kwargs.output.as_ref(),
            kwargs.squeeze,
        )?))
    }
}

maxi_core::register_model!(
    OrtFactory,
    "onnxruntime",
    aliases = ["ort"],
    extensions = [],
    doc = "ONNX model run with ONNX Runtime (library loaded at run time from ORT_DYLIB_PATH or \
           the Python package onnxruntime): one input [batch, ...item] of float32, first output \
           (or `output`) returned; batches are split over `threads` single-threaded sessions"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kwargs_validation() {
        let k = |threads, batch_size| OrtKwargs {
            path: "m.onnx".into(),
            threads,
            batch_size,
            output: None,
            squeeze: false,
        };
        assert!(KwargsSpec::validate(&k(None, None)).is_ok());
        assert!(KwargsSpec::validate(&k(Some(2), Some(8))).is_ok());
        assert_eq!(
            KwargsSpec::validate(&k(Some(0), None)).map_err(|p| p.field),
            Err("threads".to_string())
        );
        assert_eq!(
            KwargsSpec::validate(&k(None, Some(0))).map_err(|p| p.field),
            Err("batch_size".to_string())
        );
        // bounded before any session or thread is started
        assert!(KwargsSpec::validate(&k(Some(256), Some(1024))).is_ok());
        assert_eq!(
            KwargsSpec::validate(&k(Some(100_000), None)).map_err(|p| p.field),
            Err("threads".to_string())
        );
        assert_eq!(
            KwargsSpec::validate(&k(None, Some(100_000))).map_err(|p| p.field),
            Err("batch_size".to_string())
        );
        let empty = OrtKwargs {
            path: " ".into(),
            threads: None,
            batch_size: None,
            output: None,
            squeeze: false,
        };
        assert_eq!(
            KwargsSpec::validate(&empty).map_err(|p| p.field),
            Err("path".to_string())
        );
    }
}
