//! cargo-fuzz target `npy`: the check lives in `checks/npy.rs`, shared with the stable smoke
//! test that CI runs.
#![no_main]

#[path = "../checks/npy.rs"]
mod npy;

libfuzzer_sys::fuzz_target!(|data: &[u8]| npy::check(data));
