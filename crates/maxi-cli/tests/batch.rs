//! `maxi batch` and `maxi merge` end to end on the bundled MNIST CNN, with short runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use maxi::serde_json::{self, Value};
use ndarray_npy::WriteNpyExt;

mod common;
use common::{maxi, pp_toml};

/// A short PP config: `num_iter` updates of 1 + `q` rows.
fn config(dir: &Path, num_iter: usize, q: usize) -> String {
    let text = pp_toml(
        &format!("num_iter = {num_iter}\nsave_freq = 5\nseed = 3"),
        "",
        "pixel_range = [-0.5, 0.5]",
        "no_info_val = -0.5",
        "l2 = 0.0",
        &format!("name = \"urv\"\nsample_num = {q}"),
    );
    let p = dir.join("short.toml");
    std::fs::write(&p, text).expect("write config");
    p.display().to_string()
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let o = maxi().args(args).output().expect("run maxi");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A result line without what depends on the machine (time) or the folder.
fn comparable(mut line: Value) -> Value {
    let m = line.as_object_mut().expect("object");
    m.remove("wall_s");
    m.remove("dir");
    line
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
        .expect("summary JSON")
}

fn explanation_bytes(out: &Path, id: &str) -> Vec<u8> {
    std::fs::read(out.join("inputs").join(id).join("explanation.npy")).expect("explanation.npy")
}

#[test]
fn results_are_the_same_for_any_worker_count_and_shard_split() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let cfg = config(t, 8, 9);
    let p = |n: &str| t.join(n).display().to_string();
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:20..27",
        "-o",
        &p("w1"),
        "--workers",
        "1",
        "-q",
    ]);
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:20..27",
        "-o",
        &p("w3"),
        "--workers",
        "3",
        "--threads",
        "3",
        "-q",
    ]);
    // three shards: one from --shard, two from Slurm's and Kubernetes' variables
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:20..27",
        "-o",
        &p("s0"),
        "--shard",
        "0/3",
        "-q",
    ]);
    let o = maxi()
        .args([
            "batch",
            "-c",
            &cfg,
            "-i",
            "mnist:20..27",
            "-o",
            &p("s1"),
            "-q",
        ])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = maxi()
        .args([
            "batch",
            "-c",
            &cfg,
            "-i",
            "mnist:20..27",
            "-o",
            &p("s2"),
            "-q",
            "--shard-count",
            "3",
        ])
        .env("JOB_COMPLETION_INDEX", "2")
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        lines(&t.join("s1")).len(),
        2,
        "shard 1/3 of 7 inputs: 21 and 24"
    );
    run_ok(&[
        "merge",
        &p("s0"),
        &p("s1"),
        &p("s2"),
        "-o",
        &p("merged"),
        "-q",
    ]);

    let reference: Vec<Value> = lines(&t.join("w1")).into_iter().map(comparable).collect();
    assert_eq!(reference.len(), 7);
    let ids: Vec<&str> = reference
        .iter()
        .map(|l| l["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "mnist-20", "mnist-21", "mnist-22", "mnist-23", "mnist-24", "mnist-25", "mnist-26"
        ]
    );
    for l in &reference {
        assert_eq!(
            l["source"],
            format!("mnist:{}", &l["id"].as_str().expect("id")[6..])
        );
        assert!(l["rows"].as_u64().is_some_and(|r| r > 0), "{l}");
        assert!(
            matches!(l["status"].as_str(), Some("ok" | "no_valid")),
            "{l}"
        );
    }
    for other in ["w3", "merged"] {
        let got: Vec<Value> = lines(&t.join(other)).into_iter().map(comparable).collect();
        assert_eq!(got, reference, "{other}");
    }
    for id in ids {
        let a = explanation_bytes(&t.join("w1"), id);
        assert_eq!(a, explanation_bytes(&t.join("w3"), id), "{id}");
        let shard = ["s0", "s1", "s2"][(id[6..].parse::<usize>().expect("n") - 20) % 3];
        assert_eq!(a, explanation_bytes(&t.join(shard), id), "{id} in {shard}");
    }
    // `maxi explain` with an input's seed from its report.json reproduces it
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(t.join("w1/inputs/mnist-23/report.json")).expect("report"),
    )
    .expect("JSON");
    let seed = report["seed"].as_u64().expect("seed").to_string();
    let o = maxi()
        .args([
            "explain",
            "-c",
            &cfg,
            "-i",
            "mnist:23",
            "--seed",
            &seed,
            "-o",
            &p("alone"),
            "-q",
        ])
        .output()
        .expect("run");
    assert!(matches!(o.status.code(), Some(0 | 3)), "{o:?}");
    assert_eq!(
        std::fs::read(t.join("alone/explanation.npy")).expect("npy"),
        explanation_bytes(&t.join("w1"), "mnist-23")
    );
    let s = summary(&t.join("merged"));
    assert_eq!(s["inputs"], 7);
    assert_eq!(s["missing"].as_array().map(Vec::len), Some(0));
}

