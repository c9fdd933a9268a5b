//! Helpers shared by the plugin host's integration tests: building plugin libraries with the
//! same cargo and target folder as the tests, and small losses and models with known answers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use maxi_core::ndarray::{Array1, Array2, ArrayD, ArrayViewD, IxDyn};
use maxi_core::registry::GradientContext;
use maxi_core::{Bounds, Gradient, Kwargs, Loss, Model, Problem, Result, model_fn, registry};

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The profile folder the tests were built into (`target/release` or `target/debug`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("profile folder")
        .to_path_buf()
}

/// The target folder the tests were built into.
pub fn target_dir() -> PathBuf {
    profile_dir().parent().expect("target folder").to_path_buf()
}

/// A scratch folder for the tests' files (under the target folder). Files of earlier test
/// processes (named `…-<pid>` or `…-<pid>.so`) are removed once those processes have ended.
pub fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("maxi-plugin-host-tests");
        std::fs::create_dir_all(&dir).expect("scratch folder");
        remove_stale(&dir);
        dir
    })
    .clone()
}

fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".so").unwrap_or(&name);
        let Some(pid) = stem.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

fn cargo_build(args: &[&str]) {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build");
    if profile_dir().file_name() == Some("release".as_ref()) {
        cmd.arg("--release");
    }
    cmd.args(args)
        .arg("--target-dir")
        .arg(target_dir())
        .current_dir(workspace_root());
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the example plugin (`cargo build -p maxi-example-gradient-plugin`) once and returns
/// the path of its `.so`.
pub fn example_plugin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        cargo_build(&["-p", "maxi-example-gradient-plugin"]);
        let so = profile_dir().join("libmaxi_example_gradient_plugin.so");
        assert!(so.is_file(), "{} was not built", so.display());
        // a private copy: other builds may replace the original while the tests run
        let copy = scratch_dir().join(format!(
            "libmaxi_example_gradient_plugin-{}.so",
            std::process::id()
        ));
        std::fs::copy(&so, &copy).expect("copy plugin");
        copy
    })
    .clone()
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).expect("write manifest");
    }
}

/// Builds the test-only plugins once: `(libmaxi_faulty_plugin.so, libmaxi_no_entry.so)`.
///
/// They live in `tests/fixtures/` and form their own small workspace, generated under the
/// target folder (so nothing is written into the source tree) and built into the same target
/// folder with a copy of the main workspace's lock file.
pub fn faulty_plugins() -> (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS
        .get_or_init(|| {
            let root = workspace_root();
            let fixtures = root.join("crates/maxi-plugin-host/tests/fixtures");
            let ws = scratch_dir().join("fixture-workspace");
            for member in ["faulty", "no-entry"] {
                std::fs::create_dir_all(ws.join(member)).expect("fixture workspace");
            }
            write_if_changed(
                &ws.join("Cargo.toml"),
                "[workspace]\nresolver = \"3\"\nmembers = [\"faulty\", \"no-entry\"]\n",
            );
            write_if_changed(
                &ws.join("faulty/Cargo.toml"),
                &format!(
                    "[package]\nname = \"maxi-faulty-plugin\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\"]\npath = {:?}\n\n\
                     [dependencies]\nmaxi-plugin = {{ path = {:?} }}\n",
                    fixtures.join("faulty_plugin.rs"),
                    root.join("crates/maxi-plugin"),
                ),
            );
            write_if_changed(
                &ws.join("no-entry/Cargo.toml"),
                &format!(
                    "[package]\nname = \"maxi-no-entry\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\"]\npath = {:?}\n",
                    fixtures.join("no_entry.rs"),
                ),
            );
            // the main workspace's versions, so the shared dependencies are already built
            std::fs::copy(root.join("Cargo.lock"), ws.join("Cargo.lock")).expect("lock file");
            let manifest = ws.join("Cargo.toml");
            cargo_build(&[
                "--manifest-path",
                manifest.to_str().expect("UTF-8 path"),
                "--workspace",
            ]);
            let faulty = profile_dir().join("libmaxi_faulty_plugin.so");
            let no_entry = profile_dir().join("libmaxi_no_entry.so");
            assert!(faulty.is_file() && no_entry.is_file());
            (faulty, no_entry)
        })
        .clone()
}

/// A private copy of `lib` named after `case` and this process (a separate library instance
/// when loaded: its statics are its own).
pub fn private_copy(lib: &Path, case: &str) -> PathBuf {
    let copy = scratch_dir().join(format!("lib{case}-{}.so", std::process::id()));
    std::fs::copy(lib, &copy).expect("copy library");
    copy
}

/// `L(y) = ‖y‖²` (gradient `2y`), counting its batched calls.
pub struct SquaredNorm {
    bounds: Bounds,
    /// Batched evaluations so far.
    pub calls: Arc<AtomicUsize>,
}

impl SquaredNorm {
    /// For items of `shape`.
    pub fn new(shape: &[usize]) -> Self {
        SquaredNorm {
            bounds: Bounds::unbounded(shape),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Loss for SquaredNorm {
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(batch
            .outer_iter()
            .map(|row| row.iter().map(|v| v * v).sum())
            .collect())
    }
    fn bounds(&self) -> &Bounds {
        &self.bounds
    }
    fn start(&self) -> ArrayD<f64> {
        ArrayD::zeros(self.bounds.lower().shape())
    }
}

/// A loss that panics on evaluation.
pub struct PanickingLoss(pub Bounds);

impl Loss for PanickingLoss {
    fn eval_batch(&self, _batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        panic!("deliberate panic in the host's loss")
    }
    fn bounds(&self) -> &Bounds {
        &self.0
    }
    fn start(&self) -> ArrayD<f64> {
        ArrayD::zeros(self.0.lower().shape())
    }
}

/// A problem around `loss` for items of `shape`.
pub fn problem(loss: impl Loss + 'static, shape: &[usize]) -> Problem {
    Problem::identity(Box::new(loss), shape)
}

/// A deterministic point of `shape` with entries in [-1, 1].
pub fn point(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|i| ((i as f64) * 0.7 + 0.3).sin()).collect(),
    )
    .expect("shape")
}

/// Kwargs from JSON.
pub fn kw(v: serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

/// Builds the gradient component `name` from the global registry with `kwargs`.
pub fn gradient(
    name: &str,
    kwargs: serde_json::Value,
    shape: &[usize],
) -> Result<Box<dyn Gradient>> {
    let component = registry::global()?.get::<maxi_core::GradientKind>(name)?;
    let parsed = component.prepare(&kw(kwargs))?;
    parsed.build(&GradientContext { shape })
}

/// A linear classifier `s = W·vec(x) + b` with a fixed pseudo-random `W`.
pub fn linear_model(shape: &[usize], classes: usize) -> Arc<dyn Model> {
    let d: usize = shape.iter().product();
    let w = Array2::from_shape_fn((classes, d), |(i, j)| {
        let k = (i * d + j) as f64;
        (k * 1.618_033_988_7).sin() * 0.5 + (k * 0.577).cos() * 0.5
    });
    model_fn("linear", move |batch: ArrayViewD<'_, f64>| {
        let b = batch.shape()[0];
        let flat = batch
            .to_shape((b, w.shape()[1]))
            .expect("batch shape")
            .to_owned();
        let bias = Array2::from_shape_fn((1, w.shape()[0]), |(_, c)| c as f64 * 0.1);
        (flat.dot(&w.t()) + bias).into_dyn()
    })
}

/// A deterministic input of `shape` with entries in [0, 1].
pub fn input(shape: &[usize]) -> ArrayD<f64> {
    point(shape).mapv(f64::abs)
}
