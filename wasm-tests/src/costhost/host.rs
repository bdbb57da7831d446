//! The host side: the state host functions read and write, and one handler
//! per import the filter declares (proxy-wasm ABI 0.2.1 and WASI preview1).
//! An import without a handler gets the generic answer of [`fallback`].

use std::collections::BTreeMap;
use std::sync::Arc;
use wasmi::{AsContextMut, Caller, Error, Func, Memory, Val};

/// proxy-wasm `WasmResult` codes used here.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
/// WASI errno codes used here.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_NOSYS: i32 = 52;

/// proxy-wasm map types.
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_REQUEST_TRAILERS: u32 = 1;
const MAP_RESPONSE_HEADERS: u32 = 2;
const MAP_RESPONSE_TRAILERS: u32 = 3;
/// proxy-wasm buffer types.
const BUFFER_VM_CONFIGURATION: u32 = 6;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
/// Envoy's default log level (info) in proxy-wasm's numbering.
const LOG_LEVEL_INFO: u32 = 2;
/// The clock starts at 2026-01-01T00:00:00Z.
const CLOCK_START_NANOS: u64 = 1_767_225_600_000_000_000;
/// Root id Envoy passes in the plugin properties (the bench configs use it).
const ROOT_ID_NAME: &str = "graylane";

pub type Headers = Vec<(String, String)>;
/// The caller of a host function: the module's instance and the host state.
type Host<'a> = Caller<'a, HostState>;
/// A handler's answer: the status code for the import's first result (a
/// proxy-wasm `WasmResult`, or a WASI errno), or a trap.
type Answer = Result<i32, Error>;

/// Everything the host functions read and write.
pub struct HostState {
    pub(super) plugin_config: Vec<u8>,
    pub(super) vm_config: Vec<u8>,
    pub(super) maps: [Headers; 4],
    /// Plugin properties (read only).
    pub(super) properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Properties set during the current stream (Envoy's filter state).
    pub(super) stream_properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Shared data: value and CAS token by key (one VM id).
    pub(super) shared: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    pub(super) next_cas: u32,
    /// (name, type, value) by metric id.
    pub(super) metrics: Vec<(String, u32, i64)>,
    pub(super) calls: BTreeMap<String, u64>,
    /// Imports that fell through to the generic answer, by name.
    pub(super) fallbacks: BTreeMap<String, u64>,
    pub(super) allocations: u64,
    pub(super) allocated_bytes: u64,
    pub(super) tick_period_ms: u32,
    pub(super) clock_nanos: u64,
    pub(super) rng: u64,
    pub(super) log_level: u32,
    /// (level, message) from `proxy_log`, and stdout/stderr from `fd_write`.
    pub logs: Vec<(u32, String)>,
}

impl HostState {
    pub(super) fn new(plugin_config: Vec<u8>) -> HostState {
        let mut properties = BTreeMap::new();
        for (key, value) in [
            ("plugin_root_id", ROOT_ID_NAME),
            ("plugin_name", ROOT_ID_NAME),
            ("plugin_vm_id", ROOT_ID_NAME),
        ] {
            properties.insert(key.as_bytes().to_vec(), value.as_bytes().to_vec());
        }
        HostState {
            plugin_config,
            vm_config: Vec::new(),
            maps: Default::default(),
            properties,
            stream_properties: BTreeMap::new(),
            shared: BTreeMap::new(),
            next_cas: 0,
            metrics: Vec::new(),
            calls: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            allocations: 0,
            allocated_bytes: 0,
            tick_period_ms: 0,
            clock_nanos: CLOCK_START_NANOS,
            rng: 0x6772_6179_6c61_6e65, // fixed seed: "graylane"
            log_level: LOG_LEVEL_INFO,
            logs: Vec::new(),
        }
    }

    /// Keeps the first lines a module logs (its configure messages), not
    /// an unbounded per-request stream.
    fn log(&mut self, level: u32, text: &[u8]) {
        if self.logs.len() < 1_000 {
            self.logs
                .push((level, String::from_utf8_lossy(text).into_owned()));
        }
    }

