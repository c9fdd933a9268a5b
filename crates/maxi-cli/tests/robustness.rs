//! No number a user types (in a config, on the command line, in an input file's header) may
//! crash `maxi`, take the machine or be silently ignored; signals and a broken stdout leave no
//! half-written or stray files. Runs the real binary on the bundled MNIST CNN.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{cnn, maxi_std, mnist, pp_toml, stderr_of};

/// A PP config on MNIST test image 2953 with `num_iter` updates of 1 + 10 rows; `loss`,
/// `gradient`, `model` and `input` are appended to those tables.
fn toml(num_iter: usize, loss: &str, gradient: &str, model: &str, input: &str) -> String {
    pp_toml(
        &format!("num_iter = {num_iter}\nsave_freq = 5\nseed = 3"),
        model,
        &format!("path = \"mnist:2953\"\n{input}"),
        loss,
        "",
        &format!("name = \"urv\"\nsample_num = 10\n{gradient}"),
    )
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
    let output = maxi_std()
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
    let out = maxi_std()
        .current_dir(tmp.path())
        .args(["explain", "-q", "--config", "c.json", "--out", "out"])
        .output()
        .expect("run");
    // 0, or 3 when the short run found no valid explanation: either way it ran
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        stderr_of(&out)
    );
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

#[test]
fn huge_iteration_and_sample_counts_are_refused_before_the_run() {
    // before: num_iter = 1e9 aborted reserving 56 GB, 2^63 − 1 panicked, and sample_num = 1e12
    // grew to gigabytes planning the batches; now each is a usage error naming the limit
    for (cfg, needles) in [
        (
            toml(1_000_000_000, "", "", "", ""),
            &["num_iter", "10000000"][..],
        ),
        (
            toml(9_223_372_036_854_775_807, "", "", "", ""),
            &["num_iter", "10000000"],
        ),
        (
            toml(3, "", "", "", "").replace("sample_num = 10", "sample_num = 1000000000000"),
            &["sample_num", "1000000"],
        ),
    ] {
        expect_usage_error(
            &[("c.toml", cfg.as_bytes())],
            &["--config", "c.toml"],
            needles,
        );
    }
}

#[test]
fn models_that_do_not_fit_are_usage_errors_found_before_the_run() {
    // before: the autoencoder as the classifier failed at run time (exit 1), and a bad AE
    // path passed validation and failed when the run started
    let cfg = toml(3, "", "", "", "");
    expect_usage_error(
        &[("c.toml", cfg.as_bytes())],
        &["--config", "c.toml", "--model", &mnist("mnist_ae.onnx")],
        &["`model`", "[1, 28, 28, 1]", "class scores", "output = NAME"],
    );
    let cfg =
        toml(3, "gamma = 1.0\nAE = \"missing.onnx\"", "", "", "").replace("gamma = 0.0\n", "");
    expect_usage_error(
        &[("c.toml", cfg.as_bytes())],
        &["--config", "c.toml"],
        &["missing.onnx", "kwarg `AE`", "[loss] of c.toml"],
    );
}

/// A version-1 `.npy` file whose header claims `shape` of float64, followed by `data` bytes.
fn npy_claiming(shape: &str, data: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data));
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header says `width`×`height` grey pixels, with no pixel data to speak of.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn input_headers_are_checked_against_the_file_before_allocating() {
    let cfg = toml(3, "", "", "", "");
    // 192 bytes claiming 1e11 entries (800 GB): aborted the process when trusted
    let lie = npy_claiming("(100000000000,)", 64);
    expect_usage_error(
        &[("c.toml", cfg.as_bytes()), ("lie.npy", &lie)],
        &["--config", "c.toml", "--input", "lie.npy"],
        &[
            "lie.npy",
            "claims shape [100000000000]",
            "holds 64 bytes",
            "truncated or corrupt",
        ],
    );
    let overflow = npy_claiming("(4294967296, 4294967296, 4294967296)", 8);
    expect_usage_error(
        &[("c.toml", cfg.as_bytes()), ("o.npy", &overflow)],
        &["--config", "c.toml", "--input", "o.npy"],
        &["o.npy", "more entries than any file can hold"],
    );
    // a 70-byte PNG claiming 4000×4000 pixels is refused from its header, before decoding
    expect_usage_error(
        &[
            ("c.toml", cfg.as_bytes()),
            ("bomb.png", &png_claiming(4000, 4000)),
        ],
        &["--config", "c.toml", "--input", "bomb.png"],
        &["bomb.png", "4000×4000 pixels but the model takes 28×28"],
    );
    expect_usage_error(
        &[
            ("c.toml", cfg.as_bytes()),
            ("huge.png", &png_claiming(100_000, 100_000)),
        ],
        &["--config", "c.toml", "--input", "huge.png"],
        &["huge.png", "more than the 16777216 pixels"],
    );
}

