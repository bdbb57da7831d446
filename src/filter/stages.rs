//! Where a request's time goes inside the gateway: a measurement build only
//! (`--features stage-timing`, run by `scripts/bench/stages.sh`), never the
//! shipped filter. Without the feature, `Lap` and `request_done` do
//! nothing and compile away, so the request path reads the same in both.
//!
//! Each stage of `proxy_on_request_headers` is timed with the WASI
//! monotonic clock as it runs in Envoy, caches cold from Envoy's own work
//! between requests. Every 20,000 requests (`WINDOW`) one warn-level log line gives
//! the mean of each stage in ns, with the cost of one clock read (measured
//! back to back on every request) taken off, and `engine_hot`: the same
//! decision and effects repeated 200 times (`HOT_RUNS`) in a row on the last
//! request of the window, caches warm.

/// The timed stages, in request order.
#[derive(Clone, Copy)]
pub enum Stage {
    /// `proxy_get_header_map_pairs`, with the host's call back into the VM
    /// to allocate the buffer.
    Read,
    /// Finding the header pairs in the buffer.
    Index,
    /// The lane decision (docs/decision.md "How a request is decided").
    Decide,
    /// The header changes (docs/decision.md "How a request is decided").
    Effects,
    /// Header writes and the filter state: host calls.
    Apply,
    /// Counters, accumulated in the VM.
    Record,
}

#[cfg(feature = "stage-timing")]
pub use timing::{request_done, Lap};

#[cfg(feature = "stage-timing")]
mod timing {
    use super::Stage;
    use std::cell::RefCell;
    use std::time::Instant;

    /// Requests per log line.
    const WINDOW: u64 = 20_000;
    /// Repetitions of the engine for the warm figure.
    const HOT_RUNS: u32 = 200;

    const STAGES: [&str; 6] = ["read", "index", "decide", "effects", "apply", "record"];

    struct Totals {
        requests: u64,
        ns: [u128; 6],
        clock: u128,
    }

    thread_local! {
        static TOTALS: RefCell<Totals> = const { RefCell::new(Totals { requests: 0, ns: [0; 6], clock: 0 }) };
    }

    /// The running clock of one request.
    pub struct Lap(Instant);

    impl Lap {
        pub fn start() -> Lap {
            Lap(Instant::now())
        }

        /// Ends `stage` here; the next stage starts now.
        pub fn end(&mut self, stage: Stage) {
            let now = Instant::now();
            let ns = now.duration_since(self.0).as_nanos();
            TOTALS.with_borrow_mut(|t| {
                if let Some(slot) = t.ns.get_mut(stage as usize) {
                    *slot += ns;
                }
            });
            self.0 = now;
        }
    }

    /// Counts a finished request; at the end of a window, times `engine` warm
    /// and logs the window.
    pub fn request_done(engine: impl Fn()) {
        let a = Instant::now();
        let b = Instant::now();
        let clock = b.duration_since(a).as_nanos();
        let full = TOTALS.with_borrow_mut(|t| {
            t.clock += clock;
            t.requests += 1;
            t.requests % WINDOW == 0
        });
        if !full {
            return;
        }
        let start = Instant::now();
        for _ in 0..HOT_RUNS {
            engine();
        }
        let hot = start.elapsed().as_nanos() / u128::from(HOT_RUNS);
        TOTALS.with_borrow_mut(|t| {
            let n = u128::from(WINDOW);
            let clock = t.clock / n;
            let mut line = format!("stage timing, mean ns over {WINDOW} requests:");
            for (name, total) in STAGES.iter().zip(t.ns) {
                line.push_str(&format!(" {name}={}", (total / n).saturating_sub(clock)));
            }
            line.push_str(&format!(" engine_hot={hot} clock={clock}"));
            log::warn!("{line}");
            t.ns = [0; 6];
            t.clock = 0;
        });
    }
}

/// The stage timer of a build without it: nothing.
#[cfg(not(feature = "stage-timing"))]
pub struct Lap;

#[cfg(not(feature = "stage-timing"))]
impl Lap {
    #[inline(always)]
    pub fn start() -> Lap {
        Lap
    }

    #[inline(always)]
    pub fn end(&mut self, _stage: Stage) {}
}

#[cfg(not(feature = "stage-timing"))]
#[inline(always)]
pub fn request_done(_engine: impl Fn()) {}
