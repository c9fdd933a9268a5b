//! Integration tests of the `maxi` binary: they run the real executable on the bundled MNIST
//! CNN. Runs are short (10 updates of 1 + 10 rows) except the main job and the PN job.

use std::path::{Path, PathBuf};

use maxi::serde_json::{self, Value};

mod common;
use common::{cnn, maxi, pp_toml, report, stderr_of, stdout_of};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mnist")
}

/// Asserts that a run completed: exit 0, or 3 when it wrote its outputs but found no valid
/// explanation (the short configs below are too short to find one; these tests check the
/// plumbing).
fn completed(o: &std::process::Output) {
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A short PP config (TOML) on MNIST test image 2953; `extra` is appended to [loss].
fn short_toml(extra_loss: &str) -> String {
    pp_toml(
        "num_iter = 10\nsave_freq = 5\nseed = 3",
        "",
        "path = \"mnist:2953\"",
        &format!("no_info_val = -0.5\n{extra_loss}"),
        "l2 = 0.0",
        "name = \"urv\"\nsample_num = 10",
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

fn assert_empty_or_absent(dir: &Path) {
    if dir.exists() {
        let left: Vec<_> = std::fs::read_dir(dir)
            .expect("read out dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "files left in {}: {left:?}", dir.display());
    }
}

/// Runs `maxi explain` with `args` plus `--out`, expects exit 2 and every `needles` in stderr,
/// and checks that nothing was written (also no staging folder beside --out).
fn expect_usage_error(args: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let output = maxi()
        .arg("explain")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run maxi");
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
    assert_empty_or_absent(&out);
    let siblings: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read tmp")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(siblings.is_empty(), "left beside --out: {siblings:?}");
}

/// A config file with `text` in a fresh temp dir; returns (dir guard, config path as string).
fn config(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), name, text);
    (dir, p.display().to_string())
}

#[test]
fn help_version_and_missing_subcommand() {
    maxi().arg("--help").assert().code(0);
    maxi().arg("--version").assert().code(0);
    maxi().args(["explain", "--help"]).assert().code(0);
    maxi().assert().code(2);
    maxi().arg("frobnicate").assert().code(2);
    maxi().args(["explain", "--seed", "x"]).assert().code(2);
}

#[test]
fn list_shows_every_component_with_kwargs() {
    let output = maxi().arg("list").output().expect("run");
    assert!(output.status.success());
    let text = stdout_of(&output);
    for needle in [
        "cem",
        "CEMLoss",
        "urv",
        "usrv",
        "ao_exp_grad",
        "ada_exp_grad",
        "onnx",
        "mode: \"PP\" | \"PN\"",
        "sample_num: integer = 100",
        "l1: number = 0.5",
        "AE: model file?",
    ] {
        assert!(text.contains(needle), "list lacks `{needle}`:\n{text}");
    }
}

#[test]
fn list_json_has_kinds_names_docs_and_schemas() {
    let output = maxi().args(["list", "--json"]).output().expect("run");
    assert!(output.status.success());
    let v: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let arr = v.as_array().expect("array");
    for c in arr {
        for key in ["kind", "name", "aliases", "doc", "kwargs_schema"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }
    let find = |kind: &str, name: &str| {
        arr.iter()
            .find(|c| c["kind"] == kind && c["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} not listed"))
    };
    let cem = find("loss", "cem");
    assert!(
        cem["aliases"]
            .as_array()
            .expect("aliases")
            .iter()
            .any(|a| a == "CEMLoss")
    );
    let props = &cem["kwargs_schema"]["properties"];
    for k in ["mode", "c", "K", "gamma", "AE", "no_info_val"] {
        assert!(props.get(k).is_some(), "cem kwarg {k} missing");
    }
    assert_eq!(props["c"]["default"], 1.0);
    find("gradient", "urv");
    find("gradient", "usrv");
    find("optimizer", "ao_exp_grad");
    find("optimizer", "ada_exp_grad");
    find("model", "onnx");
}

#[test]
fn list_kind_filters_and_rejects_unknown_kinds() {
    let output = maxi()
        .args(["list", "--kind", "gradient", "--json"])
        .output()
        .expect("run");
    let v: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let kinds: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == "gradient"),
        "{kinds:?}"
    );
    let output = maxi()
        .args(["list", "--kind", "lossy"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("lossy"));
}

#[test]
fn main_job_with_defaults_writes_files_and_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("maxi-out");
    let output = maxi()
        .arg("explain")
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("main job"), "{stderr}");
    // not a terminal: plain progress lines, with the search's rounds
    assert!(stderr.contains("round 1/9 (c = 10.0)"), "{stderr}");
    assert!(stderr.contains("iteration 1/398"), "{stderr}");
    let verdict = stdout.lines().next().expect("verdict line");
    assert!(
        verdict.starts_with("PP: ") && verdict.ends_with(" of 784 pixels keep class 5"),
        "{stdout}"
    );
    assert!(stdout.contains("maxi-out"), "{stdout}");
    let r = report(&out);
    assert_eq!(r["original_class"], 5);
    assert_eq!(r["explanation_class"], 5);
    assert_eq!(r["valid"], true);
    let nonzero = r["nonzero"].as_u64().expect("nonzero");
    assert!((1..=90).contains(&nonzero), "nonzero {nonzero}");
    assert_eq!(verdict, format!("PP: {nonzero} of 784 pixels keep class 5"));
    let rows = r["model_rows"].as_u64().expect("rows");
    assert!(rows <= 20_000 && rows > 10_000, "rows {rows}");
    assert_eq!(r["seed"], 0);
    let rounds = r["rounds"].as_array().expect("rounds");
    let records: u64 = rounds
        .iter()
        .map(|x| x["iterations"].as_u64().expect("n"))
        .sum();
    assert_eq!(
        r["history"].as_array().expect("history").len() as u64,
        records
    );
    for key in ["l1", "attack_loss", "model_calls", "wall_s", "model_s"] {
        assert!(r[key].is_number(), "{key}: {}", r[key]);
    }
    // the resolved config has every default filled in
    assert_eq!(r["config"]["loss"]["mode"], "PP");
    assert_eq!(r["config"]["loss"]["pn_target"], Value::Null);
    assert_eq!(r["config"]["gradient"]["batch_num"], 1);
    assert_eq!(r["config"]["model"]["backend"], "onnx");
    assert_eq!(r["config"]["generator"]["num_iter"], 398);
    assert_eq!(r["config"]["search"]["budget_rows"], 20_000);
    // savepoints of the round the explanation comes from, from its first update on
    let saved = r["savepoints"].as_array().expect("savepoints");
    assert!(saved.iter().any(|s| s["iteration"] == 1));
    for s in saved {
        let t = s["iteration"].as_u64().expect("t");
        assert!(out.join(format!("iter_{t}.npy")).is_file(), "iter_{t}.npy");
        assert!(out.join(format!("iter_{t}.png")).is_file(), "iter_{t}.png");
    }
    for f in ["explanation.png", "heatmap.png"] {
        let img = image::open(out.join(f)).expect("PNG opens");
        assert_eq!(img.height(), 224, "{f}");
    }
    // explanation.npy holds the explanation: the model keeps class 5 on it
    let best: ndarray::ArrayD<f64> =
        ndarray_npy::read_npy(out.join("explanation.npy")).expect("npy");
    assert_eq!(best.shape(), &[28, 28, 1]);
    let kept = best.iter().filter(|v| (**v + 0.5).abs() > 1e-3).count() as u64;
    assert_eq!(kept, nonzero);
}

