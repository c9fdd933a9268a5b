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
//! are [`OrtKwargs`] (`path`, `threads`, `batch_size`). It claims no file extension: `.onnx`
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
//! 3. otherwise loading a model fails with [`MaxiError::ModelLoad`] saying exactly that.
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
#![warn(missing_docs)]

use std::ffi::{CStr, OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use maxi_core::{
    Factory, KwargProblem, KwargsSpec, MaxiError, Model, ModelContext, ModelKind, Result, Valid,
};
use maxi_onnx_support::{
    OutputRef, assemble_batch, check_batch_shape, check_file_backend_kwargs, check_output_kwarg,
    select_output, squeeze_trailing, to_f32_row_major,
};
use ndarray::{ArrayD, ArrayViewD};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The `ort` crate release this backend is built against (pinned exactly in `Cargo.toml`).
pub const ORT_CRATE_VERSION: &str = "2.0.0-rc.15";

/// The oldest ONNX Runtime minor version (`1.x`) accepted: the C API version `ort` is built
/// for (its `api-31` feature).
pub const MIN_ORT_MINOR: u32 = ort::MINOR_VERSION;

/// The version of the PyPI `onnxruntime` wheel recommended in error messages (tested with
/// 1.32.0).
pub const RECOMMENDED_WHEEL: &str = "1.32.*";

/// The environment variable that names the ONNX Runtime library (or a folder holding it).
pub const ENV_VAR: &str = "ORT_DYLIB_PATH";

/// Rows per ONNX Runtime call when `batch_size` is not given and the model's rows turn out
/// not to be independent (see [`Chunking`]).
pub const FALLBACK_BATCH_SIZE: usize = 16;

/// The most rows in one ONNX Runtime call when `batch_size` is not given: bounds the memory
/// of intermediate activations for large batches (≈ 0.25 MB per row of the fixture CNN,
/// judging by peak RSS).
pub const MAX_ROWS_PER_CALL: usize = 256;

/// Input entries in one ONNX Runtime call when `batch_size` is not given (1 Mi entries,
/// 4 MiB of f32): with large items fewer rows go in a call than [`MAX_ROWS_PER_CALL`]
/// (6 rows of a 224×224×3 image), which keeps ONNX Runtime's activation memory bounded
/// (SqueezeNet 1.1 in a per-pixel CEM run: peak RSS 393 MB with 14 rows per call, 274 MB with
/// 4). Items of up to 4,096 entries (the MNIST CNN's 784) keep 256 rows per call.
pub const MAX_ENTRIES_PER_CALL: usize = 2 << 20;

/// The most rows per call for items of `item_len` entries (see [`MAX_ENTRIES_PER_CALL`]).
pub fn max_rows_per_call(item_len: usize) -> usize {
    (MAX_ENTRIES_PER_CALL / item_len.max(1)).clamp(1, MAX_ROWS_PER_CALL)
}

/// How [`OrtModel`] cuts a batch into ONNX Runtime calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// The batch is split into `threads × ⌈B / (threads × max_rows)⌉` contiguous parts of
    /// near-equal size (one call per session for batches up to `threads × max_rows` rows):
    /// the fastest split, and bit-identical for any `threads` because the model was found at
    /// load to compute each row independently of the rest of its call.
    Even {
        /// Most rows in one call.
        max_rows: usize,
    },
    /// Fixed chunks of this many rows (the last may be shorter), whatever `threads`: results
    /// are bit-identical for any `threads` for every model.
    Fixed(usize),
}

impl Chunking {
    /// `(first row, rows)` of each call for a batch of `rows` rows spread over `threads`
    /// sessions. Empty for an empty batch.
    pub fn bounds(self, rows: usize, threads: usize) -> Vec<(usize, usize)> {
        if rows == 0 {
            return Vec::new();
        }
        match self {
            Chunking::Fixed(size) => {
                let size = size.max(1);
                (0..rows)
                    .step_by(size)
                    .map(|start| (start, size.min(rows - start)))
                    .collect()
            }
            Chunking::Even { max_rows } => {
                let threads = threads.max(1);
                let per_round = threads * max_rows.max(1);
                let parts = (threads * rows.div_ceil(per_round)).min(rows);
                let (base, extra) = (rows / parts, rows % parts);
                let mut start = 0;
                (0..parts)
                    .map(|i| {
                        let len = base + usize::from(i < extra);
                        let chunk = (start, len);
                        start += len;
                        chunk
                    })
                    .collect()
            }
        }
    }
}

/// The command that installs a suitable ONNX Runtime library.
pub fn install_command() -> String {
    format!("python3 -m pip install onnxruntime=={RECOMMENDED_WHEEL}")
}

