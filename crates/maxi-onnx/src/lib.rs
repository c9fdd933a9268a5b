//! ONNX models as maxi [`Model`]s, run with the pure-Rust [`tract-onnx`](tract_onnx) runtime.
//!
//! ```no_run
//! use maxi_core::Model;
//! # fn main() -> maxi_core::Result<()> {
//! let model = maxi_onnx::load("fixtures/mnist/mnist_cnn.onnx")?;
//! assert_eq!(model.input_shape(), Some(vec![28, 28, 1]));
//! let batch = ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[4, 28, 28, 1]));
//! let logits = model.predict(batch.view())?; // [4, 10]
//! # Ok(())
//! # }
//! ```
//!
//! The backend is also registered as the model component `onnx` (alias `tract`), which opens
//! `.onnx` files; its kwargs are [`OnnxKwargs`].
//!
//! # Inputs and outputs
//!
//! The model must have exactly one input whose first axis is the batch (a symbolic dimension
//! such as `N`, an unnamed one, or `1`) and whose other axes have fixed sizes; that item shape is
//! what [`Model::input_shape`] reports. The input element type must be `float32` (or left
//! unspecified). Inputs are converted from `f64` to `f32`; the model's **first** output (or
//! the one the `output` kwarg names, by name or position) is converted back to `f64` and
//! returned as `[B, ...]` (its leading axis of size 1 replaced by the batch; an output without
//! such an axis is stacked whole), with its trailing axes of size 1 dropped when `squeeze` is
//! set (SqueezeNet's `[N, 1000, 1, 1]` → `[N, 1000]`). Other outputs are pruned from the graph
//! and never computed.
//!
//! # Execution strategy: one batch-1 plan, rows in parallel
//!
//! [`OnnxModel`] builds a single optimised, runnable tract plan with the batch axis **fixed to
//! 1** and runs every row of a batch through it separately, spreading rows over a dedicated
//! `rayon` thread pool of `threads` workers (default: the number of available cores). The plan
//! is shared (`Arc`) by all workers.
//!
//! This is faster than handing tract the whole batch. Measured on the development machine
//! (2 cores) with the MNIST CNN fixture, `fixtures/mnist/mnist_cnn.onnx`:
//!
//! | strategy | rows/s |
//! |---|---|
//! | one tract call on a symbolic-batch plan, batch 100 | ≈ 1,100 |
//! | fixed batch-1 plan, called once per row, 1 thread | ≈ 2,250 |
//! | the same plan shared by 2 threads (this crate, `threads = 2`) | ≈ 4,400 |
//!
//! The ignored test `throughput_batch_100` (`cargo test --release -p maxi-onnx -- --ignored
//! --nocapture throughput`) repeats the batch-100 measurement through [`OnnxModel::predict`];
//! with other builds running on the same 2 cores it gave ≈ 1,650–2,000 rows/s with
//! `threads = 1` and ≈ 3,250–3,600 rows/s with `threads = 2`.
//!
//! Why it is faster: with every shape known when the plan is built, tract's optimiser can
//! specialise the whole graph (a symbolic batch leaves shape-dependent work to run time), and
//! the batch dimension buys little for a small CNN; rows are independent, so they spread over
//! threads with almost no coordination (≈ 1.8–2× on 2 cores). A second benefit is
//! determinism: each row is computed on its own by the same plan, so the output is
//! **bit-identical whatever the thread count and whatever the batch composition**: row `i` of
//! a batch equals predicting row `i` alone.
//!
//! The `batch_size` kwarg ([`OnnxModel::with_options`]) trades this for a plan with a fixed
//! batch of `n` rows, for models whose batched kernels pay off: batches are then cut into
//! chunks of `n` rows (the last one padded with zero rows whose outputs are dropped), chunks
//! run in parallel, and results are bit-identical for any thread count (chunk boundaries do
//! not depend on it). On the bundled CNN it is slower: in the 200-step PP benchmark with 2
//! threads, ≈ 3,000 rows/s with `batch_size = 8` and ≈ 2,250 with 51, against ≈ 3,900–4,100
//! row by row (`MAXI_BENCH_BATCH_SIZE=8 cargo bench -p maxi --bench backends -- onnx`).
#![warn(missing_docs)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxi_core::{
    Factory, KwargProblem, KwargsSpec, MaxiError, Model, ModelContext, ModelKind, Result, Valid,
};
use maxi_onnx_support::{
    OutputRef, assemble_batch, check_batch_shape, check_file_backend_kwargs, check_output_kwarg,
    limits, select_output, squeeze_trailing, to_f32_row_major,
};
use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid};

