//! The plugin descriptor reader under the `descriptor` fuzz target's check, on stable: replays
//! the committed corpus, then runs `MAXI_FUZZ_SECONDS` (default 10) of seeded mutations
//! (`MAXI_FUZZ_SEED`). The driver is `fuzz/smoke.rs`; coverage-guided fuzzing of the same check
//! is `cargo +nightly fuzz run descriptor` in `fuzz/` (see the README).

use std::path::Path;

#[path = "../../../fuzz/checks/descriptor.rs"]
mod descriptor;
#[path = "../../../fuzz/smoke.rs"]
mod smoke;

#[test]
fn fuzz_descriptor() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/descriptor");
    smoke::run("descriptor", &corpus, descriptor::check);
}
