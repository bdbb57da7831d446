//! The request headers as Envoy serializes them, read with one host call
//! into a buffer reused by every request, and looked up in place: no
//! allocation per request once the buffers have grown to fit.
//!
//! Layout (proxy-wasm ABI): `u32 count`, then `count` pairs of
//! `u32 name_len, u32 value_len`, then each name and value followed by a NUL.

use crate::engine::Request;

/// (name start, name length, value start, value length) of one pair.
pub type Pair = (usize, usize, usize, usize);

/// A serialized header map and the position of each of its pairs.
pub struct HostHeaders<'b> {
    buf: &'b [u8],
    pairs: &'b [Pair],
}

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

impl<'b> HostHeaders<'b> {
    /// Indexes `buf` into `pairs` (cleared first); stops at the first entry
    /// that does not fit the buffer (a malformed map yields what came before).
    pub fn index(buf: &'b [u8], pairs: &'b mut Vec<Pair>) -> HostHeaders<'b> {
        pairs.clear();
        let count = u32_at(buf, 0).unwrap_or(0);
        if let Some(mut data) = count.checked_mul(8).and_then(|n| n.checked_add(4)) {
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
                pairs.push((ns, nl, vs, vl));
                data = end + 1;
            }
        }
        HostHeaders { buf, pairs }
    }
}

impl Request for HostHeaders<'_> {
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