#[test]
fn no_valid_explanation_is_said_plainly_and_exits_3_with_the_outputs_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("weak.toml");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mnist/mnist_cnn.onnx");
    // two updates with a weak attack term cannot change the class
    std::fs::write(
        &cfg,
        format!(
            "[generator]\nnum_iter = 2\n[model]\npath = {model:?}\n[input]\npath = \"mnist:340\"\n\
             [loss]\nname = \"cem\"\nmode = \"PN\"\nc = 0.1\nK = 2.0\nlower = 0.0\n\
             [optimizer]\nname = \"ao_exp_grad\"\nl1 = 5.0\n[gradient]\nname = \"urv\"\nsample_num = 9\n"
        ),
    )
    .expect("config");
    let out = tmp.path().join("out");
    let output = maxi()
        .args(["explain", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    assert!(
        stdout.starts_with("PN: no valid pertinent negative found within the budget"),
        "{stdout}"
    );
    let r = report(&out);
    assert_eq!(r["valid"], false);
    assert_eq!(r["result"]["valid"], false);
    assert!(out.join("explanation.npy").is_file());
    assert!(out.join("explanation.png").is_file());
}

#[test]
fn eval_prints_the_quality_table() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mnist_pn.toml");
    let output = maxi()
        .args(["eval", "--quiet", "--inputs", "mnist:0..2", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    let row = stdout
        .lines()
        .find(|l| l.contains("mnist_pn.toml (PN)"))
        .expect("table row");
    // both explanations valid by the model's class on the saved .npy and by the loss
    assert!(row.contains("| 100 % (2/2) | 100 % (2/2) |"), "{row}");
    assert!(stdout.contains("2 explanations in"), "{stdout}");
}

#[test]
fn pn_job_changes_the_class() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("pn");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mnist_pn.toml");
    let output = maxi()
        .arg("explain")
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
    let r = report(&out);
    assert_eq!(r["mode"], "PN");
    assert_eq!(r["original_class"], 3);
    assert_ne!(r["explanation_class"], 3);
    let n = r["nonzero"].as_u64().expect("nonzero");
    assert!((1..=40).contains(&n), "{n}");
    assert!(
        r["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("PN: adding {n} pixels turns class 3 into "))),
        "{}",
        r["verdict"]
    );
    let img = image::open(out.join("explanation.png")).expect("PNG");
    assert!(img.width() > 3 * 224, "PN shows x, δ and x + δ");
}

#[test]
fn toml_and_json_configs_give_identical_results() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let toml_text = short_toml("");
    let toml_path = write(tmp.path(), "c.toml", &toml_text);
    let table: toml::Table = toml::from_str(&toml_text).expect("toml");
    let json_path = write(
        tmp.path(),
        "c.json",
        &serde_json::to_string_pretty(&table).expect("json"),
    );
    let mut reports = Vec::new();
    for (cfg, out) in [(&toml_path, "out-toml"), (&json_path, "out-json")] {
        let out = tmp.path().join(out);
        maxi()
            .arg("explain")
            .arg("--config")
            .arg(cfg)
            .arg("--out")
            .arg(&out)
            .arg("-q")
            .output()
            .map(|o| completed(&o))
            .expect("run");
        reports.push((report(&out), out));
    }
    let ((a, da), (b, db)) = (&reports[0], &reports[1]);
    for key in [
        "original_class",
        "explanation_class",
        "nonzero",
        "l1",
        "attack_loss",
        "model_rows",
        "model_calls",
        "seed",
        "config",
        "history",
        "files",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    for t in [1, 5, 10] {
        let name = format!("iter_{t}.npy");
        assert_eq!(
            std::fs::read(da.join(&name)).expect("npy"),
            std::fs::read(db.join(&name)).expect("npy"),
            "{name}"
        );
    }
}

#[test]
fn threads_and_batch_size_reach_the_backend() {
    let (dir, cfg) = config("c.toml", &short_toml(""));
    let run = |extra: &[&str], out: &str| {
        let out = dir.path().join(out);
        maxi()
            .args(["explain", "-q", "--config", &cfg])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .map(|o| completed(&o))
            .expect("run");
        std::fs::read(out.join("iter_10.npy")).expect("npy")
    };
    // one row per call (the default, or batch_size 1) is bit-identical for any thread count
    let one = run(&["--threads", "1"], "a");
    assert_eq!(one, run(&["--threads", "2", "--batch-size", "1"], "b"));
    // chunks of 4 rows: another plan, the same for any thread count
    let chunked = run(&["--threads", "1", "--batch-size", "4"], "c");
    assert_eq!(chunked, run(&["--threads", "2", "--batch-size", "4"], "d"));
    expect_usage_error(&["--config", &cfg, "--batch-size", "0"], &["--batch-size"]);
}

#[test]
fn searches_give_the_same_bytes_whatever_the_thread_count() {
    let search = format!(
        "{}\n[search]\nmethod = \"c\"\nsteps = 3\nbudget_rows = 400\npatience = 4\n",
        short_toml("")
    );
    let (dir, cfg) = config("c.toml", &search);
    let run = |threads: &str, out: &str| {
        let out = dir.path().join(out);
        maxi()
            .args(["explain", "-q", "--config", &cfg, "--threads", threads])
            .arg("--out")
            .arg(&out)
            .output()
            .map(|o| completed(&o))
            .expect("run");
        let r = report(&out);
        (
            std::fs::read(out.join("explanation.npy")).expect("npy"),
            r["rounds"].clone(),
            r["model_rows"].clone(),
        )
    };
    let one = run("1", "a");
    assert!(one.1.as_array().is_some_and(|r| r.len() > 1), "{:?}", one.1);
    assert_eq!(one, run("2", "b"));
}

#[test]
fn seed_option_overrides_the_config_and_same_seed_repeats() {
    let (dir, cfg) = config("c.toml", &short_toml(""));
    let run = |seed: &str, out: &str| {
        let out = dir.path().join(out);
        maxi()
            .args(["explain", "-q", "--config", &cfg, "--seed", seed, "--out"])
            .arg(&out)
            .output()
            .map(|o| completed(&o))
            .expect("run");
        (
            report(&out),
            std::fs::read(out.join("iter_10.npy")).expect("npy"),
        )
    };
    let (r1, n1) = run("11", "a");
    let (r2, n2) = run("11", "b");
    let (r3, n3) = run("12", "c");
    assert_eq!(r1["seed"], 11);
    assert_eq!(r1["config"]["generator"]["seed"], 11);
    assert_eq!(n1, n2);
    assert_eq!(r1["history"], r2["history"]);
    assert_ne!(n1, n3);
    assert_eq!(r3["seed"], 12);
}

#[test]
fn npy_and_png_inputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_d, cfg) = config("c.toml", &short_toml(""));
    let x = maxi::mnist::test_image(2953).expect("mnist");
    // float32 with a leading batch axis of 1
    let x32 = x
        .mapv(|v| v as f32)
        .insert_axis(ndarray::Axis(0))
        .into_dyn();
    let npy = tmp.path().join("x.npy");
    ndarray_npy::write_npy(&npy, &x32).expect("write npy");
    let out = tmp.path().join("out-npy");
    maxi()
        .args(["explain", "-q", "--config", &cfg, "--input"])
        .arg(&npy)
        .arg("--out")
        .arg(&out)
        .output()
        .map(|o| completed(&o))
        .expect("run");
    let r = report(&out);
    assert_eq!(r["original_class"], 5);
    assert_eq!(r["input"]["shape"], serde_json::json!([28, 28, 1]));
    // the same digit as a grey PNG, pixels mapped to [-0.5, 0.5]
    let pixels: Vec<u8> = x
        .iter()
        .map(|v| ((v + 0.5) * 255.0).round() as u8)
        .collect();
    let img = image::GrayImage::from_raw(28, 28, pixels).expect("image");
    let png = tmp.path().join("x.png");
    img.save(&png).expect("save png");
    let out = tmp.path().join("out-png");
    maxi()
        .args([
            "explain",
            "-q",
            "--config",
            &cfg,
            "--pixel-range",
            "-0.5,0.5",
            "--input",
        ])
        .arg(&png)
        .arg("--out")
        .arg(&out)
        .output()
        .map(|o| completed(&o))
        .expect("run");
    let r2 = report(&out);
    assert_eq!(r2["original_class"], 5);
    let stored: ndarray::ArrayD<f64> = ndarray_npy::read_npy(out.join("iter_1.npy")).expect("npy");
    assert_eq!(stored.shape(), &[28, 28, 1]);
    assert_eq!(
        r2["config"]["input"]["pixel_range"],
        serde_json::json!([-0.5, 0.5])
    );
}

