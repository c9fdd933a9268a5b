//! The versioned C ABI between a maxi host and a dynamic plugin (`cdylib`).
//!
//! This module is the single source of truth for both sides: the SDK implements the plugin side
//! (see [`export_plugin!`](crate::export_plugin)) and `maxi-plugin-host` the host side.
//!
//! # Layout
//!
//! A plugin library exports one C function, [`ENTRY_SYMBOL`] (`maxi_plugin_entry`), of type
//! [`EntryFn`]. It returns a pointer to a [`PluginDescriptor`] that lives as long as the library
//! (libraries are never unloaded). The descriptor starts with two `u32`s, `abi_version` and
//! `struct_size`, read before anything else:
//!
//! - `abi_version` must equal [`MAXI_PLUGIN_ABI_VERSION`]; any other version is refused.
//! - `struct_size` is `size_of::<PluginDescriptor>()` as the plugin was compiled. A host refuses
//!   a smaller size and accepts a larger one: later versions of the SDK may only **append**
//!   fields, which an older host ignores. [`ComponentDescriptor`] and [`HostLoss`] follow the same
//!   rule with their own `struct_size`.
//! - Fields appended within version 1: [`ComponentDescriptor::kwarg_aliases_json`]. A host reads
//!   an appended field only when the plugin's `struct_size` covers it, and accepts component
//!   descriptors down to [`COMPONENT_DESCRIPTOR_V1_SIZE`] bytes (the first version-1 layout).
//! - A reader reads a struct's `struct_size` (through a pointer to that first field) before
//!   anything else, and refuses the struct when it is smaller than what it needs.
//!
//! # Calls
//!
//! Every function returns a status ([`STATUS_OK`], [`STATUS_ERROR`], [`STATUS_PANIC`]) and, on
//! failure, may write a NUL-terminated UTF-8 message into its `out_error` argument. Strings a
//! plugin hands to the host (errors, normalised kwargs) are allocated by the plugin and released
//! with the descriptor's `free_string`; error strings the host hands to the plugin in the loss
//! callback are released with [`HostLoss::free_error`]. Strings inside the descriptors are owned
//! by the plugin and never freed.
//!
//! The loss callback ([`HostLoss::eval_batch`]) may only be called during the `compute` call it
//! was handed to, from that call's thread: [`HostLoss::ctx`] is an opaque handle of that call,
//! not a pointer, and the host answers [`STATUS_ERROR`] to a handle whose call has returned.
//!
//! Every function the SDK exports, and the host's loss callback, catches panics
//! (`catch_unwind`): a panic becomes [`STATUS_PANIC`] with the panic message, never an unwind
//! across `extern "C"` (which aborts). A plugin must therefore not be built with
//! `panic = "abort"`.
//!
//! Arrays are `f64`, contiguous, row-major (C order), with their shape passed as `usize`s.

use std::ffi::{c_char, c_void};

/// The ABI version this SDK speaks. A host refuses descriptors of any other version.
pub const MAXI_PLUGIN_ABI_VERSION: u32 = 1;

/// Name of the entry symbol every dynamic plugin exports (without the trailing NUL).
pub const ENTRY_SYMBOL: &str = "maxi_plugin_entry";

/// The call succeeded.
pub const STATUS_OK: i32 = 0;
/// The call failed; `out_error` holds the reason (or is null).
pub const STATUS_ERROR: i32 = 1;
/// The call panicked; `out_error` holds the panic message (or is null).
pub const STATUS_PANIC: i32 = 2;

/// [`ComponentDescriptor::kind`] of a loss (reserved: not yet supported over the ABI).
pub const KIND_LOSS: u32 = 1;
/// [`ComponentDescriptor::kind`] of a gradient method.
pub const KIND_GRADIENT: u32 = 2;
/// [`ComponentDescriptor::kind`] of an optimiser (reserved: not yet supported over the ABI).
pub const KIND_OPTIMIZER: u32 = 3;

