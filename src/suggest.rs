//! Friendlier texts for configuration mistakes: "did you mean `maxConnections`?".
//!
//! Responsibility: turn a `serde_json` error into the message an operator reads — its
//! position is printed once (by the caller, which names line and column), and an unknown
//! field or value that is a near miss of an accepted one names that one instead of listing
//! every field. Pure text functions: no I/O, no configuration types.
//!
//! Invariants: a suggestion is only ever one of the names serde listed as accepted; a word
//! far from every candidate gets no suggestion (the full list is kept then).

/// Edits (insertions, deletions, substitutions, ignoring ASCII case) allowed between a
/// misspelt name and the suggestion — this many, or a third of the word's length when that
/// is more: two cover a dropped, doubled or swapped letter (`maxConection`, `listn`,
/// `pingIntervalSecnods`), and long names may carry one more slip. Beyond that a "did you
/// mean" is more often wrong than helpful.
const SUGGESTION_EDIT_BUDGET: usize = 2;

/// The accepted name closest to `word`, when it is a near miss (see
/// [`SUGGESTION_EDIT_BUDGET`]). Ties go to the earlier candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = SUGGESTION_EDIT_BUDGET.max(word.chars().count() / 3);
    candidates
        .into_iter()
        .map(|candidate| (edits(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters, ignoring ASCII case.
fn edits(from: &str, to: &str) -> usize {
    let from: Vec<char> = from.chars().map(|c| c.to_ascii_lowercase()).collect();
    let to: Vec<char> = to.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut previous: Vec<usize> = (0..=to.len()).collect();
    let mut current = vec![0; to.len() + 1];
    for (i, a) in from.iter().enumerate() {
        current[0] = i + 1;
        for (j, b) in to.iter().enumerate() {
            let substitution = previous[j] + usize::from(a != b);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[to.len()]
}

/// The message of a JSON configuration error without serde_json's trailing
/// " at line L column C" (the caller prints the position once), and for an unknown field or
/// variant that is a near miss, "… — did you mean `name`?" in place of the list of every
/// accepted name.
pub fn json_error_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = hide_string_values(text.strip_suffix(&suffix).unwrap_or(&text));
    suggest_in(&message).unwrap_or(message)
}

/// serde quotes a string it could not use (`invalid type: string "…", expected …`); in a
/// configuration that string may be a secret in the wrong place (a NATS token written
/// where `auth`'s object belongs, a URL with its password where a list belongs). The value
/// is left out of the message; its line and column say where it is.
fn hide_string_values(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(QUOTED) {
        out.push_str(&rest[..at]);
        out.push_str("a string (value not shown)");
        let value = &rest[at + QUOTED.len()..];
        let mut escaped = false;
        let end = value.char_indices().find_map(|(index, c)| {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Some(index + 1);
            }
            None
        });
        rest = &value[end.unwrap_or(value.len())..];
    }
    out.push_str(rest);
    out
}

/// `unknown field `x`, expected one of `a`, `b`` (or `unknown variant …`, or `expected
/// `a` or `b``) → `unknown field `x` — did you mean `a`?`, when `x` is a near miss.
fn suggest_in(message: &str) -> Option<String> {
    let (head, expected) = message.split_once(", expected ")?;
    let kind = ["unknown field `", "unknown variant `"]
        .into_iter()
        .find(|prefix| head.starts_with(prefix))?;
    let word = head[kind.len()..].strip_suffix('`')?;
    // The accepted names are the back-quoted words of the rest.
    let candidates = expected.split('`').skip(1).step_by(2);
    let suggestion = closest(word, candidates)?;
    Some(format!("{head} — did you mean `{suggestion}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_never_reach_the_message() {
        let error = serde_json::from_str::<Vec<String>>(r#""nats://u:s3cret@host""#).unwrap_err();
        let message = json_error_message(&error);
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("a string (value not shown)"), "{message}");
        assert_eq!(
            hide_string_values(r#"invalid type: string "a\"b\\", expected x; string "c""#),
            "invalid type: a string (value not shown), expected x; a string (value not shown)"
        );
        assert_eq!(hide_string_values("unknown field `x`"), "unknown field `x`");
    }

    #[test]
    fn near_misses_are_suggested_and_far_words_are_not() {
        let fields = [
            "listen",
            "maxConnections",
            "maxConnectionsPerSubject",
            "workers",
        ];
        assert_eq!(
            closest("maxConection", fields),
            Some("maxConnections"),
            "a dropped letter"
        );
        assert_eq!(closest("listn", fields), Some("listen"));
        assert_eq!(closest("MaxConnections", fields), Some("maxConnections"));
        assert_eq!(closest("colour", fields), None);
        assert_eq!(closest("", fields), None);
    }

    #[test]
    fn serde_errors_lose_the_repeated_position_and_gain_a_suggestion() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Server {
            listen: Option<String>,
            max_connections: Option<u64>,
        }
        let error = serde_json::from_str::<Server>(r#"{"maxConection": 3}"#).unwrap_err();
        assert_eq!(
            json_error_message(&error),
            "unknown field `maxConection` — did you mean `maxConnections`?"
        );
        let error = serde_json::from_str::<Server>(r#"{"colour": 3}"#).unwrap_err();
        let message = json_error_message(&error);
        assert!(
            message.starts_with("unknown field `colour`, expected"),
            "{message}"
        );
        assert!(!message.contains("line 1"), "{message}");
        let error = serde_json::from_str::<Server>("{").unwrap_err();
        assert!(!json_error_message(&error).contains("line"));
    }
}
