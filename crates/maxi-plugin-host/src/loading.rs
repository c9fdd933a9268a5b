//! Finding plugin files (`--plugin`, `MAXI_PLUGIN_PATH`) and opening them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use maxi_core::{MaxiError, Result};
use maxi_plugin::abi::{ENTRY_SYMBOL, EntryFn};

use crate::descriptor::{PluginData, read_descriptor};

/// The environment variable listing plugins to load: colon-separated files or folders.
pub const PLUGIN_PATH_ENV: &str = "MAXI_PLUGIN_PATH";

fn plugin_error(path: &Path, message: String) -> MaxiError {
    MaxiError::Plugin {
        path: path.display().to_string(),
        message,
    }
}

/// The canonical path of a plugin file, or why `path` is not one.
pub(crate) fn check_path(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            plugin_error(
                path,
                "no such file; check the path given with --plugin or MAXI_PLUGIN_PATH".into(),
            )
        } else {
            plugin_error(path, format!("cannot be read: {e}"))
        }
    })?;
    if meta.is_dir() {
        return Err(plugin_error(
            path,
            "is a folder; name the plugin's .so file (MAXI_PLUGIN_PATH accepts folders)".into(),
        ));
    }
    std::fs::canonicalize(path).map_err(|e| plugin_error(path, format!("cannot be read: {e}")))
}

/// Opens the library and reads its descriptor.
pub(crate) fn open_plugin(path: &Path, canonical: &Path) -> Result<PluginData> {
    let shown = path.display().to_string();
    let fail = |message: String| plugin_error(path, message);
    let lib = open_library(canonical).map_err(|e| {
        fail(format!(
            "is not a loadable shared library (a maxi plugin is a cdylib built against maxi-plugin): {e}"
        ))
    })?;
    // Libraries are never unloaded: their code may be referenced by registered components, and
    // unloading Rust libraries is not reliable (thread-local destructors, leaked statics).
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));

    let symbol = format!("{ENTRY_SYMBOL}\0");
    // SAFETY: the symbol's type is fixed by the ABI (`EntryFn`); a library that exports the name
    // with another type is not a maxi plugin, which the version check below cannot rule out but
    // the name makes unlikely.
    let entry: EntryFn = unsafe { lib.get::<EntryFn>(symbol.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| {
            fail(format!(
                "has no `{ENTRY_SYMBOL}` symbol: not a maxi plugin (a plugin exports it with maxi_plugin::export_plugin!)"
            ))
        })?;
    // SAFETY: calling the plugin's entry point; per the ABI it takes no arguments and must not
    // unwind (the SDK's entry catches panics).
    let descriptor = unsafe { entry() };
    read_descriptor(descriptor, &shown).map_err(fail)
}

fn open_library(path: &Path) -> std::result::Result<libloading::Library, libloading::Error> {
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading a library runs its initialisers; the user asked for this file to be
        // loaded as a plugin, i.e. trusts it as code. RTLD_NOW reports missing symbols now
        // rather than at a later call; RTLD_LOCAL keeps plugins' symbols apart.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
    }
    #[cfg(not(unix))]
    {
        // SAFETY: as above.
        unsafe { libloading::Library::new(path) }
    }
}

/// The plugin files named by `MAXI_PLUGIN_PATH`: colon-separated files, or folders whose
/// `*.so` files are all taken (sorted by name). Unset or empty: none.
pub fn plugin_paths_from_env() -> Result<Vec<PathBuf>> {
    match std::env::var_os(PLUGIN_PATH_ENV) {
        None => Ok(Vec::new()),
        Some(spec) => plugin_paths(&spec),
    }
}

/// Expands a `MAXI_PLUGIN_PATH`-style list: colon-separated entries, each a plugin file (taken
/// as is) or a folder (its `*.so` files, sorted by name, not recursive). Empty entries are
/// skipped; an entry that does not exist is a [`MaxiError::Plugin`].
pub fn plugin_paths(spec: &OsStr) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::env::split_paths(spec) {
        if entry.as_os_str().is_empty() {
            continue;
        }
        let fail = |message: String| MaxiError::Plugin {
            path: entry.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(&entry).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail(format!(
                    "named in {PLUGIN_PATH_ENV} but no such file or folder"
                ))
            } else {
                fail(format!(
                    "named in {PLUGIN_PATH_ENV} but cannot be read: {e}"
                ))
            }
        })?;
        if !meta.is_dir() {
            paths.push(entry);
            continue;
        }
        let read = std::fs::read_dir(&entry).map_err(|e| {
            fail(format!(
                "folder named in {PLUGIN_PATH_ENV} cannot be read: {e}"
            ))
        })?;
        let mut found = Vec::new();
        for item in read {
            let item = item.map_err(|e| {
                fail(format!(
                    "folder named in {PLUGIN_PATH_ENV} cannot be read: {e}"
                ))
            })?;
            let p = item.path();
            if p.extension() == Some(OsStr::new("so")) && p.is_file() {
                found.push(p);
            }
        }
        found.sort();
        paths.extend(found);
    }
    Ok(paths)
}
