//! The proxy-wasm filter: the only module that talks to the host. It
//! implements the proxy-wasm ABI 0.2.1 directly (see `abi` for why):
//! root contexts configure (parse + compile) and define counters; on each
//! request, one bulk read of the headers into a reused buffer, the engine,
//! then only the header changes the engine asks for. This file is the
//! exports and the per-VM state; what a configure and a request do is in
//! `plugin`.
//!
//! Callbacks the filter exports, per request: context create, request
//! headers, response headers, delete; per root, once a second: tick (the
//! per-request counters accumulated in the VM go to the host). Everything
//! else is not exported, so the host does not enter the VM for it.

mod abi;
mod headers;
mod metrics;
mod plugin;
mod stages;
mod trace_table;

use crate::config::Config;
use headers::Pair;
use metrics::Metrics;
use plugin::ResponseHeaders;
use std::cell::RefCell;
use std::rc::Rc;

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
    pending: Vec<(u32, ResponseHeaders)>,
    /// Pair positions of the current request's headers, reused.
    pairs: Vec<Pair>,
}

thread_local! {
    static VM: RefCell<Vm> = const {
        RefCell::new(Vm { roots: Vec::new(), streams: Vec::new(), pending: Vec::new(), pairs: Vec::new() })
    };
}

/// Module start: static constructors, then the logger.
#[no_mangle]
pub extern "C" fn _initialize() {
    abi::run_static_constructors();
    plugin::start_logging();
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(root_id: u32, _vm_configuration_size: usize) -> bool {
    plugin::follow_host_log_level();
    entered("proxy_on_vm_start", root_id);
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    entered("proxy_on_context_create", context_id);
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
    entered("proxy_on_configure", root_id);
    VM.with_borrow_mut(|vm| {
        let root = vm.root_mut(root_id);
        plugin::configure(&mut root.config, &mut root.metrics)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> u32 {
    entered("proxy_on_request_headers", context_id);
    VM.with_borrow_mut(|vm| vm.on_request_headers(context_id));
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> u32 {
    entered("proxy_on_response_headers", context_id);
    VM.with_borrow_mut(|vm| {
        let Some(i) = vm.pending.iter().position(|(id, _)| *id == context_id) else {
            return;
        };
        let (_, headers) = vm.pending.swap_remove(i);
        plugin::on_response(context_id, headers);
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    entered("proxy_on_delete", context_id);
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
    entered("proxy_on_tick", root_id);
    VM.with_borrow(|vm| {
        if let Some(root) = vm.roots.iter().find(|r| r.id == root_id) {
            root.metrics.flush();
        }
    });
}

/// A trace-level line per callback the host calls: the real-Envoy check
/// that Envoy still calls every callback graylane exports reads these
/// (wasm-tests/tests/callbacks.rs). Off (one level check) unless Envoy's
/// wasm log level is trace.
fn entered(callback: &str, context_id: u32) {
    log::trace!("callback {callback} #{context_id}");
}

/// Appends to a stream list that must stay bounded, dropping its older half
/// when full.
fn bounded_push<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= MAX_STREAMS {
        list.drain(..MAX_STREAMS / 2);
    }
    list.push(item);
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
        let mut lap = stages::Lap::start();
        let mut pairs = std::mem::take(&mut self.pairs);
        let read = abi::with_request_headers(|buf| {
            lap.end(stages::Stage::Read);
            if !buf.is_empty() {
                // The host allocated the buffer it wrote through the export.
                entered("proxy_on_memory_allocate", context_id);
            }
            plugin::on_request(context_id, &config, &metrics, buf, &mut pairs, lap)
        });
        self.pairs = pairs;
        match read {
            Ok(Some(headers)) => bounded_push(&mut self.pending, (context_id, headers)),
            Ok(None) => {}
            Err(status) => log::warn!("#{context_id} cannot read request headers: {status}"),
        }
    }
}
