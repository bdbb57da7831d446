//! Maps a position in JSON text (where serde_json stopped with an error) to
//! the JSON path of the field there, such as `lanes[2].match.any[0].regex`.
//! A scanner of a few dozen lines instead of a path-tracking deserializer
//! keeps the filter small.

enum Frame {
    Object {
        key: Option<String>,
        after_colon: bool,
    },
    Array {
        index: usize,
    },
}

/// Byte offset of a 1-based line and column.
pub fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text.iter().skip(start).position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    (start + column).min(text.len())
}

/// The JSON path at `offset`. With `container`, the path of the object or
/// array being read there, without the member being read (for "missing
/// field" errors, reported at the end of the object).
pub fn path_at(text: &[u8], offset: usize, container: bool) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = offset.min(text.len());
    while i < end {
        let Some(&b) = text.get(i) else { break };
        match b {
            b'{' => stack.push(Frame::Object {
                key: None,
                after_colon: false,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(Frame::Object { after_colon, .. }) = stack.last_mut() {
                    *after_colon = true;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { key, after_colon }) => {
                    *key = None;
                    *after_colon = false;
                }
                None => {}
            },
            b'"' => {
                let mut j = i + 1;
                let mut s = Vec::new();
                while let Some(&c) = text.get(j) {
                    match c {
                        b'"' => break,
                        b'\\' => {
                            if let Some(&e) = text.get(j + 1) {
                                s.push(e);
                            }
                            j += 2;
                            continue;
                        }
                        _ => s.push(c),
                    }
                    j += 1;
                }
                if let Some(Frame::Object {
                    key,
                    after_colon: false,
                }) = stack.last_mut()
                {
                    *key = Some(String::from_utf8_lossy(&s).into_owned());
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    if container {
        if let Some(Frame::Object { key, .. }) = stack.last_mut() {
            *key = None;
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str, container: bool) -> String {
        let off = text.find(needle).unwrap() + needle.len();
        path_at(text.as_bytes(), off, container)
    }

    #[test]
    fn paths() {
        let t = r#"{"lanes": [{"name": "a"}, {"name": "b", "match": {"any": [{"header": "x", "regex": "("}]}}]}"#;
        assert_eq!(at(t, r#""regex""#, false), "lanes[1].match.any[0].regex");
        assert_eq!(at(t, r#""("}"#, true), "lanes[1].match.any[0]");
        assert_eq!(at(t, r#""name": "a""#, false), "lanes[0].name");
        assert_eq!(at("{\"a\\\"b\": 1}", "1", false), "a\"b");
        assert_eq!(offset_of(b"ab\ncd\nef", 2, 1), 4);
    }
}
