//! The proxy-wasm ABI 0.2.1, host side: the few host functions graylane
//! calls, each behind a safe wrapper.
//!
//! graylane implements the ABI itself (these wrappers, and the exports in
//! `mod.rs`) instead of building on the proxy-wasm Rust SDK: measured side
//! by side on graylane itself (`scripts/bench/sdk-compare.sh`), the SDK's
//! dispatcher costs more fuel per request than the rule allowed; the table,
//! the rule and what was given up are docs/performance.md "The proxy-wasm
//! Rust SDK, measured". What the SDK would otherwise give, keeping up with
//! the host, is checked instead: wasm-tests/tests/callbacks.rs fails unless
//! Envoy calls every callback this module exports.
//!
//! Every `unsafe` block below is a call into the host through this ABI:
//! the pointers passed are to live Rust values (slices, locals) for the
//! duration of the call, and the host writes only through the out-pointers
//! it is given. What the host hands back in memory it allocated comes
//! through `proxy_on_memory_allocate`, which is here too, so that the
//! ownership each reader takes rests on an allocator in the same file: a
//! leaked boxed slice, or, during the request-header read, the reused
//! header buffer.

use std::cell::{Cell, RefCell};

/// `WasmResult::Ok`.
const OK: u32 = 0;

/// Header maps (`MapType`).
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
/// `BufferType::PluginConfiguration`.
const PLUGIN_CONFIGURATION: u32 = 7;
/// `MetricType::Counter`.
const COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
}

/// A host call's result other than `Ok` (proxy-wasm `WasmResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    NotFound,
    BadArgument,
    SerializationFailure,
    InvalidMemoryAccess,
    Empty,
    /// A shared-data write whose CAS token is no longer current.
    CasMismatch,
    InternalFailure,
    Unimplemented,
    /// Another code.
    Other(u32),
    /// Not a host code: the host returned the request headers somewhere
    /// other than the header buffer it was given.
    Misplaced,
}

impl Status {
    fn code(self) -> Option<u32> {
        Some(match self {
            Status::NotFound => 1,
            Status::BadArgument => 2,
            Status::SerializationFailure => 3,
            Status::InvalidMemoryAccess => 6,
            Status::Empty => 7,
            Status::CasMismatch => 8,
            Status::InternalFailure => 10,
            Status::Unimplemented => 12,
            Status::Other(code) => code,
            Status::Misplaced => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code() {
            Some(code) => write!(f, "{self:?} ({code})"),
            None => write!(f, "{self:?}"),
        }
    }
}

extern "C" {
    /// The module's static constructors (a WASI reactor's `_initialize`
    /// must run them first).
    fn __wasm_call_ctors();
}

/// Runs the module's static constructors: once, from `_initialize`,
/// before any other export.
pub fn run_static_constructors() {
    // SAFETY: called once, at module start, before any other export (a
    // WASI reactor's contract).
    unsafe { __wasm_call_ctors() };
}

fn result(status: u32) -> Result<(), Status> {
    Err(match status {
        OK => return Ok(()),
        1 => Status::NotFound,
        2 => Status::BadArgument,
        3 => Status::SerializationFailure,
        6 => Status::InvalidMemoryAccess,
        7 => Status::Empty,
        8 => Status::CasMismatch,
        10 => Status::InternalFailure,
        12 => Status::Unimplemented,
        code => Status::Other(code),
    })
}

thread_local! {
    /// The buffer the host writes the request headers into, reused.
    static HEADER_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set while the host is asked for the request headers: its allocation
    /// is then served from `HEADER_BUF`.
    static READING_HEADERS: Cell<bool> = const { Cell::new(false) };
    /// The buffer the host writes a shared-data value or a property into,
    /// reused (continuity: one or two small reads per request).
    static SMALL_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set while the host is asked for a value served from `SMALL_BUF`.
    static READING_SMALL: Cell<bool> = const { Cell::new(false) };
}

/// The host allocates what it returns to the module through this. During
/// the request-header read it gets the reused header buffer; otherwise a
/// leaked boxed slice of exactly `size` bytes, which the reader takes back
/// (`plugin_configuration`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if READING_HEADERS.get() {
        return HEADER_BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.resize(size, 0);
            buf.as_mut_ptr()
        });
    }
    if READING_SMALL.get() {
        return SMALL_BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.resize(size, 0);
            buf.as_mut_ptr()
        });
    }
    Box::into_raw(vec![0u8; size].into_boxed_slice()).cast::<u8>()
}

