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

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString, OsStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use maxi_core::registry::{self, Entry, ParseFailure, ParseFn, Prepared};
use maxi_core::{
    Estimate, Gradient, GradientContext, GradientKind, Kind, KwargProblem, MaxiError, MaxiRng,
    Problem, Request, Result,
};
use maxi_plugin::abi::{
    ArrayOut, ComponentDescriptor, DescriptorHeader, ENTRY_SYMBOL, EntryFn, FreeStringFn, HostLoss,
    KIND_GRADIENT, KIND_LOSS, KIND_OPTIMIZER, MAXI_PLUGIN_ABI_VERSION, PluginDescriptor, STATUS_OK,
    STATUS_PANIC, struct_size_of,
};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use serde_json::Value;

/// The environment variable listing plugins to load: colon-separated files or folders.
pub const PLUGIN_PATH_ENV: &str = "MAXI_PLUGIN_PATH";

/// Most components one library may declare (guards against garbage descriptors).
const MAX_COMPONENTS: usize = 4096;
/// Most axes a returned array may declare (guards against garbage results).
const MAX_NDIM: usize = 64;

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

fn plugin_error(path: &Path, message: String) -> MaxiError {
    MaxiError::Plugin {
        path: path.display().to_string(),
        message,
    }
}

/// The canonical path of a plugin file, or why `path` is not one.
fn check_path(path: &Path) -> Result<PathBuf> {
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
fn open_plugin(path: &Path, canonical: &Path) -> Result<PluginData> {
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

/// A plugin's descriptor, copied into host memory.
struct PluginData {
    name: String,
    version: String,
    components: Vec<PluginComponent>,
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

fn read_descriptor(
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
    // SAFETY: the plugin declares a descriptor of at least this version's size; it lives as long
    // as the library, which is never unloaded.
    let d: &'static PluginDescriptor = unsafe { &*descriptor };
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
    let needed = struct_size_of::<ComponentDescriptor>();
    if size < needed {
        return Err(format!(
            "component {index}: struct_size {size} is smaller than the {needed} bytes of an ABI version {MAXI_PLUGIN_ABI_VERSION} component descriptor"
        ));
    }
    // SAFETY: at least this version's size, living as long as the library.
    let c: &'static ComponentDescriptor = unsafe { &*p };
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
    })
}

/// The plugin's functions for one component (all checked non-null).
#[derive(Clone, Copy)]
struct Funcs {
    free_string: FreeStringFn,
    parse_kwargs: maxi_plugin::abi::ParseKwargsFn,
    create: maxi_plugin::abi::CreateFn,
    destroy: maxi_plugin::abi::DestroyFn,
    compute: maxi_plugin::abi::GradientComputeFn,
}

/// What the host keeps of a plugin component.
struct Meta {
    path: String,
    name: String,
    kind: Kind,
    funcs: Funcs,
}

#[derive(Clone)]
struct PluginComponent {
    meta: Arc<Meta>,
    aliases: Vec<String>,
    doc: String,
    schema: Value,
}

impl Meta {
    /// Takes ownership of a string the plugin returned and frees it.
    fn take_string(&self, p: *mut c_char) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: the plugin wrote a NUL-terminated string it allocated; it is copied, then freed
        // exactly once with the plugin's own function.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: see above.
        unsafe { (self.funcs.free_string)(p) };
        Some(s)
    }

    fn failure(&self, what: &str, status: i32, message: Option<String>) -> String {
        let verb = if status == STATUS_PANIC {
            "panicked"
        } else {
            "failed"
        };
        let message = message.unwrap_or_else(|| "no message".into());
        let message = message.strip_prefix("panicked: ").unwrap_or(&message);
        format!(
            "plugin {}: {} `{}`: {what} {verb}: {message}",
            self.path, self.kind, self.name
        )
    }

    /// Parses kwargs with the plugin: its normalised kwargs, or the problem it reported.
    fn parse(&self, value: &Value) -> std::result::Result<Value, KwargProblem> {
        let problem = |field: &str, message: String| Err(KwargProblem::new(field, message));
        let Ok(json) = CString::new(value.to_string()) else {
            return problem("?", "kwargs contain a NUL character".into());
        };
        let mut out_json: *mut c_char = std::ptr::null_mut();
        let mut out_field: *mut c_char = std::ptr::null_mut();
        let mut out_error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the function comes from a checked descriptor; the JSON string and out pointers
        // are valid for the call.
        let status = unsafe {
            (self.funcs.parse_kwargs)(json.as_ptr(), &mut out_json, &mut out_field, &mut out_error)
        };
        let normalised = self.take_string(out_json);
        let field = self.take_string(out_field);
        let error = self.take_string(out_error);
        if status == STATUS_OK {
            return match normalised.map(|s| serde_json::from_str::<Value>(&s)) {
                Some(Ok(json @ Value::Object(_))) => Ok(json),
                _ => problem(
                    "?",
                    format!(
                        "plugin {}: parse_kwargs returned no JSON object of kwargs",
                        self.path
                    ),
                ),
            };
        }
        if status == STATUS_PANIC {
            return problem("?", self.failure("parse_kwargs", status, error));
        }
        problem(
            field.as_deref().unwrap_or("?"),
            format!(
                "{} (plugin {})",
                error.unwrap_or_else(|| "invalid".into()),
                self.path
            ),
        )
    }

    fn create(self: &Arc<Self>, kwargs: &Value, shape: &[usize]) -> Result<Box<dyn Gradient>> {
        let runtime = |message: String| MaxiError::Runtime {
            kind: self.kind,
            component: self.name.clone(),
            iteration: 0,
            message,
        };
        let json = CString::new(kwargs.to_string())
            .map_err(|_| runtime("kwargs contain a NUL character".into()))?;
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut out_error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the function comes from a checked descriptor; every pointer is valid for the
        // call.
        let status = unsafe {
            (self.funcs.create)(
                json.as_ptr(),
                shape.as_ptr(),
                shape.len(),
                &mut instance,
                &mut out_error,
            )
        };
        let error = self.take_string(out_error);
        if status != STATUS_OK {
            return Err(runtime(self.failure("create", status, error)));
        }
        if instance.is_null() {
            return Err(runtime(self.failure(
                "create",
                status,
                Some("returned no instance".into()),
            )));
        }
        Ok(Box::new(HostGradient {
            meta: self.clone(),
            instance,
        }))
    }
}