/// The most memory any child of this test process has used so far, in KiB.
fn children_max_rss_kib() -> i64 {
    // SAFETY: `getrusage` fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss
}

#[test]
fn a_png_deflate_bomb_is_refused_from_its_header() {
    use std::io::Write;
    // 16000×16000 black pixels deflate to ≈ 250 KB; decoded first, they took 2.8 GB
    let (w, h) = (16_000u32, 16_000u32);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; w as usize + 1];
    for _ in 0..h {
        z.write_all(&row).expect("deflate");
    }
    let idat = z.finish().expect("deflate");
    let mut png = png_claiming(w, h);
    // replace the empty IDAT of the header-only PNG with the real one
    png.truncate(33);
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    chunk(b"IDAT", &idat);
    chunk(b"IEND", &[]);
    assert!(png.len() < 400_000, "{} bytes", png.len());
    let cfg = toml(3, "", "", "", "");
    expect_usage_error(
        &[("c.toml", cfg.as_bytes()), ("bomb.png", &png)],
        &["--config", "c.toml", "--input", "bomb.png"],
        &[
            "bomb.png",
            "16000×16000 pixels, more than the 16777216 pixels",
        ],
    );
    let peak = children_max_rss_kib();
    assert!(
        peak < 1 << 20,
        "a maxi run of this test peaked at {peak} KiB"
    );
}

/// Starts a long run writing to `dir/out` and waits until its staging folder exists.
fn start_long_run(dir: &Path) -> (Child, PathBuf) {
    std::fs::write(dir.join("c.toml"), toml(1_000_000, "", "", "", "")).expect("config");
    let child = maxi_std()
        .current_dir(dir)
        .args(["explain", "--config", "c.toml", "--out", "out"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn maxi");
    let staging = dir.join(format!(".out.maxi-tmp-{}", child.id()));
    let start = Instant::now();
    while !staging.is_dir() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no staging folder after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, staging)
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
}

#[test]
fn sigterm_stops_like_ctrl_c_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (child, _) = start_long_run(tmp.path());
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().expect("wait");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted at iteration"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(names_in(tmp.path()), vec!["c.toml".to_string()]);
}

#[test]
fn staging_folders_of_killed_runs_are_removed_by_the_next_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut child, staging) = start_long_run(tmp.path());
    signal(&child, libc::SIGKILL);
    child.wait().expect("wait");
    assert!(staging.is_dir(), "SIGKILL leaves the staging folder");
    std::fs::write(tmp.path().join("short.toml"), toml(3, "", "", "", "")).expect("config");
    let out = maxi_std()
        .current_dir(tmp.path())
        .args(["explain", "-q", "--config", "short.toml", "--out", "out"])
        .output()
        .expect("run");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        stderr_of(&out)
    );
    let mut names = names_in(tmp.path());
    names.sort();
    assert_eq!(names, vec!["c.toml", "out", "short.toml"]);
}

#[test]
fn a_full_stdout_after_a_complete_write_is_a_warning_not_a_failure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("c.toml"), toml(3, "", "", "", "")).expect("config");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = maxi_std()
        .current_dir(tmp.path())
        .args(["explain", "--config", "c.toml", "--out", "out"])
        .stdout(full)
        .output()
        .expect("run");
    let err = stderr_of(&out);
    // not a failure: 0, or 3 as the short run found no valid explanation
    assert!(matches!(out.status.code(), Some(0 | 3)), "{err}");
    assert!(
        err.contains("warning: cannot write to stdout") && err.contains("are complete"),
        "{err}"
    );
    assert!(tmp.path().join("out/report.json").is_file());
    assert!(tmp.path().join("out/iter_3.npy").is_file());
}
