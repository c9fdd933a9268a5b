//! Loads dynamic maxi plugins (`.so`) over the versioned C ABI and registers their components.
//!
//! Contract used by the CLI (to be implemented):
//! - [`load_plugin`] loads one library and adds its components to the process-wide registry,
//!   returning their names;
//! - [`plugin_paths_from_env`] expands `MAXI_PLUGIN_PATH` (colon-separated files or folders of
//!   `*.so`).

use std::path::{Path, PathBuf};

use maxi_core::{MaxiError, Result};

/// Loads the plugin library at `path` and registers its components in
/// `maxi_core::registry::global()`; returns the registered component names.
pub fn load_plugin(path: &Path) -> Result<Vec<String>> {
    Err(MaxiError::Plugin {
        path: path.display().to_string(),
        message: "dynamic plugins are not implemented yet".into(),
    })
}

/// The plugin files named by `MAXI_PLUGIN_PATH`: colon-separated files, or folders whose
/// `*.so` files are all taken (sorted by name).
pub fn plugin_paths_from_env() -> Result<Vec<PathBuf>> {
    Ok(Vec::new())
}
