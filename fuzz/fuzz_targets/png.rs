//! cargo-fuzz target `png`: the check lives in `checks/png.rs`, shared with the stable smoke
//! test that CI runs.
#![no_main]

#[path = "../checks/png.rs"]
mod png;

libfuzzer_sys::fuzz_target!(|data: &[u8]| png::check(data));