#[test]
fn relative_model_kwargs_resolve_against_the_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixtures().join("mnist_ae.onnx"), tmp.path().join("ae.onnx")).expect("copy");
    let cfg = write(
        tmp.path(),
        "c.toml",
        &short_toml("AE = \"ae.onnx\"").replace("gamma = 0.0", "gamma = 1.0"),
    );
    let out = tmp.path().join("out");
    // run from another folder: the AE path is relative to the config, not the current folder
    maxi()
        .current_dir(std::env::temp_dir())
        .args(["explain", "-q", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .map(|o| completed(&o))
        .expect("run");
    assert!(
        report(&out)["config"]["loss"]["AE"]
            .as_str()
            .is_some_and(|s| s.ends_with("ae.onnx"))
    );
}

#[test]
fn progress_lines_and_quiet() {
    let (dir, cfg) = config("c.toml", &short_toml(""));
    let out = dir.path().join("o");
    let output = maxi()
        .args(["explain", "--config", &cfg, "--out"])
        .arg(&out)
        .output()
        .expect("run");
    let err = stderr_of(&output);
    assert!(err.contains("iteration 10/10: attack loss"), "{err}");
    assert!(err.contains("rows/s"), "{err}");
    let output = maxi()
        .args(["explain", "--quiet", "--config", &cfg, "--out"])
        .arg(&out)
        .output()
        .expect("run");
    completed(&output);
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
}

#[test]
fn rerun_replaces_outputs_and_foreign_files_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_d, cfg) = config("c.toml", &short_toml(""));
    let cfg2 = write(
        tmp.path(),
        "c2.toml",
        &short_toml("").replace("save_freq = 5", "save_freq = 3"),
    );
    let out = tmp.path().join("out");
    let run = |cfg: &str| {
        maxi()
            .args(["explain", "-q", "--config", cfg, "--out"])
            .arg(&out)
            .output()
            .expect("run")
    };
    completed(&run(&cfg));
    assert!(out.join("iter_5.npy").is_file());
    completed(&run(&cfg2.display().to_string()));
    assert!(out.join("iter_3.npy").is_file());
    assert!(!out.join("iter_5.npy").exists(), "stale savepoint kept");
    std::fs::write(out.join("notes.txt"), "mine").expect("write");
    let output = run(&cfg);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("notes.txt"));
    assert!(out.join("notes.txt").is_file() && out.join("iter_3.npy").is_file());
}