type Plan = TypedRunnableModel;

/// An ONNX model loaded with tract, run row by row through a fixed batch-1 plan on a dedicated
/// thread pool (see the crate docs).
pub struct OnnxModel {
    plan: Arc<Plan>,
    path: PathBuf,
    name: String,
    item_shape: Vec<usize>,
    output_item_shape: Vec<usize>,
    threads: usize,
    /// Rows per tract call (the plan's batch size).
    chunk: usize,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("item_shape", &self.item_shape)
            .field("output_item_shape", &self.output_item_shape)
            .field("threads", &self.threads)
            .field("batch_size", &self.chunk)
            .finish_non_exhaustive()
    }
}

/// Loads an ONNX model with one worker thread per available core.
///
/// Errors are [`MaxiError::ModelLoad`]: missing file, not an ONNX model, or an input tract or
/// this backend cannot handle (see the crate docs for what is supported).
pub fn load(path: impl AsRef<Path>) -> Result<OnnxModel> {
    OnnxModel::load(path)
}

/// The number of worker threads used when none is given: the available cores.
pub fn default_threads() -> usize {
    maxi_onnx_support::default_threads()
}

fn load_error(path: &Path, message: impl Into<String>) -> MaxiError {
    MaxiError::ModelLoad {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// What [`inspect_input`] learns about the (single) input.
struct InputInfo {
    item_shape: Vec<usize>,
}

/// Reads the item shape of input 0 (everything after the batch axis) from the ONNX graph.
fn inspect_input(path: &Path, model: &InferenceModel) -> Result<InputInfo> {
    let inputs = model
        .input_outlets()
        .map_err(|e| load_error(path, format!("cannot list the model inputs: {e:#}")))?;
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
    let fact = model
        .input_fact(0)
        .map_err(|e| load_error(path, format!("cannot read the input type: {e:#}")))?;
    if let Some(dt) = fact.datum_type.concretize()
        && dt != DatumType::F32
    {
        return Err(load_error(
            path,
            format!(
                "the input is of type {dt:?}; only float32 inputs are supported \
                 (re-export the model with a float32 input)"
            ),
        ));
    }
    let fix = "re-export the model with a declared input shape [batch, ...item], e.g. [N,28,28,1] \
               with a symbolic or size-1 batch axis and fixed item axes";
    if fact.shape.is_open() {
        return Err(load_error(
            path,
            format!("the input has no declared shape (rank unknown); {fix}"),
        ));
    }
    let dims: Vec<GenericFactoid<TDim>> = fact.shape.dims().cloned().collect();
    if dims.len() < 2 {
        return Err(load_error(
            path,
            format!(
                "the input has rank {}; a batch axis followed by at least one item axis is \
                 needed; {fix}",
                dims.len()
            ),
        ));
    }
    match &dims[0] {
        GenericFactoid::Only(TDim::Val(v)) if *v != 1 => {
            return Err(load_error(
                path,
                format!(
                    "the batch axis (first input axis) is fixed to {v}; it must be symbolic or 1; \
                     {fix}"
                ),
            ));
        }
        _ => {}
    }
    let mut item_shape = Vec::with_capacity(dims.len() - 1);
    for (axis, d) in dims.iter().enumerate().skip(1) {
        match d {
            GenericFactoid::Only(TDim::Val(v)) if *v > 0 => item_shape.push(*v as usize),
            other => {
                let shown = match other {
                    GenericFactoid::Only(d) => format!("the symbolic size `{d}`"),
                    GenericFactoid::Any => "an unknown size".to_string(),
                };
                return Err(load_error(
                    path,
                    format!(
                        "input axis {axis} has {shown}; every axis after the batch axis needs \
                         a fixed positive size; {fix}"
                    ),
                ));
            }
        }
    }
    Ok(InputInfo { item_shape })
}

/// Parses the file and builds the optimised plan for batches of exactly `batch` rows. Returns
/// the plan, the item shape and the full output shape.
fn build_plan(
    path: &Path,
    batch: usize,
    output: Option<&OutputRef>,
) -> Result<(Arc<Plan>, Vec<usize>, Vec<usize>)> {
    // The declared shapes of intermediate values and outputs are hints written for the
    // file's own batch size (often a symbol `N`); with the batch fixed here they can only
    // conflict (SqueezeNet's `conv1_1` is declared [N,64,111,111]), so tract infers them.
    let model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true)
        .model_for_path(path)
        .map_err(|e| {
            load_error(
                path,
                format!(
                    "not a readable ONNX model ({e:#}); check that the file is an .onnx export \
                 (e.g. from torch.onnx.export or tf2onnx) and is not truncated"
                ),
            )
        })?;
    let info = inspect_input(path, &model)?;
    if batch > 1 {
        // every call is padded to `batch` rows: bound it before tract plans for it
        limits::check_call_bytes(batch, &info.item_shape).map_err(|message| {
            MaxiError::InvalidSetting {
                name: "batch_size".into(),
                message,
            }
        })?;
    }
    let outlets = model
        .output_outlets()
        .map_err(|e| load_error(path, format!("cannot list the model outputs: {e:#}")))?
        .to_vec();
    let names: Vec<String> = outlets
        .iter()
        .map(|o| match model.outlet_label(*o) {
            Some(label) => label.to_string(),
            None => model.node(o.node).name.clone(),
        })
        .collect();
    let chosen = select_output(&names, output).map_err(|m| load_error(path, m))?;
    let first_output = outlets[chosen];
    let mut input_shape = vec![batch];
    input_shape.extend_from_slice(&info.item_shape);
    let unsupported = |stage: &str, e: TractError| {
        load_error(
            path,
            format!(
                "tract cannot {stage} the model with input [{batch}, {}] ({e:#}); the model uses an \
                 operator or construct tract-onnx 0.23 does not support, try re-exporting with \
                 a different opset or simplifying it (onnx-simplifier)",
                info.item_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    let typed = model
        .with_output_outlets(&[first_output])
        .and_then(|m| m.with_input_fact(0, f32::fact(input_shape.clone()).into()))
        .map_err(|e| unsupported("specialise", e))?
        .into_optimized()
        .map_err(|e| unsupported("analyse and optimise", e))?;
    let output_shape = typed
        .output_fact(0)
        .map_err(|e| unsupported("type", e))?
        .shape
        .as_concrete()
        .map(|s| s.to_vec())
        .ok_or_else(|| {
            load_error(
                path,
                "the output shape depends on something other than the input shape; only \
                 models with a fixed output shape per row are supported",
            )
        })?;
    let plan = typed.into_runnable().map_err(|e| unsupported("plan", e))?;
    Ok((plan, info.item_shape, output_shape))
}

impl OnnxModel {
    /// Loads an ONNX model with one worker thread per available core.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_threads(path, default_threads())
    }

    /// Loads an ONNX model whose batches are spread over `threads` worker threads (at least
    /// 1; with 1, rows run on the calling thread). Results do not depend on `threads`.
    pub fn with_threads(path: impl AsRef<Path>, threads: usize) -> Result<Self> {
        Self::with_options(path, threads, None)
    }

    /// Like [`OnnxModel::with_threads`], with the rows per tract call: `None` or `Some(1)`
    /// runs every row through a batch-1 plan (the default, fastest on the bundled CNN);
    /// `Some(n)` builds a plan for `n` rows and cuts each batch into chunks of `n` (the last
    /// one padded with zeros). Results do not depend on `threads` either way.
    pub fn with_options(
        path: impl AsRef<Path>,
        threads: usize,
        batch_size: Option<usize>,
    ) -> Result<Self> {
        Self::with_output(path, threads, batch_size, None, false)
    }

    /// Like [`OnnxModel::with_options`], returning the output `output` names (by name or
    /// position; `None`: the first) with its trailing axes of size 1 dropped when `squeeze`.
    pub fn with_output(
        path: impl AsRef<Path>,
        threads: usize,
        batch_size: Option<usize>,
        output: Option<&OutputRef>,
        squeeze: bool,
    ) -> Result<Self> {
        let path = path.as_ref();
        if threads == 0 {
            return Err(MaxiError::InvalidSetting {
                name: "threads".into(),
                message: "must be at least 1".into(),
            });
        }
        let chunk = batch_size.unwrap_or(1);
        if chunk == 0 {
            return Err(MaxiError::InvalidSetting {
                name: "batch_size".into(),
                message: "must be at least 1".into(),
            });
        }
        limits::check_counts(Some(threads), batch_size).map_err(|p| MaxiError::InvalidSetting {
            name: p.field,
            message: p.message,
        })?;
        if !path.exists() {
            return Err(load_error(
                path,
                "no such file; check the path (relative paths in a config are relative to the \
                 config file)",
            ));
        }
        if !path.is_file() {
            return Err(load_error(path, "this is a directory, not an .onnx file"));
        }
        // tract reports bad models as errors; the guard only turns an unexpected internal panic
        // on a malformed file into an error instead of aborting the caller.
        let (plan, item_shape, output_shape) =
            catch_unwind(AssertUnwindSafe(|| build_plan(path, chunk, output)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(load_error(
                    path,
                    format!("tract failed while reading the model ({what}); the file is probably not a valid ONNX model"),
                ))
            })?;
        let output_item_shape = match output_shape.split_first() {
            Some((&first, rest)) if first == chunk => rest.to_vec(),
            _ if chunk == 1 => output_shape,
            _ => {
                return Err(load_error(
                    path,
                    format!(
                        "with batch_size = {chunk} the first output must have the batch as its \
                         first axis, but its shape is {output_shape:?}; leave batch_size unset \
                         (one row per call)"
                    ),
                ));
            }
        };
        let output_item_shape = if squeeze {
            squeeze_trailing(&output_item_shape)
        } else {
            output_item_shape
        };
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("maxi-onnx-{i}"))
                .build()
                .map_err(|e| {
                    MaxiError::Other(format!("cannot start {threads} ONNX worker threads: {e}"))
                })?;
            Some(pool)
        } else {
            None
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(OnnxModel {
            plan,
            path: path.to_path_buf(),
            name,
            item_shape,
            output_item_shape,
            threads,
            chunk,
            pool,
        })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The item shape of the input (without the batch axis), e.g. `[28, 28, 1]`.
    pub fn item_shape(&self) -> &[usize] {
        &self.item_shape
    }

    /// The shape of one row of the output (without the batch axis), e.g. `[10]`.
    pub fn output_item_shape(&self) -> &[usize] {
        &self.output_item_shape
    }

    /// Worker threads used per batch.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Rows per tract call.
    pub fn batch_size(&self) -> usize {
        self.chunk
    }

    /// Runs up to `chunk` rows (`rows` holds them row-major) through the plan, padding a short
    /// chunk with zero rows whose outputs are dropped.
    fn run_chunk(&self, rows: &[f32]) -> Result<Vec<f64>> {
        let item_len: usize = self.item_shape.iter().product();
        let n = rows.len() / item_len.max(1);
        let mut shape = Vec::with_capacity(self.item_shape.len() + 1);
        shape.push(self.chunk);
        shape.extend_from_slice(&self.item_shape);
        let fail = |e: TractError| MaxiError::ModelRun {
            model: self.name.clone(),
            message: format!("{e:#}"),
        };
        let input = if n < self.chunk {
            let mut padded = rows.to_vec();
            padded.resize(self.chunk * item_len, 0.0);
            Tensor::from_shape(&shape, &padded)
        } else {
            Tensor::from_shape(&shape, rows)
        }
        .map_err(fail)?;
        // Each row runs single-threaded on its worker: no nested parallelism even if a
        // process-wide tract executor was set, and no lock on that global in every product.
        let outputs = multithread_tract_scope(Executor::SingleThread, || {
            self.plan.run(tvec!(input.into_tvalue()))
        })
        .map_err(fail)?;
        let out = outputs.first().ok_or_else(|| MaxiError::ModelRun {
            model: self.name.clone(),
            message: "produced no output".into(),
        })?;
        let out_len: usize = self.output_item_shape.iter().product();
        if out.len() != self.chunk * out_len {
            return Err(MaxiError::ModelRun {
                model: self.name.clone(),
                message: format!(
                    "output of shape {:?} for {} row(s); expected {} values",
                    out.shape(),
                    self.chunk,
                    self.chunk * out_len
                ),
            });
        }
        let as_f64 = out.cast_to::<f64>().map_err(fail)?;
        let plain = as_f64.try_as_plain_ram().map_err(fail)?;
        Ok(plain.as_slice::<f64>().map_err(fail)?[..n * out_len].to_vec())
    }
}

impl Model for OnnxModel {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        let shape = batch.shape();
        check_batch_shape(&self.name, &self.item_shape, shape)?;
        let b = shape[0];
        let item_len: usize = self.item_shape.iter().product();
        // Standard-layout f32 copy of the whole batch; row i is data[i*item_len..(i+1)*item_len].
        let data = to_f32_row_major(batch);
        // Item axes are positive (checked at load), so `item_len > 0`. Chunk boundaries depend
        // only on `batch_size`, never on the thread count.
        let chunks: Vec<&[f32]> = data.chunks(self.chunk * item_len).collect();
        let results: Vec<Result<Vec<f64>>> = match &self.pool {
            Some(pool) if chunks.len() > 1 => {
                pool.install(|| chunks.par_iter().map(|c| self.run_chunk(c)).collect())
            }
            _ => chunks.iter().map(|c| self.run_chunk(c)).collect(),
        };
        let out_len: usize = self.output_item_shape.iter().product();
        let mut flat = Vec::with_capacity(b * out_len);
        for r in results {
            flat.extend(r?);
        }
        assemble_batch(&self.name, b, &self.output_item_shape, flat)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        Some(self.item_shape.clone())
    }
}

/// Kwargs of the `onnx` model backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnnxKwargs {
    /// Path of the `.onnx` file; a relative path is resolved against the folder of the config
    /// file (or the current directory when there is none).
    pub path: String,
    /// Worker threads that share the rows of a batch (1 to 256). `null`: one per available
    /// core. Results are bit-identical for any value.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Rows per tract call (1 to 1024, and at most 64 MiB of float32 input per call): batches
    /// are cut into chunks of this many rows, the last padded with zeros. `null`: one row per call through a batch-1 plan, the fastest
    /// on the bundled CNN (see the crate docs). Results are bit-identical for any `threads`.
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

impl KwargsSpec for OnnxKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        check_file_backend_kwargs(
            &self.path,
            self.threads,
            self.batch_size,
            "for one row per call",
        )?;
        check_output_kwarg(self.output.as_ref())
    }
}

/// The `onnx` model backend: builds an [`OnnxModel`] from [`OnnxKwargs`].
pub struct OnnxFactory;

impl Factory<ModelKind> for OnnxFactory {
    type Kwargs = OnnxKwargs;

    fn build(kwargs: &Valid<OnnxKwargs>, ctx: &ModelContext<'_>) -> Result<Arc<dyn Model>> {
        let path = ctx.resolve_path(&kwargs.path);
        let threads = kwargs.threads.unwrap_or_else(default_threads);
        Ok(Arc::new(OnnxModel::with_output(
            path,
            threads,
            kwargs.batch_size,
            kwargs.output.as_ref(),
            kwargs.squeeze,
        )?))
    }
}

maxi_core::register_model!(
    OnnxFactory,
    "onnx",
    aliases = ["tract"],
    extensions = ["onnx"],
    doc = "ONNX model run with tract-onnx (pure Rust): one input [batch, ...item] of float32, \
           first output (or `output`) returned; rows run in parallel on `threads` workers"
);
