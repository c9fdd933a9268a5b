//! The bridge from a plugin component to maxi's registry and [`Gradient`] trait: kwargs
//! parsing, instance creation, and `compute` with the host's loss callback.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use maxi_core::registry::{self, Entry, ParseFailure, ParseFn, Prepared};
use maxi_core::{
    Estimate, Gradient, GradientContext, GradientKind, Kind, KwargProblem, MaxiError, MaxiRng,
    Problem, Request, Result,
};
use maxi_plugin::abi::{ArrayOut, HostLoss, STATUS_OK, STATUS_PANIC, struct_size_of};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use serde_json::Value;

use crate::descriptor::{Meta, PluginComponent};

/// Most axes a returned array may declare (guards against garbage results).
const MAX_NDIM: usize = 64;

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
    /// The registry entry of this component.
    pub(crate) fn into_entry(self) -> Entry<GradientKind> {
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
                // accepted by the plugin's own parser; listed so the registry lets them through
                kwarg_aliases: self.kwarg_aliases,
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

/// State of one `compute` call, reached by the loss callback through the call's handle.
struct CallCtx<'a> {
    problem: &'a Problem,
    shape: &'a [usize],
    y: &'a [f64],
    base: Cell<Option<maxi_core::Assessed>>,
    error: RefCell<Option<MaxiError>>,
}

/// A `compute` call in progress: its handle (what plugins get as [`HostLoss::ctx`]), its
/// thread and the address of its [`CallCtx`].
struct LiveCall {
    handle: usize,
    thread: ThreadId,
    ctx: usize,
}

/// The `compute` calls in progress. A plugin only ever sees handles; the callback finds the
/// call's state here, so a handle kept past its call finds nothing instead of freed memory.
static LIVE_CALLS: Mutex<Vec<LiveCall>> = Mutex::new(Vec::new());
/// The next call handle (0 is never used: it would be a null `ctx`).
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(1);

fn live_calls() -> std::sync::MutexGuard<'static, Vec<LiveCall>> {
    LIVE_CALLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers `ctx` as live until the guard is dropped, which must happen before `ctx` goes.
struct LiveCallGuard {
    handle: usize,
}

impl LiveCallGuard {
    fn new(ctx: &CallCtx<'_>) -> Self {
        let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        live_calls().push(LiveCall {
            handle,
            thread: std::thread::current().id(),
            ctx: ctx as *const CallCtx<'_> as usize,
        });
        LiveCallGuard { handle }
    }
}

impl Drop for LiveCallGuard {
    fn drop(&mut self) {
        live_calls().retain(|c| c.handle != self.handle);
    }
}

/// The state of the live call `handle` if it runs on this thread, or why the callback must be
/// refused.
fn find_call(handle: usize) -> std::result::Result<usize, &'static str> {
    let calls = live_calls();
    let call = calls.iter().find(|c| c.handle == handle).ok_or(
        "the loss callback was called outside a compute call (with a handle whose call has returned, or a made-up one); a plugin may call the loss only during compute",
    )?;
    if call.thread != std::thread::current().id() {
        return Err(
            "the loss callback was called from another thread; call it from the thread that called compute",
        );
    }
    Ok(call.ctx)
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
    let address = match find_call(ctx as usize) {
        Ok(address) => address,
        Err(message) => {
            write_host_error(out_error, message);
            return maxi_plugin::abi::STATUS_ERROR;
        }
    };
    // SAFETY: `address` is the `CallCtx` of a `compute` call that is still live (its guard,
    // dropped before the `CallCtx`, is registered) and runs on this thread, so that call is
    // below this one on the stack and its `CallCtx` is alive.
    let ctx = unsafe { &*(address as *const CallCtx<'_>) };
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
            base: Cell::new(None),
            error: RefCell::new(None),
        };
        // declared after `ctx`, so dropped (unregistered) before it
        let live = LiveCallGuard::new(&ctx);
        let host = HostLoss {
            struct_size: struct_size_of::<HostLoss>(),
            ctx: std::ptr::without_provenance_mut::<c_void>(live.handle),
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
        // the handle dies with the call: a plugin that kept it gets an error status
        drop(live);
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
