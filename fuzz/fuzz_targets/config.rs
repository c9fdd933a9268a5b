//! cargo-fuzz target `config`: the check lives in `checks/config.rs`, shared with the stable smoke
//! test that CI runs.
#![no_main]

#[path = "../checks/config.rs"]
mod config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| config::check(data));
