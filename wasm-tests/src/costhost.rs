//! A deterministic cost meter for the shipped filter: a minimal proxy-wasm
//! host (ABI 0.2.1 plus WASI preview1) on the wasmi interpreter with fuel
//! metering, driven the way Envoy drives a filter.
//!
//! What it counts, per request:
//! - **fuel**: about one unit per Wasm instruction executed inside the
//!   module (wasmi's default costs: 1 per operator, 0 for `nop`, `drop`,
//!   `block`, `loop`, `else`, `end`, `return`, `unreachable`; bulk-memory
//!   copies and fills add one per 64 bytes). wasmi charges a block's
//!   instructions when it enters the block (at least 1), so a branch out of
//!   its middle still counts the rest: a count of work, exact only as a
//!   count of fuel. It includes the module's allocator when the host calls it.
//!   Functions are compiled eagerly, so no translation fuel is charged while
//!   a request runs. The figure depends on the module and on the wasmi version
//!   (pinned in `wasm-tests/Cargo.toml`), not on load or on the machine.
//! - **host calls** by import name (every import the module declares is
//!   linked and counted, whatever its name).
//! - **allocations the host makes in the module** (calls into
//!   `proxy_on_memory_allocate` or `malloc` to return a buffer) and the
//!   linear memory grown while requests ran.
//!
//! The stream sequence per request follows Envoy: `proxy_on_context_create`,
//! `proxy_on_request_headers(end_of_stream)`, `proxy_on_response_headers`,
//! `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`, each only when the
//! module exports it (Envoy skips a missing callback without entering the
//! VM). A tick (`proxy_on_tick`, if the module asks for a tick period) is
//! measured separately, never inside a request: Envoy fires it by time, so
//! its share per request is its cost divided by (requests/s × period).
//!
//! The host is deterministic: a fixed clock that advances 1 µs per read, a
//! seeded random source, fixed header maps.

use std::collections::BTreeMap;
use std::sync::Arc;
use wasmi::{
    AsContextMut, Caller, CompilationMode, Config, Engine, Error, ExternType, Func, Instance,
    Linker, Memory, Module, Store, Val,
};

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
/// Fuel given before each call into the module; far more than any call uses.
const FUEL_TANK: u64 = 1 << 50;
const ROOT_CONTEXT_ID: u32 = 1;
/// Root id Envoy passes in the plugin properties (the bench configs use it).
const ROOT_ID_NAME: &str = "graylane";

type Headers = Vec<(String, String)>;