    pub(super) fn now(&mut self) -> u64 {
        self.clock_nanos += 1_000;
        self.clock_nanos
    }

    /// splitmix64: a fixed, seeded sequence.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn map(&mut self, map_type: u32) -> Option<&mut Headers> {
        match map_type {
            MAP_REQUEST_HEADERS => self.maps.get_mut(0),
            MAP_REQUEST_TRAILERS => self.maps.get_mut(1),
            MAP_RESPONSE_HEADERS => self.maps.get_mut(2),
            MAP_RESPONSE_TRAILERS => self.maps.get_mut(3),
            _ => None,
        }
    }

    /// The value of a metric, by name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, _, v)| v)
    }
}

/// The proxy-wasm serialization of a header map: `u32 count`, then
/// `count` × (`u32 name_len`, `u32 value_len`), then each name and value
/// followed by a NUL.
pub fn serialize_map(map: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// The inverse of [`serialize_map`]; `None` when the bytes do not fit.
pub fn deserialize_map(bytes: &[u8]) -> Option<Headers> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count.min(bytes.len()));
    for i in 0..count {
        let (nl, vl) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let name = bytes.get(data..data.checked_add(nl)?)?;
        data += nl + 1;
        let value = bytes.get(data..data.checked_add(vl)?)?;
        data += vl + 1;
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(out)
}

/// The parameters of one host call.
#[derive(Clone, Copy)]
struct Args<'a>(&'a [Val]);

impl Args<'_> {
    fn u32(self, i: usize) -> Result<u32, Error> {
        match self.0.get(i) {
            Some(Val::I32(v)) => Ok(*v as u32),
            Some(Val::I64(v)) => Ok(*v as u32),
            _ => Err(Error::new(format!("argument {i}: expected an integer"))),
        }
    }

    fn i64(self, i: usize) -> Result<i64, Error> {
        match self.0.get(i) {
            Some(Val::I64(v)) => Ok(*v),
            Some(Val::I32(v)) => Ok(i64::from(*v)),
            _ => Err(Error::new(format!("argument {i}: expected an integer"))),
        }
    }
}

fn memory(caller: &Host<'_>) -> Result<Memory, Error> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| Error::new("the module exports no memory"))
}

fn read(caller: &Host<'_>, ptr: u32, len: u32) -> Result<Vec<u8>, Error> {
    let mem = memory(caller)?;
    if u64::from(ptr) + u64::from(len) > mem.data_size(caller) as u64 {
        return Err(Error::new(format!(
            "read {len} bytes at {ptr}: out of bounds"
        )));
    }
    let mut buf = vec![0; len as usize];
    mem.read(caller, ptr as usize, &mut buf)
        .map_err(|e| Error::new(format!("read {len} bytes at {ptr}: {e}")))?;
    Ok(buf)
}

fn write(caller: &mut Host<'_>, ptr: u32, bytes: &[u8]) -> Result<(), Error> {
    let mem = memory(caller)?;
    mem.write(caller.as_context_mut(), ptr as usize, bytes)
        .map_err(|e| Error::new(format!("write {} bytes at {ptr}: {e}", bytes.len())))
}

fn write_u32(caller: &mut Host<'_>, ptr: u32, v: u32) -> Result<(), Error> {
    write(caller, ptr, &v.to_le_bytes())
}

fn write_u64(caller: &mut Host<'_>, ptr: u32, v: u64) -> Result<(), Error> {
    write(caller, ptr, &v.to_le_bytes())
}

/// The module's allocator export, as Envoy looks it up.
fn allocator(caller: &Host<'_>) -> Option<Func> {
    ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|name| caller.get_export(name).and_then(|e| e.into_func()))
}

