//! Finding, version-checking and initialising the ONNX Runtime library: `ORT_DYLIB_PATH`, the
//! Python package `onnxruntime` (asked through a `python3` subprocess), and the process-wide
//! [`OrtRuntime`].

use std::ffi::{CStr, OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

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

/// The command that installs a suitable ONNX Runtime library.
pub fn install_command() -> String {
    format!("python3 -m pip install onnxruntime=={RECOMMENDED_WHEEL}")
}

/// Why the ONNX Runtime library could not be found, opened or used. The message says how to
/// fix it; [`OrtModel::load`](crate::OrtModel::load) turns it into a
/// [`MaxiError::ModelLoad`](maxi_core::MaxiError::ModelLoad).
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
    pub(crate) version: String,
    source: LibrarySource,
    pub(crate) env: Environment,
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
}
