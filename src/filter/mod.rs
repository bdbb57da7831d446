//! The proxy-wasm filter: the only module that talks to the host. It
//! implements the proxy-wasm ABI 0.2.1 directly (see `abi` for why):
//! root contexts configure (parse + compile) and define counters; on each
//! request, one bulk read of the headers into a reused buffer, the engine,
//! then only the header changes the engine asks for.
//!
//! Callbacks the filter exports, per request: context create, request
//! headers, response headers, delete; per root, once a second: tick (the
//! per-request counters accumulated in the VM go to the host). Everything
//! else is not exported, so the host does not enter the VM for it.

mod abi;
mod headers;
mod metrics;
#[cfg(feature = "stage-timing")]
mod stages;

use crate::config::Config;
use crate::engine::{self, Outcome};
use headers::{HostHeaders, Pair};
use metrics::Metrics;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Filter state key; Envoy shows it as `%FILTER_STATE(wasm.graylane.lane:PLAIN)%`.
const LANE_PROPERTY: &str = "graylane.lane";
/// `Action::Continue`.
const CONTINUE: u32 = 0;
/// Most streams remembered at once for a root or a pending response (a
/// bound against streams the host never deletes; far above what one worker
/// holds open).
const MAX_STREAMS: usize = 1 << 16;

/// One plugin configuration (a root context) in this VM.
struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

/// Everything one VM (one worker thread) keeps.
struct Vm {
    roots: Vec<Root>,
    /// Stream context -> root context, kept only while the VM has several
    /// roots (plugins that share a VM); with one root every stream is its.
    streams: Vec<(u32, u32)>,
    /// Response headers to add, by stream: the lane header, assigned cookies.
    pending: Vec<(u32, Vec<(String, String)>)>,
    /// Pair positions of the current request's headers, reused.
    pairs: Vec<Pair>,
}

thread_local! {
    static VM: RefCell<Vm> = const {
        RefCell::new(Vm { roots: Vec::new(), streams: Vec::new(), pending: Vec::new(), pairs: Vec::new() })
    };
    /// The buffer the host writes the request headers into, reused.
    static HEADER_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set while the host is asked for the request headers: its allocation
    /// is then served from `HEADER_BUF`.
    static READING_HEADERS: Cell<bool> = const { Cell::new(false) };
}

/// Log lines through the host (`proxy_log`).
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

static LOGGER: HostLogger = HostLogger;

/// Follows Envoy's log level, so per-request debug lines cost nothing
/// unless debug logging is on.
fn follow_host_log_level() {
    let level = match abi::log_level() {
        Ok(0) => log::LevelFilter::Trace,
        Ok(1) => log::LevelFilter::Debug,
        Ok(2) | Err(_) => log::LevelFilter::Info,
        Ok(3) => log::LevelFilter::Warn,
        Ok(_) => log::LevelFilter::Error,
    };
    log::set_max_level(level);
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Module start: static constructors, then the logger.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the module's static constructors, run once before any other
    // export, as a WASI reactor requires.
    unsafe { __wasm_call_ctors() };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host allocates what it returns to the module through this. During
/// the request-header read it gets the reused header buffer.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if READING_HEADERS.get() {
        return HEADER_BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.resize(size, 0);
            buf.as_mut_ptr()
        });
    }
    // Handed back as `Vec::from_raw_parts(ptr, size, size)` (abi.rs).
    Box::into_raw(vec![0u8; size].into_boxed_slice()).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    VM.with_borrow_mut(|vm| {
        if parent_id == 0 {
            vm.root_mut(context_id);
        } else if vm.roots.len() > 1 {
            bounded_push(&mut vm.streams, (context_id, parent_id));
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, _configuration_size: usize) -> bool {
    follow_host_log_level();
    VM.with_borrow_mut(|vm| vm.root_mut(root_id).configure())
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> u32 {
    VM.with_borrow_mut(|vm| vm.on_request_headers(context_id));
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> u32 {
    VM.with_borrow_mut(|vm| {
        let Some(i) = vm.pending.iter().position(|(id, _)| *id == context_id) else {
            return;
        };
        let (_, headers) = vm.pending.swap_remove(i);
        for (name, value) in headers {
            let result = if name == "set-cookie" {
                abi::add_header(abi::RESPONSE_HEADERS, &name, &value)
            } else {
                abi::set_header(abi::RESPONSE_HEADERS, &name, Some(&value))
            };
            if let Err(status) = result {
                log::debug!("#{context_id} cannot set response header {name}: {status}");
            }
        }
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    VM.with_borrow_mut(|vm| {
        if !vm.streams.is_empty() {
            vm.streams.retain(|(id, _)| *id != context_id);
        }
        if !vm.pending.is_empty() {
            vm.pending.retain(|(id, _)| *id != context_id);
        }
        // `remove`, not `swap_remove`: the roots stay oldest first (`root_of`).
        if let Some(i) = vm.roots.iter().position(|r| r.id == context_id) {
            vm.roots.remove(i).metrics.flush();
        }
    });
}

/// Once a second per root: counters accumulated in the VM go to the host.
#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    VM.with_borrow(|vm| {
        if let Some(root) = vm.roots.iter().find(|r| r.id == root_id) {
            root.metrics.flush();
        }
    });
}

/// Appends to a stream list that must stay bounded, dropping its older half
/// when full.
fn bounded_push<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= MAX_STREAMS {
        list.drain(..MAX_STREAMS / 2);
    }
    list.push(item);
}

/// Random draws for anonymous splits and assigned cookies (WASI
/// `random_get`; on failure a clock-seeded mix, never a panic).
fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        #[allow(clippy::cast_possible_truncation)]
        let mut z = (nanos as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 31)
    })
}