/// Copies `bytes` into a buffer the module allocates and writes its pointer
/// and size into the two out-parameters (as proxy-wasm-cpp-host does: no
/// allocation for an empty value, pointer 0).
fn return_bytes(
    caller: &mut Host<'_>,
    bytes: &[u8],
    ptr_out: u32,
    size_out: u32,
) -> Result<(), Error> {
    let mut ptr = 0u32;
    if !bytes.is_empty() {
        let alloc = allocator(caller)
            .ok_or_else(|| Error::new("the module exports no proxy_on_memory_allocate"))?;
        let mut out = [Val::I32(0)];
        alloc.call(
            caller.as_context_mut(),
            &[Val::I32(bytes.len() as i32)],
            &mut out,
        )?;
        ptr = match out.first() {
            Some(Val::I32(p)) => *p as u32,
            _ => 0,
        };
        let state = caller.data_mut();
        state.allocations += 1;
        state.allocated_bytes += bytes.len() as u64;
        if ptr == 0 {
            return Err(Error::new("the module's allocator returned null"));
        }
        write(caller, ptr, bytes)?;
    }
    write_u32(caller, ptr_out, ptr)?;
    write_u32(caller, size_out, bytes.len() as u32)
}

fn status(results: &mut [Val], code: i32) {
    if let Some(r) = results.first_mut() {
        *r = Val::I32(code);
    }
}

/// One import's host function.
type Handler = fn(&mut Host<'_>, Args<'_>) -> Answer;

/// The handler of an import, by name; `None`: the generic [`fallback`].
fn handler(name: &str) -> Option<Handler> {
    let handler: Handler = match name {
        "proxy_log" => proxy_log,
        "proxy_get_log_level" => proxy_get_log_level,
        "proxy_get_current_time_nanoseconds" => proxy_get_current_time_nanoseconds,
        "proxy_set_tick_period_milliseconds" => proxy_set_tick_period_milliseconds,
        "proxy_get_buffer_bytes" => proxy_get_buffer_bytes,
        "proxy_get_buffer_status" => proxy_get_buffer_status,
        "proxy_get_header_map_pairs" => proxy_get_header_map_pairs,
        "proxy_get_header_map_size" => proxy_get_header_map_size,
        "proxy_set_header_map_pairs" => proxy_set_header_map_pairs,
        "proxy_get_header_map_value" => proxy_get_header_map_value,
        "proxy_replace_header_map_value" => proxy_replace_header_map_value,
        "proxy_add_header_map_value" => proxy_add_header_map_value,
        "proxy_remove_header_map_value" => proxy_remove_header_map_value,
        "proxy_get_property" => proxy_get_property,
        "proxy_set_property" => proxy_set_property,
        "proxy_get_shared_data" => proxy_get_shared_data,
        "proxy_set_shared_data" => proxy_set_shared_data,
        "proxy_define_metric" => proxy_define_metric,
        "proxy_increment_metric" => proxy_increment_metric,
        "proxy_record_metric" => proxy_record_metric,
        "proxy_get_metric" => proxy_get_metric,
        "proxy_set_effective_context" | "proxy_done" => |_, _| Ok(OK),
        // Envoy answers NotFound for a foreign function it does not know.
        "proxy_call_foreign_function" => |_, _| Ok(NOT_FOUND),
        // WASI preview1
        "clock_time_get" => clock_time_get,
        "clock_res_get" => clock_res_get,
        "random_get" => random_get,
        "fd_write" => fd_write,
        "environ_sizes_get" | "args_sizes_get" => no_entries,
        "environ_get" | "args_get" | "sched_yield" => |_, _| Ok(ERRNO_SUCCESS),
        // No preopened directories: wasi-libc stops scanning at EBADF.
        "fd_prestat_get" | "fd_prestat_dir_name" => |_, _| Ok(ERRNO_BADF),
        "fd_fdstat_get" => fd_fdstat_get,
        "fd_close" | "fd_seek" | "fd_read" => |_, _| Ok(ERRNO_BADF),
        "proc_exit" => proc_exit,
        _ => return None,
    };
    Some(handler)
}

/// One import of the module, linked to its handler.
pub(super) struct Import {
    module: Arc<str>,
    name: Arc<str>,
    handler: Option<Handler>,
}

impl Import {
    pub(super) fn new(module: &str, name: &str) -> Import {
        Import {
            module: Arc::from(module),
            name: Arc::from(name),
            handler: handler(name),
        }
    }

