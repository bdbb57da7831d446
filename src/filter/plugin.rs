//! What graylane does in a VM, whichever dispatcher calls it: configure a
//! root, handle one request's headers, add the response headers. Host calls
//! go through `super::abi`; the callbacks that call these live in `mod.rs`.
//! (The bench's proxy-wasm SDK build, `scripts/bench/sdk-filter`, compiles
//! this same file behind the SDK's dispatcher.)

use super::abi;
use super::headers::{HostHeaders, Pair};
use super::metrics::Metrics;
use super::stages::{self, Stage};
use super::trace_table::{self, HostTable};
use crate::config::Config;
use crate::continuity::{self, Event, Side};
use crate::engine::{self, Decision, Outcome, Request, View};
use std::rc::Rc;

/// Filter state key; Envoy shows it as `%FILTER_STATE(wasm.graylane.lane:PLAIN)%`.
const LANE_PROPERTY: &str = "graylane.lane";

/// Response headers to add to one stream: the lane header, assigned cookies.
pub type ResponseHeaders = Vec<(String, String)>;

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

/// Module start: log lines go to the host, at info until a root configures.
pub fn start_logging() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Follows Envoy's log level, so per-request debug lines cost nothing
/// unless debug logging is on (at VM start, and again at every configure).
pub fn follow_host_log_level() {
    let level = match abi::log_level() {
        Ok(0) => log::LevelFilter::Trace,
        Ok(1) => log::LevelFilter::Debug,
        Ok(2) | Err(_) => log::LevelFilter::Info,
        Ok(3) => log::LevelFilter::Warn,
        Ok(_) => log::LevelFilter::Error,
    };
    log::set_max_level(level);
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

/// Reads and compiles a root's plugin configuration. Accepted: `config`
/// and `metrics` replaced (the old counters' pending counts flushed, the
/// tick period set), true. Rejected: counted, the root keeps what it had,
/// false.
pub fn configure(config: &mut Option<Rc<Config>>, metrics: &mut Rc<Metrics>) -> bool {
    match read_configuration(metrics) {
        Some((accepted, counters)) => {
            *metrics = counters;
            *config = Some(accepted);
            true
        }
        None => false,
    }
}

fn read_configuration(current: &Metrics) -> Option<(Rc<Config>, Rc<Metrics>)> {
    follow_host_log_level();
    let text = match abi::plugin_configuration() {
        Ok(bytes) => bytes,
        Err(status) => {
            log::error!("cannot read the plugin configuration: {status}");
            current.config_rejected();
            return None;
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
                crate::config::lint::counted(config.rules.lanes.len(), "lane"),
                crate::config::lint::counted(config.services.len(), "service"),
                crate::config::lint::counted(config.warnings.len(), "warning"),
                config.incoming
            );
            current.flush();
            if let Err(status) = abi::set_tick_period(1000) {
                log::warn!(
                    "cannot set the tick period: {status}; counters are sent when the root stops"
                );
            }
            Some((Rc::new(config), Rc::new(metrics)))
        }
        Err(errors) => {
            for e in &errors {
                log::error!("configuration rejected: {e}");
            }
            current.config_rejected();
            None
        }
    }
}

/// One request's headers, serialized by the host in `buf`: the engine's
/// decision, its header changes and filter state written back, the counts
/// recorded; returns the response headers to add, if any. `pairs` is reused
/// scratch space; `lap` times the stages (a no-op but in the stage-timing
/// build).
pub fn on_request(
    context_id: u32,
    config: &Config,
    metrics: &Metrics,
    buf: &[u8],
    pairs: &mut Vec<Pair>,
    mut lap: stages::Lap,
) -> Option<ResponseHeaders> {
    let headers = HostHeaders::index(buf, pairs);
    lap.end(Stage::Index);
    // `engine::process`, in its steps, for the stage timer.
    let view = engine::View::new(&headers);
    let decision = match &config.continuity {
        None => engine::decide(config, &view, &mut random_u64),
        Some(c) => decide_continued(context_id, config, c, metrics, &view),
    };
    lap.end(Stage::Decide);
    let effects = engine::effects(config, &view, decision.lane);
    lap.end(Stage::Effects);
    let out = Outcome { decision, effects };
    apply(config, &out);
    lap.end(Stage::Apply);
    metrics.record(&out);
    lap.end(Stage::Record);
    stages::request_done(|| {
        std::hint::black_box(engine::process(config, &headers, &mut random_u64));
    });
    if log::log_enabled!(log::Level::Debug) {
        debug_line(context_id, config, &out);
    }
    let response = out.decision.response_headers(config);
    (!response.is_empty()).then_some(response)
}

/// The decision with continuity on: restored on the outbound side, else
/// decided as usual and, on the inbound side, remembered; counted.
#[inline(never)]
fn decide_continued<R: Request + ?Sized>(
    context_id: u32,
    config: &Config,
    c: &continuity::Continuity,
    metrics: &Metrics,
    view: &View<'_, R>,
) -> Decision {
    let side = trace_table::side(c);
    let (decision, event) = match side {
        Some(Side::Outbound) => restore(config, view),
        _ => (None, None),
    };
    let decision = decision.unwrap_or_else(|| engine::decide(config, view, &mut random_u64));
    let event = match side {
        Some(Side::Inbound) => remember(config, view, &decision),
        _ => event,
    };
    if let Some(event) = event {
        metrics.record_continuity(event);
        if log::log_enabled!(log::Level::Debug) {
            let side = side.map_or("-", Side::as_str);
            log::debug!("#{context_id} continuity {side}: {event:?}");
        }
    }
    decision
}

/// Outbound: the lane remembered for an untagged request's trace, as if it
/// had arrived in baggage (docs/full-link.md "Lane continuity from trace context").
fn restore<R: Request + ?Sized>(
    config: &Config,
    view: &View<'_, R>,
) -> (Option<Decision>, Option<Event>) {
    let Some(c) = &config.continuity else {
        return (None, None);
    };
    if engine::carries_tag(config, view) {
        return (None, None);
    }
    let (Some(trace_id), Some(now)) = (continuity::trace_id(c, view), trace_table::now_ms()) else {
        return (None, None);
    };
    let (event, decision) = continuity::lookup(&mut HostTable, c, trace_id, now, |lane| {
        engine::continued(config, lane)
    });
    (decision, Some(event))
}

/// Inbound: remembers the lane just decided (or base) for the request's trace.
fn remember<R: Request + ?Sized>(
    config: &Config,
    view: &View<'_, R>,
    decision: &Decision,
) -> Option<Event> {
    let c = config.continuity.as_ref()?;
    let trace_id = continuity::trace_id(c, view)?;
    let now = trace_table::now_ms()?;
    let lane = config.lane_name(decision.lane);
    Some(trace_table::with_entry_buf(|buf| {
        continuity::remember(&mut HostTable, c, trace_id, lane, now, buf)
    }))
}

/// Adds a stream's response headers (cookies added, others replaced).
pub fn on_response(context_id: u32, headers: ResponseHeaders) {
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
}

/// The request header changes and the filter state (docs/decision.md "How a request is decided").
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

fn debug_line(context_id: u32, config: &Config, out: &Outcome<'_>) {
    let d = &out.decision;
    let rule = match d.source {
        engine::LaneSource::Rule => config.lane_name(d.lane),
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
