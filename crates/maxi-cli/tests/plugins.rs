//! Dynamic plugins through the `maxi` binary: the seed tutorial's URV built as a `.so` by a
//! "third party", loaded with `--plugin` or `MAXI_PLUGIN_PATH`, and faults that must be
//! contained (exit 2 for load problems, 1 at run time, never an abort).

use std::path::{Path, PathBuf};

use maxi::serde_json::{self, Value};

mod common;
use common::{maxi, pp_toml, stderr_of};

#[path = "../../maxi-plugin-host/tests/common/mod.rs"]
mod plugin_fixtures;

/// A short PP config on MNIST test image 2953 with the given [gradient] table body.
fn config(dir: &Path, gradient: &str) -> PathBuf {
    let text = pp_toml(
        "num_iter = 8\nseed = 5",
        "",
        "path = \"mnist:2953\"",
        "no_info_val = -0.5",
        "l2 = 0.0",
        gradient,
    );
    let p = dir.join("cfg.toml");
    std::fs::write(&p, text).expect("config");
    p
}

fn empty_or_absent(dir: &Path) -> bool {
    !dir.exists()
        || std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}

#[test]
fn plugin_components_show_up_in_list_before_or_after_the_subcommand() {
    let so = plugin_fixtures::example_plugin();
    let out = maxi()
        .args(["--plugin", so.to_str().expect("path"), "list"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("urv_tutorial"));

    let out = maxi()
        .args(["list", "--json", "--kind", "gradient", "--plugin"])
        .arg(&so)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let entry = list
        .iter()
        .find(|c| c["name"] == "urv_tutorial")
        .expect("urv_tutorial listed");
    assert_eq!(entry["kind"], "gradient");
    assert!(
        entry["kwargs_schema"]["properties"]["num_iter"].is_object(),
        "{entry}"
    );
}

#[test]
fn maxi_plugin_path_is_read_from_the_environment() {
    let so = plugin_fixtures::example_plugin();
    let tmp = tempfile::tempdir().expect("tmp");
    // a folder holding only this plugin, and a file path
    let only = tmp.path().join("plugins");
    std::fs::create_dir_all(&only).expect("dir");
    std::fs::copy(&so, only.join("libtutorial.so")).expect("copy");
    for value in [only.display().to_string(), so.display().to_string()] {
        let out = maxi()
            .env("MAXI_PLUGIN_PATH", &value)
            .args(["list", "--kind", "gradient"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("urv_tutorial"));
    }
}

#[test]
fn explain_runs_with_the_tutorial_gradient_by_name() {
    let so = plugin_fixtures::example_plugin();
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "name = \"urv_tutorial\"\nnum_iter = 20");
    let out_dir = tmp.path().join("out");
    let out = maxi()
        .args(["explain", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .arg("--plugin")
        .arg(&so)
        .output()
        .expect("run");
    // 0, or 3 when the short run found no valid explanation: either way it ran and wrote
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        stderr_of(&out)
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("report.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(report["config"]["gradient"]["name"], "urv_tutorial");
    // the tutorial's estimator sends the base point and its 20 perturbations in one call:
    // 1 row for the original class, 21 per update, 1 for the last record
    assert_eq!(report["model_rows"], 1 + 8 * 21 + 1);
    assert_eq!(report["original_class"], 5);
    let history = report["history"].as_array().expect("history");
    assert_eq!(history.len(), 8);
    assert!(
        history
            .iter()
            .all(|r| r["attack_loss"].as_f64().is_some_and(f64::is_finite)),
        "{history:?}"
    );
    // (its estimates' statistics against the built-in URV's are checked on known functions in
    // crates/maxi-plugin-host/tests/dynamic.rs)

    // the same pipeline with the built-in non-batched URV costs the same rows
    let cfg = config(
        tmp.path(),
        "name = \"urv\"\nbatch_mode = false\nsample_num = 20",
    );
    let out_dir2 = tmp.path().join("out2");
    let out = maxi()
        .args(["explain", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_dir2)
        .output()
        .expect("run");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        stderr_of(&out)
    );
    let builtin: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir2.join("report.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(builtin["model_rows"], report["model_rows"]);
}

#[test]
fn load_faults_exit_2_and_name_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let not_a_lib = tmp.path().join("notes.so");
    std::fs::write(&not_a_lib, "not a library").expect("write");
    let (_, no_entry) = plugin_fixtures::faulty_plugins();
    let so = plugin_fixtures::example_plugin();
    let twin = tmp.path().join("libtwin.so");
    std::fs::copy(&so, &twin).expect("copy");
    let missing = tmp.path().join("missing.so");
    let cases: Vec<(Vec<PathBuf>, &str)> = vec![
        (vec![missing.clone()], "missing.so"),
        (vec![not_a_lib.clone()], "notes.so"),
        (vec![no_entry.clone()], "maxi_plugin_entry"),
        (vec![so.clone(), twin.clone()], "urv_tutorial"),
    ];
    for (plugins, needle) in cases {
        let mut cmd = maxi();
        for p in &plugins {
            cmd.arg("--plugin").arg(p);
        }
        let out = cmd.arg("list").output().expect("run");
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{plugins:?}: {err}");
        assert!(err.contains(needle), "{plugins:?}: {err}");
    }
}

#[test]
fn runtime_faults_exit_1_name_the_plugin_and_write_nothing() {
    let (faulty, _) = plugin_fixtures::faulty_plugins();
    let faulty = plugin_fixtures::private_copy(&faulty, "cli");
    for (fault, needle) in [
        ("panic_in_compute", "panic"),
        ("error_in_compute", "faulty"),
        ("wrong_shape", "shape"),
        ("nan", "non-finite"),
        ("panic_in_create", "panic"),
    ] {
        let tmp = tempfile::tempdir().expect("tmp");
        let cfg = config(
            tmp.path(),
            &format!("name = \"faulty\"\nfault = \"{fault}\""),
        );
        let out_dir = tmp.path().join("out");
        let out = maxi()
            .args(["explain", "--quiet", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out_dir)
            .arg("--plugin")
            .arg(&faulty)
            .output()
            .expect("run");
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{fault}: {err}");
        let name = faulty.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(err.contains(name), "{fault}: {err}");
        assert!(err.to_lowercase().contains(needle), "{fault}: {err}");
        assert!(
            empty_or_absent(&out_dir),
            "{fault}: files left in {}",
            out_dir.display()
        );
    }
    // an invalid kwarg of a plugin component is a usage error found before running
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "name = \"faulty\"\nlevel = -1.0");
    let out = maxi()
        .args(["explain", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--plugin")
        .arg(&faulty)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("level"), "{}", stderr_of(&out));
}