    /// One call: counts it by name, then answers it.
    pub(super) fn call(
        &self,
        caller: &mut Host<'_>,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        *caller
            .data_mut()
            .calls
            .entry(self.name.to_string())
            .or_default() += 1;
        match self.handler {
            Some(handler) => {
                let code = handler(caller, Args(params))?;
                status(results, code);
            }
            None => fallback(caller, &self.module, &self.name, results),
        }
        Ok(())
    }
}

/// Any other import: zeroed results and a status that says "not here".
fn fallback(caller: &mut Host<'_>, module: &str, name: &str, results: &mut [Val]) {
    *caller
        .data_mut()
        .fallbacks
        .entry(name.to_string())
        .or_default() += 1;
    for r in results.iter_mut() {
        *r = Val::default_for_ty(r.ty());
    }
    let code = if module.starts_with("wasi") {
        ERRNO_NOSYS
    } else if name.starts_with("proxy_") {
        NOT_FOUND
    } else {
        0
    };
    if let Some(Val::I32(_)) = results.first() {
        status(results, code);
    }
}

// --- proxy-wasm -------------------------------------------------------------

fn proxy_log(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let text = read(caller, a.u32(1)?, a.u32(2)?)?;
    let level = a.u32(0)?;
    caller.data_mut().log(level, &text);
    Ok(OK)
}

fn proxy_get_log_level(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let level = caller.data().log_level;
    write_u32(caller, a.u32(0)?, level)?;
    Ok(OK)
}

fn proxy_get_current_time_nanoseconds(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let now = caller.data_mut().now();
    write_u64(caller, a.u32(0)?, now)?;
    Ok(OK)
}

fn proxy_set_tick_period_milliseconds(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    caller.data_mut().tick_period_ms = a.u32(0)?;
    Ok(OK)
}

/// The plugin or VM configuration, by proxy-wasm buffer type.
fn config_buffer(state: &HostState, buffer_type: u32) -> Option<&[u8]> {
    match buffer_type {
        BUFFER_PLUGIN_CONFIGURATION => Some(&state.plugin_config),
        BUFFER_VM_CONFIGURATION => Some(&state.vm_config),
        _ => None,
    }
}

fn proxy_get_buffer_bytes(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let Some(buffer) = config_buffer(caller.data(), a.u32(0)?).map(<[u8]>::to_vec) else {
        return Ok(NOT_FOUND);
    };
    let start = (a.u32(1)? as usize).min(buffer.len());
    let end = start.saturating_add(a.u32(2)? as usize).min(buffer.len());
    let slice = buffer.get(start..end).unwrap_or_default();
    return_bytes(caller, slice, a.u32(3)?, a.u32(4)?)?;
    Ok(OK)
}

fn proxy_get_buffer_status(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let Some(len) = config_buffer(caller.data(), a.u32(0)?).map(<[u8]>::len) else {
        return Ok(NOT_FOUND);
    };
    write_u32(caller, a.u32(1)?, len as u32)?;
    write_u32(caller, a.u32(2)?, 0)?;
    Ok(OK)
}

fn proxy_get_header_map_pairs(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let Some(map) = caller.data_mut().map(a.u32(0)?).map(|m| serialize_map(m)) else {
        return Ok(BAD_ARGUMENT);
    };
    return_bytes(caller, &map, a.u32(1)?, a.u32(2)?)?;
    Ok(OK)
}

fn proxy_get_header_map_size(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let Some(size) = caller
        .data_mut()
        .map(a.u32(0)?)
        .map(|m| serialize_map(m).len())
    else {
        return Ok(BAD_ARGUMENT);
    };
    write_u32(caller, a.u32(1)?, size as u32)?;
    Ok(OK)
}

fn proxy_set_header_map_pairs(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let bytes = read(caller, a.u32(1)?, a.u32(2)?)?;
    let pairs = deserialize_map(&bytes);
    match (caller.data_mut().map(a.u32(0)?), pairs) {
        (Some(map), Some(pairs)) => {
            *map = pairs
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect();
            Ok(OK)
        }
        _ => Ok(BAD_ARGUMENT),
    }
}

