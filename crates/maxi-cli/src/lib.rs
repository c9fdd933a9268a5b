//! The modules of the `maxi` command (`src/main.rs`), as a library so that tests and fuzz
//! targets can reach the parsers of untrusted input: [`config::Config::from_text`],
//! [`npy::read_f64`] and [`input::decode_png`].

// The argument docs in `cli` are the `--help` text, which writes config tables as `[loss]`.
#![allow(rustdoc::broken_intra_doc_links)]

pub mod batch;
pub mod cli;
pub mod config;
pub mod error;
pub mod eval;
pub mod explain;
pub mod input;
pub mod list;
pub mod model_adapters;
pub mod npy;
pub mod output;
pub mod photo;
pub mod progress;
pub mod render;