impl Root {
    fn configure(&mut self) -> bool {
        let text = match abi::plugin_configuration() {
            Ok(bytes) => bytes,
            Err(status) => {
                log::error!("cannot read the plugin configuration: {status}");
                self.metrics.config_rejected();
                return false;
            }
        };
        match Config::from_json(&text) {
            Ok(config) => {
                for w in &config.warnings {
                    log::warn!("config warning: {w}");
                }
                let metrics = Metrics::for_config(&config);
                metrics.config_accepted(&config);
                log::info!(
                    "configuration accepted: {}, {}, {}, incoming={:?}",
                    crate::analysis::counted(config.rules.lanes.len(), "lane"),
                    crate::analysis::counted(config.services.len(), "service"),
                    crate::analysis::counted(config.warnings.len(), "warning"),
                    config.incoming
                );
                self.metrics.flush();
                self.metrics = Rc::new(metrics);
                self.config = Some(Rc::new(config));
                if let Err(status) = abi::set_tick_period(1000) {
                    log::warn!("cannot set the tick period: {status}; counters are sent when the root stops");
                }
                true
            }
            Err(e) => {
                log::error!("configuration rejected: {e}");
                self.metrics.config_rejected();
                false
            }
        }
    }
}

impl Vm {
    fn root_mut(&mut self, id: u32) -> &mut Root {
        let i = match self.roots.iter().position(|r| r.id == id) {
            Some(i) => i,
            None => {
                self.roots.push(Root {
                    id,
                    config: None,
                    metrics: Rc::new(Metrics::base()),
                });
                self.roots.len() - 1
            }
        };
        #[allow(clippy::indexing_slicing)] // `i` was found in or pushed to `roots` above
        &mut self.roots[i]
    }

    /// The configuration and counters of a stream's root. A stream created
    /// while the VM had one root has no entry: that root is the oldest one
    /// (a root added since, by a configuration update, comes after it); so
    /// is the fallback when a stream's root is gone.
    fn root_of(&mut self, stream: u32) -> Option<(Rc<Config>, Rc<Metrics>)> {
        let mapped = match self.roots.len() {
            0 | 1 => None,
            _ => self
                .streams
                .iter()
                .position(|(s, _)| *s == stream)
                .map(|i| self.streams.swap_remove(i).1),
        };
        let root = mapped
            .and_then(|id| self.roots.iter().find(|r| r.id == id))
            .or_else(|| self.roots.first())?;
        Some((root.config.clone()?, Rc::clone(&root.metrics)))
    }

