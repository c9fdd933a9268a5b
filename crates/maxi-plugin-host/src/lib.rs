//! Loads dynamic maxi plugins (`.so`) over the versioned C ABI of
//! [`maxi_plugin::abi`] and registers their components in the process-wide registry, next to
//! the built-ins.
//!
//! - [`load_plugin`] loads one library, checks its ABI version and descriptor size, and adds its
//!   components to [`maxi_core::registry::global`]; it returns their names. Every problem is a
//!   [`MaxiError::Plugin`] naming the file (or a [`MaxiError::DuplicateComponent`] naming it as
//!   the second registration): usage errors.
//! - [`plugin_paths_from_env`] expands `MAXI_PLUGIN_PATH` (colon-separated files or folders of
//!   `*.so`).
//!
//! At run time every call into a plugin is checked: a failing or panicking `create` is a
//! [`MaxiError::Runtime`] at iteration 0, and a failing or panicking `compute`, a result of the
//! wrong shape, or a non-finite value is a runtime error ([`MaxiError::Other`], which the
//! generator reports as a runtime failure) whose message starts with
//! ``plugin <file>: gradient `<name>` ``. Loaded libraries are never unloaded.
//!
//! The modules: `loading` (plugin files, `MAXI_PLUGIN_PATH`, opening a library), `descriptor`
//! (reading and checking what `maxi_plugin_entry` returns) and `bridge` (a plugin component as a
//! registry entry and a [`Gradient`](maxi_core::Gradient): kwargs, instances, `compute` and the
//! host's loss callback).
//!
//! [`MaxiError::Plugin`]: maxi_core::MaxiError::Plugin
//! [`MaxiError::DuplicateComponent`]: maxi_core::MaxiError::DuplicateComponent
//! [`MaxiError::Runtime`]: maxi_core::MaxiError::Runtime
//! [`MaxiError::Other`]: maxi_core::MaxiError::Other

mod bridge;
mod descriptor;
mod loading;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use maxi_core::registry::{self, Entry};
use maxi_core::{GradientKind, MaxiError, Result};
use maxi_plugin::abi::PluginDescriptor;

use crate::descriptor::{PluginComponent, read_descriptor};
use crate::loading::{check_path, open_plugin};

pub use loading::{PLUGIN_PATH_ENV, plugin_paths, plugin_paths_from_env};

/// A plugin library loaded into this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The path it was loaded from, as given.
    pub path: PathBuf,
    /// The plugin's own name (e.g. its crate name).
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Names of the components it registered.
    pub components: Vec<String>,
}

struct Loaded {
    canonical: PathBuf,
    info: PluginInfo,
}

static LOADED: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

fn loaded_lock() -> std::sync::MutexGuard<'static, Vec<Loaded>> {
    LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The plugins loaded so far, in load order.
pub fn loaded_plugins() -> Vec<PluginInfo> {
    loaded_lock().iter().map(|l| l.info.clone()).collect()
}

/// Loads the plugin library at `path` and registers its components in
/// `maxi_core::registry::global()`; returns the registered component names.
///
/// Loading the same file again (same canonical path) registers nothing and returns the same
/// names. Either every component of the library is registered or none is.
pub fn load_plugin(path: &Path) -> Result<Vec<String>> {
    let canonical = check_path(path)?;
    let mut loaded = loaded_lock();
    if let Some(l) = loaded.iter().find(|l| l.canonical == canonical) {
        return Ok(l.info.components.clone());
    }
    let plugin = open_plugin(path, &canonical)?;

    // Every component or none: the registry takes them as one change.
    let names: Vec<String> = plugin
        .components
        .iter()
        .map(|c| c.meta.name.clone())
        .collect();
    let entries: Vec<Entry<GradientKind>> = plugin
        .components
        .iter()
        .cloned()
        .map(PluginComponent::into_entry)
        .collect();
    registry::update(|r| entries.into_iter().try_for_each(|e| r.add(e)))?;
    loaded.push(Loaded {
        canonical,
        info: PluginInfo {
            path: path.to_path_buf(),
            name: plugin.name,
            version: plugin.version,
            components: names.clone(),
        },
    });
    Ok(names)
}

/// Reads and checks a plugin descriptor that is already in memory (what [`load_plugin`] does
/// after calling the library's entry point) and returns its components without registering
/// them; `origin` names the plugin in messages. Used by the descriptor reader's fuzz target.
///
/// # Safety
/// `descriptor` must be null or point to a descriptor laid out as [`maxi_plugin::abi`]
/// describes, whose declared `struct_size` bytes, component array, component descriptors and
/// strings are readable during the call; the functions it names must stay callable as long as
/// the returned components are used.
pub unsafe fn components_from_descriptor(
    descriptor: *const PluginDescriptor,
    origin: &str,
) -> Result<Vec<Entry<GradientKind>>> {
    let data = read_descriptor(descriptor, origin).map_err(|message| MaxiError::Plugin {
        path: origin.to_string(),
        message,
    })?;
    Ok(data
        .components
        .into_iter()
        .map(PluginComponent::into_entry)
        .collect())
}

/// Loads the plugin library at `path` and returns its components **without** registering them,
/// for a host that keeps its own [`maxi_core::Registry`] (see
/// `GeneratorBuilder::registry`). The same checks as [`load_plugin`] apply; the library is
/// never unloaded.
pub fn plugin_components(path: &Path) -> Result<Vec<Entry<GradientKind>>> {
    let canonical = check_path(path)?;
    let plugin = open_plugin(path, &canonical)?;
    Ok(plugin
        .components
        .into_iter()
        .map(PluginComponent::into_entry)
        .collect())
}
