//! The proxy-wasm filter: the only module that names `proxy_wasm`.
//! Root context: configure (parse + compile) and metrics. HTTP context: one
//! bulk read of the request headers, the engine, then only the header
//! changes the engine asks for.

mod headers;
mod metrics;

use crate::config::Config;
use crate::engine::{self, Outcome};
use headers::HostHeaders;
use metrics::Metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::rc::Rc;

/// Filter state key; Envoy shows it as `%FILTER_STATE(wasm.graylane.lane:PLAIN)%`.
const LANE_PROPERTY: &str = "graylane.lane";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { config: None, metrics: Rc::new(Metrics::base()) })
    });
}}

struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Follow Envoy's log level so per-request debug lines cost nothing
        // unless debug logging is on.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let text = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                log::error!("cannot read the plugin configuration: {status:?}");
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
                    "configuration accepted: {} lanes, {} services, {} warnings, incoming={:?}",
                    config.rules.lanes.len(),
                    config.services.len(),
                    config.warnings.len(),
                    config.incoming
                );
                self.metrics = Rc::new(metrics);
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("configuration rejected: {e}");
                self.metrics.config_rejected();
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context_id,
            config: self.config.clone(),
            metrics: Rc::clone(&self.metrics),
            response: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    context_id: u32,
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    /// Headers to add to the response: the lane header, assigned cookies.
    response: Vec<(String, String)>,
}

impl Context for Stream {}

/// Random draws for anonymous splits and assigned cookies.
fn random_u64() -> u64 {
    match getrandom::u64() {
        Ok(v) => v,
        Err(_) => {
            // WASI random_get failed: fall back to the clock, mixed.
            let nanos = hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let mut z = (nanos as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^ (z >> 31)
        }
    }
}

fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        log::warn!("cannot set request header {name}: {status:?}");
    }
}

impl Stream {
    fn apply(&mut self, config: &Config, out: &Outcome<'_>) {
        for (name, value) in &out.effects.set {
            set_request_header(name, value.as_deref());
        }
        let lane = config.lane_name(out.decision.lane);
        if let Err(status) = hostcalls::set_property(vec![LANE_PROPERTY], Some(lane.as_bytes())) {
            log::debug!("#{} cannot set filter state: {status:?}", self.context_id);
        }
        if config.response_header {
            self.response
                .push((config.lane_header.clone(), lane.to_string()));
        }
        for cookie in &out.decision.assigned {
            self.response
                .push(("set-cookie".to_string(), cookie.set_cookie()));
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = match HostHeaders::read_request() {
            Ok(h) => h,
            Err(status) => {
                log::warn!(
                    "#{} cannot read request headers: {status:?}",
                    self.context_id
                );
                return Action::Continue;
            }
        };
        let out = engine::process(&config, &headers, &mut random_u64);
        self.apply(&config, &out);
        self.metrics.record(&out);
        if log::log_enabled!(log::Level::Debug) {
            let d = &out.decision;
            let rule = match d.source {
                engine::Source::Rule => config.lane_name(d.lane),
                _ => "-",
            };
            log::debug!(
                "#{} lane={} source={} rule={} bucket={:?} cluster={} fallback={} invalid_tag={} baggage_dropped={} shadow={}",
                self.context_id,
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
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.response.drain(..) {
            let result = if name == "set-cookie" {
                hostcalls::add_map_value(MapType::HttpResponseHeaders, &name, &value)
            } else {
                hostcalls::set_map_value(MapType::HttpResponseHeaders, &name, Some(&value))
            };
            if let Err(status) = result {
                log::debug!(
                    "#{} cannot set response header {name}: {status:?}",
                    self.context_id
                );
            }
        }
        Action::Continue
    }
}
