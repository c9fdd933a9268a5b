//! The plugin side of the C ABI: turns components written against maxi's ordinary traits into a
//! [`PluginDescriptor`] and `extern "C"` functions.
//!
//! Most plugins only use [`export_plugin!`](crate::export_plugin), which expands to a
//! [`PluginExport`] built once in `maxi_plugin_entry`. [`PluginExport`] is public for plugins
//! that need to build their descriptor by hand.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use maxi_core::{
    Bounds, Factory, Gradient, GradientContext, GradientKind, KwargsSpec, Loss, MaxiError, Problem,
    Request, Result, Valid, rng_from_seed,
};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};

use crate::abi::{
    ArrayOut, ComponentDescriptor, HostLoss, KIND_GRADIENT, MAXI_PLUGIN_ABI_VERSION,
    PluginDescriptor, STATUS_ERROR, STATUS_OK, STATUS_PANIC, struct_size_of,
};

/// A string with interior NULs removed, as a `CString`.
fn c_string(s: &str) -> CString {
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != 0).collect();
    // No NUL is left, so this cannot fail; fall back to an empty string all the same.
    CString::new(bytes).unwrap_or_default()
}

/// Hands `s` to the caller through `out` (freed later with [`free_string`]); no-op when `out` is
/// null.
fn write_string(out: *mut *mut c_char, s: &str) {
    if out.is_null() {
        return;
    }
    // SAFETY: `out` is non-null and, per the ABI, points to a writable `*mut c_char`.
    unsafe { *out = c_string(s).into_raw() };
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Runs `f`, turning an error into [`STATUS_ERROR`] and a panic into [`STATUS_PANIC`], with the
/// message written to `out_error`. Never unwinds.
pub fn guard(
    out_error: *mut *mut c_char,
    f: impl FnOnce() -> std::result::Result<(), String>,
) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(message)) => {
            write_string(out_error, &message);
            STATUS_ERROR
        }
        Err(payload) => {
            write_string(
                out_error,
                &format!("panicked: {}", panic_message(&*payload)),
            );
            // A payload whose destructor panics must not escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            STATUS_PANIC
        }
    }
}

/// Frees a string this plugin handed out. Exported as the descriptor's `free_string`.
///
/// # Safety
/// `s` must be null or a pointer returned by this plugin and not freed yet.
pub unsafe extern "C" fn free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: per the contract, `s` came from `CString::into_raw` in this library.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string valid for the call.
unsafe fn read_str<'a>(p: *const c_char, what: &str) -> std::result::Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is a null pointer"));
    }
    // SAFETY: non-null and NUL-terminated per the contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| format!("{what} is not UTF-8: {e}"))
}

/// Reads `len` values from `p` (null is accepted when `len == 0`).
///
/// # Safety
/// `p` must point to `len` initialised values valid for the call.
unsafe fn read_slice<'a, T>(
    p: *const T,
    len: usize,
    what: &str,
) -> std::result::Result<&'a [T], String> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(format!("{what} is a null pointer"));
    }
    // SAFETY: non-null, `len` values, valid for the call per the contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

fn item_len(shape: &[usize]) -> std::result::Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| format!("shape {shape:?} overflows"))
}

/// Kwargs parsed into the component's typed struct and checked, with the offending field on
/// failure.
fn parse_typed<K: KwargsSpec>(json: &str) -> std::result::Result<Valid<K>, (String, String)> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let kw: K = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let field = if path.is_empty() || path == "." {
            field_from_message(&message).unwrap_or_else(|| "?".to_string())
        } else {
            path
        };
        (field, message)
    })?;
    Valid::check(kw).map_err(|p| (p.field, p.message))
}

/// serde names a missing field as "missing field `x`" with an empty path.
fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