/// The number of sessions (and worker threads) used when none is given: the available cores.
pub fn default_threads() -> usize {
    maxi_onnx_support::default_threads()
}

/// Why the ONNX Runtime library could not be found, opened or used. The message says how to
/// fix it; [`OrtModel::load`] turns it into a [`MaxiError::ModelLoad`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeUnavailable(pub String);

impl fmt::Display for RuntimeUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuntimeUnavailable {}

/// Where [`locate_library`] found the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// From the `ORT_DYLIB_PATH` environment variable.
    EnvVar,
    /// From the installed Python package `onnxruntime` in this folder.
    PythonPackage(PathBuf),
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibrarySource::EnvVar => write!(f, "{ENV_VAR}"),
            LibrarySource::PythonPackage(dir) => {
                write!(f, "the Python package onnxruntime at {}", dir.display())
            }
        }
    }
}

/// The fix appended to every "library not usable" message.
fn how_to_install() -> String {
    format!(
        "install it with `{}` (the wheel ships libonnxruntime), or set {ENV_VAR} to the path of \
         libonnxruntime (ONNX Runtime 1.{MIN_ORT_MINOR} or newer); or use the pure-Rust backend \
         `onnx` instead",
        install_command()
    )
}

/// Is `name` the file name of the ONNX Runtime library on this platform
/// (`libonnxruntime.so`, `libonnxruntime.so.1.32.0`, `libonnxruntime.1.32.0.dylib`,
/// `onnxruntime.dll`; not `libonnxruntime_providers_shared.so`)?
fn is_library_name(name: &str) -> bool {
    let stem = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let suffix = std::env::consts::DLL_SUFFIX;
    match name.strip_prefix(&stem) {
        Some(rest) => rest == suffix || (rest.starts_with('.') && name.contains(suffix)),
        None => false,
    }
}

/// The ONNX Runtime library in `dir` (or, for a Python package folder, in `dir/capi`), the
/// highest-sorting name when there are several.
pub fn find_library_in(dir: &Path) -> Option<PathBuf> {
    for folder in [dir.to_path_buf(), dir.join("capi")] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(is_library_name))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(best) = found.pop() {
            return Some(best);
        }
    }
    None
}

/// The folder of the installed Python package `onnxruntime`, asking `python3` and then
/// `python` (without importing the package). `None` when neither interpreter runs or the
/// package is not installed.
pub fn python_package_dir() -> Option<PathBuf> {
    const SCRIPT: &str = "import importlib.util as u\n\
                          s = u.find_spec('onnxruntime')\n\
                          print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    for python in ["python3", "python"] {
        let Ok(out) = Command::new(python).args(["-c", SCRIPT]).output() else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dir.is_empty() {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

/// Finds the ONNX Runtime library from explicit inputs: `env_value` is the value of
/// `ORT_DYLIB_PATH` (if set), `python_dir` asks for the folder of the Python package
/// `onnxruntime` (called only when `env_value` is unset or empty). Pure apart from reading
/// the file system, so it can be tested without touching the process-wide state.
///
/// A set but unusable `ORT_DYLIB_PATH` is an error (it is not silently skipped).
pub fn locate_library(
    env_value: Option<&OsStr>,
    python_dir: impl FnOnce() -> Option<PathBuf>,
) -> std::result::Result<(PathBuf, LibrarySource), RuntimeUnavailable> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.is_file() {
            return Ok((path, LibrarySource::EnvVar));
        }
        if path.is_dir() {
            return find_library_in(&path)
                .map(|p| (p, LibrarySource::EnvVar))
                .ok_or_else(|| {
                    RuntimeUnavailable(format!(
                        "ONNX Runtime library not found: {ENV_VAR} names the folder {}, which \
                         holds no {}onnxruntime{}*; set {ENV_VAR} to the library file or unset \
                         it, and {}",
                        path.display(),
                        std::env::consts::DLL_PREFIX,
                        std::env::consts::DLL_SUFFIX,
                        how_to_install()
                    ))
                });
        }
        return Err(RuntimeUnavailable(format!(
            "ONNX Runtime library not found: {ENV_VAR} is set to {}, which does not exist; fix \
             or unset {ENV_VAR}, and {}",
            path.display(),
            how_to_install()
        )));
    }
    match python_dir() {
        Some(dir) => match find_library_in(&dir) {
            Some(lib) => Ok((lib, LibrarySource::PythonPackage(dir))),
            None => Err(RuntimeUnavailable(format!(
                "ONNX Runtime library not found: the Python package onnxruntime at {} has no \
                 capi/{}onnxruntime{}* (a build without the shared library?); reinstall it with \
                 `{}`, or set {ENV_VAR} to the path of libonnxruntime (ONNX Runtime \
                 1.{MIN_ORT_MINOR} or newer)",
                dir.display(),
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX,
                install_command()
            ))),
        },
        None => Err(RuntimeUnavailable(format!(
            "ONNX Runtime library not found: {ENV_VAR} is not set and no Python package \
             onnxruntime is installed (asked python3 and python); {}",
            how_to_install()
        ))),
    }
}