/// `maxi_plugin_entry`: returns the plugin's descriptor, or null when the plugin cannot describe
/// itself. Must not unwind.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// Frees a string the plugin allocated (an error message, normalised kwargs). Null is ignored.
pub type FreeStringFn = unsafe extern "C" fn(s: *mut c_char);

/// Parses and validates kwargs without building anything.
///
/// `kwargs_json` is a NUL-terminated JSON object. On [`STATUS_OK`] the plugin writes the kwargs
/// with every default filled in (a JSON object) to `out_json`. On [`STATUS_ERROR`] it writes the
/// offending kwarg's name to `out_field` (or leaves it null) and the reason to `out_error`.
/// Every non-null `out_*` string is freed by the host with `free_string`.
pub type ParseKwargsFn = unsafe extern "C" fn(
    kwargs_json: *const c_char,
    out_json: *mut *mut c_char,
    out_field: *mut *mut c_char,
    out_error: *mut *mut c_char,
) -> i32;

/// Builds one instance of the component for items of shape `shape[..ndim]`, from kwargs as
/// returned by [`ParseKwargsFn`]. On [`STATUS_OK`] writes an opaque instance pointer to
/// `out_instance`, released later with [`DestroyFn`].
pub type CreateFn = unsafe extern "C" fn(
    kwargs_json: *const c_char,
    shape: *const usize,
    ndim: usize,
    out_instance: *mut *mut c_void,
    out_error: *mut *mut c_char,
) -> i32;

/// Releases an instance made by [`CreateFn`]. Must not unwind.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);

/// Computes a gradient estimate at `y` (`shape[..ndim]`, contiguous row-major).
///
/// - `seed`: drawn by the host from the run's seeded generator for this call; the plugin seeds
///   all its randomness from it, so runs are reproducible.
/// - `loss`: the host's loss, evaluated in batches through [`HostLoss::eval_batch`], only from
///   the calling thread and only during this call.
/// - `out`: on [`STATUS_OK`], the plugin points it at the result, which stays valid until the
///   next call on this instance or its destruction. The host checks its shape and values.
pub type GradientComputeFn = unsafe extern "C" fn(
    instance: *mut c_void,
    y: *const f64,
    shape: *const usize,
    ndim: usize,
    seed: u64,
    loss: *const HostLoss,
    out: *mut ArrayOut,
    out_error: *mut *mut c_char,
) -> i32;

/// The host's batched loss callback: evaluates `rows` items of `item_len` entries each
/// (`batch[rows·item_len]`, row-major) and writes `rows` values to `out`. On failure returns
/// non-zero and may write a host-allocated message to `out_error`, which the plugin frees with
/// [`HostLoss::free_error`].
pub type LossCallbackFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    batch: *const f64,
    rows: usize,
    item_len: usize,
    out: *mut f64,
    out_error: *mut *mut c_char,
) -> i32;

