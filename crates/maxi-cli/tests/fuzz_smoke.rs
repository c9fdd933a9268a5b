//! The config, `.npy` and PNG readers under the fuzz targets' checks, on stable: each test
//! replays the target's committed corpus, then runs `MAXI_FUZZ_SECONDS` (default 10) of seeded
//! mutations (`MAXI_FUZZ_SEED`). The driver is `fuzz/smoke.rs`; coverage-guided fuzzing of the
//! same checks is `cargo +nightly fuzz run <target>` in `fuzz/` (see the README).

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/checks/config.rs"]
mod config;
#[path = "../../../fuzz/checks/npy.rs"]
mod npy;
#[path = "../../../fuzz/checks/png.rs"]
mod png;
#[path = "../../../fuzz/smoke.rs"]
mod smoke;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fuzz/corpus/{target}"))
}

#[test]
fn fuzz_config() {
    smoke::run("config", &corpus("config"), config::check);
}

#[test]
fn fuzz_npy() {
    smoke::run("npy", &corpus("npy"), npy::check);
}

#[test]
fn fuzz_png() {
    smoke::run("png", &corpus("png"), png::check);
}