/// Everything the host functions read and write.
pub struct HostState {
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    maps: [Headers; 4],
    /// Plugin properties (read only).
    properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Properties set during the current stream (Envoy's filter state).
    stream_properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// (name, type, value) by metric id.
    metrics: Vec<(String, u32, i64)>,
    calls: BTreeMap<String, u64>,
    /// Imports that fell through to the generic answer, by name.
    fallbacks: BTreeMap<String, u64>,
    allocations: u64,
    allocated_bytes: u64,
    tick_period_ms: u32,
    clock_nanos: u64,
    rng: u64,
    log_level: u32,
    /// (level, message) from `proxy_log`, and stdout/stderr from `fd_write`.
    pub logs: Vec<(u32, String)>,
}

impl HostState {
    fn new(plugin_config: Vec<u8>) -> HostState {
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

    fn now(&mut self) -> u64 {
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

fn arg_u32(params: &[Val], i: usize) -> Result<u32, Error> {
    match params.get(i) {
        Some(Val::I32(v)) => Ok(*v as u32),
        Some(Val::I64(v)) => Ok(*v as u32),
        _ => Err(Error::new(format!("argument {i}: expected an integer"))),
    }
}

fn arg_i64(params: &[Val], i: usize) -> Result<i64, Error> {
    match params.get(i) {
        Some(Val::I64(v)) => Ok(*v),
        Some(Val::I32(v)) => Ok(i64::from(*v)),
        _ => Err(Error::new(format!("argument {i}: expected an integer"))),
    }
}

fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, Error> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| Error::new("the module exports no memory"))
}

fn read(caller: &Caller<'_, HostState>, ptr: u32, len: u32) -> Result<Vec<u8>, Error> {
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

fn write(caller: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> Result<(), Error> {
    let mem = memory(caller)?;
    mem.write(caller.as_context_mut(), ptr as usize, bytes)
        .map_err(|e| Error::new(format!("write {} bytes at {ptr}: {e}", bytes.len())))
}

fn write_u32(caller: &mut Caller<'_, HostState>, ptr: u32, v: u32) -> Result<(), Error> {
    write(caller, ptr, &v.to_le_bytes())
}

fn write_u64(caller: &mut Caller<'_, HostState>, ptr: u32, v: u64) -> Result<(), Error> {
    write(caller, ptr, &v.to_le_bytes())
}

/// The module's allocator export, as Envoy looks it up.
fn allocator(caller: &Caller<'_, HostState>) -> Option<Func> {
    ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|name| caller.get_export(name).and_then(|e| e.into_func()))
}

/// Copies `bytes` into a buffer the module allocates and writes its pointer
/// and size into the two out-parameters (as proxy-wasm-cpp-host does: no
/// allocation for an empty value, pointer 0).
fn return_bytes(
    caller: &mut Caller<'_, HostState>,
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

/// One host function call: counts it, then answers it.
fn host_call(
    caller: &mut Caller<'_, HostState>,
    module: &str,
    name: &str,
    params: &[Val],
    results: &mut [Val],
) -> Result<(), Error> {
    *caller.data_mut().calls.entry(name.to_string()).or_default() += 1;
    let p = |i| arg_u32(params, i);
    match name {
        "proxy_log" => {
            let text = read(caller, p(1)?, p(2)?)?;
            let level = p(0)?;
            caller.data_mut().log(level, &text);
            status(results, OK);
        }
        "proxy_get_log_level" => {
            let level = caller.data().log_level;
            write_u32(caller, p(0)?, level)?;
            status(results, OK);
        }
        "proxy_get_current_time_nanoseconds" => {
            let now = caller.data_mut().now();
            write_u64(caller, p(0)?, now)?;
            status(results, OK);
        }
        "proxy_set_tick_period_milliseconds" => {
            caller.data_mut().tick_period_ms = p(0)?;
            status(results, OK);
        }
        "proxy_get_buffer_bytes" => {
            let buffer = match p(0)? {
                BUFFER_PLUGIN_CONFIGURATION => Some(caller.data().plugin_config.clone()),
                BUFFER_VM_CONFIGURATION => Some(caller.data().vm_config.clone()),
                _ => None,
            };
            match buffer {
                Some(buffer) => {
                    let start = (p(1)? as usize).min(buffer.len());
                    let end = start.saturating_add(p(2)? as usize).min(buffer.len());
                    let slice = buffer.get(start..end).unwrap_or_default();
                    return_bytes(caller, slice, p(3)?, p(4)?)?;
                    status(results, OK);
                }
                None => status(results, NOT_FOUND),
            }
        }
        "proxy_get_buffer_status" => {
            let len = match p(0)? {
                BUFFER_PLUGIN_CONFIGURATION => Some(caller.data().plugin_config.len()),
                BUFFER_VM_CONFIGURATION => Some(caller.data().vm_config.len()),
                _ => None,
            };
            match len {
                Some(len) => {
                    write_u32(caller, p(1)?, len as u32)?;
                    write_u32(caller, p(2)?, 0)?;
                    status(results, OK);
                }
                None => status(results, NOT_FOUND),
            }
        }
        "proxy_get_header_map_pairs" => {
            let Some(map) = caller.data_mut().map(p(0)?).map(|m| serialize_map(m)) else {
                status(results, BAD_ARGUMENT);
                return Ok(());
            };
            return_bytes(caller, &map, p(1)?, p(2)?)?;
            status(results, OK);
        }
        "proxy_get_header_map_size" => {
            let Some(size) = caller.data_mut().map(p(0)?).map(|m| serialize_map(m).len()) else {
                status(results, BAD_ARGUMENT);
                return Ok(());
            };
            write_u32(caller, p(1)?, size as u32)?;
            status(results, OK);
        }
        "proxy_set_header_map_pairs" => {
            let bytes = read(caller, p(1)?, p(2)?)?;
            let pairs = deserialize_map(&bytes);
            match (caller.data_mut().map(p(0)?), pairs) {
                (Some(map), Some(pairs)) => {
                    *map = pairs
                        .into_iter()
                        .map(|(n, v)| (n.to_ascii_lowercase(), v))
                        .collect();
                    status(results, OK);
                }
                _ => status(results, BAD_ARGUMENT),
            }
        }
        "proxy_get_header_map_value" => {
            let key = String::from_utf8_lossy(&read(caller, p(1)?, p(2)?)?).to_ascii_lowercase();
            let value = match caller.data_mut().map(p(0)?) {
                None => {
                    status(results, BAD_ARGUMENT);
                    return Ok(());
                }
                Some(map) => map.iter().find(|(n, _)| *n == key).map(|(_, v)| v.clone()),
            };
            match value {
                Some(value) => {
                    return_bytes(caller, value.as_bytes(), p(3)?, p(4)?)?;
                    status(results, OK);
                }
                None => status(results, NOT_FOUND),
            }
        }
        "proxy_replace_header_map_value" | "proxy_add_header_map_value" => {
            let key = String::from_utf8_lossy(&read(caller, p(1)?, p(2)?)?).to_ascii_lowercase();
            let value = String::from_utf8_lossy(&read(caller, p(3)?, p(4)?)?).into_owned();
            let replace = name == "proxy_replace_header_map_value";
            let Some(map) = caller.data_mut().map(p(0)?) else {
                status(results, BAD_ARGUMENT);
                return Ok(());
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
            status(results, OK);
        }
        "proxy_remove_header_map_value" => {
            let key = String::from_utf8_lossy(&read(caller, p(1)?, p(2)?)?).to_ascii_lowercase();
            match caller.data_mut().map(p(0)?) {
                Some(map) => {
                    map.retain(|(n, _)| *n != key);
                    status(results, OK);
                }
                None => status(results, BAD_ARGUMENT),
            }
        }
        "proxy_get_property" => {
            let path = read(caller, p(0)?, p(1)?)?;
            let key = trim_path(&path);
            let state = caller.data();
            let value = state
                .stream_properties
                .get(key)
                .or_else(|| state.properties.get(key))
                .cloned();
            match value {
                Some(value) => {
                    return_bytes(caller, &value, p(2)?, p(3)?)?;
                    status(results, OK);
                }
                None => status(results, NOT_FOUND),
            }
        }
        "proxy_set_property" => {
            let path = read(caller, p(0)?, p(1)?)?;
            let value = read(caller, p(2)?, p(3)?)?;
            caller
                .data_mut()
                .stream_properties
                .insert(trim_path(&path).to_vec(), value);
            status(results, OK);
        }
        "proxy_define_metric" => {
            let metric_type = p(0)?;
            let metric = String::from_utf8_lossy(&read(caller, p(1)?, p(2)?)?).into_owned();
            let metrics = &mut caller.data_mut().metrics;
            let id = match metrics.iter().position(|(n, _, _)| *n == metric) {
                Some(id) => id,
                None => {
                    metrics.push((metric, metric_type, 0));
                    metrics.len() - 1
                }
            };
            write_u32(caller, p(3)?, id as u32)?;
            status(results, OK);
        }
        "proxy_increment_metric" | "proxy_record_metric" => {
            let id = p(0)? as usize;
            let v = arg_i64(params, 1)?;
            let increment = name == "proxy_increment_metric";
            match caller.data_mut().metrics.get_mut(id) {
                Some(metric) => {
                    metric.2 = if increment {
                        metric.2.wrapping_add(v)
                    } else {
                        v
                    };
                    status(results, OK);
                }
                None => status(results, NOT_FOUND),
            }
        }
        "proxy_get_metric" => {
            let value = caller.data().metrics.get(p(0)? as usize).map(|m| m.2);
            match value {
                Some(v) => {
                    write_u64(caller, p(1)?, v as u64)?;
                    status(results, OK);
                }
                None => status(results, NOT_FOUND),
            }
        }
        "proxy_set_effective_context" | "proxy_done" => status(results, OK),
        // Envoy answers NotFound for a foreign function it does not know.
        "proxy_call_foreign_function" => status(results, NOT_FOUND),
        // --- WASI preview1 ---
        "clock_time_get" => {
            let now = caller.data_mut().now();
            write_u64(caller, p(2)?, now)?;
            status(results, ERRNO_SUCCESS);
        }
        "clock_res_get" => {
            write_u64(caller, p(1)?, 1_000)?;
            status(results, ERRNO_SUCCESS);
        }
        "random_get" => {
            let (ptr, len) = (p(0)?, p(1)?);
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
            status(results, ERRNO_SUCCESS);
        }
        "fd_write" => {
            let (fd, iovs, iovs_len, nwritten) = (p(0)?, p(1)?, p(2)?, p(3)?);
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
            if fd == 1 || fd == 2 {
                // Shown as level 11 (stdout) and 12 (stderr) in error messages.
                caller.data_mut().log(fd + 10, &text);
                status(results, ERRNO_SUCCESS);
            } else {
                status(results, ERRNO_BADF);
            }
        }
        "environ_sizes_get" | "args_sizes_get" => {
            write_u32(caller, p(0)?, 0)?;
            write_u32(caller, p(1)?, 0)?;
            status(results, ERRNO_SUCCESS);
        }
        "environ_get" | "args_get" | "sched_yield" => status(results, ERRNO_SUCCESS),
        // No preopened directories: wasi-libc stops scanning at EBADF.
        "fd_prestat_get" | "fd_prestat_dir_name" => status(results, ERRNO_BADF),
        "fd_fdstat_get" => {
            let fd = p(0)?;
            if fd <= 2 {
                // filetype character device, no flags, no rights restriction.
                let mut stat = [0u8; 24];
                stat[0] = 2;
                stat[8..24].fill(0xff);
                write(caller, p(1)?, &stat)?;
                status(results, ERRNO_SUCCESS);
            } else {
                status(results, ERRNO_BADF);
            }
        }
        "fd_close" | "fd_seek" | "fd_read" => status(results, ERRNO_BADF),
        "proc_exit" => return Err(Error::i32_exit(p(0)? as i32)),
        // Anything else: zeroed results and a status that says "not here".
        _ => {
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
    }
    Ok(())
}

/// A property path as the SDK serializes it (parts joined by NUL, maybe a
/// trailing NUL), without the trailing NUL.
fn trim_path(path: &[u8]) -> &[u8] {
    path.strip_suffix(&[0]).unwrap_or(path)
}

/// What one call (or one request) cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cost {
    pub fuel: u64,
    pub host_calls: BTreeMap<String, u64>,
    /// Buffers the host allocated in the module to return data.
    pub allocations: u64,
    pub allocated_bytes: u64,
}

impl Cost {
    pub fn total_host_calls(&self) -> u64 {
        self.host_calls.values().sum()
    }

    fn add(&mut self, other: &Cost) {
        self.fuel += other.fuel;
        for (name, n) in &other.host_calls {
            *self.host_calls.entry(name.clone()).or_default() += n;
        }
        self.allocations += other.allocations;
        self.allocated_bytes += other.allocated_bytes;
    }
}

/// One request's result: its cost and what the filter left behind.
#[derive(Clone, Debug)]
pub struct Trace {
    pub cost: Cost,
    /// The request headers after `proxy_on_request_headers`.
    pub request_headers: Headers,
    /// The response headers after `proxy_on_response_headers`.
    pub response_headers: Headers,
    /// Actions returned by the two header callbacks (0 = Continue).
    pub actions: Vec<i64>,
    /// Properties the stream set (path parts joined by '.'), as text.
    pub properties: BTreeMap<String, String>,
}

impl Trace {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The filter loaded in a fresh VM with one plugin configuration.
pub struct CostHost {
    store: Store<HostState>,
    instance: Instance,
    next_context: u32,
    /// What `proxy_on_configure` cost (once per VM, not per request).
    pub configure: Cost,
}

impl CostHost {
    /// Loads the module, links every import it declares, and starts it as
    /// Envoy does: `_start`/`_initialize`, `proxy_on_context_create(root, 0)`,
    /// `proxy_on_vm_start`, `proxy_on_configure`.
    pub fn new(wasm: &[u8], plugin_config: &[u8]) -> Result<CostHost, String> {
        let mut config = Config::default();
        config
            .consume_fuel(true)
            .compilation_mode(CompilationMode::Eager);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(|e| format!("load module: {e}"))?;
        let mut store = Store::new(&engine, HostState::new(plugin_config.to_vec()));
        let mut linker = <Linker<HostState>>::new(&engine);
        for import in module.imports() {
            let (m, n) = (import.module().to_string(), import.name().to_string());
            let ExternType::Func(ty) = import.ty() else {
                return Err(format!(
                    "import {m}.{n}: only function imports are supported"
                ));
            };
            let (mm, nn): (Arc<str>, Arc<str>) = (Arc::from(m.as_str()), Arc::from(n.as_str()));
            linker
                .func_new(&m, &n, ty.clone(), move |mut caller, params, results| {
                    host_call(&mut caller, &mm, &nn, params, results)
                })
                .map_err(|e| format!("link {m}.{n}: {e}"))?;
        }
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| format!("instantiate: {e}"))?;
        let mut host = CostHost {
            store,
            instance,
            next_context: ROOT_CONTEXT_ID + 1,
            configure: Cost::default(),
        };
        for start in ["_start", "_initialize"] {
            host.call(start, &[])?;
        }
        let vm_config_len = host.store.data().vm_config.len() as u32;
        let config_len = plugin_config.len() as u32;
        // proxy-wasm-cpp-host creates the root context before it calls
        // proxy_on_vm_start (ContextBase::onStart), then configures it.
        host.call("proxy_on_context_create", &[ROOT_CONTEXT_ID, 0])?;
        if let Some(0) = host.call("proxy_on_vm_start", &[ROOT_CONTEXT_ID, vm_config_len])? {
            return Err(format!("proxy_on_vm_start failed; {}", host.log_text()));
        }
        let mut configure = Cost::default();
        let accepted = host.metered(
            "proxy_on_configure",
            &[ROOT_CONTEXT_ID, config_len],
            &mut configure,
        )?;
        host.configure = configure;
        if let Some(0) = accepted {
            return Err(format!(
                "proxy_on_configure rejected the configuration; {}",
                host.log_text()
            ));
        }
        Ok(host)
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    /// Whether the module exports a function of that name.
    pub fn exports(&self, name: &str) -> bool {
        self.instance.get_func(&self.store, name).is_some()
    }

    /// Linear memory size in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.instance
            .get_memory(&self.store, "memory")
            .map_or(0, |m| m.size(&self.store) * 65_536)
    }

    /// The tick period the module asked for (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    fn log_text(&self) -> String {
        let lines: Vec<String> = self
            .store
            .data()
            .logs
            .iter()
            .map(|(level, text)| format!("[{level}] {text}"))
            .collect();
        format!("module log: {}", lines.join(" | "))
    }

    /// Calls an export if it exists, with as many of `args` as it takes;
    /// returns its first result.
    fn call(&mut self, name: &str, args: &[u32]) -> Result<Option<i64>, String> {
        let Some(func) = self.instance.get_func(&self.store, name) else {
            return Ok(None);
        };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = ty
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let v = args.get(i).copied().unwrap_or(0);
                match t {
                    wasmi::ValType::I64 => Val::I64(i64::from(v)),
                    _ => Val::I32(v as i32),
                }
            })
            .collect();
        let mut results: Vec<Val> = ty
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        self.store
            .set_fuel(FUEL_TANK)
            .map_err(|e| format!("set fuel: {e}"))?;
        let outcome = func.call(&mut self.store, &params, &mut results);
        if let Err(e) = outcome {
            // `_start` of a command module ends with proc_exit(0).
            if e.i32_exit_status() == Some(0) {
                return Ok(None);
            }
            return Err(format!("{name} trapped: {e}; {}", self.log_text()));
        }
        Ok(results.first().map(|v| match v {
            Val::I32(x) => i64::from(*x),
            Val::I64(x) => *x,
            _ => 0,
        }))
    }

    /// Fuel and host work of one export call.
    fn metered(
        &mut self,
        name: &str,
        args: &[u32],
        cost: &mut Cost,
    ) -> Result<Option<i64>, String> {
        if !self.exports(name) {
            return Ok(None);
        }
        let before = self.snapshot();
        let result = self.call(name, args)?;
        let fuel_left = self.store.get_fuel().map_err(|e| format!("fuel: {e}"))?;
        let after = self.snapshot();
        let mut step = Cost {
            fuel: FUEL_TANK - fuel_left,
            ..Cost::default()
        };
        for (name, n) in &after.host_calls {
            let d = n - before.host_calls.get(name).copied().unwrap_or(0);
            if d > 0 {
                step.host_calls.insert(name.clone(), d);
            }
        }
        step.allocations = after.allocations - before.allocations;
        step.allocated_bytes = after.allocated_bytes - before.allocated_bytes;
        cost.add(&step);
        Ok(result)
    }

    fn snapshot(&self) -> Cost {
        let s = self.store.data();
        Cost {
            fuel: 0,
            host_calls: s.calls.clone(),
            allocations: s.allocations,
            allocated_bytes: s.allocated_bytes,
        }
    }

    /// One HTTP stream, as Envoy runs it for a request answered without a
    /// body (end_of_stream on both header callbacks).
    pub fn request(
        &mut self,
        request: &[(String, String)],
        response: &[(String, String)],
    ) -> Result<Trace, String> {
        let ctx = self.next_context;
        self.next_context += 1;
        {
            let s = self.store.data_mut();
            s.maps = Default::default();
            s.maps[0] = request.to_vec();
            s.maps[2] = response.to_vec();
            s.stream_properties.clear();
        }
        let mut cost = Cost::default();
        let mut actions = Vec::new();
        self.metered(
            "proxy_on_context_create",
            &[ctx, ROOT_CONTEXT_ID],
            &mut cost,
        )?;
        let n = request.len() as u32;
        if let Some(a) = self.metered("proxy_on_request_headers", &[ctx, n, 1], &mut cost)? {
            actions.push(a);
        }
        let request_headers = self.store.data().maps[0].clone();
        let n = response.len() as u32;
        if let Some(a) = self.metered("proxy_on_response_headers", &[ctx, n, 1], &mut cost)? {
            actions.push(a);
        }
        let response_headers = self.store.data().maps[2].clone();
        self.metered("proxy_on_done", &[ctx], &mut cost)?;
        self.metered("proxy_on_log", &[ctx], &mut cost)?;
        self.metered("proxy_on_delete", &[ctx], &mut cost)?;
        let properties = self
            .store
            .data()
            .stream_properties
            .iter()
            .map(|(k, v)| {
                let key: Vec<u8> = k.iter().map(|&b| if b == 0 { b'.' } else { b }).collect();
                (
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        Ok(Trace {
            cost,
            request_headers,
            response_headers,
            actions,
            properties,
        })
    }

    /// The root context's end, as when Envoy stops the VM:
    /// `proxy_on_done(root)`, then `proxy_on_delete(root)`.
    pub fn stop(&mut self) -> Result<(), String> {
        let mut cost = Cost::default();
        self.metered("proxy_on_done", &[ROOT_CONTEXT_ID], &mut cost)?;
        self.metered("proxy_on_delete", &[ROOT_CONTEXT_ID], &mut cost)?;
        Ok(())
    }

    /// One `proxy_on_tick` of the root context, if the module asked for a
    /// tick period and exports the callback.
    pub fn tick(&mut self) -> Result<Option<Cost>, String> {
        if self.tick_period_ms() == 0 || !self.exports("proxy_on_tick") {
            return Ok(None);
        }
        let mut cost = Cost::default();
        self.metered("proxy_on_tick", &[ROOT_CONTEXT_ID], &mut cost)?;
        Ok(Some(cost))
    }
}

/// One request kind of the benchmark (scripts/bench/configs.py).
#[derive(Clone, Debug)]
pub struct Kind {
    pub name: String,
    /// Key of the config in [`BenchSpec::configs`].
    pub config: String,
    /// The lane the filter must write into `x-graylane`; `None`: no lane header.
    pub lane: Option<String>,
    pub request: Headers,
}

/// The benchmark's configs, response and request kinds.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub configs: BTreeMap<String, String>,
    pub response: Headers,
    pub kinds: Vec<Kind>,
}

fn pairs(v: &serde_json::Value) -> Result<Headers, String> {
    v.as_array()
        .ok_or("expected a list of pairs")?
        .iter()
        .map(|p| {
            match (
                p.get(0).and_then(|x| x.as_str()),
                p.get(1).and_then(|x| x.as_str()),
            ) {
                (Some(n), Some(v)) => Ok((n.to_string(), v.to_string())),
                _ => Err(format!("bad header pair {p}")),
            }
        })
        .collect()
}

impl BenchSpec {
    /// Runs `scripts/bench/configs.py cost` (the configs bench.sh uses).
    pub fn load(repo_root: &std::path::Path) -> Result<BenchSpec, String> {
        let script = repo_root.join("scripts/bench/configs.py");
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg("cost")
            .output()
            .map_err(|e| format!("run python3 {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("configs.py output: {e}"))?;
        let configs = v
            .get("configs")
            .and_then(|c| c.as_object())
            .ok_or("configs.py: no configs")?
            .iter()
            .map(|(k, c)| (k.clone(), c.to_string()))
            .collect();
        let response = pairs(v.get("response").ok_or("configs.py: no response")?)?;
        let kinds = v
            .get("kinds")
            .and_then(|k| k.as_array())
            .ok_or("configs.py: no kinds")?
            .iter()
            .map(|k| {
                let field = |f: &str| k.get(f).and_then(|x| x.as_str()).map(str::to_string);
                Ok(Kind {
                    name: field("kind").ok_or("kind without a name")?,
                    config: field("config").ok_or("kind without a config")?,
                    lane: field("lane"),
                    request: pairs(k.get("request").ok_or("kind without a request")?)?,
                })
            })
            .collect::<Result<Vec<Kind>, String>>()?;
        Ok(BenchSpec {
            configs,
            response,
            kinds,
        })
    }
}

/// Per-request figures of one request kind.
#[derive(Clone, Debug)]
pub struct Figures {
    pub kind: String,
    pub requests: u64,
    /// Fuel per request (averaged over `requests`; whole when every request
    /// costs the same).
    pub fuel: f64,
    /// Smallest and largest single-request fuel seen.
    pub fuel_min: u64,
    pub fuel_max: u64,
    pub host_calls: BTreeMap<String, f64>,
    pub host_calls_total: f64,
    pub allocations: f64,
    pub allocated_bytes: f64,
    /// Linear memory grown over the measured requests, in bytes.
    pub memory_growth: u64,
    /// The last measured request.
    pub last: Trace,
    /// Imports answered by the generic fallback, by name (whole run).
    pub fallbacks: BTreeMap<String, u64>,
    /// The tick, measured after the requests (if the module asked for one).
    pub tick: Option<Cost>,
    /// `proxy_on_configure` of this kind's config (once per VM).
    pub configure: Cost,
    /// Every metric the module defined, with its value after the run.
    pub metrics: BTreeMap<String, i64>,
    /// Warm-up plus measured requests.
    pub requests_run: u64,
    pub tick_period_ms: u32,
}

/// Warm-up and measured requests per kind: the figure is deterministic, so
/// few are enough; the warm-up lets one-time work (first-use allocations,
/// table growth) settle.
pub const WARMUP: u64 = 20;
pub const MEASURED: u64 = 50;

/// Runs one kind in a fresh VM: warm-up, then `measured` requests.
pub fn measure(
    wasm: &[u8],
    spec: &BenchSpec,
    kind: &Kind,
    warmup: u64,
    measured: u64,
) -> Result<Figures, String> {
    let config = spec
        .configs
        .get(&kind.config)
        .ok_or_else(|| format!("kind {}: no config {}", kind.name, kind.config))?;
    let mut host = CostHost::new(wasm, config.as_bytes())?;
    let mut last = None;
    for _ in 0..warmup {
        last = Some(host.request(&kind.request, &spec.response)?);
    }
    let memory_before = host.memory_bytes();
    let mut total = Cost::default();
    let (mut fuel_min, mut fuel_max) = (u64::MAX, 0);
    for _ in 0..measured {
        let trace = host.request(&kind.request, &spec.response)?;
        total.add(&trace.cost);
        fuel_min = fuel_min.min(trace.cost.fuel);
        fuel_max = fuel_max.max(trace.cost.fuel);
        last = Some(trace);
    }
    let memory_growth = host.memory_bytes() - memory_before;
    let tick = host.tick()?;
    let last = last.ok_or("no request was run")?;
    // Let counters kept in the VM reach the host, however the filter
    // flushes them (SPEC allows at least once a second and when the VM
    // stops): a second passes, one more request, a tick, then the root
    // context's done and delete (what Envoy calls when the VM stops).
    host.store.data_mut().clock_nanos += 2_000_000_000;
    host.request(&kind.request, &spec.response)?;
    host.tick()?;
    host.stop()?;
    let n = measured.max(1) as f64;
    Ok(Figures {
        kind: kind.name.clone(),
        requests: measured,
        fuel: total.fuel as f64 / n,
        fuel_min,
        fuel_max,
        host_calls_total: total.total_host_calls() as f64 / n,
        host_calls: total
            .host_calls
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / n))
            .collect(),
        allocations: total.allocations as f64 / n,
        allocated_bytes: total.allocated_bytes as f64 / n,
        memory_growth,
        last,
        fallbacks: host.state().fallbacks.clone(),
        tick,
        tick_period_ms: host.tick_period_ms(),
        configure: host.configure.clone(),
        metrics: host
            .state()
            .metrics
            .iter()
            .map(|(n, _, v)| (n.clone(), *v))
            .collect(),
        requests_run: warmup + measured + 1,
    })
}

/// Checks that the filter did what the kind expects, so that a broken host
/// cannot produce plausible figures: the lane header and baggage member it
/// wrote, the filter state, the request counter, Continue from both
/// callbacks.
pub fn check(kind: &Kind, f: &Figures) -> Result<(), String> {
    let name = &kind.name;
    let got = f.last.request_header("x-graylane");
    if got != kind.lane.as_deref() {
        return Err(format!(
            "kind {name}: x-graylane written by the filter is {got:?}, expected {:?}",
            kind.lane
        ));
    }
    let baggage_lane = f.last.request_header("baggage").and_then(|b| {
        b.split(',')
            .filter_map(|m| m.split(';').next()?.trim().strip_prefix("lane="))
            .next()
    });
    if baggage_lane != kind.lane.as_deref() {
        return Err(format!(
            "kind {name}: baggage lane member is {baggage_lane:?}, expected {:?} (baggage {:?})",
            kind.lane,
            f.last.request_header("baggage")
        ));
    }
    let want = kind.lane.as_deref().unwrap_or("base");
    let state = f.last.properties.get("graylane.lane").map(String::as_str);
    if state != Some(want) {
        return Err(format!(
            "kind {name}: filter state graylane.lane is {state:?}, expected {want:?}"
        ));
    }
    let counted: Vec<(&String, &i64)> = f
        .metrics
        .iter()
        .filter(|(n, v)| n.starts_with("graylane.requests.") && **v != 0)
        .collect();
    let suffix = format!(".lane.{want}");
    let run = f.requests_run as i64;
    if counted.len() != 1
        || !counted
            .iter()
            .all(|(n, v)| n.ends_with(&suffix) && **v == run)
    {
        return Err(format!(
            "kind {name}: request counters {counted:?}, expected one ending in {suffix} at {run}"
        ));
    }
    if f.last.actions.is_empty() || f.last.actions.iter().any(|&a| a != 0) {
        return Err(format!(
            "kind {name}: header callbacks returned {:?}, expected Continue",
            f.last.actions
        ));
    }
    if f.fuel_min == 0 {
        return Err(format!("kind {name}: no fuel was used"));
    }
    Ok(())
}

/// Every kind of the spec, in order.
pub fn measure_all(wasm: &[u8], spec: &BenchSpec) -> Result<Vec<Figures>, String> {
    spec.kinds
        .iter()
        .map(|kind| {
            let f = measure(wasm, spec, kind, WARMUP, MEASURED)?;
            check(kind, &f)?;
            Ok(f)
        })
        .collect()
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The figures as Markdown: a summary table, then host calls by name.
pub fn markdown(figures: &[Figures]) -> String {
    let mut s = String::new();
    s.push_str("| request kind | fuel (≈ Wasm instructions) / request | host calls / request | host→module allocations / request (bytes) | memory grown over the run | x-graylane written |\n");
    s.push_str("|---|---:|---:|---:|---:|---|\n");
    for f in figures {
        let fuel = if f.fuel_min == f.fuel_max {
            num(f.fuel)
        } else {
            format!("{} ({}–{})", num(f.fuel), f.fuel_min, f.fuel_max)
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} ({}) | {} B over {} requests | {} |\n",
            f.kind,
            fuel,
            num(f.host_calls_total),
            num(f.allocations),
            num(f.allocated_bytes),
            f.memory_growth,
            f.requests,
            f.last.request_header("x-graylane").unwrap_or("—"),
        ));
    }
    let mut names: Vec<&String> = figures.iter().flat_map(|f| f.host_calls.keys()).collect();
    names.sort();
    names.dedup();
    s.push_str("\n| host call / request |");
    for f in figures {
        s.push_str(&format!(" {} |", f.kind));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(figures.len()));
    s.push('\n');
    for name in names {
        s.push_str(&format!("| `{name}` |"));
        for f in figures {
            s.push_str(&format!(
                " {} |",
                f.host_calls.get(name).map_or("—".to_string(), |v| num(*v))
            ));
        }
        s.push('\n');
    }
    s.push_str("\nOnce per VM, not per request: `proxy_on_configure` of");
    for (i, f) in figures.iter().enumerate() {
        s.push_str(&format!(
            "{} {}'s config {} fuel, {} host calls",
            if i == 0 { "" } else { ";" },
            f.kind,
            f.configure.fuel,
            f.configure.total_host_calls()
        ));
    }
    s.push_str(".\n");
    for f in figures {
        if let Some(t) = &f.tick {
            s.push_str(&format!(
                "\nTick ({} config, every {} ms; not part of a request): {} fuel, {} host calls.\n",
                f.kind,
                f.tick_period_ms,
                t.fuel,
                t.total_host_calls()
            ));
        }
        if !f.fallbacks.is_empty() {
            s.push_str(&format!(
                "\n{}: imports answered by the generic fallback: {:?}\n",
                f.kind, f.fallbacks
            ));
        }
    }
    s
}

/// The figures as the JSON of the committed baseline.
pub fn to_json(figures: &[Figures], wasm_bytes: usize) -> serde_json::Value {
    let kinds: serde_json::Map<String, serde_json::Value> = figures
        .iter()
        .map(|f| {
            let mut k = serde_json::json!({
                "fuel": f.fuel,
                "host_calls": f.host_calls_total,
                "host_calls_by_name": f.host_calls,
                "allocations": f.allocations,
                "allocated_bytes": f.allocated_bytes,
                "configure_fuel": f.configure.fuel,
            });
            if let (Some(t), Some(obj)) = (&f.tick, k.as_object_mut()) {
                obj.insert("tick_fuel".into(), t.fuel.into());
                obj.insert("tick_host_calls".into(), t.total_host_calls().into());
            }
            (f.kind.clone(), k)
        })
        .collect();
    serde_json::json!({
        "meter": "wasm-tests/src/costhost.rs (wasmi fuel, default operator costs)",
        "update": "GRAYLANE_COST_REBASE=1 cargo test -p graylane-wasm-tests --test cost -- --nocapture",
        "wasm_bytes": wasm_bytes,
        "kinds": kinds,
    })
}