/// The first two fields of every [`PluginDescriptor`], of every ABI version.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeader {
    /// [`MAXI_PLUGIN_ABI_VERSION`] of the SDK that built the plugin.
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` in that SDK.
    pub struct_size: u32,
}

/// What `maxi_plugin_entry` returns: the plugin and its components.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginDescriptor {
    /// Must be [`MAXI_PLUGIN_ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` as compiled into the plugin (at least this version's).
    pub struct_size: u32,
    /// The plugin's name (e.g. its crate name), NUL-terminated UTF-8.
    pub plugin_name: *const c_char,
    /// The plugin's version, NUL-terminated UTF-8.
    pub plugin_version: *const c_char,
    /// Number of entries in `components`.
    pub num_components: usize,
    /// Array of `num_components` pointers to component descriptors.
    pub components: *const *const ComponentDescriptor,
    /// Frees strings the plugin returned from its functions.
    pub free_string: Option<FreeStringFn>,
}

/// One component of a plugin.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ComponentDescriptor {
    /// `size_of::<ComponentDescriptor>()` as compiled into the plugin.
    pub struct_size: u32,
    /// [`KIND_GRADIENT`] (losses and optimisers are reserved for later versions).
    pub kind: u32,
    /// Canonical name the component is selected by, NUL-terminated UTF-8.
    pub name: *const c_char,
    /// Other accepted names: a JSON array of strings, NUL-terminated (may be null: none).
    pub aliases_json: *const c_char,
    /// One-line description, NUL-terminated UTF-8.
    pub doc: *const c_char,
    /// JSON schema of the kwargs (schemars), NUL-terminated.
    pub kwargs_schema_json: *const c_char,
    /// See [`ParseKwargsFn`].
    pub parse_kwargs: Option<ParseKwargsFn>,
    /// See [`CreateFn`].
    pub create: Option<CreateFn>,
    /// See [`DestroyFn`].
    pub destroy: Option<DestroyFn>,
    /// See [`GradientComputeFn`]; required when `kind` is [`KIND_GRADIENT`].
    pub gradient_compute: Option<GradientComputeFn>,
    /// Alternative spellings of kwargs accepted by `parse_kwargs` (e.g. MAXi's names): a JSON
    /// object `{"alias": "canonical", ...}`, NUL-terminated (may be null: none). Appended to
    /// the first version-1 layout: hosts read it only when `struct_size` covers it.
    pub kwarg_aliases_json: *const c_char,
}

/// The size of the first version-1 [`ComponentDescriptor`] (up to `gradient_compute`): the
/// smallest component descriptor a host accepts.
pub const COMPONENT_DESCRIPTOR_V1_SIZE: u32 =
    std::mem::offset_of!(ComponentDescriptor, kwarg_aliases_json) as u32;

/// Whether a component descriptor of `struct_size` bytes holds `kwarg_aliases_json`.
pub const fn has_kwarg_aliases(struct_size: u32) -> bool {
    struct_size as usize
        >= std::mem::offset_of!(ComponentDescriptor, kwarg_aliases_json)
            + std::mem::size_of::<*const c_char>()
}

/// The host's loss as handed to a gradient computation.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostLoss {
    /// `size_of::<HostLoss>()` as compiled into the host.
    pub struct_size: u32,
    /// Opaque handle of the `compute` call in progress, passed back to `eval_batch` (not a
    /// pointer: the host refuses it once the call has returned).
    pub ctx: *mut c_void,
    /// Batched loss evaluation (see [`LossCallbackFn`]).
    pub eval_batch: Option<LossCallbackFn>,
    /// Frees an error string written by `eval_batch`.
    pub free_error: Option<FreeStringFn>,
    /// Entries of one item (`d`).
    pub item_len: usize,
    /// Lower bounds of the loss's box (`item_len` entries), or null for unbounded.
    pub lower: *const f64,
    /// Upper bounds of the loss's box (`item_len` entries), or null for unbounded.
    pub upper: *const f64,
}

/// An array a plugin returns: `data[len]` with shape `shape[..ndim]`, owned by the plugin.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArrayOut {
    /// First entry (row-major).
    pub data: *const f64,
    /// Number of entries.
    pub len: usize,
    /// The shape.
    pub shape: *const usize,
    /// Number of axes.
    pub ndim: usize,
}

impl ArrayOut {
    /// An empty array (what the host passes in before a call).
    pub const fn empty() -> Self {
        ArrayOut {
            data: std::ptr::null(),
            len: 0,
            shape: std::ptr::null(),
            ndim: 0,
        }
    }
}

impl Default for ArrayOut {
    fn default() -> Self {
        Self::empty()
    }
}

// SAFETY: descriptors are immutable after construction and their pointers refer to data that
// lives (unchanged) as long as the library, so sharing them between threads is sound.
unsafe impl Send for PluginDescriptor {}
// SAFETY: see above.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: see above.
unsafe impl Send for ComponentDescriptor {}
// SAFETY: see above.
unsafe impl Sync for ComponentDescriptor {}

/// `size_of` as the `u32` stored in `struct_size` fields.
pub const fn struct_size_of<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}