/// Checks a library version string (`"1.32.0"`) against [`MIN_ORT_MINOR`]; returns
/// `(major, minor)`.
pub fn check_version(
    version: &str,
    library: &Path,
) -> std::result::Result<(u32, u32), RuntimeUnavailable> {
    let mut parts = version.trim().split('.').map(str::parse::<u32>);
    let (major, minor) = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => {
            return Err(RuntimeUnavailable(format!(
                "the ONNX Runtime library at {} reports the version `{version}`, which is not \
                 of the form 1.x.y; {}",
                library.display(),
                how_to_install()
            )));
        }
    };
    if major != 1 || minor < MIN_ORT_MINOR {
        return Err(RuntimeUnavailable(format!(
            "the ONNX Runtime library at {} is version {version}, but this backend (ort \
             {ORT_CRATE_VERSION}) needs ONNX Runtime 1.{MIN_ORT_MINOR} or newer; upgrade with \
             `{}`, or set {ENV_VAR} to a newer libonnxruntime",
            library.display(),
            install_command()
        )));
    }
    Ok((major, minor))
}

/// Opens the library and asks it for its version string (`OrtGetApiBase()->GetVersionString()`).
fn library_version(path: &Path) -> std::result::Result<String, RuntimeUnavailable> {
    let cannot_open = |e: &dyn fmt::Display| {
        RuntimeUnavailable(format!(
            "cannot open the ONNX Runtime library at {} ({e}); {}",
            path.display(),
            how_to_install()
        ))
    };
    // SAFETY: opening a shared library runs its initialisers. The file was selected as ONNX
    // Runtime (by name, from ORT_DYLIB_PATH or the onnxruntime package), whose initialisers are
    // the ones `ort` runs anyway when it opens the same file right after this check.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| cannot_open(&e))?;
    // SAFETY: `OrtGetApiBase` is ONNX Runtime's C entry point,
    // `const OrtApiBase* OrtGetApiBase(void)`; the symbol type matches that signature.
    let get_base: libloading::Symbol<'_, unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }.map_err(|_| {
            RuntimeUnavailable(format!(
                "{} does not export OrtGetApiBase, so it is not an ONNX Runtime library; {}",
                path.display(),
                how_to_install()
            ))
        })?;
    // SAFETY: the function takes no arguments and returns a pointer to a static struct (or
    // null, checked below); the library stays loaded while `lib` lives.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(cannot_open(&"OrtGetApiBase returned null"));
    }
    // SAFETY: `base` is non-null and points to ONNX Runtime's static `OrtApiBase`, whose
    // `GetVersionString` returns a static NUL-terminated string; it is copied before `lib`
    // is dropped.
    let version = unsafe {
        let s = ((*base).GetVersionString)();
        if s.is_null() {
            return Err(cannot_open(&"GetVersionString returned null"));
        }
        CStr::from_ptr(s).to_string_lossy().into_owned()
    };
    Ok(version)
}

/// The ONNX Runtime library this process uses, loaded once by [`runtime`].
pub struct OrtRuntime {
    path: PathBuf,
    version: String,
    source: LibrarySource,
    env: Environment,
}

impl fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl OrtRuntime {
    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The library's version, e.g. `1.32.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the library was found.
    pub fn source(&self) -> &LibrarySource {
        &self.source
    }
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

/// The process-wide ONNX Runtime: found with [`locate_library`] from the real environment,
/// version-checked and initialised on the first call. A failure is not remembered: a later
/// call (after installing the library or setting `ORT_DYLIB_PATH`) tries again.
pub fn runtime() -> std::result::Result<&'static OrtRuntime, RuntimeUnavailable> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = RUNTIME_INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let env_value: Option<OsString> = std::env::var_os(ENV_VAR);
    let (path, source) = locate_library(env_value.as_deref(), python_package_dir)?;
    // `ort` resolves relative paths against the executable's folder; make it absolute here.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let version = library_version(&path)?;
    check_version(&version, &path)?;
    let env = ort::init_from(&path)
        .map_err(|e| {
            RuntimeUnavailable(format!(
                "ort {ORT_CRATE_VERSION} cannot use the ONNX Runtime library at {} ({e}); {}",
                path.display(),
                how_to_install()
            ))
        })?
        .with_name("maxi")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            RuntimeUnavailable(format!(
                "cannot create the ONNX Runtime environment with {} ({e})",
                path.display()
            ))
        })?;
    Ok(RUNTIME.get_or_init(|| OrtRuntime {
        path,
        version,
        source,
        env,
    }))
}