// ---- bad inputs: exit 2, a message naming the problem, nothing written ----

#[test]
fn unknown_component_is_named() {
    let (_d, cfg) = config(
        "c.toml",
        &short_toml("").replace("name = \"urv\"", "name = \"urvv\""),
    );
    expect_usage_error(
        &["--config", &cfg],
        &["urvv", "[gradient]", "c.toml", "urv"],
    );
}

#[test]
fn unknown_kwarg_is_named() {
    let (_d, cfg) = config("c.toml", &short_toml("foo = 1"));
    expect_usage_error(&["--config", &cfg], &["`foo`", "[loss]", "c.toml"]);
}

#[test]
fn wrong_kwarg_type_is_named() {
    let (_d, cfg) = config("c.toml", &short_toml("").replace("c = 10.0", "c = \"big\""));
    expect_usage_error(&["--config", &cfg], &["`c`", "[loss]", "c.toml"]);
}

#[test]
fn unknown_table_and_generator_key_are_named() {
    let (_d, cfg) = config("c.toml", &format!("{}\n[extras]\nx = 1\n", short_toml("")));
    expect_usage_error(&["--config", &cfg], &["`extras`", "c.toml"]);
    let (_d, cfg) = config("c.toml", &short_toml("").replace("seed = 3", "seeds = 3"));
    expect_usage_error(&["--config", &cfg], &["`seeds`", "[generator]", "c.toml"]);
}

