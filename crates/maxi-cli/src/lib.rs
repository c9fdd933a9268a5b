//! The modules of the `maxi` command (`src/main.rs`), as a library so that tests and fuzz
//! targets can reach the parsers of untrusted input (configs, `.npy` and PNG files).

pub mod cli;
pub mod config;
pub mod error;
pub mod explain;
pub mod input;
pub mod list;
pub mod output;
pub mod progress;
pub mod render;
