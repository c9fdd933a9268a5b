//! Reading and checking a plugin's descriptor: ABI version, struct sizes, strings, functions.

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use maxi_core::Kind;
use maxi_plugin::abi::{
    COMPONENT_DESCRIPTOR_V1_SIZE, ComponentDescriptor, DescriptorHeader, ENTRY_SYMBOL,
    FreeStringFn, KIND_GRADIENT, KIND_LOSS, KIND_OPTIMIZER, MAXI_PLUGIN_ABI_VERSION,
    PluginDescriptor, has_kwarg_aliases, struct_size_of,
};
use serde_json::Value;

/// Most components one library may declare (guards against garbage descriptors).
const MAX_COMPONENTS: usize = 4096;

/// A plugin's descriptor, copied into host memory.
pub(crate) struct PluginData {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) components: Vec<PluginComponent>,
}

/// A string from a descriptor; `None` for null.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string that stays valid.
unsafe fn descriptor_str(
    p: *const c_char,
    what: &str,
) -> std::result::Result<Option<String>, String> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(|s| Some(s.to_string()))
        .map_err(|e| format!("{what} is not UTF-8: {e}"))
}

/// Reads and checks the descriptor `maxi_plugin_entry` returned; `shown` names the file.
pub(crate) fn read_descriptor(
    descriptor: *const PluginDescriptor,
    shown: &str,
) -> std::result::Result<PluginData, String> {
    if descriptor.is_null() {
        return Err(format!(
            "`{ENTRY_SYMBOL}` returned null: the plugin could not describe itself"
        ));
    }
    if !descriptor.is_aligned() {
        return Err(format!("`{ENTRY_SYMBOL}` returned a misaligned descriptor"));
    }
    // SAFETY: non-null and aligned; every ABI version starts with this 8-byte header.
    let header = unsafe { std::ptr::read(descriptor.cast::<DescriptorHeader>()) };
    if header.abi_version != MAXI_PLUGIN_ABI_VERSION {
        return Err(format!(
            "speaks plugin ABI version {}, but this maxi speaks version {MAXI_PLUGIN_ABI_VERSION}; rebuild the plugin against a matching maxi-plugin",
            header.abi_version
        ));
    }
    let needed = struct_size_of::<PluginDescriptor>();
    if header.struct_size < needed {
        return Err(format!(
            "descriptor struct_size {} is smaller than the {needed} bytes of an ABI version {MAXI_PLUGIN_ABI_VERSION} descriptor; the plugin is corrupt or was built by a mismatched SDK",
            header.struct_size
        ));
    }
    // SAFETY: the plugin declares a descriptor of at least this version's size, readable during
    // this call (it lives as long as the library, which is never unloaded); nothing read from it
    // is kept but copies.
    let d: &PluginDescriptor = unsafe { &*descriptor };
    // SAFETY: descriptor strings are NUL-terminated and live as long as the library.
    let name = unsafe { descriptor_str(d.plugin_name, "plugin_name") }?.unwrap_or_default();
    // SAFETY: as above.
    let version =
        unsafe { descriptor_str(d.plugin_version, "plugin_version") }?.unwrap_or_default();
    let free_string = d
        .free_string
        .ok_or_else(|| "descriptor has no free_string function".to_string())?;
    if d.num_components > MAX_COMPONENTS {
        return Err(format!(
            "descriptor declares {} components (at most {MAX_COMPONENTS}); it is corrupt",
            d.num_components
        ));
    }
    if d.num_components > 0 && d.components.is_null() {
        return Err(format!(
            "descriptor declares {} components but no component array",
            d.num_components
        ));
    }
    let mut components = Vec::with_capacity(d.num_components);
    for i in 0..d.num_components {
        // SAFETY: `components` holds `num_components` pointers (checked non-null above).
        let p = unsafe { *d.components.add(i) };
        components.push(read_component(p, i, shown, free_string)?);
    }
    Ok(PluginData {
        name,
        version,
        components,
    })
}

