//! [`OrtModel`]: `threads` single-threaded sessions of one file sharing each batch.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use maxi_core::{MaxiError, Model, Result};
use maxi_onnx_support::{
    OutputRef, assemble_batch, check_batch_shape, limits, squeeze_trailing, to_f32_row_major,
};
use ndarray::{ArrayD, ArrayViewD};
use ort::session::Session;
use ort::value::TensorRef;
use rayon::prelude::*;

use crate::chunking::{Chunking, FALLBACK_BATCH_SIZE, max_rows_per_call};
use crate::default_threads;
use crate::inspect::{dims_text, inspect, load_error};
use crate::library::{OrtRuntime, runtime};

/// An ONNX model run by ONNX Runtime: `threads` single-threaded sessions that share the
/// chunks of each batch (see the crate docs).
pub struct OrtModel {
    sessions: Vec<Mutex<Session>>,
    pool: Option<rayon::ThreadPool>,
    runtime: &'static OrtRuntime,
    path: PathBuf,
    name: String,
    item_shape: Vec<usize>,
    output_item_shape: Vec<usize>,
    /// Position of the returned output.
    output: usize,
    threads: usize,
    chunking: Chunking,
    rows_independent: bool,
}

impl fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtModel")
            .field("path", &self.path)
            .field("item_shape", &self.item_shape)
            .field("output_item_shape", &self.output_item_shape)
            .field("threads", &self.threads)
            .field("chunking", &self.chunking)
            .field("rows_independent", &self.rows_independent)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl OrtModel {
    /// Loads an ONNX model with one session per available core and the default chunking
    /// (see [`OrtModel::with_options`]).
    ///
    /// Errors are [`MaxiError::ModelLoad`]: no ONNX Runtime library (the message says how to
    /// install one), missing file, not an ONNX model, or an input or output this backend
    /// cannot handle.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_options(path, default_threads(), None)
    }

    /// Loads an ONNX model with `threads` sessions (each with one intra-op thread; with 1,
    /// calls run on the calling thread). `batch_size`: `Some(n)` cuts batches into fixed
    /// chunks of `n` rows ([`Chunking::Fixed`]); `None` splits them evenly over the sessions
    /// ([`Chunking::Even`]) when the model computes rows independently (checked here on a few
    /// rows), else uses chunks of [`FALLBACK_BATCH_SIZE`]. `threads` and `n` must be at least
    /// 1. Either way, results do not depend on `threads`.
    pub fn with_options(
        path: impl AsRef<Path>,
        threads: usize,
        batch_size: Option<usize>,
    ) -> Result<Self> {
        Self::with_output(path, threads, batch_size, None, false)
    }

    /// Like [`OrtModel::with_options`], returning the output `output` names (by name or
    /// position; `None`: the first) with its trailing axes of size 1 dropped when `squeeze`.
    pub fn with_output(
        path: impl AsRef<Path>,
        threads: usize,
        batch_size: Option<usize>,
        output: Option<&OutputRef>,
        squeeze: bool,
    ) -> Result<Self> {
        let path = path.as_ref();
        for (name, value) in [("threads", Some(threads)), ("batch_size", batch_size)] {
            if value == Some(0) {
                return Err(MaxiError::InvalidSetting {
                    name: name.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        let invalid = |name: &str, message: String| MaxiError::InvalidSetting {
            name: name.into(),
            message,
        };
        limits::check_counts(Some(threads), batch_size)
            .map_err(|p| invalid(&p.field, p.message))?;
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
        let runtime = runtime().map_err(|e| load_error(path, e.0))?;
        let open = || -> Result<Session> {
            let unreadable = |e: &dyn fmt::Display| {
                load_error(
                    path,
                    format!(
                        "ONNX Runtime {} cannot load the model ({e}); check that the file is an \
                         .onnx export (e.g. from torch.onnx.export or tf2onnx) and is not \
                         truncated",
                        runtime.version
                    ),
                )
            };
            Session::builder(&runtime.env)
                .map_err(|e| unreadable(&e))?
                .with_intra_threads(1)
                .map_err(|e| unreadable(&e))?
                .with_inter_threads(1)
                .map_err(|e| unreadable(&e))?
                .with_parallel_execution(false)
                .map_err(|e| unreadable(&e))?
                .commit_from_file(path)
                .map_err(|e| unreadable(&e))
        };
        let first = open()?;
        let info = inspect(path, &first, output)?;
        if let Some(rows) = batch_size {
            limits::check_call_bytes(rows, &info.item_shape)
                .map_err(|message| invalid("batch_size", message))?;
        }
        let mut sessions = Vec::with_capacity(threads);
        sessions.push(Mutex::new(first));
        for _ in 1..threads {
            sessions.push(Mutex::new(open()?));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("maxi-ort-{i}"))
                .build()
                .map_err(|e| {
                    MaxiError::Other(format!(
                        "cannot start {threads} ONNX Runtime worker threads: {e}"
                    ))
                })?;
            Some(pool)
        } else {
            None
        };
        let mut model = OrtModel {
            sessions,
            pool,
            runtime,
            path: path.to_path_buf(),
            name,
            item_shape: info.item_shape,
            output_item_shape: Vec::new(),
            output: info.output,
            threads,
            chunking: Chunking::Fixed(1),
            rows_independent: true,
        };
        // One row of zeros: learns the output shape and shows at load time that the model runs.
        let item_len: usize = model.item_shape.iter().product();
        let (shape, _) = model.run_chunk(0, &vec![0.0f32; item_len]).map_err(|e| {
            load_error(
                path,
                format!("ONNX Runtime cannot run the model on one row of zeros: {e}"),
            )
        })?;
        model.output_item_shape = match shape.split_first() {
            Some((1, rest)) => rest.to_vec(),
            _ => shape,
        };
        if squeeze {
            model.output_item_shape = squeeze_trailing(&model.output_item_shape);
        }
        if !info.batch_fixed_to_one {
            model.rows_independent = model.probe_row_independence().map_err(|e| {
                load_error(
                    path,
                    format!("ONNX Runtime cannot run the model on a batch of 5 rows: {e}"),
                )
            })?;
            model.chunking = match batch_size {
                Some(n) => Chunking::Fixed(n),
                None if model.rows_independent => Chunking::Even {
                    max_rows: max_rows_per_call(item_len),
                },
                None => Chunking::Fixed(FALLBACK_BATCH_SIZE),
            };
        }
        Ok(model)
    }

    /// Does a row's output depend only on that row, bit for bit? Runs 5 deterministic
    /// pseudo-random rows as one call, as calls of 3 and 2 rows, and rows 0 and 4 alone, and
    /// compares the bits. (ONNX Runtime's CPU kernels for convolutions, matrix products and
    /// element-wise operations compute rows separately; a kernel that picks a different
    /// algorithm for a single row, or mixes rows, shows up here.)
    fn probe_row_independence(&self) -> std::result::Result<bool, String> {
        const N: usize = 5;
        let item_len: usize = self.item_shape.iter().product();
        let out_len: usize = self.output_item_shape.iter().product();
        let data: Vec<f32> = (0..N * item_len)
            .map(|i| ((i as f64 * 0.618_033_988_7).fract() - 0.5) as f32)
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let whole = bits(&self.run_chunk(0, &data)?.1);
        if whole.len() != N * out_len {
            return Err(format!(
                "{} output values for {N} rows; expected {}",
                whole.len(),
                N * out_len
            ));
        }
        let mut split = bits(&self.run_chunk(0, &data[..3 * item_len])?.1);
        split.extend(bits(&self.run_chunk(0, &data[3 * item_len..])?.1));
        let first = bits(&self.run_chunk(0, &data[..item_len])?.1);
        let last = bits(&self.run_chunk(0, &data[4 * item_len..])?.1);
        Ok(split == whole && first[..] == whole[..out_len] && last[..] == whole[4 * out_len..])
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

    /// Sessions (and worker threads) that share a batch.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How batches are cut into ONNX Runtime calls (fixed chunks of 1 when the model's batch
    /// axis is fixed to 1).
    pub fn chunking(&self) -> Chunking {
        self.chunking
    }

    /// Whether the load-time probe found every row's output independent of the other rows of
    /// its call (bit for bit).
    pub fn rows_independent(&self) -> bool {
        self.rows_independent
    }

    /// The ONNX Runtime library in use.
    pub fn runtime(&self) -> &'static OrtRuntime {
        self.runtime
    }

    /// Runs `rows` (a whole number of items, f32, row-major) through session `session`;
    /// returns the output shape and values. Errors are plain messages.
    fn run_chunk(
        &self,
        session: usize,
        rows: &[f32],
    ) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
        let item_len: usize = self.item_shape.iter().product();
        let n = rows.len() / item_len;
        let mut shape = Vec::with_capacity(self.item_shape.len() + 1);
        shape.push(n);
        shape.extend_from_slice(&self.item_shape);
        let input = TensorRef::from_array_view((shape, rows)).map_err(|e| e.to_string())?;
        let mut guard = self.sessions[session % self.sessions.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let outputs = guard.run(ort::inputs![input]).map_err(|e| e.to_string())?;
        if outputs.len() == 0 {
            return Err("produced no output".into());
        }
        if self.output >= outputs.len() {
            return Err(format!(
                "produced {} output(s); output {} was asked for",
                outputs.len(),
                self.output
            ));
        }
        let (out_shape, data) = outputs[self.output]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("cannot read output {} as float32: {e}", self.output))?;
        let out_shape: Vec<usize> = out_shape.iter().map(|&d| d.max(0) as usize).collect();
        Ok((out_shape, data.to_vec()))
    }

    /// Runs one chunk and checks its output against the learned row shape.
    fn predict_chunk(&self, session: usize, rows: &[f32], n: usize) -> Result<Vec<f32>> {
        let fail = |message: String| MaxiError::ModelRun {
            model: self.name.clone(),
            message,
        };
        let (shape, data) = self.run_chunk(session, rows).map_err(fail)?;
        let out_len: usize = self.output_item_shape.iter().product();
        let batch_ok = n == 1 || shape.first() == Some(&n);
        if !batch_ok || data.len() != n * out_len {
            return Err(fail(format!(
                "output of shape {shape:?} for {n} rows; expected [{n}, {}]",
                dims_text(&self.output_item_shape)
            )));
        }
        Ok(data)
    }
}

impl Model for OrtModel {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        let shape = batch.shape();
        check_batch_shape(&self.name, &self.item_shape, shape)?;
        let b = shape[0];
        let item_len: usize = self.item_shape.iter().product();
        // Standard-layout f32 copy of the whole batch; row i is data[i*item_len..(i+1)*item_len].
        let data = to_f32_row_major(batch);
        let chunks: Vec<&[f32]> = self
            .chunking
            .bounds(b, self.threads)
            .into_iter()
            .map(|(start, len)| &data[start * item_len..(start + len) * item_len])
            .collect();
        let run = |session: usize, chunk: &&[f32]| {
            self.predict_chunk(session, chunk, chunk.len() / item_len)
        };
        let results: Vec<Result<Vec<f32>>> = match &self.pool {
            Some(pool) if chunks.len() > 1 => pool.install(|| {
                chunks
                    .par_iter()
                    // Worker k of the pool uses session k: no two workers share a session.
                    .map(|c| run(rayon::current_thread_index().unwrap_or(0), c))
                    .collect()
            }),
            _ => chunks.iter().map(|c| run(0, c)).collect(),
        };
        let out_len: usize = self.output_item_shape.iter().product();
        let mut flat = Vec::with_capacity(b * out_len);
        for r in results {
            flat.extend(r?.into_iter().map(f64::from));
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