fn save_npy(path: &Path, a: &maxi::ndarray::ArrayD<f64>) {
    let mut buf = Vec::new();
    a.write_npy(&mut buf).expect("npy");
    std::fs::write(path, buf).expect("write npy");
}

#[test]
fn a_corrupt_input_gets_its_own_error_line_and_the_others_succeed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let cfg = config(t, 5, 9);
    let images = t.join("images");
    std::fs::create_dir(&images).expect("mkdir");
    save_npy(
        &images.join("a.npy"),
        &maxi::mnist::test_image(3).expect("img"),
    );
    std::fs::write(images.join("b.png"), b"\x89PNG\r\n\x1a\nnot really a png").expect("write");
    save_npy(
        &images.join("c.npy"),
        &maxi::mnist::test_image(4).expect("img"),
    );
    std::fs::write(images.join("notes.txt"), b"ignored").expect("write");
    let out = t.join("out");
    let o = maxi()
        .args([
            "batch",
            "-c",
            &cfg,
            "-i",
            &images.display().to_string(),
            "-o",
            &out.display().to_string(),
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 of 3 inputs failed"), "{stderr}");
    let l = lines(&out);
    let status: Vec<(&str, &str)> = l
        .iter()
        .map(|l| {
            (
                l["id"].as_str().expect("id"),
                l["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(status[1], ("b.png", "error"));
    assert!(
        status[0].1 != "error" && status[2].1 != "error",
        "{status:?}"
    );
    assert_eq!(l[1]["reason"], "bad input");
    assert!(
        l[1]["error"].as_str().expect("message").contains("b.png"),
        "{}",
        l[1]
    );
    assert!(out.join("inputs/a.npy/report.json").is_file());
    assert!(out.join("inputs/c.npy/explanation.png").is_file());
    assert!(
        !out.join("inputs/b.png").exists(),
        "no folder for a failed input"
    );
    let s = summary(&out);
    assert_eq!(
        (s["inputs"].as_u64(), s["errors"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(s["failures"]["bad input"]["first_id"], "b.png");
    // the summary on stdout names the failure too
    assert!(String::from_utf8_lossy(&o.stdout).contains("failed (bad input): 1"));

    // the same images as a .npy stack and as a CSV list with labels: same explanations
    let stack = maxi::ndarray::stack(
        maxi::ndarray::Axis(0),
        &[
            maxi::mnist::test_image(3).expect("i").view(),
            maxi::mnist::test_image(4).expect("i").view(),
        ],
    )
    .expect("stack");
    save_npy(&t.join("stack.npy"), &stack);
    std::fs::write(
        t.join("list.csv"),
        "path,label\nimages/a.npy,5\nimages/c.npy,4\n",
    )
    .expect("csv");
    let p = |n: &str| t.join(n).display().to_string();
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        &p("stack.npy"),
        "-o",
        &p("from_stack"),
        "-q",
    ]);
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        &p("list.csv"),
        "-o",
        &p("from_csv"),
        "-q",
    ]);
    let csv = lines(&t.join("from_csv"));
    assert_eq!(csv[0]["label"], 5);
    assert_eq!(
        explanation_bytes(&t.join("from_stack"), "row-1"),
        explanation_bytes(&t.join("from_csv"), "c.npy"),
        "position 1 in both manifests: same seed, same input, same result"
    );
}

/// Stops a batch with SIGTERM once `after` inputs are done.
fn start_and_stop(cfg: &str, out: &Path, after: usize) -> std::process::Output {
    let child = StdCommand::new(env!("CARGO_BIN_EXE_maxi"))
        .args([
            "batch",
            "-c",
            cfg,
            "-i",
            "mnist:0..14",
            "-o",
            &out.display().to_string(),
            "--workers",
            "1",
            "--threads",
            "1",
            "-q",
        ])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let done = |out: &Path| {
        std::fs::read_dir(out.join("inputs"))
            .map(|d| {
                d.flatten()
                    // complete folders (a staging folder `.id.maxi-tmp-PID` holds a report too)
                    .filter(|e| {
                        !e.file_name().to_string_lossy().starts_with('.')
                            && e.path().join("report.json").is_file()
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    while done(out) < after {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the batch made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sends SIGTERM to the child started above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    child.wait_with_output().expect("wait")
}

#[test]
fn a_stopped_batch_resumes_without_redoing_or_losing_inputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let cfg = config(t, 30, 19);
    let out = t.join("out");
    let o = start_and_stop(&cfg, &out, 3);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("run the same command again to continue"),
        "{stderr}"
    );
    // complete folders only: no staging folder, and every folder has its report
    let mut before = BTreeMap::new();
    for e in std::fs::read_dir(out.join("inputs"))
        .expect("inputs")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "staging folder left: {name}");
        let report = e.path().join("report.json");
        let modified = std::fs::metadata(&report)
            .expect("report")
            .modified()
            .expect("mtime");
        before.insert(name, modified);
    }
    let k = before.len();
    assert!((3..14).contains(&k), "stopped part-way: {k} of 14 complete");
    let interrupted = lines(&out);
    assert_eq!(
        interrupted.len(),
        k,
        "results.jsonl lists exactly the complete inputs"
    );

    let o = run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:0..14",
        "-o",
        &out.display().to_string(),
        "-q",
    ]);
    let _ = o;
    let s = summary(&out);
    assert_eq!(s["skipped_complete"].as_u64(), Some(k as u64));
    assert_eq!(s["explained_now"].as_u64(), Some(14 - k as u64));
    for (name, modified) in &before {
        let now = std::fs::metadata(out.join("inputs").join(name).join("report.json"))
            .expect("report")
            .modified()
            .expect("mtime");
        assert_eq!(now, *modified, "{name} was redone");
    }
    // nothing lost: the same lines as one uninterrupted run
    let whole = t.join("whole");
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:0..14",
        "-o",
        &whole.display().to_string(),
        "-q",
    ]);
    let a: Vec<Value> = lines(&out).into_iter().map(comparable).collect();
    let b: Vec<Value> = lines(&whole).into_iter().map(comparable).collect();
    assert_eq!(a.len(), 14);
    assert_eq!(a, b);
    // --force redoes everything
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:0..14",
        "-o",
        &out.display().to_string(),
        "-q",
        "--force",
        "--workers",
        "2",
    ]);
    assert_eq!(summary(&out)["explained_now"].as_u64(), Some(14));
}

