//! The plugin descriptor reader: a descriptor built from the fuzz input (any ABI version and
//! struct sizes, any strings where the ABI puts names, aliases, docs and JSON, missing
//! functions, null components) must give components or a plugin error, never a panic. Its
//! memory is always as large as it declares: a plugin that lies about that is beyond any host.

use std::ffi::{CString, c_char, c_void};

use arbitrary::{Result, Unstructured};
use maxi_plugin::abi::{
    ArrayOut, COMPONENT_DESCRIPTOR_V1_SIZE, ComponentDescriptor, HostLoss, MAXI_PLUGIN_ABI_VERSION,
    PluginDescriptor, STATUS_ERROR, struct_size_of,
};

unsafe extern "C" fn free_string(_: *mut c_char) {}
unsafe extern "C" fn parse(
    _: *const c_char,
    _: *mut *mut c_char,
    _: *mut *mut c_char,
    _: *mut *mut c_char,
) -> i32 {
    STATUS_ERROR
}
unsafe extern "C" fn create(
    _: *const c_char,
    _: *const usize,
    _: usize,
    _: *mut *mut c_void,
    _: *mut *mut c_char,
) -> i32 {
    STATUS_ERROR
}
unsafe extern "C" fn destroy(_: *mut c_void) {}
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn compute(
    _: *mut c_void,
    _: *const f64,
    _: *const usize,
    _: usize,
    _: u64,
    _: *const HostLoss,
    _: *mut ArrayOut,
    _: *mut *mut c_char,
) -> i32 {
    STATUS_ERROR
}

/// Owns everything the descriptor points to while the reader runs.
#[derive(Default)]
struct Arena {
    strings: Vec<CString>,
    blocks: Vec<Vec<u64>>,
    pointers: Vec<Vec<*const ComponentDescriptor>>,
}

impl Arena {
    /// A string field: null, one of `usual`, or any text.
    fn text(&mut self, u: &mut Unstructured<'_>, usual: &[&str]) -> Result<*const c_char> {
        let s: String = match u.int_in_range(0..=3u8)? {
            0 => return Ok(std::ptr::null()),
            1 if !usual.is_empty() => (*u.choose(usual)?).to_string(),
            _ => u.arbitrary()?,
        };
        let c = CString::new(s.replace('\0', "")).unwrap_or_default();
        let p = c.as_ptr();
        self.strings.push(c);
        Ok(p)
    }

    /// `value` at the start of an 8-aligned block of at least `size` bytes.
    fn place<T>(&mut self, value: T, size: usize) -> *const T {
        let words = size.max(std::mem::size_of::<T>()).div_ceil(8);
        let mut block = vec![0u64; words];
        let p = block.as_mut_ptr().cast::<T>();
        // SAFETY: the block is 8-aligned and large enough for `T`.
        unsafe { p.write(value) };
        self.blocks.push(block);
        p
    }

    /// A declared struct size: usually the real one, sometimes older, newer or anything.
    fn size(&mut self, u: &mut Unstructured<'_>, current: u32, v1: u32) -> Result<u32> {
        Ok(match u.int_in_range(0..=4u8)? {
            0 => v1,
            1 => current + 8 * u.int_in_range(1..=4u32)?,
            2 => u.int_in_range(0..=current + 64)?,
            _ => current,
        })
    }

    fn component(&mut self, u: &mut Unstructured<'_>) -> Result<*const ComponentDescriptor> {
        if u.ratio(1, 16)? {
            return Ok(std::ptr::null());
        }
        let size = self.size(
            u,
            struct_size_of::<ComponentDescriptor>(),
            COMPONENT_DESCRIPTOR_V1_SIZE,
        )?;
        let schemas = [
            "{}",
            r#"{"type":"object","properties":{"a":{"type":"number"},"b":{}}}"#,
            r#"{"properties":{"level":{"default":0.0}},"additionalProperties":false}"#,
        ];
        let c = ComponentDescriptor {
            struct_size: size,
            kind: *u.choose(&[1u32, 2, 2, 2, 3, u32::MAX])?,
            name: self.text(u, &["urv_fuzz", "", " ", "a b"])?,
            aliases_json: self.text(u, &["[]", r#"["x","y"]"#, r#"[1]"#, "{}"])?,
            doc: self.text(u, &["doc"])?,
            kwargs_schema_json: self.text(u, &schemas)?,
            parse_kwargs: u.ratio(7, 8)?.then_some(parse),
            create: u.ratio(7, 8)?.then_some(create),
            destroy: u.ratio(7, 8)?.then_some(destroy),
            gradient_compute: u.ratio(7, 8)?.then_some(compute),
            kwarg_aliases_json: self.text(
                u,
                &[
                    "{}",
                    r#"{"alpha":"a"}"#,
                    r#"{"a":"b"}"#,
                    r#"{"x":"nope"}"#,
                    r#"{"x":1}"#,
                    "[]",
                ],
            )?,
        };
        Ok(self.place(c, size as usize))
    }

    fn descriptor(&mut self, u: &mut Unstructured<'_>) -> Result<*const PluginDescriptor> {
        let size = self.size(
            u,
            struct_size_of::<PluginDescriptor>(),
            struct_size_of::<PluginDescriptor>(),
        )?;
        let n = u.int_in_range(0..=4usize)?;
        let mut components = Vec::with_capacity(n);
        for _ in 0..n {
            components.push(self.component(u)?);
        }
        let d = PluginDescriptor {
            abi_version: if u.ratio(15, 16)? {
                MAXI_PLUGIN_ABI_VERSION
            } else {
                u.arbitrary()?
            },
            struct_size: size,
            plugin_name: self.text(u, &["fuzz-plugin"])?,
            plugin_version: self.text(u, &["0.1.0"])?,
            num_components: n,
            components: if n == 0 && u.ratio(1, 2)? {
                std::ptr::null()
            } else {
                components.as_ptr()
            },
            free_string: u.ratio(15, 16)?.then_some(free_string),
        };
        self.pointers.push(components);
        Ok(self.place(d, size as usize))
    }
}

/// Panics when the descriptor built from `data` breaks the reader's contract.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut arena = Arena::default();
    let Ok(descriptor) = arena.descriptor(&mut u) else {
        return;
    };
    // SAFETY: everything the descriptor points to lives in `arena` until the end of this
    // function; the components' functions are the statics above.
    let read = unsafe { maxi_plugin_host::components_from_descriptor(descriptor, "fuzz.so") };
    match read {
        Ok(components) => {
            for c in &components {
                assert!(!c.meta.name.trim().is_empty());
                let accepted = c.meta.accepted_kwargs();
                for (alias, canonical) in &c.meta.kwarg_aliases {
                    assert!(accepted.contains(alias) && accepted.contains(canonical));
                }
            }
        }
        Err(e) => assert!(e.is_usage() && e.to_string().contains("fuzz.so"), "{e}"),
    }
}
