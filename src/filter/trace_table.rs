//! Lane continuity's host side (docs/full-link.md "Lane continuity from trace
//! context"): the shared-data table, the clock and the listener direction.
//! What to remember and what a lookup means is `crate::continuity`.

use super::abi;
use crate::continuity::{Continuity, Side, Table, WriteError};
use std::cell::RefCell;

/// The traffic direction of the listener the request came in on, as Envoy
/// gives it to a stream: `xds.listener_direction` (a path of two
/// NUL-separated segments). Envoy 1.36 to 1.40 answer it; the top-level
/// `listener_direction` that older proxy-wasm filters read is not found in
/// any of them.
const LISTENER_DIRECTION: &str = "xds\0listener_direction";

thread_local! {
    /// A slot value being written, reused.
    static ENTRY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The proxy-wasm shared data of this VM id: seen by every worker's VM.
pub struct HostTable;

impl Table for HostTable {
    fn read<R>(&mut self, key: &str, f: impl FnOnce(Option<&[u8]>, u32) -> R) -> Option<R> {
        // A failure is counted as a miss (or a write not made), not logged.
        abi::with_shared_data(key, f).ok()
    }

    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        abi::set_shared_data(key, value, cas).map_err(|status| match status {
            abi::Status::CasMismatch => WriteError::Conflict,
            _ => WriteError::Failed,
        })
    }
}

/// The side of this request: the listener's direction when Envoy gives
/// one, else `continuity.side`; `None`: neither (continuity does nothing).
pub fn side(c: &Continuity) -> Option<Side> {
    abi::property_i64(LISTENER_DIRECTION)
        .ok()
        .flatten()
        .and_then(Side::from_direction)
        .or(c.side)
}

/// The host's clock in milliseconds; `None` when it cannot be read (no
/// lookup or write then: an expiry cannot be judged).
pub fn now_ms() -> Option<u64> {
    abi::now_ms().ok()
}

/// Runs `f` with the reused entry buffer.
pub fn with_entry_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    ENTRY_BUF.with_borrow_mut(f)
}