    fn on_request_headers(&mut self, context_id: u32) {
        let Some((config, metrics)) = self.root_of(context_id) else {
            return;
        };
        #[cfg(feature = "stage-timing")]
        let mut lap = stages::Lap::start();
        READING_HEADERS.set(true);
        let read = abi::request_header_pairs();
        READING_HEADERS.set(false);
        #[cfg(feature = "stage-timing")]
        lap.end(stages::Stage::Read);
        let size = match read {
            // The host wrote into the header buffer, as allocated above.
            Ok((data, size)) if size == 0 || HEADER_BUF.with_borrow(|b| b.as_ptr() == data) => size,
            Ok(_) => {
                log::warn!("#{context_id} request headers not in the header buffer");
                return;
            }
            Err(status) => {
                log::warn!("#{context_id} cannot read request headers: {status}");
                return;
            }
        };
        let mut pairs = std::mem::take(&mut self.pairs);
        let response = HEADER_BUF.with_borrow(|buf| {
            let headers = HostHeaders::index(buf.get(..size).unwrap_or_default(), &mut pairs);
            #[cfg(not(feature = "stage-timing"))]
            let out = engine::process(&config, &headers, &mut random_u64);
            #[cfg(feature = "stage-timing")]
            let out = {
                lap.end(stages::Stage::Index);
                let view = engine::View::new(&headers);
                let decision = engine::decide(&config, &view, &mut random_u64);
                lap.end(stages::Stage::Decide);
                let effects = engine::effects(&config, &view, decision.lane);
                lap.end(stages::Stage::Effects);
                Outcome { decision, effects }
            };
            apply(&config, &out);
            #[cfg(feature = "stage-timing")]
            lap.end(stages::Stage::Apply);
            metrics.record(&out);
            #[cfg(feature = "stage-timing")]
            {
                lap.end(stages::Stage::Record);
                stages::request_done(|| {
                    std::hint::black_box(engine::process(&config, &headers, &mut random_u64));
                });
            }
            if log::log_enabled!(log::Level::Debug) {
                debug_line(context_id, &config, &out);
            }
            response_headers(&config, &out)
        });
        self.pairs = pairs;
        if let Some(headers) = response {
            bounded_push(&mut self.pending, (context_id, headers));
        }
    }
}

/// The request header changes and the filter state (SPEC §5).
fn apply(config: &Config, out: &Outcome<'_>) {
    for (name, value) in &out.effects.set {
        if let Err(status) = abi::set_header(abi::REQUEST_HEADERS, name, value.as_deref()) {
            log::warn!("cannot set request header {name}: {status}");
        }
    }
    let lane = config.lane_name(out.decision.lane);
    if let Err(status) = abi::set_property(LANE_PROPERTY, lane.as_bytes()) {
        log::debug!("cannot set filter state: {status}");
    }
}

/// Headers to add to the response, if any: the lane header, assigned cookies.
fn response_headers(config: &Config, out: &Outcome<'_>) -> Option<Vec<(String, String)>> {
    if !config.response_header && out.decision.assigned.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    if config.response_header {
        let lane = config.lane_name(out.decision.lane);
        headers.push((config.lane_header.clone(), lane.to_string()));
    }
    for cookie in &out.decision.assigned {
        headers.push(("set-cookie".to_string(), cookie.set_cookie()));
    }
    Some(headers)
}

fn debug_line(context_id: u32, config: &Config, out: &Outcome<'_>) {
    let d = &out.decision;
    let rule = match d.source {
        engine::Source::Rule => config.lane_name(d.lane),
        _ => "-",
    };
    log::debug!(
        "#{} lane={} source={} rule={} bucket={:?} cluster={} fallback={} invalid_tag={} baggage_dropped={} shadow={}",
        context_id,
        config.lane_name(d.lane),
        d.source.as_str(),
        rule,
        d.split.as_ref().and_then(engine::SplitResult::bucket),
        out.effects.cluster.unwrap_or("-"),
        out.effects.fallback.unwrap_or("-"),
        d.invalid_tag,
        out.effects.baggage_dropped,
        out.effects.shadow,
    );
}