#[test]
fn zero_iterations_are_refused() {
    let (_d, cfg) = config(
        "c.toml",
        &short_toml("").replace("num_iter = 10", "num_iter = 0"),
    );
    expect_usage_error(&["--config", &cfg], &["num_iter", "[generator]", "c.toml"]);
}

#[test]
fn missing_model_file_is_named() {
    let (_d, cfg) = config("c.toml", &short_toml(""));
    expect_usage_error(
        &["--config", &cfg, "--model", "no/such/model.onnx"],
        &["no/such/model.onnx", "not found", "--model"],
    );
    let (_d, cfg) = config("c.toml", &short_toml("").replace(&cnn(), "missing.onnx"));
    expect_usage_error(
        &["--config", &cfg],
        &["missing.onnx", "[model] path", "c.toml"],
    );
}

#[test]
fn missing_model_kwarg_file_is_named() {
    let (_d, cfg) = config(
        "c.toml",
        &short_toml("AE = \"nope-ae.onnx\"").replace("gamma = 0.0", "gamma = 1.0"),
    );
    expect_usage_error(&["--config", &cfg], &["nope-ae.onnx"]);
}

#[test]
fn input_of_the_wrong_shape_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_d, cfg) = config("c.toml", &short_toml(""));
    let npy = tmp.path().join("small.npy");
    ndarray_npy::write_npy(&npy, &ndarray::Array3::<f64>::zeros((27, 28, 1))).expect("npy");
    let npy = npy.display().to_string();
    expect_usage_error(
        &["--config", &cfg, "--input", &npy],
        &["small.npy", "[27, 28, 1]", "[28, 28, 1]"],
    );
    let png = tmp.path().join("big.png");
    image::GrayImage::new(32, 32).save(&png).expect("png");
    let png = png.display().to_string();
    expect_usage_error(
        &["--config", &cfg, "--input", &png],
        &["big.png", "32×32", "28×28"],
    );
}