fn read_component(
    p: *const ComponentDescriptor,
    index: usize,
    shown: &str,
    free_string: FreeStringFn,
) -> std::result::Result<PluginComponent, String> {
    if p.is_null() || !p.is_aligned() {
        return Err(format!("component {index} is a null or misaligned pointer"));
    }
    // SAFETY: non-null and aligned; `struct_size` is the first field of every version.
    let size = unsafe { std::ptr::read(p.cast::<u32>()) };
    if size < COMPONENT_DESCRIPTOR_V1_SIZE {
        return Err(format!(
            "component {index}: struct_size {size} is smaller than the {COMPONENT_DESCRIPTOR_V1_SIZE} bytes of an ABI version {MAXI_PLUGIN_ABI_VERSION} component descriptor"
        ));
    }
    let c = copy_component(p, size);
    // SAFETY: descriptor strings are NUL-terminated and live as long as the library.
    let name = unsafe { descriptor_str(c.name, "component name") }?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| format!("component {index} has no name"))?;
    let what = |field: &str| format!("component `{name}`: {field}");
    // SAFETY: as above.
    let aliases = match unsafe { descriptor_str(c.aliases_json, &what("aliases")) }? {
        None => Vec::new(),
        Some(json) => serde_json::from_str::<Vec<String>>(&json)
            .map_err(|e| format!("{}: not a JSON array of strings: {e}", what("aliases")))?,
    };
    // SAFETY: as above.
    let doc = unsafe { descriptor_str(c.doc, &what("doc")) }?.unwrap_or_default();
    // SAFETY: as above.
    let schema = match unsafe { descriptor_str(c.kwargs_schema_json, &what("kwargs schema")) }? {
        None => return Err(format!("{} is missing", what("kwargs schema"))),
        Some(json) => serde_json::from_str::<Value>(&json)
            .map_err(|e| format!("{} is not valid JSON: {e}", what("kwargs schema")))?,
    };
    let kwarg_aliases = read_kwarg_aliases(&c, &schema, &what)?;
    let kind = match c.kind {
        KIND_GRADIENT => Kind::Gradient,
        KIND_LOSS | KIND_OPTIMIZER => {
            return Err(format!(
                "{}: losses and optimisers are not supported over the plugin ABI yet (only gradients); link it statically instead",
                what("kind")
            ));
        }
        other => return Err(format!("{}: unknown kind {other}", what("kind"))),
    };
    let missing = |f: &str| format!("{} function is missing", what(f));
    let funcs = Funcs {
        free_string,
        parse_kwargs: c.parse_kwargs.ok_or_else(|| missing("parse_kwargs"))?,
        create: c.create.ok_or_else(|| missing("create"))?,
        destroy: c.destroy.ok_or_else(|| missing("destroy"))?,
        compute: c
            .gradient_compute
            .ok_or_else(|| missing("gradient_compute"))?,
    };
    Ok(PluginComponent {
        meta: Arc::new(Meta {
            path: shown.to_string(),
            name,
            kind,
            funcs,
        }),
        aliases,
        doc,
        schema,
        kwarg_aliases,
    })
}

/// A host copy of the plugin's component descriptor of `size` bytes: the fields the plugin's
/// struct holds, the rest (appended by later SDKs) null. Only `size` bytes are read.
fn copy_component(p: *const ComponentDescriptor, size: u32) -> ComponentDescriptor {
    let mut c = ComponentDescriptor {
        struct_size: size,
        kind: 0,
        name: std::ptr::null(),
        aliases_json: std::ptr::null(),
        doc: std::ptr::null(),
        kwargs_schema_json: std::ptr::null(),
        parse_kwargs: None,
        create: None,
        destroy: None,
        gradient_compute: None,
        kwarg_aliases_json: std::ptr::null(),
    };
    let bytes = (size as usize).min(std::mem::size_of::<ComponentDescriptor>());
    // SAFETY: the plugin declares `size` readable bytes at `p` (it lives as long as the
    // library); the copy stops at the smaller of both sizes. The struct is `repr(C)` without
    // padding, and every field (integers, raw pointers, optional function pointers) is valid for
    // the plugin's bytes as for the null defaults.
    unsafe {
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&raw mut c).cast::<u8>(), bytes);
    }
    c.struct_size = size;
    c
}

/// The component's kwarg aliases (`alias → canonical`), when its descriptor carries them; each
/// canonical name must be a kwarg of the schema and no alias may be one.
fn read_kwarg_aliases(
    c: &ComponentDescriptor,
    schema: &Value,
    what: &dyn Fn(&str) -> String,
) -> std::result::Result<Vec<(String, String)>, String> {
    if !has_kwarg_aliases(c.struct_size) {
        return Ok(Vec::new());
    }
    // SAFETY: descriptor strings are NUL-terminated and live as long as the library.
    let Some(json) = (unsafe { descriptor_str(c.kwarg_aliases_json, &what("kwarg aliases")) })?
    else {
        return Ok(Vec::new());
    };
    let map: serde_json::Map<String, Value> = serde_json::from_str(&json).map_err(|e| {
        format!(
            "{}: not a JSON object of alias → kwarg name: {e}",
            what("kwarg aliases")
        )
    })?;
    let properties = schema.get("properties").and_then(Value::as_object);
    let is_kwarg = |k: &str| properties.is_some_and(|p| p.contains_key(k));
    let mut aliases = Vec::with_capacity(map.len());
    for (alias, canonical) in map {
        let Some(canonical) = canonical.as_str().filter(|c| is_kwarg(c)) else {
            return Err(format!(
                "{}: `{alias}` stands for {canonical}, which is not one of its kwargs",
                what("kwarg aliases")
            ));
        };
        if is_kwarg(&alias) {
            return Err(format!(
                "{}: `{alias}` is a kwarg itself, not an alias",
                what("kwarg aliases")
            ));
        }
        aliases.push((alias, canonical.to_string()));
    }
    Ok(aliases)
}

/// The plugin's functions for one component (all checked non-null).
#[derive(Clone, Copy)]
pub(crate) struct Funcs {
    pub(crate) free_string: FreeStringFn,
    pub(crate) parse_kwargs: maxi_plugin::abi::ParseKwargsFn,
    pub(crate) create: maxi_plugin::abi::CreateFn,
    pub(crate) destroy: maxi_plugin::abi::DestroyFn,
    pub(crate) compute: maxi_plugin::abi::GradientComputeFn,
}

/// What the host keeps of a plugin component.
pub(crate) struct Meta {
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) funcs: Funcs,
}

/// A component read from a descriptor, ready to become a registry [`Component`](maxi_core::registry::Component).
#[derive(Clone)]
pub(crate) struct PluginComponent {
    pub(crate) meta: Arc<Meta>,
    pub(crate) aliases: Vec<String>,
    pub(crate) doc: String,
    pub(crate) schema: Value,
    /// Alternative kwarg spellings (`alias → canonical`).
    pub(crate) kwarg_aliases: Vec<(String, String)>,
}
