//! The host calls the shared filter files make (`src/filter/abi.rs` has
//! the same functions over graylane's own imports), here through the SDK's
//! `hostcalls`. The SDK panics on a status it does not expect (a trap in
//! Envoy) where graylane's own layer returns it.

use proxy_wasm::hostcalls;
pub use proxy_wasm::types::Status;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::time::Duration;

pub const REQUEST_HEADERS: MapType = MapType::HttpRequestHeaders;
pub const RESPONSE_HEADERS: MapType = MapType::HttpResponseHeaders;

fn code(status: Status) -> u32 {
    status as u32
}

pub fn log(level: u32, message: &str) {
    let level = match level {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        4 => LogLevel::Error,
        _ => LogLevel::Critical,
    };
    let _ = hostcalls::log(level, message);
}

pub fn log_level() -> Result<u32, u32> {
    hostcalls::get_log_level().map(|l| l as u32).map_err(code)
}

pub fn plugin_configuration() -> Result<Vec<u8>, u32> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .map(Option::unwrap_or_default)
        .map_err(code)
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// The serialized request headers, in a buffer the host allocated through
/// the SDK's `proxy_on_memory_allocate` (the SDK owns that export, so the
/// buffer is a fresh allocation on every request; graylane's own layer
/// reuses one). The SDK's own readers of this call build a `String` per
/// name and value; this keeps graylane's in-place indexing instead.
pub fn request_headers() -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: out-parameters are live locals.
    let status =
        unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
    match status {
        Status::Ok if data.is_null() => Ok(Vec::new()),
        // SAFETY: the SDK's allocator returned a leaked boxed slice of
        // exactly `size` bytes; the host passes its ownership here (as the
        // SDK's own `hostcalls::get_map` takes it).
        Status::Ok => Ok(unsafe { Vec::from_raw_parts(data, size, size) }),
        status => Err(code(status)),
    }
}

pub fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), u32> {
    hostcalls::set_map_value(map, name, value).map_err(code)
}

pub fn add_header(map: MapType, name: &str, value: &str) -> Result<(), u32> {
    hostcalls::add_map_value(map, name, value).map_err(code)
}

pub fn set_property(path: &str, value: &[u8]) -> Result<(), u32> {
    hostcalls::set_property(vec![path], Some(value)).map_err(code)
}

pub fn define_counter(name: &str) -> Result<u32, u32> {
    hostcalls::define_metric(MetricType::Counter, name).map_err(code)
}

pub fn increment(id: u32, by: i64) -> Result<(), u32> {
    hostcalls::increment_metric(id, by).map_err(code)
}

pub fn set_tick_period(ms: u32) -> Result<(), u32> {
    hostcalls::set_tick_period(Duration::from_millis(u64::from(ms))).map_err(code)
}

// Lane continuity (src/filter/trace_table.rs), through the SDK.

pub fn property_i64(path: &str) -> Result<Option<i64>, Status> {
    let value = hostcalls::get_property(path.split('\0').collect())?;
    Ok(value
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(i64::from_le_bytes))
}

pub fn with_shared_data<R>(
    key: &str,
    f: impl FnOnce(Option<&[u8]>, u32) -> R,
) -> Result<R, Status> {
    let (value, cas) = hostcalls::get_shared_data(key)?;
    Ok(f(value.as_deref(), cas.unwrap_or(0)))
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas))
}

pub fn now_ms() -> Result<u64, Status> {
    let now = hostcalls::get_current_time()?;
    Ok(now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}