#[test]
fn merge_reports_a_missing_shard_and_mismatched_folders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let cfg = config(t, 4, 5);
    let p = |n: &str| t.join(n).display().to_string();
    for i in 0..3 {
        run_ok(&[
            "batch",
            "-c",
            &cfg,
            "-i",
            "mnist:0..9",
            "-o",
            &p(&format!("s{i}")),
            "--shard",
            &format!("{i}/3"),
            "-q",
        ]);
    }
    let o = maxi()
        .args(["merge", &p("s0"), &p("s2"), "-o", &p("m")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("3 of 9 inputs missing (e.g. mnist-1, mnist-4, mnist-7)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shard(s) 1/3 not among the folders"),
        "{stderr}"
    );
    let s = summary(&t.join("m"));
    assert_eq!(s["missing_shards"], serde_json::json!([1]));
    assert_eq!(lines(&t.join("m")).len(), 6, "what there is is merged");
    // the same shard twice: duplicates
    let o = maxi()
        .args([
            "merge",
            &p("s0"),
            &p("s1"),
            &p("s2"),
            &p("s1"),
            "-o",
            &p("m2"),
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("3 input(s) present more than once"),
        "{stderr}"
    );
    // a folder of another batch is refused
    run_ok(&[
        "batch",
        "-c",
        &cfg,
        "-i",
        "mnist:0..5",
        "-o",
        &p("other"),
        "-q",
    ]);
    let o = maxi()
        .args(["merge", &p("s0"), &p("other"), "-o", &p("m3")])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("are not shards of one batch"));
    // resuming into a folder of another batch is refused too
    let o = maxi()
        .args([
            "batch",
            "-c",
            &cfg,
            "-i",
            "mnist:0..5",
            "-o",
            &p("s0"),
            "-q",
        ])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds a batch with another"));
}