unsafe extern "C" fn parse_kwargs<K: KwargsSpec>(
    kwargs_json: *const c_char,
    out_json: *mut *mut c_char,
    out_field: *mut *mut c_char,
    out_error: *mut *mut c_char,
) -> i32 {
    guard(out_error, || {
        // SAFETY: the host passes a NUL-terminated string valid for the call.
        let json = unsafe { read_str(kwargs_json, "kwargs_json") }?;
        match parse_typed::<K>(json) {
            Ok(kw) => {
                let normalised = serde_json::to_string(&kw)
                    .map_err(|e| format!("kwargs cannot be serialised: {e}"))?;
                write_string(out_json, &normalised);
                Ok(())
            }
            Err((field, message)) => {
                write_string(out_field, &field);
                Err(message)
            }
        }
    })
}

/// What a gradient instance handed to the host holds.
struct GradientInstance {
    gradient: Box<dyn Gradient>,
    out: Vec<f64>,
    out_shape: Vec<usize>,
}

unsafe extern "C" fn create_gradient<F: Factory<GradientKind>>(
    kwargs_json: *const c_char,
    shape: *const usize,
    ndim: usize,
    out_instance: *mut *mut c_void,
    out_error: *mut *mut c_char,
) -> i32 {
    guard(out_error, || {
        if out_instance.is_null() {
            return Err("out_instance is a null pointer".into());
        }
        // SAFETY: the host passes a NUL-terminated string valid for the call.
        let json = unsafe { read_str(kwargs_json, "kwargs_json") }?;
        // SAFETY: the host passes `ndim` axis lengths valid for the call.
        let shape = unsafe { read_slice(shape, ndim, "shape") }?.to_vec();
        let kw = parse_typed::<F::Kwargs>(json)
            .map_err(|(field, message)| format!("kwarg `{field}`: {message}"))?;
        let gradient =
            F::build(&kw, &GradientContext { shape: &shape }).map_err(|e| e.to_string())?;
        let instance = Box::new(GradientInstance {
            gradient,
            out: Vec::new(),
            out_shape: Vec::new(),
        });
        // SAFETY: `out_instance` is non-null and writable per the contract.
        unsafe { *out_instance = Box::into_raw(instance).cast::<c_void>() };
        Ok(())
    })
}

