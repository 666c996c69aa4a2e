//! Request values in log lines: [`Escaped`] writes a string from the network (an app id
//! from a request path, a NATS subject) so that it cannot forge or garble a line.
//!
//! Responsibility: one `Display` wrapper for `tracing` fields (`app = %Escaped(id)`).
//! Control characters, line breaks, quotes, backslashes and invisible or bidirectional
//! formatting characters come out as Rust escapes (`\n`, `\u{1b}`, `\u{202e}`); everything
//! else, ordinary ids included, is written unchanged and without quotes, so text and JSON
//! logs read the same as before. Must not be used for secrets: escaping is not redaction,
//! and tokens, keys and query strings never reach a log line at all.

use std::fmt;

/// A string from the network, escaped for a log line (see the module docs).
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.escape_debug(), formatter)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn ordinary_ids_are_unchanged_and_the_rest_is_escaped() {
        let id = "b5cvf368e1fc006e95521000764a5706";
        assert_eq!(Escaped(id).to_string(), id);
        assert_eq!(Escaped("café").to_string(), "café");
        assert_eq!(
            Escaped("a\nINFO forged line").to_string(),
            "a\\nINFO forged line"
        );
        assert_eq!(Escaped("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(
            Escaped("left\u{202e}right").to_string(),
            "left\\u{202e}right"
        );
        assert_eq!(Escaped("say \"hi\"").to_string(), "say \\\"hi\\\"");
    }
}
