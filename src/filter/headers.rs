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

/// The serialized request header map.
pub struct HostHeaders {
    buf: Vec<u8>,
    count: usize,
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
                count: 0,
            });
        }
        // SAFETY: the host allocated this buffer through the module's
        // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes,
        // alignment 1) and hands its ownership to us.
        let buf = unsafe { Vec::from_raw_parts(data, size, size) };
        let count = u32_at(&buf, 0).unwrap_or(0);
        // A table that does not fit the buffer is treated as no headers.
        let table_end = count.checked_mul(8).and_then(|n| n.checked_add(4));
        let count = if table_end.is_some_and(|end| end <= buf.len()) {
            count
        } else {
            0
        };
        Ok(HostHeaders { buf, count })
    }

    /// Every (name, value) pair, in order; stops at the first malformed entry.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut data = 4 + self.count * 8;
        (0..self.count).map_while(move |i| {
            let name_len = u32_at(&self.buf, 4 + i * 8)?;
            let value_len = u32_at(&self.buf, 8 + i * 8)?;
            let name = self.buf.get(data..data.checked_add(name_len)?)?;
            data = data.checked_add(name_len + 1)?;
            let value = self.buf.get(data..data.checked_add(value_len)?)?;
            data = data.checked_add(value_len + 1)?;
            Some((name, value))
        })
    }
}

impl Request for HostHeaders {
    fn header<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]> {
        self.pairs()
            .filter(move |(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }
}