impl PluginComponent {
    fn into_entry(self) -> Entry<GradientKind> {
        let meta = self.meta.clone();
        let parse: ParseFn<GradientKind> = Arc::new(move |de| {
            let value: Value = erased_serde::deserialize(de).map_err(ParseFailure::Serde)?;
            let json = meta.parse(&value).map_err(ParseFailure::Invalid)?;
            Ok(Arc::new(PluginPrepared {
                meta: meta.clone(),
                json,
            }) as Arc<dyn Prepared<GradientKind>>)
        });
        Entry::from_parts(
            registry::Meta {
                kind: Kind::Gradient,
                name: self.meta.name.clone(),
                aliases: self.aliases,
                doc: self.doc,
                schema: self.schema,
                kwarg_aliases: Vec::new(),
                origin: format!("plugin {}", self.meta.path),
                extensions: Vec::new(),
            },
            parse,
        )
    }
}

/// A plugin component with kwargs the plugin accepted (normalised by it).
struct PluginPrepared {
    meta: Arc<Meta>,
    json: Value,
}

impl Prepared<GradientKind> for PluginPrepared {
    fn build(&self, ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>> {
        self.meta.create(&self.json, ctx.shape)
    }
    fn kwargs_json(&self) -> Value {
        self.json.clone()
    }
}

/// A gradient instance living in a plugin.
struct HostGradient {
    meta: Arc<Meta>,
    instance: *mut c_void,
}

// SAFETY: the instance is owned by this value alone and only used through `&mut self`; the SDK
// requires the plugin's gradient to be `Send`.
unsafe impl Send for HostGradient {}

impl Drop for HostGradient {
    fn drop(&mut self) {
        // SAFETY: the instance came from this component's `create` and is destroyed once.
        unsafe { (self.meta.funcs.destroy)(self.instance) };
    }
}

/// State of one `compute` call, reached by the loss callback through its context pointer.
struct CallCtx<'a> {
    problem: &'a Problem,
    shape: &'a [usize],
    y: &'a [f64],
    thread: ThreadId,
    base: Cell<Option<maxi_core::Assessed>>,
    error: RefCell<Option<MaxiError>>,
}

