//! cargo-fuzz target `descriptor`: the check lives in `checks/descriptor.rs`, shared with the stable smoke
//! test that CI runs.
#![no_main]

#[path = "../checks/descriptor.rs"]
mod descriptor;

libfuzzer_sys::fuzz_target!(|data: &[u8]| descriptor::check(data));
