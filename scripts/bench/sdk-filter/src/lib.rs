//! graylane on the proxy-wasm Rust SDK 0.2.5, for measurement only (see
//! Cargo.toml): one SDK root context per plugin configuration, one boxed
//! SDK HTTP context per stream, the SDK's tick for the batched counters.
//! The request work is graylane's own (`plugin.rs`).

// The shared files name these as `crate::…`.
pub use graylane::{config, continuity, engine, metric_names};

mod abi;
#[path = "../../../../src/filter/headers.rs"]
mod headers;
#[path = "../../../../src/filter/metrics.rs"]
mod metrics;
#[path = "../../../../src/filter/plugin.rs"]
mod plugin;
#[path = "../../../../src/filter/stages.rs"]
mod stages;
#[path = "../../../../src/filter/trace_table.rs"]
mod trace_table;

use config::Config;
use headers::Pair;
use metrics::Metrics;
use plugin::ResponseHeaders;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

proxy_wasm::main! {{
    plugin::start_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { config: None, metrics: Rc::new(Metrics::base()) })
    });
}}

thread_local! {
    /// Pair positions of the current request's headers, reused.
    static PAIRS: RefCell<Vec<Pair>> = const { RefCell::new(Vec::new()) };
}

struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        plugin::configure(&mut self.config, &mut self.metrics)
    }

    fn on_tick(&mut self) {
        self.metrics.flush();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            root: self
                .config
                .as_ref()
                .map(|c| (Rc::clone(c), Rc::clone(&self.metrics))),
            response: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The SDK drops a root in `proxy_on_delete`: what it counted goes out.
impl Drop for Root {
    fn drop(&mut self) {
        self.metrics.flush();
    }
}

struct Stream {
    id: u32,
    root: Option<(Rc<Config>, Rc<Metrics>)>,
    response: Option<ResponseHeaders>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some((config, metrics)) = &self.root else {
            return Action::Continue;
        };
        let mut lap = stages::Lap::start();
        let buf = match abi::request_headers() {
            Ok(buf) => buf,
            Err(status) => {
                log::warn!("#{} cannot read request headers: {status}", self.id);
                return Action::Continue;
            }
        };
        lap.end(stages::Stage::Read);
        self.response = PAIRS.with_borrow_mut(|pairs| {
            plugin::on_request(self.id, config, metrics, &buf, pairs, lap)
        });
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(headers) = self.response.take() {
            plugin::on_response(self.id, headers);
        }
        Action::Continue
    }
}