fn write_host_error(out_error: *mut *mut c_char, message: &str) {
    if out_error.is_null() {
        return;
    }
    let bytes: Vec<u8> = message.bytes().filter(|b| *b != 0).collect();
    let s = CString::new(bytes).unwrap_or_default();
    // SAFETY: non-null and writable per the ABI.
    unsafe { *out_error = s.into_raw() };
}

/// Frees an error string written by [`host_eval_batch`].
unsafe extern "C" fn host_free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: the string came from `CString::into_raw` in `write_host_error`.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// The loss callback handed to plugins.
unsafe extern "C" fn host_eval_batch(
    ctx: *mut c_void,
    batch: *const f64,
    rows: usize,
    item_len: usize,
    out: *mut f64,
    out_error: *mut *mut c_char,
) -> i32 {
    if ctx.is_null() {
        write_host_error(out_error, "null loss context");
        return maxi_plugin::abi::STATUS_ERROR;
    }
    // SAFETY: the context is the `CallCtx` of the `compute` call in progress (plugins may only
    // call back during it).
    let ctx = unsafe { &*ctx.cast::<CallCtx<'_>>() };
    if std::thread::current().id() != ctx.thread {
        write_host_error(
            out_error,
            "the loss callback was called from another thread; call it from the thread that called compute",
        );
        return maxi_plugin::abi::STATUS_ERROR;
    }
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let d = ctx.y.len();
        if item_len != d {
            return Err(MaxiError::Other(format!(
                "loss callback: item length {item_len}, expected {d} (shape {:?})",
                ctx.shape
            )));
        }
        let total = rows
            .checked_mul(item_len)
            .ok_or_else(|| MaxiError::Other("loss callback: batch size overflows".into()))?;
        if rows == 0 {
            return Ok(());
        }
        if batch.is_null() || out.is_null() {
            return Err(MaxiError::Other(
                "loss callback: null batch or output pointer".into(),
            ));
        }
        // SAFETY: the plugin passes `rows·item_len` values, valid for the call.
        let data = unsafe { std::slice::from_raw_parts(batch, total) };
        let mut batch_shape = vec![rows];
        batch_shape.extend_from_slice(ctx.shape);
        // a copy the loss may overwrite (the plugin's buffer is read-only to the host)
        let mut rows_copy = ArrayD::from_shape_vec(IxDyn(&batch_shape), data.to_vec())
            .map_err(|e| MaxiError::Other(format!("loss callback: {e}")))?;
        let e = ctx.problem.assess_batch_mut(rows_copy.view_mut())?;
        // SAFETY: the plugin provides room for `rows` values.
        let out = unsafe { std::slice::from_raw_parts_mut(out, rows) };
        for (i, o) in out.iter_mut().enumerate() {
            *o = e.values[i];
            if data[i * d..(i + 1) * d] == *ctx.y {
                ctx.base.set(Some(e.at(i)));
            }
        }
        Ok(())
    }));
    let error = match result {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(e)) => e,
        Err(payload) => {
            let message = maxi_plugin::export::panic_message(&*payload);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            MaxiError::Other(format!("the loss panicked: {message}"))
        }
    };
    write_host_error(out_error, &error.to_string());
    if let Ok(mut slot) = ctx.error.try_borrow_mut() {
        *slot = Some(error);
    }
    maxi_plugin::abi::STATUS_ERROR
}