#[test]
fn nan_in_the_input_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_d, cfg) = config("c.toml", &short_toml(""));
    let mut x = maxi::mnist::test_image(2953).expect("mnist");
    x[[3, 4, 0]] = f64::NAN;
    let npy = tmp.path().join("nan.npy");
    ndarray_npy::write_npy(&npy, &x).expect("npy");
    let npy = npy.display().to_string();
    expect_usage_error(
        &["--config", &cfg, "--input", &npy],
        &["nan.npy", "NaN", "[3, 4, 0]"],
    );
}

#[test]
fn other_bad_inputs() {
    let (_d, cfg) = config("c.toml", &short_toml(""));
    // missing input file, unknown input syntax, bad config format and file, bad pixel range
    expect_usage_error(
        &["--config", &cfg, "--input", "nope.npy"],
        &["nope.npy", "not found"],
    );
    expect_usage_error(&["--config", &cfg, "--input", "mnist:abc"], &["mnist:abc"]);
    expect_usage_error(&["--config", &cfg, "--input", "mnist:10000"], &["10000"]);
    let (_d2, yaml) = config("c.yaml", "loss: {}");
    expect_usage_error(&["--config", &yaml], &["c.yaml", ".toml"]);
    let (_d3, broken) = config("c.toml", "[loss\nname = 1");
    expect_usage_error(&["--config", &broken], &["c.toml", "TOML"]);
    expect_usage_error(
        &["--config", "no-such-config.toml"],
        &["no-such-config.toml"],
    );
    expect_usage_error(&["--config", &cfg, "--pixel-range", "1,0"], &["1,0"]);
    // a backend that does not exist, a threads value the backend rejects
    expect_usage_error(
        &["--config", &cfg, "--backend", "tflite"],
        &["tflite", "onnx"],
    );
    expect_usage_error(&["--config", &cfg, "--threads", "0"], &["--threads"]);
    // a component table without name
    let (_d4, noname) = config(
        "c.toml",
        &short_toml("").replace("name = \"ao_exp_grad\"", ""),
    );
    expect_usage_error(&["--config", &noname], &["[optimizer]", "`name`", "c.toml"]);
}