unsafe extern "C" fn destroy_gradient(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` came from `create_gradient` and is destroyed once, per the contract.
        drop(unsafe { Box::from_raw(instance.cast::<GradientInstance>()) });
    }));
}

/// The host's loss seen through maxi's [`Loss`] trait, so that a plugin's gradient receives an
/// ordinary [`Problem`].
struct HostLossProxy {
    host: HostLoss,
    bounds: Bounds,
    shape: Vec<usize>,
}

// SAFETY: the proxy lives inside one `compute` call and is only used on the thread that made
// it; `Loss: Send` is required by `Problem::new`, not exercised.
unsafe impl Send for HostLossProxy {}

impl HostLossProxy {
    /// # Safety
    /// `host` must be valid for the call being served.
    unsafe fn new(host: &HostLoss, shape: &[usize]) -> std::result::Result<Self, String> {
        let d = item_len(shape)?;
        if host.item_len != d {
            return Err(format!(
                "host loss item length {} does not match the point's {d} entries",
                host.item_len
            ));
        }
        let bounds = if host.lower.is_null() || host.upper.is_null() {
            Bounds::unbounded(shape)
        } else {
            // SAFETY: non-null bounds hold `item_len` values each per the contract.
            let (lo, hi) = unsafe {
                (
                    read_slice(host.lower, d, "lower bounds")?,
                    read_slice(host.upper, d, "upper bounds")?,
                )
            };
            let lo =
                ArrayD::from_shape_vec(IxDyn(shape), lo.to_vec()).map_err(|e| e.to_string())?;
            let hi =
                ArrayD::from_shape_vec(IxDyn(shape), hi.to_vec()).map_err(|e| e.to_string())?;
            Bounds::new(lo, hi).unwrap_or_else(|_| Bounds::unbounded(shape))
        };
        Ok(HostLossProxy {
            host: *host,
            bounds,
            shape: shape.to_vec(),
        })
    }
}

impl Loss for HostLossProxy {
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
        let eval = self
            .host
            .eval_batch
            .ok_or_else(|| MaxiError::Other("the host gave no loss callback".into()))?;
        let rows = batch.shape().first().copied().unwrap_or(0);
        let item = self.host.item_len;
        let data = batch.as_standard_layout();
        let flat = data
            .as_slice()
            .ok_or_else(|| MaxiError::Other("batch is not contiguous".into()))?;
        if flat.len() != rows.saturating_mul(item) {
            return Err(MaxiError::Other(format!(
                "batch of shape {:?} does not hold items of shape {:?}",
                batch.shape(),
                self.shape
            )));
        }
        let mut out = vec![0.0; rows];
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the callback and its context are valid during this `compute` call; `flat` holds
        // `rows·item` values and `out` has room for `rows`.
        let status = unsafe {
            eval(
                self.host.ctx,
                flat.as_ptr(),
                rows,
                item,
                out.as_mut_ptr(),
                &mut err,
            )
        };
        if status != STATUS_OK {
            let message = if err.is_null() {
                "the host's loss failed".to_string()
            } else {
                // SAFETY: the host wrote a NUL-terminated string it owns.
                let m = unsafe { CStr::from_ptr(err) }
                    .to_string_lossy()
                    .into_owned();
                if let Some(free) = self.host.free_error {
                    // SAFETY: the string came from the host; it is released exactly once.
                    unsafe { free(err) };
                }
                m
            };
            return Err(MaxiError::Other(message));
        }
        Ok(Array1::from(out))
    }

    fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    fn start(&self) -> ArrayD<f64> {
        ArrayD::zeros(IxDyn(&self.shape))
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn compute_gradient(
    instance: *mut c_void,
    y: *const f64,
    shape: *const usize,
    ndim: usize,
    seed: u64,
    loss: *const HostLoss,
    out: *mut ArrayOut,
    out_error: *mut *mut c_char,
) -> i32 {
    guard(out_error, || {
        if instance.is_null() || loss.is_null() || out.is_null() {
            return Err("null instance, loss or output pointer".into());
        }
        // SAFETY: `instance` came from `create_gradient` and the host uses it from one thread at
        // a time.
        let inst = unsafe { &mut *instance.cast::<GradientInstance>() };
        // SAFETY: the host passes `ndim` axis lengths valid for the call.
        let shape = unsafe { read_slice(shape, ndim, "shape") }?.to_vec();
        let d = item_len(&shape)?;
        // SAFETY: the host passes `d` values valid for the call.
        let y = unsafe { read_slice(y, d, "y") }?;
        let y = ArrayViewD::from_shape(IxDyn(&shape), y).map_err(|e| e.to_string())?;
        if !loss.is_aligned() {
            return Err("the host's loss struct is misaligned".into());
        }
        // SAFETY: `loss` is non-null and aligned, and every version of `HostLoss` starts with
        // its `u32` size: only that field is read until the size is known to cover the struct.
        let size = unsafe { loss.cast::<u32>().read() };
        let needed = struct_size_of::<HostLoss>();
        if size < needed {
            return Err(format!(
                "the host's loss struct has struct_size {size}, smaller than the {needed} bytes of this plugin's HostLoss (maxi-plugin ABI version {MAXI_PLUGIN_ABI_VERSION}); the host is older than the SDK the plugin was built with: rebuild the plugin against the host's maxi-plugin"
            ));
        }
        // SAFETY: the host declares at least this version's size; valid for the call.
        let host = unsafe { &*loss };
        // SAFETY: `host` is valid for the duration of this call.
        let proxy = unsafe { HostLossProxy::new(host, &shape) }?;
        let problem = Problem::identity(Box::new(proxy), &shape);
        let mut rng = rng_from_seed(seed);
        let g = inst
            .gradient
            .estimate(&problem, &Request::at(y), &mut rng)
            .map_err(|e| e.to_string())?
            .gradient;
        inst.out = g.iter().copied().collect();
        inst.out_shape = g.shape().to_vec();
        // SAFETY: `out` is non-null and writable; the buffers live in the instance until the
        // next call or its destruction.
        unsafe {
            *out = ArrayOut {
                data: inst.out.as_ptr(),
                len: inst.out.len(),
                shape: inst.out_shape.as_ptr(),
                ndim: inst.out_shape.len(),
            };
        }
        Ok(())
    })
}

/// Everything one exported component owns (its strings) plus its descriptor.
struct ComponentExport {
    _strings: Vec<CString>,
    descriptor: ComponentDescriptor,
}

/// Builder of a plugin's descriptor: add components, then [`build`](PluginExport::build).
pub struct PluginExport {
    name: CString,
    version: CString,
    components: Vec<ComponentExport>,
}

/// Owns a built descriptor and everything it points to (leaked: libraries are never unloaded).
struct Built {
    _export: PluginExport,
    _pointers: Vec<*const ComponentDescriptor>,
    descriptor: PluginDescriptor,
}

impl PluginExport {
    /// A plugin called `name` (e.g. `env!("CARGO_PKG_NAME")`) at `version`.
    pub fn new(name: &str, version: &str) -> Self {
        PluginExport {
            name: c_string(name),
            version: c_string(version),
            components: Vec::new(),
        }
    }

    /// Adds a gradient method: the same `Factory<GradientKind>` a built-in implements.
    pub fn gradient<F: Factory<GradientKind>>(
        mut self,
        name: &str,
        aliases: &[&str],
        doc: &str,
    ) -> Self {
        let schema = serde_json::to_string(&schemars::schema_for!(F::Kwargs))
            .unwrap_or_else(|_| "{}".to_string());
        let aliases = serde_json::to_string(aliases).unwrap_or_else(|_| "[]".to_string());
        let kwarg_aliases: serde_json::Map<String, serde_json::Value> =
            <F::Kwargs as KwargsSpec>::ALIASES
                .iter()
                .map(|(alias, canonical)| (alias.to_string(), (*canonical).into()))
                .collect();
        let kwarg_aliases = serde_json::Value::Object(kwarg_aliases).to_string();
        let strings = vec![
            c_string(name),
            c_string(&aliases),
            c_string(doc),
            c_string(&schema),
            c_string(&kwarg_aliases),
        ];
        let descriptor = ComponentDescriptor {
            struct_size: struct_size_of::<ComponentDescriptor>(),
            kind: KIND_GRADIENT,
            name: strings[0].as_ptr(),
            aliases_json: strings[1].as_ptr(),
            doc: strings[2].as_ptr(),
            kwargs_schema_json: strings[3].as_ptr(),
            parse_kwargs: Some(parse_kwargs::<F::Kwargs>),
            create: Some(create_gradient::<F>),
            destroy: Some(destroy_gradient),
            gradient_compute: Some(compute_gradient),
            kwarg_aliases_json: strings[4].as_ptr(),
        };
        self.components.push(ComponentExport {
            _strings: strings,
            descriptor,
        });
        self
    }

    /// Component descriptors added so far (e.g. to alter one by hand before [`build`](Self::build)).
    pub fn components_mut(&mut self) -> impl Iterator<Item = &mut ComponentDescriptor> {
        self.components.iter_mut().map(|c| &mut c.descriptor)
    }

    /// The finished descriptor. It and everything it points to are leaked: they must outlive
    /// every use by the host, and plugins are never unloaded. Call it once (see
    /// [`DescriptorCell`]).
    pub fn build(self) -> &'static PluginDescriptor {
        let mut built = Box::new(Built {
            _export: self,
            _pointers: Vec::new(),
            descriptor: PluginDescriptor {
                abi_version: MAXI_PLUGIN_ABI_VERSION,
                struct_size: struct_size_of::<PluginDescriptor>(),
                plugin_name: std::ptr::null(),
                plugin_version: std::ptr::null(),
                num_components: 0,
                components: std::ptr::null(),
                free_string: Some(free_string),
            },
        });
        // The component descriptors live in the boxed export: their addresses are stable.
        built._pointers = built
            ._export
            .components
            .iter()
            .map(|c| &c.descriptor as *const ComponentDescriptor)
            .collect();
        built.descriptor.plugin_name = built._export.name.as_ptr();
        built.descriptor.plugin_version = built._export.version.as_ptr();
        built.descriptor.num_components = built._pointers.len();
        built.descriptor.components = built._pointers.as_ptr();
        let leaked: &'static Built = Box::leak(built);
        &leaked.descriptor
    }
}

/// The lazily built descriptor of a plugin, held in a `static` by
/// [`export_plugin!`](crate::export_plugin).
pub struct DescriptorCell {
    cell: OnceLock<Option<&'static PluginDescriptor>>,
}

impl DescriptorCell {
    /// An empty cell.
    pub const fn new() -> Self {
        DescriptorCell {
            cell: OnceLock::new(),
        }
    }

    /// The descriptor, built by `make` on first use; null if building it panicked. Never unwinds.
    pub fn get_or_build(&self, make: impl FnOnce() -> PluginExport) -> *const PluginDescriptor {
        let built = catch_unwind(AssertUnwindSafe(|| {
            *self
                .cell
                .get_or_init(|| catch_unwind(AssertUnwindSafe(|| make().build())).ok())
        }));
        match built {
            Ok(Some(d)) => d as *const PluginDescriptor,
            _ => std::ptr::null(),
        }
    }
}

impl Default for DescriptorCell {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{KIND_GRADIENT, STATUS_ERROR};
    use maxi_core::{Estimate, KwargProblem};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Kw {
        #[serde(default, alias = "count")]
        n: usize,
    }

    impl KwargsSpec for Kw {
        const ALIASES: &'static [(&'static str, &'static str)] = &[("count", "n")];

        fn validate(&self) -> std::result::Result<(), KwargProblem> {
            if self.n > 10 {
                return Err(KwargProblem::new("n", "must be at most 10"));
            }
            Ok(())
        }
    }

    /// Returns `n·y`.
    struct Scale(f64);

    impl Gradient for Scale {
        fn estimate(
            &mut self,
            problem: &Problem,
            request: &Request<'_>,
            _rng: &mut maxi_core::MaxiRng,
        ) -> Result<Estimate> {
            problem.eval(request.at.view())?;
            Ok(Estimate::new(request.at.mapv(|v| v * self.0)))
        }
    }

    struct ScaleFactory;

    impl Factory<GradientKind> for ScaleFactory {
        type Kwargs = Kw;
        fn build(kw: &Valid<Kw>, _ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>> {
            if kw.n == 7 {
                panic!("seven");
            }
            Ok(Box::new(Scale(kw.n as f64)))
        }
    }

    fn take(p: *mut c_char) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: strings handed out by this module.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: as above, freed once.
        unsafe { free_string(p) };
        Some(s)
    }

    fn descriptor() -> &'static PluginDescriptor {
        PluginExport::new("test-plugin", "1.2.3")
            .gradient::<ScaleFactory>("scale", &["Scale"], "Scales")
            .build()
    }

    fn component(d: &PluginDescriptor) -> &ComponentDescriptor {
        // SAFETY: one component, built above.
        unsafe { &**d.components }
    }

    #[test]
    fn guard_turns_errors_and_panics_into_statuses() {
        let mut err: *mut c_char = std::ptr::null_mut();
        assert_eq!(guard(&mut err, || Ok(())), STATUS_OK);
        assert!(err.is_null());
        assert_eq!(guard(&mut err, || Err("bad".into())), STATUS_ERROR);
        assert_eq!(take(err).as_deref(), Some("bad"));
        let status = guard(&mut err, || panic!("boom {}", 1));
        assert_eq!(status, STATUS_PANIC);
        assert_eq!(take(err).as_deref(), Some("panicked: boom 1"));
        // a null error slot is allowed
        assert_eq!(
            guard(std::ptr::null_mut(), || Err("x".into())),
            STATUS_ERROR
        );
    }

    #[test]
    fn descriptor_has_this_abi_and_the_component() {
        let d = descriptor();
        assert_eq!(d.abi_version, MAXI_PLUGIN_ABI_VERSION);
        assert_eq!(
            d.struct_size as usize,
            std::mem::size_of::<PluginDescriptor>()
        );
        assert_eq!(d.num_components, 1);
        let c = component(d);
        assert_eq!(c.kind, KIND_GRADIENT);
        // SAFETY: strings built by `PluginExport`.
        let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
        assert_eq!(s(d.plugin_name), "test-plugin");
        assert_eq!(s(d.plugin_version), "1.2.3");
        assert_eq!(s(c.name), "scale");
        assert_eq!(s(c.aliases_json), r#"["Scale"]"#);
        assert_eq!(s(c.kwarg_aliases_json), r#"{"count":"n"}"#);
        assert!(crate::abi::has_kwarg_aliases(c.struct_size));
        assert!(!crate::abi::has_kwarg_aliases(
            crate::abi::COMPONENT_DESCRIPTOR_V1_SIZE
        ));
        let schema: serde_json::Value = serde_json::from_str(&s(c.kwargs_schema_json)).unwrap();
        assert!(schema["properties"]["n"].is_object(), "{schema}");
    }

    #[test]
    fn parse_kwargs_fills_defaults_and_names_the_field() {
        let parse = component(descriptor()).parse_kwargs.unwrap();
        let call = |json: &std::ffi::CStr| {
            let (mut out, mut field, mut err) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            // SAFETY: valid string and out pointers.
            let status = unsafe { parse(json.as_ptr(), &mut out, &mut field, &mut err) };
            (status, take(out), take(field), take(err))
        };
        assert_eq!(
            call(c"{}"),
            (STATUS_OK, Some(r#"{"n":0}"#.into()), None, None)
        );
        assert_eq!(
            call(c"{\"count\": 4}"),
            (STATUS_OK, Some(r#"{"n":4}"#.into()), None, None)
        );
        let (status, _, field, err) = call(c"{\"n\": 11}");
        assert_eq!((status, field.as_deref()), (STATUS_ERROR, Some("n")));
        assert_eq!(err.as_deref(), Some("must be at most 10"));
        let (status, _, field, _) = call(c"{\"n\": \"x\"}");
        assert_eq!((status, field.as_deref()), (STATUS_ERROR, Some("n")));
        let (status, _, field, err) = call(c"{\"m\": 1}");
        assert_eq!(status, STATUS_ERROR);
        assert!(err.unwrap().contains("unknown field `m`"), "{field:?}");
    }

    unsafe extern "C" fn squared_norm(
        _ctx: *mut c_void,
        batch: *const f64,
        rows: usize,
        item_len: usize,
        out: *mut f64,
        _err: *mut *mut c_char,
    ) -> i32 {
        // SAFETY: called by the proxy with valid buffers.
        let (b, o) = unsafe {
            (
                std::slice::from_raw_parts(batch, rows * item_len),
                std::slice::from_raw_parts_mut(out, rows),
            )
        };
        for (r, v) in o.iter_mut().enumerate() {
            *v = b[r * item_len..(r + 1) * item_len]
                .iter()
                .map(|x| x * x)
                .sum();
        }
        STATUS_OK
    }

    #[test]
    fn create_compute_destroy_round_trip_and_panicking_create() {
        let c = component(descriptor());
        let (create, compute, destroy) = (
            c.create.unwrap(),
            c.gradient_compute.unwrap(),
            c.destroy.unwrap(),
        );
        let shape = [2usize, 2];
        let mut err: *mut c_char = std::ptr::null_mut();
        let mut instance: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid arguments.
        let status = unsafe {
            create(
                c"{\"n\": 7}".as_ptr(),
                shape.as_ptr(),
                2,
                &mut instance,
                &mut err,
            )
        };
        assert_eq!(status, STATUS_PANIC);
        assert_eq!(take(err).as_deref(), Some("panicked: seven"));
        // SAFETY: valid arguments.
        let status = unsafe {
            create(
                c"{\"n\": 3}".as_ptr(),
                shape.as_ptr(),
                2,
                &mut instance,
                &mut err,
            )
        };
        assert_eq!(status, STATUS_OK);
        let y = [1.0, 2.0, 3.0, 4.0];
        let host = HostLoss {
            struct_size: struct_size_of::<HostLoss>(),
            ctx: std::ptr::null_mut(),
            eval_batch: Some(squared_norm),
            free_error: None,
            item_len: 4,
            lower: std::ptr::null(),
            upper: std::ptr::null(),
        };
        let mut out = ArrayOut::empty();
        // SAFETY: valid arguments; the instance came from `create`.
        let status = unsafe {
            compute(
                instance,
                y.as_ptr(),
                shape.as_ptr(),
                2,
                0,
                &host,
                &mut out,
                &mut err,
            )
        };
        assert_eq!(status, STATUS_OK, "{:?}", take(err));
        // SAFETY: the result stays valid until the next call.
        let (data, got_shape) = unsafe {
            (
                std::slice::from_raw_parts(out.data, out.len),
                std::slice::from_raw_parts(out.shape, out.ndim),
            )
        };
        assert_eq!(data, &[3.0, 6.0, 9.0, 12.0]);
        assert_eq!(got_shape, &shape);
        // SAFETY: destroyed once.
        unsafe { destroy(instance) };
    }

    /// The first fields of a `HostLoss` as an older, smaller host might hand it over.
    #[repr(C)]
    struct OldHostLoss {
        struct_size: u32,
        ctx: *mut c_void,
        eval_batch: Option<crate::abi::LossCallbackFn>,
    }

    #[test]
    fn a_smaller_host_loss_is_refused_reading_only_its_size() {
        let c = component(descriptor());
        let (create, compute, destroy) = (
            c.create.unwrap(),
            c.gradient_compute.unwrap(),
            c.destroy.unwrap(),
        );
        let shape = [2usize];
        let mut err: *mut c_char = std::ptr::null_mut();
        let mut instance: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid arguments.
        let status = unsafe { create(c"{}".as_ptr(), shape.as_ptr(), 1, &mut instance, &mut err) };
        assert_eq!(status, STATUS_OK, "{:?}", take(err));
        // A heap block of exactly the old struct's size: reading a whole `HostLoss` from it
        // (as the SDK once did before checking the size) is out of bounds, which Miri reports
        // (`MIRIFLAGS=-Zmiri-ignore-leaks cargo +nightly miri test -p maxi-plugin --lib
        // smaller_host_loss`).
        let old = Box::new(OldHostLoss {
            struct_size: std::mem::size_of::<OldHostLoss>() as u32,
            ctx: std::ptr::null_mut(),
            eval_batch: Some(squared_norm),
        });
        let y = [1.0, 2.0];
        let mut out = ArrayOut::empty();
        // SAFETY: valid arguments, except the deliberately small loss struct.
        let status = unsafe {
            compute(
                instance,
                y.as_ptr(),
                shape.as_ptr(),
                1,
                0,
                (&*old as *const OldHostLoss).cast::<HostLoss>(),
                &mut out,
                &mut err,
            )
        };
        assert_eq!(status, STATUS_ERROR);
        let message = take(err).expect("message");
        assert!(
            message.contains("struct_size 24, smaller than the 56 bytes")
                && message.contains("rebuild the plugin"),
            "{message}"
        );
        // SAFETY: destroyed once.
        unsafe { destroy(instance) };
    }
}