/// Writes a log line at a proxy-wasm level (0 trace .. 5 critical).
pub fn log(level: u32, message: &str) {
    // SAFETY: the message slice lives for the call.
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

/// The host's log level (0 trace .. 5 critical).
pub fn log_level() -> Result<u32, Status> {
    let mut level = 0u32;
    // SAFETY: `level` is a live local the host writes one u32 into.
    result(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(level)
}

/// The plugin configuration, whole.
pub fn plugin_configuration() -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: out-parameters are live locals.
    result(unsafe {
        proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size)
    })?;
    if data.is_null() || size == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: outside a header read, `proxy_on_memory_allocate` above
    // returns a leaked boxed slice of exactly `size` bytes (alignment 1),
    // whose ownership the host passes to us here.
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Reads the request headers, serialized by the host, into the reused
/// header buffer with one host call, and runs `f` on them.
pub fn with_request_headers<R>(f: impl FnOnce(&[u8]) -> R) -> Result<R, Status> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    READING_HEADERS.set(true);
    // SAFETY: out-parameters are live locals; the host allocates what it
    // writes through `proxy_on_memory_allocate`, in the header buffer.
    let status = unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
    READING_HEADERS.set(false);
    result(status)?;
    HEADER_BUF.with_borrow(|buf| {
        let headers = if data.is_null() || size == 0 {
            &[]
        } else if buf.as_ptr() == data.cast_const() {
            buf.get(..size).unwrap_or_default()
        } else {
            return Err(Status::Misplaced);
        };
        Ok(f(headers))
    })
}

/// Sets (replacing) or, with `None`, removes a header.
pub fn set_header(map: u32, name: &str, value: Option<&str>) -> Result<(), Status> {
    // SAFETY: name and value slices live for the call.
    result(unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        }
    })
}

/// Adds a header value (keeping existing values of that name).
pub fn add_header(map: u32, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: name and value slices live for the call.
    result(unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Sets filter state at a one-segment property path.
pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: path and value slices live for the call.
    result(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Defines a counter, returning its id.
pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: the name slice lives for the call; `id` is a live local.
    result(unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds to a counter.
pub fn increment(id: u32, by: i64) -> Result<(), Status> {
    // SAFETY: plain values only.
    result(unsafe { proxy_increment_metric(id, by) })
}

/// Asks the host to call `proxy_on_tick` of the current root every `ms`.
pub fn set_tick_period(ms: u32) -> Result<(), Status> {
    // SAFETY: a plain value only.
    result(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Runs a host call that returns a value allocated through
/// `proxy_on_memory_allocate`, serving that allocation from the reused
/// small buffer, then `f` on the call's outcome (`Ok(None)`: the host
/// returned no value).
fn with_small_value<R>(
    call: impl FnOnce(&mut *mut u8, &mut usize) -> u32,
    f: impl FnOnce(Result<Option<&[u8]>, Status>) -> R,
) -> R {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    READING_SMALL.set(true);
    let status = call(&mut data, &mut size);
    READING_SMALL.set(false);
    if let Err(status) = result(status) {
        return f(Err(status));
    }
    SMALL_BUF.with_borrow(|buf| {
        if data.is_null() || size == 0 {
            f(Ok(None))
        } else if buf.as_ptr() != data.cast_const() {
            f(Err(Status::Misplaced))
        } else {
            f(Ok(buf.get(..size)))
        }
    })
}

/// A property of the current context as a little-endian i64 (Envoy's
/// serialization of an integer), at a one-segment path.
pub fn property_i64(path: &str) -> Result<Option<i64>, Status> {
    with_small_value(
        // SAFETY: the path slice lives for the call; out-parameters are
        // live locals; the host allocates in the small buffer.
        |data, size| unsafe { proxy_get_property(path.as_ptr(), path.len(), data, size) },
        |value| {
            Ok(value?
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(i64::from_le_bytes))
        },
    )
}

/// Reads a shared-data value and its CAS token and runs `f` on them
/// (`None`, 0: no value under that key).
pub fn with_shared_data<R>(
    key: &str,
    f: impl FnOnce(Option<&[u8]>, u32) -> R,
) -> Result<R, Status> {
    let cas = Cell::new(0u32);
    with_small_value(
        |data, size| {
            let mut token = 0u32;
            // SAFETY: the key slice lives for the call; out-parameters are
            // live locals; the host allocates in the small buffer.
            let status =
                unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut token) };
            cas.set(token);
            status
        },
        |value| match value {
            Ok(v) => Ok(f(v, cas.get())),
            Err(Status::NotFound) => Ok(f(None, 0)),
            Err(status) => Err(status),
        },
    )
}

/// Writes a shared-data value if `cas` is still current (0: in any case).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: key and value slices live for the call.
    result(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// The host's wall clock, in milliseconds since the Unix epoch.
pub fn now_ms() -> Result<u64, Status> {
    let mut nanos = 0u64;
    // SAFETY: `nanos` is a live local the host writes one u64 into.
    result(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos / 1_000_000)
}
