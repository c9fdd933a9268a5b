//! No number a user types (in a config, on the command line, in an input file's header) may
//! crash `maxi`, take the machine or be silently ignored; signals and a broken stdout leave no
//! half-written or stray files. Runs the real binary on the bundled MNIST CNN.

use std::path::Path;
use std::process::{Command, Output};

fn maxi() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_maxi"));
    cmd.env_remove("MAXI_PLUGIN_PATH");
    cmd
}

fn cnn() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/mnist/mnist_cnn.onnx")
        .display()
        .to_string()
}

/// A PP config on MNIST test image 2953 with `num_iter` updates of 1 + 10 rows; `loss`,
/// `gradient`, `model` and `input` are appended to those tables.
fn toml(num_iter: usize, loss: &str, gradient: &str, model: &str, input: &str) -> String {
    format!(
        r#"[generator]
num_iter = {num_iter}
save_freq = 5
seed = 3

[model]
path = "{cnn}"
{model}

[input]
path = "mnist:2953"
{input}

[loss]
name = "cem"
mode = "PP"
c = 10.0
K = 2.0
gamma = 0.0
{loss}

[optimizer]
name = "ao_exp_grad"
l1 = 1.0

[gradient]
name = "urv"
sample_num = 10
{gradient}
"#,
        cnn = cnn()
    )
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Names in `dir` (none when it does not exist).
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `maxi explain ARGS --out DIR/out` in a fresh folder; expects exit 2, every needle in
/// stderr, and nothing written (no `out`, no staging folder).
fn expect_usage_error(files: &[(&str, &[u8])], args: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files {
        std::fs::write(tmp.path().join(name), bytes).expect("write test file");
    }
    let output = maxi()
        .current_dir(tmp.path())
        .arg("explain")
        .args(args)
        .args(["--out", "out"])
        .output()
        .expect("run maxi");
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
    let left: Vec<String> = names_in(tmp.path())
        .into_iter()
        .filter(|n| !files.iter().any(|(f, _)| f == n))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn non_finite_numbers_in_a_toml_config_are_refused_naming_table_key_and_file() {
    let cases = [
        (toml(3, "", "mu = nan", "", ""), "`mu = nan` in [gradient]"),
        (
            toml(3, "no_info_val = nan", "", "", ""),
            "`no_info_val = nan` in [loss]",
        ),
        (
            toml(3, "upper = inf", "", "", ""),
            "`upper = inf` in [loss]",
        ),
        (
            toml(3, "lower = -inf", "", "", ""),
            "`lower = -inf` in [loss]",
        ),
        (
            toml(3, "kappa = nan", "", "", ""),
            "`kappa = nan` in [loss]",
        ),
        (
            toml(3, "", "", "", "pixel_range = [-0.5, nan]"),
            "`pixel_range[1] = nan` in [input]",
        ),
    ];
    for (text, place) in cases {
        expect_usage_error(
            &[("c.toml", text.as_bytes())],
            &["--config", "c.toml"],
            &[&format!("{place} of c.toml: not a finite number")],
        );
    }
    // JSON has no NaN; `null` stays what it says: the default of an optional kwarg, an error
    // naming a required one
    let json = |gradient: &str, c: &str| {
        format!(
            r#"{{"generator": {{"num_iter": 2}}, "model": {{"path": "{}"}},
                "input": {{"path": "mnist:2953"}},
                "loss": {{"name": "cem", "mode": "PP", "c": {c}}},
                "optimizer": {{"name": "ao_exp_grad"}},
                "gradient": {{"name": "urv", "sample_num": 4, "mu": {gradient}}}}}"#,
            cnn()
        )
    };
    expect_usage_error(
        &[("c.json", json("null", "null").as_bytes())],
        &["--config", "c.json"],
        &["`c`", "[loss]", "null"],
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("c.json"), json("null", "1.0")).expect("write");
    let out = maxi()
        .current_dir(tmp.path())
        .args(["explain", "-q", "--config", "c.json", "--out", "out"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

#[test]
fn negative_numbers_on_the_command_line_name_the_option() {
    let cfg = toml(3, "", "", "", "");
    for (option, value, needle) in [
        (
            "--seed",
            "-1",
            "`-1` is not a seed; give a whole number 0..=18446744073709551615",
        ),
        ("--seed", "1e3", "`1e3` is not a seed"),
        ("--threads", "-1", "`-1` is not a thread count"),
        ("--batch-size", "-5", "`-5` is not a number of rows"),
    ] {
        expect_usage_error(
            &[("c.toml", cfg.as_bytes())],
            &["--config", "c.toml", option, value],
            &[option, needle],
        );
    }
}

#[test]
fn thread_and_batch_limits_are_checked_before_anything_is_started() {
    let cfg = toml(3, "", "", "", "");
    for (args, needles) in [
        (
            &["--threads", "100000"][..],
            &["`threads`", "at most 256"][..],
        ),
        (
            &["--batch-size", "10000"],
            &["`batch_size`", "at most 1024"],
        ),
        (
            &["--batch-size", "100000"],
            &["`batch_size`", "at most 1024"],
        ),
        (
            &["--backend", "onnxruntime", "--threads", "257"],
            &["`threads`", "at most 256"],
        ),
        (
            &["--backend", "onnxruntime", "--batch-size", "1025"],
            &["`batch_size`", "at most 1024"],
        ),
    ] {
        let mut all = vec!["--config", "c.toml"];
        all.extend_from_slice(args);
        expect_usage_error(&[("c.toml", cfg.as_bytes())], &all, needles);
    }
    let big = toml(3, "", "", "batch_size = 100000", "");
    expect_usage_error(
        &[("c.toml", big.as_bytes())],
        &["--config", "c.toml"],
        &["`batch_size`", "[model] of c.toml"],
    );
}