/// A header name from the module, lower-cased as Envoy's map keys are.
fn header_name(caller: &Host<'_>, ptr: u32, len: u32) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).to_ascii_lowercase())
}

fn proxy_get_header_map_value(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let key = header_name(caller, a.u32(1)?, a.u32(2)?)?;
    let Some(map) = caller.data_mut().map(a.u32(0)?) else {
        return Ok(BAD_ARGUMENT);
    };
    let Some(value) = map.iter().find(|(n, _)| *n == key).map(|(_, v)| v.clone()) else {
        return Ok(NOT_FOUND);
    };
    return_bytes(caller, value.as_bytes(), a.u32(3)?, a.u32(4)?)?;
    Ok(OK)
}

fn proxy_replace_header_map_value(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    put_header(caller, a, true)
}

fn proxy_add_header_map_value(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    put_header(caller, a, false)
}

/// Replace: the first entry of the name takes the value and the others go;
/// add, or replace of an absent name: the entry is appended.
fn put_header(caller: &mut Host<'_>, a: Args<'_>, replace: bool) -> Answer {
    let key = header_name(caller, a.u32(1)?, a.u32(2)?)?;
    let value = String::from_utf8_lossy(&read(caller, a.u32(3)?, a.u32(4)?)?).into_owned();
    let Some(map) = caller.data_mut().map(a.u32(0)?) else {
        return Ok(BAD_ARGUMENT);
    };
    match map.iter().position(|(n, _)| *n == key) {
        Some(first) if replace => {
            if let Some(entry) = map.get_mut(first) {
                entry.1 = value;
            }
            let mut i = 0;
            map.retain(|(n, _)| {
                i += 1;
                i - 1 == first || *n != key
            });
        }
        _ => map.push((key, value)),
    }
    Ok(OK)
}

fn proxy_remove_header_map_value(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let key = header_name(caller, a.u32(1)?, a.u32(2)?)?;
    let Some(map) = caller.data_mut().map(a.u32(0)?) else {
        return Ok(BAD_ARGUMENT);
    };
    map.retain(|(n, _)| *n != key);
    Ok(OK)
}

/// A property path as the SDK serializes it (parts joined by NUL, maybe a
/// trailing NUL), without the trailing NUL.
fn trim_path(path: &[u8]) -> &[u8] {
    path.strip_suffix(&[0]).unwrap_or(path)
}

fn proxy_get_property(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let path = read(caller, a.u32(0)?, a.u32(1)?)?;
    let key = trim_path(&path);
    let state = caller.data();
    let Some(value) = state
        .stream_properties
        .get(key)
        .or_else(|| state.properties.get(key))
        .cloned()
    else {
        return Ok(NOT_FOUND);
    };
    return_bytes(caller, &value, a.u32(2)?, a.u32(3)?)?;
    Ok(OK)
}

/// Envoy's shared data: NotFound for an absent key, else the value
/// (allocated in the module) and its CAS token.
fn proxy_get_shared_data(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let key = read(caller, a.u32(0)?, a.u32(1)?)?;
    let Some((value, cas)) = caller.data().shared.get(&key).cloned() else {
        return Ok(NOT_FOUND);
    };
    return_bytes(caller, &value, a.u32(2)?, a.u32(3)?)?;
    write_u32(caller, a.u32(4)?, cas)?;
    Ok(OK)
}

/// Envoy's shared data write: refused with CasMismatch (8) when `cas` is
/// not 0 and not the key's current token.
fn proxy_set_shared_data(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let key = read(caller, a.u32(0)?, a.u32(1)?)?;
    let value = read(caller, a.u32(2)?, a.u32(3)?)?;
    let cas = a.u32(4)?;
    let state = caller.data_mut();
    let current = state.shared.get(&key).map_or(0, |(_, c)| *c);
    if cas != 0 && cas != current {
        return Ok(8);
    }
    state.next_cas += 1;
    let token = state.next_cas;
    state.shared.insert(key, (value, token));
    Ok(OK)
}