// ---- a failure while running: exit 1, nothing written ----

/// Protobuf encoding helpers for a tiny hand-made ONNX model.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_int(num: u64, v: u64, out: &mut Vec<u8>) {
    varint(num << 3, out);
    varint(v, out);
}

fn field_bytes(num: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((num << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// ONNX `Y = Log(X)` with X, Y float32 of shape [N, 2]: a "classifier" of two scores that
/// returns -inf or NaN once an entry of its input reaches 0 or below.
fn log_model_onnx() -> Vec<u8> {
    let value_info = |name: &str| {
        let mut dim_n = Vec::new();
        field_bytes(2, b"N", &mut dim_n);
        let mut dim_2 = Vec::new();
        field_int(1, 2, &mut dim_2);
        let mut shape = Vec::new();
        field_bytes(1, &dim_n, &mut shape);
        field_bytes(1, &dim_2, &mut shape);
        let mut tensor = Vec::new();
        field_int(1, 1, &mut tensor); // FLOAT
        field_bytes(2, &shape, &mut tensor);
        let mut ty = Vec::new();
        field_bytes(1, &tensor, &mut ty);
        let mut vi = Vec::new();
        field_bytes(1, name.as_bytes(), &mut vi);
        field_bytes(2, &ty, &mut vi);
        vi
    };
    let mut node = Vec::new();
    field_bytes(1, b"X", &mut node);
    field_bytes(2, b"Y", &mut node);
    field_bytes(3, b"log", &mut node);
    field_bytes(4, b"Log", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"g", &mut graph);
    field_bytes(11, &value_info("X"), &mut graph);
    field_bytes(12, &value_info("Y"), &mut graph);
    let mut opset = Vec::new();
    field_bytes(1, b"", &mut opset);
    field_int(2, 13, &mut opset);
    let mut model = Vec::new();
    field_int(1, 8, &mut model); // ir_version
    field_bytes(2, b"maxi-cli-test", &mut model);
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    model
}

#[test]
fn model_failure_while_running_exits_1_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("log.onnx"), log_model_onnx()).expect("onnx");
    ndarray_npy::write_npy(tmp.path().join("x.npy"), &ndarray::arr1(&[0.5f64, 2.0])).expect("npy");
    // PP pulls every entry to the no-information value 0, where log(0) = -inf
    let cfg = write(
        tmp.path(),
        "c.toml",
        r#"
[generator]
num_iter = 20
[model]
path = "log.onnx"
[input]
path = "x.npy"
[loss]
name = "cem"
mode = "PP"
[optimizer]
name = "ao_exp_grad"
l1 = 100.0
[gradient]
name = "urv"
sample_num = 4
"#,
    );
    let out = tmp.path().join("out");
    let output = maxi()
        .args(["explain", "-q", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("log.onnx") && err.contains("iteration"),
        "{err}"
    );
    assert!(err.contains("non-finite"), "{err}");
    assert!(!out.exists());
}