/// Is an ONNX Runtime library available to this process? (Loads it if so.)
pub fn is_available() -> bool {
    runtime().is_ok()
}

fn load_error(path: &Path, message: impl Into<String>) -> MaxiError {
    MaxiError::ModelLoad {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`inspect_input`] learns about the (single) input.
struct InputInfo {
    item_shape: Vec<usize>,
    /// The batch axis is fixed to 1 in the file: every call must have one row.
    batch_fixed_to_one: bool,
    /// Position of the returned output among the model's outputs.
    output: usize,
}

/// Checks the session's input and first output declarations and reads the item shape.
fn inspect(path: &Path, session: &Session, output: Option<&OutputRef>) -> Result<InputInfo> {
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

/// Kwargs of the `onnxruntime` model backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrtKwargs {
    /// Path of the `.onnx` file; a relative path is resolved against the folder of the config
    /// file (or the current directory when there is none).
    pub path: String,
    /// ONNX Runtime sessions, each with one intra-op thread and its own worker, that share the
    /// chunks of a batch (at least 1). `null`: one per available core. Results are
    /// bit-identical for any value.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Rows per ONNX Runtime call: each batch is cut into chunks of this many rows (the last
    /// may be shorter), spread over the sessions (at least 1); results are then bit-identical
    /// for any `threads` with any model. `null`: split each batch evenly over the sessions (at
    /// most 256 rows per call), the fastest, when a load-time check finds that the model
    /// computes each row independently (else chunks of 16). Ignored (1) when the model's batch
    /// axis is fixed to 1.
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
    fn library_names() {
        if cfg!(target_os = "linux") {
            assert!(is_library_name("libonnxruntime.so"));
            assert!(is_library_name("libonnxruntime.so.1.32.0"));
            assert!(!is_library_name("libonnxruntime_providers_shared.so"));
            assert!(!is_library_name("libonnxruntime.txt"));
            assert!(!is_library_name("onnxruntime.so"));
        }
    }

    #[test]
    fn version_check() {
        let lib = Path::new("/x/libonnxruntime.so");
        assert_eq!(check_version("1.32.0", lib), Ok((1, 32)));
        assert_eq!(
            check_version(&format!("1.{MIN_ORT_MINOR}.1"), lib),
            Ok((1, MIN_ORT_MINOR))
        );
        let old = check_version("1.20.1", lib).expect_err("too old");
        assert!(old.0.contains("is version 1.20.1"), "{old}");
        assert!(
            old.0.contains(&format!("1.{MIN_ORT_MINOR} or newer")),
            "{old}"
        );
        assert!(old.0.contains(&install_command()), "{old}");
        assert!(check_version("2.0.0", lib).is_err());
        let junk = check_version("banana", lib).expect_err("junk");
        assert!(junk.0.contains("banana"), "{junk}");
    }

    #[test]
    fn chunk_bounds() {
        let fixed = Chunking::Fixed(16);
        let b = fixed.bounds(101, 2);
        assert_eq!(b.len(), 7);
        assert_eq!(b[6], (96, 5));
        assert_eq!(b, fixed.bounds(101, 5), "fixed chunks ignore threads");
        assert!(fixed.bounds(0, 2).is_empty());
        let even = Chunking::Even { max_rows: 256 };
        assert_eq!(even.bounds(101, 1), vec![(0, 101)]);
        assert_eq!(even.bounds(101, 2), vec![(0, 51), (51, 50)]);
        assert_eq!(even.bounds(1, 2), vec![(0, 1)]);
        assert_eq!(even.bounds(3, 4), vec![(0, 1), (1, 1), (2, 1)]);
        assert!(even.bounds(0, 3).is_empty());
        // Large batches: calls of at most max_rows, a multiple of `threads` of them.
        let small = Chunking::Even { max_rows: 10 };
        let b = small.bounds(101, 2);
        assert_eq!(b.len(), 12);
        assert!(b.iter().all(|&(_, n)| n == 8 || n == 9));
        for (bounds, rows) in [
            (b, 101),
            (small.bounds(57, 3), 57),
            (even.bounds(1000, 2), 1000),
        ] {
            let mut next = 0;
            for (start, n) in bounds {
                assert_eq!(start, next);
                assert!(n > 0);
                next += n;
            }
            assert_eq!(next, rows);
        }
    }

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