fn proxy_set_property(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let path = read(caller, a.u32(0)?, a.u32(1)?)?;
    let value = read(caller, a.u32(2)?, a.u32(3)?)?;
    caller
        .data_mut()
        .stream_properties
        .insert(trim_path(&path).to_vec(), value);
    Ok(OK)
}

fn proxy_define_metric(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let metric_type = a.u32(0)?;
    let metric = String::from_utf8_lossy(&read(caller, a.u32(1)?, a.u32(2)?)?).into_owned();
    let metrics = &mut caller.data_mut().metrics;
    let id = match metrics.iter().position(|(n, _, _)| *n == metric) {
        Some(id) => id,
        None => {
            metrics.push((metric, metric_type, 0));
            metrics.len() - 1
        }
    };
    write_u32(caller, a.u32(3)?, id as u32)?;
    Ok(OK)
}

fn proxy_increment_metric(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let v = a.i64(1)?;
    set_metric(caller, a.u32(0)?, |old| old.wrapping_add(v))
}

fn proxy_record_metric(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let v = a.i64(1)?;
    set_metric(caller, a.u32(0)?, |_| v)
}

fn set_metric(caller: &mut Host<'_>, id: u32, update: impl FnOnce(i64) -> i64) -> Answer {
    match caller.data_mut().metrics.get_mut(id as usize) {
        Some(metric) => {
            metric.2 = update(metric.2);
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

fn proxy_get_metric(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let Some(v) = caller.data().metrics.get(a.u32(0)? as usize).map(|m| m.2) else {
        return Ok(NOT_FOUND);
    };
    write_u64(caller, a.u32(1)?, v as u64)?;
    Ok(OK)
}

// --- WASI preview1 ----------------------------------------------------------

fn clock_time_get(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let now = caller.data_mut().now();
    write_u64(caller, a.u32(2)?, now)?;
    Ok(ERRNO_SUCCESS)
}

fn clock_res_get(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    write_u64(caller, a.u32(1)?, 1_000)?;
    Ok(ERRNO_SUCCESS)
}

fn random_get(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let (ptr, len) = (a.u32(0)?, a.u32(1)?);
    if u64::from(ptr) + u64::from(len) > memory(caller)?.data_size(&*caller) as u64 {
        return Err(Error::new("random_get: buffer out of bounds"));
    }
    let mut bytes = Vec::with_capacity(len as usize + 8);
    while bytes.len() < len as usize {
        let r = caller.data_mut().next_random();
        bytes.extend_from_slice(&r.to_le_bytes());
    }
    bytes.truncate(len as usize);
    write(caller, ptr, &bytes)?;
    Ok(ERRNO_SUCCESS)
}

/// stdout and stderr go to the log (levels 11 and 12 in error messages).
fn fd_write(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    let (fd, iovs, iovs_len, nwritten) = (a.u32(0)?, a.u32(1)?, a.u32(2)?, a.u32(3)?);
    let mut text = Vec::new();
    for i in 0..iovs_len {
        let iov = read(caller, iovs + i * 8, 8)?;
        let word = |at: usize| {
            iov.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        text.extend(read(caller, word(0), word(4))?);
    }
    write_u32(caller, nwritten, text.len() as u32)?;
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    caller.data_mut().log(fd + 10, &text);
    Ok(ERRNO_SUCCESS)
}

/// `environ_sizes_get`, `args_sizes_get`: no variables, no arguments.
fn no_entries(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    write_u32(caller, a.u32(0)?, 0)?;
    write_u32(caller, a.u32(1)?, 0)?;
    Ok(ERRNO_SUCCESS)
}

/// stdin, stdout and stderr are character devices; no other descriptor.
fn fd_fdstat_get(caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    if a.u32(0)? > 2 {
        return Ok(ERRNO_BADF);
    }
    // filetype character device, no flags, no rights restriction.
    let mut stat = [0u8; 24];
    stat[0] = 2;
    stat[8..24].fill(0xff);
    write(caller, a.u32(1)?, &stat)?;
    Ok(ERRNO_SUCCESS)
}

fn proc_exit(_caller: &mut Host<'_>, a: Args<'_>) -> Answer {
    Err(Error::i32_exit(a.u32(0)? as i32))
}
