//! Helpers shared by the CLI's integration tests: the binary with a clean environment, the
//! bundled fixtures, and the outputs of a run.
// each test file uses a different subset
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use maxi::serde_json::{self, Value};

/// Environment variables that would change what `maxi` does (plugins, shards).
const CLEARED: [&str; 6] = [
    "MAXI_PLUGIN_PATH",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "JOB_COMPLETION_INDEX",
    "MAXI_SHARD_COUNT",
];

/// The `maxi` binary as a `std` command, without the variables of [`CLEARED`].
pub fn maxi_std() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maxi"));
    for v in CLEARED {
        cmd.env_remove(v);
    }
    cmd
}

/// The `maxi` binary as an `assert_cmd` command, without the variables of [`CLEARED`].
pub fn maxi() -> assert_cmd::Command {
    assert_cmd::Command::from_std(maxi_std())
}

/// The repository's root folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A file of the bundled MNIST fixtures, as a path string.
pub fn mnist(name: &str) -> String {
    root()
        .join("fixtures/mnist")
        .join(name)
        .display()
        .to_string()
}

/// The bundled MNIST CNN.
pub fn cnn() -> String {
    mnist("mnist_cnn.onnx")
}

/// The `report.json` of an output folder.
pub fn report(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// A process's stderr as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A process's stdout as text.
pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A short CEM pertinent-positive config on the bundled MNIST CNN with AO-ExpGrad (`c = 10`,
/// `K = 2`, `gamma = 0`, `l1 = 1`); each argument holds the rest of its table.
pub fn pp_toml(
    generator: &str,
    model: &str,
    input: &str,
    loss: &str,
    optimizer: &str,
    gradient: &str,
) -> String {
    format!(
        r#"[generator]
{generator}

[model]
path = "{cnn}"
{model}

[input]
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
{optimizer}

[gradient]
{gradient}
"#,
        cnn = cnn()
    )
}
