//! The request headers as Envoy serializes them, read with one host call
//! and looked up in place: no per-header allocation (the SDK's
//! `get_map_bytes` allocates a `String` and a `Vec` per header).
//!
//! Layout (proxy-wasm ABI): `u32 count`, then `count` pairs of
//! `u32 name_len, u32 value_len`, then each name and value followed by a NUL.

use crate::engine::Request;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

const HTTP_REQUEST_HEADERS: u32 = 0;
const STATUS_OK: u32 = 0;

/// The serialized request header map, with the position of each pair
/// found once (lookups then compare name lengths before bytes).
pub struct HostHeaders {
    buf: Vec<u8>,
    /// (name start, name length, value start, value length) per pair.
    pairs: Vec<(usize, usize, usize, usize)>,
}

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

impl HostHeaders {
    /// Reads the request headers; `Err(status)` when the host refuses.
    pub fn read_request() -> Result<HostHeaders, u32> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size into the two out
        // parameters, which live for the duration of the call.
        let status =
            unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
        if status != STATUS_OK {
            return Err(status);
        }
        if data.is_null() || size == 0 {
            return Ok(HostHeaders {
                buf: Vec::new(),
                pairs: Vec::new(),
            });
        }
        // SAFETY: the host allocated this buffer through the module's
        // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes,
        // alignment 1) and hands its ownership to us.
        let buf = unsafe { Vec::from_raw_parts(data, size, size) };
        let pairs = index(&buf);
        Ok(HostHeaders { buf, pairs })
    }
}

/// Positions of the pairs in a serialized map; stops at the first entry that
/// does not fit the buffer (a malformed map yields what came before it).
fn index(buf: &[u8]) -> Vec<(usize, usize, usize, usize)> {
    let count = u32_at(buf, 0).unwrap_or(0);
    let Some(mut data) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count.min(buf.len() / 10));
    for i in 0..count {
        let (Some(nl), Some(vl)) = (u32_at(buf, 4 + i * 8), u32_at(buf, 8 + i * 8)) else {
            break;
        };
        let ns = data;
        let Some(vs) = ns.checked_add(nl).and_then(|n| n.checked_add(1)) else {
            break;
        };
        let Some(end) = vs.checked_add(vl).filter(|&e| e <= buf.len()) else {
            break;
        };
        out.push((ns, nl, vs, vl));
        data = end + 1;
    }
    out
}

impl Request for HostHeaders {
    fn header<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]> {
        let name = name.as_bytes();
        self.pairs.iter().filter_map(move |&(ns, nl, vs, vl)| {
            if nl != name.len() || self.buf.get(ns..ns + nl)? != name {
                return None;
            }
            self.buf.get(vs..vs + vl)
        })
    }
}
