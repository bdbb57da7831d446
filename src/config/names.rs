//! The names a configuration gives: header names, baggage keys, cookie
//! names, lane names. Each check's message says exactly what it accepts.

use super::{ConfigError, ErrorKind, JsonPath, BASE};
use std::fmt::{self, Write};

/// The characters of an HTTP token (RFC 9110 `tchar`) besides ASCII letters
/// and digits: header names, cookie names and baggage keys are tokens.
pub const TOKEN_SYMBOLS: &str = "!#$%&'*+-.^_`|~";
/// Longest accepted baggage key (`baggageKey`, `shadow.baggageKey`).
pub const MAX_BAGGAGE_KEY: usize = 256;
/// Longest accepted lane name.
pub const MAX_LANE_NAME: usize = 63;

/// A character of an HTTP token.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || TOKEN_SYMBOLS.as_bytes().contains(&b)
}

/// A character of a baggage key graylane accepts: a token character other
/// than `%`.
pub fn is_baggage_key_char(b: u8) -> bool {
    b != b'%' && is_token_char(b)
}

/// The token symbols a baggage key may hold: all but `%`.
pub fn baggage_key_symbols() -> impl fmt::Display {
    struct Symbols;
    impl fmt::Display for Symbols {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            TOKEN_SYMBOLS
                .chars()
                .filter(|&c| c != '%')
                .try_for_each(|c| f.write_char(c))
        }
    }
    Symbols
}

/// Where a header name is used: read (a condition, a split key), which
/// also takes a pseudo-header, or set by graylane.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HeaderUse {
    Read,
    Set,
}

/// A header name: a token, lower-cased, after an optional `:` (a
/// pseudo-header; [`settable_header`] refuses it). `to` only chooses the
/// message.
pub fn header_name(path: &JsonPath<'_>, name: &str, to: HeaderUse) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let body = lower.strip_prefix(':').unwrap_or(&lower);
    if body.is_empty() || !body.bytes().all(is_token_char) {
        let pseudo = match to {
            HeaderUse::Read => ", after an optional ':' for a pseudo-header such as \":path\"",
            HeaderUse::Set => "",
        };
        return Err(ConfigError::new(
            path,
            ErrorKind::HeaderName,
            format!("\"{name}\" is not a valid header name; use one or more letters, digits and {TOKEN_SYMBOLS} (an HTTP token){pseudo}"),
        ));
    }
    Ok(lower)
}

/// A header graylane sets: a token that is none of the headers Envoy and
/// graylane own.
pub fn settable_header(path: &JsonPath<'_>, name: &str) -> Result<String, ConfigError> {
    let lower = header_name(path, name, HeaderUse::Set)?;
    if lower.starts_with(':') || matches!(lower.as_str(), "host" | "baggage" | "cookie") {
        return Err(reserved_header(path, name));
    }
    Ok(lower)
}

fn reserved_header(path: &JsonPath<'_>, name: &str) -> ConfigError {
    ConfigError::new(
        path,
        ErrorKind::ReservedHeader,
        format!("\"{name}\" cannot be used here (graylane does not set pseudo-headers, host, baggage or cookie); choose a header of your own such as \"x-graylane\""),
    )
}

/// A baggage member's key, bounded so that an edited baggage header always
/// fits W3C limits.
pub fn baggage_key(path: &JsonPath<'_>, key: &str) -> Result<(), ConfigError> {
    if !key.is_empty() && key.len() <= MAX_BAGGAGE_KEY && key.bytes().all(is_baggage_key_char) {
        return Ok(());
    }
    Err(ConfigError::new(
        path,
        ErrorKind::BaggageKey,
        format!(
            "\"{key}\" is not a valid baggage key; use 1 to {MAX_BAGGAGE_KEY} letters, digits and {} (an HTTP token without '%')",
            baggage_key_symbols()
        ),
    ))
}

/// A cookie name graylane sets (`Set-Cookie`): a token.
pub fn settable_cookie(path: &JsonPath<'_>, name: &str) -> Result<(), ConfigError> {
    if name.bytes().all(is_token_char) {
        return Ok(());
    }
    Err(ConfigError::new(
        path,
        ErrorKind::Assign,
        format!("\"{name}\" is not a valid cookie name to set; use letters, digits and {TOKEN_SYMBOLS} (an HTTP token)"),
    ))
}

/// A name that must not be empty (a cookie, a query parameter, a cluster).
pub fn not_empty(path: &JsonPath<'_>, value: &str, what: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(
            path,
            ErrorKind::EmptyName,
            format!("the {what} must not be empty"),
        ));
    }
    Ok(())
}

/// A lane name (docs/configuration.md "Configuration reference").
pub fn lane_name(path: &JsonPath<'_>, name: &str) -> Result<(), ConfigError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    let starts_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > MAX_LANE_NAME || !valid_chars || !starts_ok {
        return Err(ConfigError::new(
            path,
            ErrorKind::LaneName,
            format!("\"{name}\" is not a valid lane name; use 1-{MAX_LANE_NAME} characters of a-z 0-9 - _ . starting with a letter or digit"),
        ));
    }
    if name == BASE {
        return Err(ConfigError::new(
            path,
            ErrorKind::ReservedLane,
            "\"base\" is reserved for traffic in no lane; choose another name",
        ));
    }
    Ok(())
}
