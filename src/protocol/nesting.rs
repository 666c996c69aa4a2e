//! JSON nesting depth: one bound for every JSON text ringcast reads from outside.
//!
//! Responsibility: tell whether a JSON text nests arrays and objects deeper than
//! [`MAX_JSON_NESTING`], before any parser sees it. ringcast itself never recurses into a
//! payload (it is copied verbatim), but its subscribers' parsers do: Python's `json` raises
//! `RecursionError` near 1,000 levels, so one publisher could break every Python
//! subscriber of a topic. Command JSON, HTTP API bodies and bus input are all checked here,
//! whichever parser reads them next.
//!
//! Must not: validate the JSON otherwise (the parser that follows does), allocate, or
//! panic on any input (brackets inside strings do not count; an unterminated string or
//! unbalanced brackets simply end the scan).

/// The deepest nesting of arrays and objects accepted anywhere (the command object and
/// its `data` count: a payload may nest 126 levels inside a WebSocket command). 128 is
/// `serde_json`'s own recursion limit and far below what any real message uses, and well
/// inside the ~1,000 that Python's and other recursive parsers survive.
pub const MAX_JSON_NESTING: usize = 128;

/// Whether `json` nests arrays/objects deeper than `limit`.
///
/// Cost: one pass counting `[`/`{` bytes (vectorised by the compiler); only a text holding
/// more than `limit` of them is scanned again with string tracking, so ordinary messages
/// pay one cheap pass.
pub fn nesting_exceeds(json: &[u8], limit: usize) -> bool {
    let openers = json.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if openers <= limit {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(!nesting_exceeds(nested(128).as_bytes(), 128));
        assert!(nesting_exceeds(nested(129).as_bytes(), 128));
        assert!(nesting_exceeds(nested(10_000).as_bytes(), 128));
        let objects = format!("{}{}", r#"{"a":"#.repeat(129), "}".repeat(129));
        assert!(nesting_exceeds(objects.as_bytes(), 128));
        // Brackets in strings, escaped quotes included, are text.
        let text = format!(r#"{{"payload":"\"{}"}}"#, "[".repeat(1000));
        assert!(!nesting_exceeds(text.as_bytes(), 128));
        // Many siblings are not depth.
        let wide = format!("[{}1]", "[],".repeat(1000));
        assert!(!nesting_exceeds(wide.as_bytes(), 128));
    }

    #[test]
    fn garbage_never_panics() {
        for input in [&b""[..], b"]]]]", b"\"unterminated [[[", b"\\", b"[\"\\"] {
            let _ = nesting_exceeds(input, 0);
            let _ = nesting_exceeds(input, 128);
        }
        assert!(nesting_exceeds(b"[", 0));
    }
}