impl HostGradient {
    fn check_result(
        &self,
        out: &ArrayOut,
        shape: &[usize],
    ) -> std::result::Result<ArrayD<f64>, String> {
        if out.ndim > MAX_NDIM || (out.ndim > 0 && out.shape.is_null()) {
            return Err(format!(
                "returned a gradient with {} axes and {} shape pointer; expected shape {shape:?}",
                out.ndim,
                if out.shape.is_null() { "a null" } else { "a" }
            ));
        }
        let got: &[usize] = if out.ndim == 0 {
            &[]
        } else {
            // SAFETY: non-null, `ndim` values, valid until the next call on this instance.
            unsafe { std::slice::from_raw_parts(out.shape, out.ndim) }
        };
        if got != shape {
            return Err(format!(
                "returned a gradient of shape {got:?}, expected {shape:?} (the point's shape)"
            ));
        }
        let d: usize = shape.iter().product();
        if out.len != d {
            return Err(format!(
                "returned {} values for shape {shape:?} ({d} entries)",
                out.len
            ));
        }
        if d > 0 && out.data.is_null() {
            return Err("returned a null gradient buffer".into());
        }
        let values = if d == 0 {
            Vec::new()
        } else {
            // SAFETY: non-null, `len` values, valid until the next call on this instance.
            unsafe { std::slice::from_raw_parts(out.data, d) }.to_vec()
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "returned a non-finite value ({}) at flat index {i} of the gradient",
                values[i]
            ));
        }
        ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| e.to_string())
    }
}

impl Gradient for HostGradient {
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        rng: &mut MaxiRng,
    ) -> Result<Estimate> {
        let y = request.at.view();
        let meta = self.meta.clone();
        let fail = |what: &str, status: i32, message: Option<String>| {
            MaxiError::Other(meta.failure(what, status, message))
        };
        let seed = rng.next_u64();
        let shape = y.shape().to_vec();
        let y_std = y.as_standard_layout();
        let y_flat = y_std
            .as_slice()
            .ok_or_else(|| MaxiError::Other("internal: point is not contiguous".into()))?;
        let d = y_flat.len();
        let lower = problem.bounds().lower().as_standard_layout();
        let upper = problem.bounds().upper().as_standard_layout();
        let (lower, upper) = match (lower.as_slice(), upper.as_slice()) {
            (Some(l), Some(u)) if l.len() == d && u.len() == d => (l.as_ptr(), u.as_ptr()),
            _ => (std::ptr::null(), std::ptr::null()),
        };
        let ctx = CallCtx {
            problem,
            shape: &shape,
            y: y_flat,
            thread: std::thread::current().id(),
            base: Cell::new(None),
            error: RefCell::new(None),
        };
        let host = HostLoss {
            struct_size: struct_size_of::<HostLoss>(),
            ctx: (&ctx as *const CallCtx<'_>).cast_mut().cast::<c_void>(),
            eval_batch: Some(host_eval_batch),
            free_error: Some(host_free_string),
            item_len: d,
            lower,
            upper,
        };
        let mut out = ArrayOut::empty();
        let mut out_error: *mut c_char = std::ptr::null_mut();
        // SAFETY: the function comes from a checked descriptor; the instance is ours; `y`, the
        // shape, the bounds and `ctx` outlive the call; `out` and `out_error` are writable.
        let status = unsafe {
            (self.meta.funcs.compute)(
                self.instance,
                y_flat.as_ptr(),
                shape.as_ptr(),
                shape.len(),
                seed,
                &host,
                &mut out,
                &mut out_error,
            )
        };
        let message = self.meta.take_string(out_error);
        let loss_error = ctx.error.borrow_mut().take();
        if status != STATUS_OK {
            return Err(match loss_error {
                // the plugin failed because the host's loss did: report the loss's own error
                Some(e) if status != STATUS_PANIC => e,
                _ => fail("compute", status, message),
            });
        }
        let g = self.check_result(&out, &shape).map_err(|reason| {
            MaxiError::Other(format!(
                "plugin {}: {} `{}`: {reason}",
                self.meta.path, self.meta.kind, self.meta.name
            ))
        })?;
        Ok(Estimate {
            gradient: g,
            at: ctx.base.get(),
            also: None,
        })
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
