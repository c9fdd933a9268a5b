//! Tests of the ONNX Runtime backend against the bundled MNIST fixtures and the tract backend.
//!
//! Tests that need the ONNX Runtime library fail when it cannot be found and
//! `MAXI_REQUIRE_ORT=1` is set (as `.ci/run` does, after installing it with `python3 -m pip
//! install onnxruntime==1.32.*`); without that variable they write a `SKIPPED: <test>: <why>`
//! line to stdout, past the test harness's capture, and return. The library-discovery tests run
//! everywhere: they call the pure [`locate_library`].

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use maxi::ndarray::{ArrayD, Axis, IxDyn, concatenate, s};
use maxi::registry::ModelContext;
use maxi::{Kwargs, MaxiError, Model, OnnxModel};
use maxi_onnxruntime::{
    Chunking, ENV_VAR, LibrarySource, MAX_ROWS_PER_CALL, MIN_ORT_MINOR, OrtModel, install_command,
    locate_library,
};

const CNN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/mnist/mnist_cnn.onnx"
);
const AE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/mnist/mnist_ae.onnx"
);

/// The variable that turns a missing ONNX Runtime into a test failure.
const REQUIRE_VAR: &str = "MAXI_REQUIRE_ORT";

/// True when ONNX Runtime is available. Otherwise the test fails when `MAXI_REQUIRE_ORT=1`;
/// else a `SKIPPED:` line goes straight to stdout (not through `println!`, which the harness
/// captures and hides for passing tests) and the caller returns.
fn ort_or_skip(test: &str) -> bool {
    match maxi_onnxruntime::runtime() {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var_os(REQUIRE_VAR).is_none_or(|v| v != "1"),
                "{test}: {REQUIRE_VAR}=1 but no ONNX Runtime library: {e}"
            );
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "SKIPPED: {test}: no ONNX Runtime library ({e}); {REQUIRE_VAR}=1 makes this a failure"
            );
            let _ = stdout.flush();
            false
        }
    }
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("maxi-onnxruntime-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// MNIST test images `indices` as a batch `[n, 28, 28, 1]`.
fn images(indices: &[usize]) -> ArrayD<f64> {
    let rows: Vec<ArrayD<f64>> = indices
        .iter()
        .map(|&i| {
            maxi::mnist::test_image(i)
                .expect("mnist image")
                .insert_axis(Axis(0))
        })
        .collect();
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    concatenate(Axis(0), &views).expect("concatenate")
}

/// 101 rows like one URV step (q = 100): image 2953 plus deterministic perturbations of it,
/// kept in [-0.5, 0.5].
fn urv_like_batch() -> ArrayD<f64> {
    let x = maxi::mnist::test_image(2953).expect("image");
    let mut batch = ArrayD::zeros(IxDyn(&[101, 28, 28, 1]));
    for (r, mut row) in batch.outer_iter_mut().enumerate() {
        for (j, (v, x)) in row.iter_mut().zip(x.iter()).enumerate() {
            let noise = if r == 0 {
                0.0
            } else {
                ((r * 7919 + j * 104_729) as f64 * 0.618).sin() * 0.3
            };
            *v = (x + noise).clamp(-0.5, 0.5);
        }
    }
    batch
}

fn max_abs_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn bits(a: &ArrayD<f64>) -> Vec<u64> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn cnn_logits_equal_tract_on_test_images_2953_and_340() {
    if !ort_or_skip("cnn_logits_equal_tract_on_test_images_2953_and_340") {
        return;
    }
    let ort = OrtModel::with_options(CNN, 2, None).expect("load with ORT");
    assert_eq!(ort.input_shape(), Some(vec![28, 28, 1]));
    assert_eq!(ort.output_item_shape(), &[10]);
    assert_eq!(ort.describe(), "mnist_cnn.onnx");
    let tract = OnnxModel::with_threads(CNN, 1).expect("load with tract");
    let batch = images(&[2953, 340]);
    let a = ort.predict(batch.view()).expect("ort predict");
    let b = tract.predict(batch.view()).expect("tract predict");
    assert_eq!(a.shape(), &[2, 10]);
    let diff = max_abs_diff(&a, &b);
    assert!(diff <= 1e-4, "ORT and tract differ by {diff}:\n{a}\n{b}");
    // The known predictions: 2953 (label 3) is classified 5, 340 (label 5) is classified 3.
    let argmax = |r: usize| {
        a.index_axis(Axis(0), r)
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
            .expect("10 scores")
    };
    assert_eq!((argmax(0), argmax(1)), (5, 3));
    // And on a URV-like batch of 101 perturbed rows.
    let many = urv_like_batch();
    let diff = max_abs_diff(
        &ort.predict(many.view()).expect("ort"),
        &tract.predict(many.view()).expect("tract"),
    );
    assert!(diff <= 1e-4, "ORT and tract differ by {diff} on 101 rows");
}

#[test]
fn bit_identical_for_any_thread_count() {
    if !ort_or_skip("bit_identical_for_any_thread_count") {
        return;
    }
    let batch = urv_like_batch();
    for path in [CNN, AE] {
        // Default (even split over the sessions) and fixed chunks of 16 rows.
        for batch_size in [None, Some(16)] {
            let reference = OrtModel::with_options(path, 1, batch_size)
                .expect("load")
                .predict(batch.view())
                .expect("predict");
            for threads in [2, 3] {
                let out = OrtModel::with_options(path, threads, batch_size)
                    .expect("load")
                    .predict(batch.view())
                    .expect("predict");
                assert!(
                    bits(&out) == bits(&reference),
                    "{path}: batch_size {batch_size:?}, threads = {threads} differs from threads = 1"
                );
            }
        }
    }
}

/// Not promised by ONNX Runtime in general, but true for the CPU kernels of the fixture
/// models, and found by the load-time probe: a row's output does not depend on the other rows
/// of its call, so any `batch_size` gives the same bits (see the crate docs).
#[test]
fn row_alone_equals_row_inside_a_batch_on_the_fixtures() {
    if !ort_or_skip("row_alone_equals_row_inside_a_batch_on_the_fixtures") {
        return;
    }
    let batch = urv_like_batch();
    for path in [CNN, AE] {
        let one_call = OrtModel::with_options(path, 1, Some(101)).expect("load");
        assert_eq!(one_call.chunking(), Chunking::Fixed(101));
        let whole = one_call.predict(batch.view()).expect("predict");
        for batch_size in [Some(1), Some(7), Some(16), None] {
            let model = OrtModel::with_options(path, 2, batch_size).expect("load");
            assert!(
                model.rows_independent(),
                "{path}: probe says rows are not independent"
            );
            if batch_size.is_none() {
                assert_eq!(
                    model.chunking(),
                    Chunking::Even {
                        max_rows: MAX_ROWS_PER_CALL
                    }
                );
            }
            let out = model.predict(batch.view()).expect("predict");
            assert!(
                bits(&out) == bits(&whole),
                "{path}: batch_size = {batch_size:?} differs from one call of 101 rows"
            );
        }
        let single = OrtModel::with_options(path, 1, None).expect("load");
        for i in [0, 1, 50, 100] {
            let alone = single
                .predict(batch.slice(s![i..i + 1, .., .., ..]).into_dyn())
                .expect("predict one row");
            let inside = whole.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
            assert!(
                bits(&alone) == bits(&inside),
                "{path}: row {i} alone differs from row {i} inside the batch"
            );
        }
    }
}

#[test]
fn autoencoder_reconstructs_like_tract() {
    if !ort_or_skip("autoencoder_reconstructs_like_tract") {
        return;
    }
    let ort = OrtModel::with_options(AE, 2, Some(4)).expect("load AE");
    assert_eq!(ort.output_item_shape(), &[28, 28, 1]);
    let batch = images(&[2953, 340, 0, 1, 2]);
    let a = ort.predict(batch.view()).expect("ort predict");
    assert_eq!(a.shape(), &[5, 28, 28, 1]);
    let b = OnnxModel::with_threads(AE, 1)
        .expect("tract AE")
        .predict(batch.view())
        .expect("tract predict");
    let diff = max_abs_diff(&a, &b);
    assert!(diff <= 1e-4, "AE outputs differ by {diff}");
    // A reconstruction resembles its input.
    let err = max_abs_diff(&a, &batch);
    assert!(err < 0.9, "reconstruction error {err}");
}

#[test]
fn empty_batch_gives_empty_output() {
    if !ort_or_skip("empty_batch_gives_empty_output") {
        return;
    }
    let model = OrtModel::with_options(CNN, 2, Some(8)).expect("load");
    let out = model
        .predict(ArrayD::zeros(IxDyn(&[0, 28, 28, 1])).view())
        .expect("predict");
    assert_eq!(out.shape(), &[0, 10]);
}

#[test]
fn wrong_batch_shape_is_invalid_input_naming_the_expected_shape() {
    if !ort_or_skip("wrong_batch_shape_is_invalid_input_naming_the_expected_shape") {
        return;
    }
    let model = OrtModel::with_options(CNN, 1, Some(8)).expect("load");
    let err = model
        .predict(ArrayD::zeros(IxDyn(&[2, 28, 28])).view())
        .expect_err("wrong rank");
    match &err {
        MaxiError::InvalidInput { message, .. } => {
            assert!(message.contains("[B, 28, 28, 1]"), "{message}");
            assert!(message.contains("[2, 28, 28]"), "{message}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn missing_and_garbage_files_are_model_load_errors() {
    let missing = OrtModel::load("/definitely/not/here.onnx").expect_err("missing file");
    match &missing {
        MaxiError::ModelLoad { path, message } => {
            assert!(path.contains("here.onnx"));
            assert!(message.contains("no such file"), "{message}");
        }
        other => panic!("expected ModelLoad, got {other:?}"),
    }
    let dir = tmp_dir("garbage");
    let dir_err = OrtModel::load(&dir).expect_err("directory");
    assert!(
        matches!(dir_err, MaxiError::ModelLoad { .. }),
        "{dir_err:?}"
    );
    if !ort_or_skip("missing_and_garbage_files_are_model_load_errors (garbage part)") {
        return;
    }
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf \x00\x01\x02 at all").expect("write");
    let err = OrtModel::load(&garbage).expect_err("garbage");
    match &err {
        MaxiError::ModelLoad { path, message } => {
            assert!(path.contains("garbage.onnx"));
            assert!(message.contains("cannot load the model"), "{message}");
        }
        other => panic!("expected ModelLoad, got {other:?}"),
    }
    let truncated = dir.join("truncated.onnx");
    let bytes = std::fs::read(CNN).expect("read cnn");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
    let err = OrtModel::load(&truncated).expect_err("truncated");
    assert!(matches!(err, MaxiError::ModelLoad { .. }), "{err:?}");
}

#[test]
fn bogus_ort_dylib_path_gives_the_install_message() {
    let bogus = OsStr::new("/no/such/dir/libonnxruntime.so.1.32.0");
    let python_asked = std::cell::Cell::new(false);
    let err = locate_library(Some(bogus), || {
        python_asked.set(true);
        None
    })
    .expect_err("bogus path");
    assert!(
        !python_asked.get(),
        "a set ORT_DYLIB_PATH must not fall back to python"
    );
    assert!(err.0.contains(ENV_VAR), "{err}");
    assert!(
        err.0.contains("/no/such/dir/libonnxruntime.so.1.32.0"),
        "{err}"
    );
    assert!(err.0.contains(&install_command()), "{err}");
    assert!(install_command().starts_with("python3 -m pip install onnxruntime=="));
}

#[test]
fn no_env_var_and_no_python_package_gives_the_install_message() {
    for env in [None, Some(OsStr::new(""))] {
        let err = locate_library(env, || None).expect_err("nothing installed");
        assert!(err.0.contains("not found"), "{err}");
        assert!(err.0.contains(ENV_VAR), "{err}");
        assert!(err.0.contains(&install_command()), "{err}");
        assert!(
            err.0.contains(&format!("1.{MIN_ORT_MINOR} or newer")),
            "{err}"
        );
    }
}

#[test]
fn python_package_folder_is_searched_in_capi() {
    let pkg = tmp_dir("fake-onnxruntime-package");
    // A package without the library: says to reinstall.
    let err = locate_library(None, || Some(pkg.clone())).expect_err("no capi");
    assert!(err.0.contains("reinstall"), "{err}");
    assert!(err.0.contains(&install_command()), "{err}");
    if !cfg!(target_os = "linux") {
        return;
    }
    let capi = pkg.join("capi");
    std::fs::create_dir_all(&capi).expect("capi");
    for name in [
        "libonnxruntime_providers_shared.so",
        "libonnxruntime.so.1.32.0",
        "__init__.py",
    ] {
        std::fs::write(capi.join(name), b"").expect("write");
    }
    let (lib, source) = locate_library(None, || Some(pkg.clone())).expect("found");
    assert_eq!(lib, capi.join("libonnxruntime.so.1.32.0"));
    assert_eq!(source, LibrarySource::PythonPackage(pkg.clone()));
    // ORT_DYLIB_PATH may name the folder too.
    let (lib, source) = locate_library(Some(capi.as_os_str()), || None).expect("found");
    assert_eq!(lib, capi.join("libonnxruntime.so.1.32.0"));
    assert_eq!(source, LibrarySource::EnvVar);
}

#[test]
fn loaded_library_is_recent_enough() {
    if !ort_or_skip("loaded_library_is_recent_enough") {
        return;
    }
    let rt = maxi_onnxruntime::runtime().expect("runtime");
    let minor: u32 = rt
        .version()
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("version 1.x.y");
    assert!(minor >= MIN_ORT_MINOR, "{rt:?}");
    eprintln!(
        "ONNX Runtime {} from {} ({})",
        rt.version(),
        rt.path().display(),
        rt.source()
    );
}

#[test]
fn registered_as_onnxruntime_and_ort_without_claiming_onnx_files() {
    let registry = maxi::registry::global().expect("registry");
    let c = registry
        .get::<maxi::ModelKind>("onnxruntime")
        .expect("onnxruntime");
    assert_eq!(c.meta.name, "onnxruntime");
    assert_eq!(
        registry
            .get::<maxi::ModelKind>("ort")
            .expect("alias")
            .meta
            .name,
        "onnxruntime"
    );
    assert_eq!(
        c.meta.accepted_kwargs(),
        vec![
            "batch_size".to_string(),
            "output".into(),
            "path".into(),
            "squeeze".into(),
            "threads".into()
        ]
    );
    let tract = registry.model_for_extension("onnx").expect("onnx backend");
    assert_eq!(tract.meta.name, "onnx");
    let unknown = c
        .prepare(
            &Kwargs::new()
                .set("path", CNN)
                .and_then(|k| k.set("thread", 2))
                .expect("kw"),
        )
        .err()
        .expect("unknown kwarg");
    assert!(
        matches!(unknown, MaxiError::UnknownKwarg { .. }),
        "{unknown:?}"
    );
    let zero = c
        .prepare(
            &Kwargs::new()
                .set("path", CNN)
                .and_then(|k| k.set("batch_size", 0))
                .expect("kw"),
        )
        .err()
        .expect("batch_size 0 is an error");
    assert!(
        matches!(&zero, MaxiError::InvalidKwarg { field, .. } if field == "batch_size"),
        "{zero:?}"
    );
    if !ort_or_skip("registered_as_onnxruntime_and_ort_without_claiming_onnx_files (build part)") {
        return;
    }
    let kwargs = Kwargs::new()
        .set("path", "mnist_cnn.onnx")
        .and_then(|k| k.set("threads", 2))
        .expect("kw");
    let parsed = c.prepare(&kwargs).expect("parse");
    let base = Path::new(CNN).parent().expect("fixtures dir");
    assert!(
        c.meta.extensions.is_empty(),
        "must not claim extensions: {:?}",
        c.meta.extensions
    );
    let model = parsed
        .build(&ModelContext {
            base_dir: Some(base),
        })
        .expect("build from the registry");
    let out = model.predict(images(&[2953]).view()).expect("predict");
    assert_eq!(out.shape(), &[1, 10]);
}

/// CPU ticks (1/100 s on Linux) used by the whole machine and by this process so far; `None`
/// off Linux.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy =
        fields.first()? + fields.get(1)? + fields.get(2)? + fields.get(5)? + fields.get(6)?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &own[own.rfind(')')? + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let me = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((busy, me))
}

/// Throughput on the CNN with 101-row batches (one URV step with q = 100), for the crate docs:
/// `cargo test --release -p maxi-onnxruntime -- --ignored --nocapture throughput`.
///
/// The development machine is shared with other builds, so configurations are interleaved in
/// many 0.4 s windows, and a window counts only when other processes used under 5 % of the
/// machine during it (read from `/proc/stat`); the best and median of those are printed.
#[test]
#[ignore = "timing measurement; run explicitly"]
fn throughput() {
    if !ort_or_skip("throughput") {
        return;
    }
    let cores = maxi_onnxruntime::default_threads() as f64;
    let batch = urv_like_batch();
    let mut configs = Vec::new();
    for threads in [1, 2] {
        for batch_size in [
            None,
            Some(4),
            Some(8),
            Some(13),
            Some(16),
            Some(26),
            Some(51),
        ] {
            let model = OrtModel::with_options(CNN, threads, batch_size).expect("load");
            model.predict(batch.view()).expect("warm up");
            configs.push((threads, batch_size, model, Vec::new(), 0usize));
        }
    }
    let rounds: usize = std::env::var("MAXI_THROUGHPUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    for _round in 0..rounds {
        for (_, _, model, rates, noisy) in configs.iter_mut() {
            let before = cpu_ticks();
            let start = Instant::now();
            let mut rows = 0;
            while start.elapsed().as_secs_f64() < 0.4 {
                model.predict(batch.view()).expect("predict");
                rows += 101;
            }
            let secs = start.elapsed().as_secs_f64();
            let others = match (before, cpu_ticks()) {
                (Some((b0, m0)), Some((b1, m1))) => {
                    (b1 - b0).saturating_sub(m1 - m0) as f64 / (secs * 100.0 * cores)
                }
                _ => 0.0,
            };
            if others < 0.05 {
                rates.push(rows as f64 / secs);
            } else {
                *noisy += 1;
            }
        }
    }
    for (threads, batch_size, _, rates, noisy) in configs.iter_mut() {
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => println!("threads {threads} batch_size {batch_size:>8?}: no quiet window"),
            n => println!(
                "threads {threads} batch_size {batch_size:>8?}: best {:>6.0}, median {:>6.0} rows/s \
                 ({n} quiet windows, {noisy} discarded)",
                rates[n - 1],
                rates[n / 2]
            ),
        }
    }
}
