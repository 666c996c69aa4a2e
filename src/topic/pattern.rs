//! Topic patterns: the glob language of permission strings (PROTOCOL §2).
//!
//! Responsibility: compile a pattern once into the cheapest matcher that fits it, and
//! answer "does this topic match" without allocating.
//!
//! Language: `*` matches any run of characters, including `/` and the empty run; every
//! other character is literal; the whole topic must match. `*` alone matches every topic.
//! There is no escape character, so a literal `*` cannot be expressed.
//!
//! Must not: allocate or backtrack exponentially in [`Pattern::matches`]; know anything
//! about permissions or topic prefixes such as `secure/` (that is `auth::permissions`).
//!
//! Invariants:
//! - [`Pattern::as_str`] always returns the text the pattern was compiled from.
//! - Runs of consecutive `*` behave exactly like a single `*`.
//! - A glob is matched greedily, segment by segment, leftmost first: with only `*` as a
//!   wildcard the leftmost occurrence of each literal segment is never worse than a later
//!   one, so matching is `O(topic × pattern)` at worst and never backtracks.

use std::fmt;

/// The wildcard character of the pattern language.
const WILDCARD: char = '*';

/// A compiled topic pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The text as given to [`Pattern::compile`], kept for display and diagnostics.
    text: Box<str>,
    /// The matcher chosen for the text.
    matcher: Matcher,
}

/// The cheapest matcher able to decide a pattern.
#[derive(Clone, PartialEq, Eq)]
enum Matcher {
    /// No wildcard: the topic must equal the text.
    Exact,
    /// `literal*`: the topic must start with the literal (which may be empty only for `Any`).
    Prefix(Box<str>),
    /// `*` (or any run of `*` alone): every topic matches.
    Any,
    /// Every other shape, e.g. `a*b*c`, `*x`, `*x*`.
    Glob(Glob),
}

/// A general glob split at its wildcards.
///
/// `head*middle[0]*…*middle[n]*tail`; `head` and `tail` may be empty, and no element of
/// `middle` is empty (runs of `*` are collapsed at compile time).
#[derive(Clone, PartialEq, Eq)]
struct Glob {
    /// The literal the topic must start with.
    head: Box<str>,
    /// Literals that must appear, in order and without overlap, between head and tail.
    middle: Box<[Box<str>]>,
    /// The literal the topic must end with.
    tail: Box<str>,
}

/// The shape a pattern compiled to, for callers that index patterns by kind
/// (the permission set keeps exact names in a hash set and prefixes in a list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind<'a> {
    /// No wildcard; holds the exact topic name.
    Exact(&'a str),
    /// `literal*`; holds the literal the topic must start with.
    Prefix(&'a str),
    /// Matches every topic.
    Any,
    /// Anything else; use [`Pattern::matches`].
    Glob,
}

impl Pattern {
    /// Compiles `pattern`. Every string is a valid pattern.
    pub fn compile(pattern: &str) -> Pattern {
        let text: Box<str> = pattern.into();
        let matcher = Self::choose_matcher(pattern);
        Pattern { text, matcher }
    }

    /// Picks the matcher for `pattern` (see [`Matcher`]).
    fn choose_matcher(pattern: &str) -> Matcher {
        if !pattern.contains(WILDCARD) {
            return Matcher::Exact;
        }
        // Non-empty literal segments between wildcards; empty ones come from `**` or from
        // a wildcard at either end and carry no constraint.
        let segments: Vec<&str> = pattern.split(WILDCARD).collect();
        let head = segments.first().copied().unwrap_or_default();
        let tail = segments.last().copied().unwrap_or_default();
        let middle: Vec<Box<str>> = if segments.len() > 2 {
            segments[1..segments.len() - 1]
                .iter()
                .filter(|segment| !segment.is_empty())
                .map(|segment| Box::<str>::from(*segment))
                .collect()
        } else {
            Vec::new()
        };
        match (head.is_empty(), middle.is_empty(), tail.is_empty()) {
            (true, true, true) => Matcher::Any,
            (false, true, true) => Matcher::Prefix(head.into()),
            _ => Matcher::Glob(Glob {
                head: head.into(),
                middle: middle.into_boxed_slice(),
                tail: tail.into(),
            }),
        }
    }

    /// Whether the whole of `topic` matches this pattern. Does not allocate.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => topic == &*self.text,
            Matcher::Prefix(prefix) => topic.starts_with(&**prefix),
            Matcher::Any => true,
            Matcher::Glob(glob) => glob.matches(topic),
        }
    }

    /// The original pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The shape this pattern compiled to.
    pub fn kind(&self) -> PatternKind<'_> {
        match &self.matcher {
            Matcher::Exact => PatternKind::Exact(&self.text),
            Matcher::Prefix(prefix) => PatternKind::Prefix(prefix),
            Matcher::Any => PatternKind::Any,
            Matcher::Glob(_) => PatternKind::Glob,
        }
    }
}

impl Glob {
    /// Greedy, leftmost-first segment matching (see the module invariants).
    fn matches(&self, topic: &str) -> bool {
        // The head and tail are anchored and must not overlap each other.
        if topic.len() < self.head.len() + self.tail.len()
            || !topic.starts_with(&*self.head)
            || !topic.ends_with(&*self.tail)
        {
            return false;
        }
        // Both bounds fall on char boundaries: they are the ends of matched UTF-8 literals.
        let mut rest = &topic[self.head.len()..topic.len() - self.tail.len()];
        for segment in self.middle.iter() {
            match rest.find(&**segment) {
                Some(index) => rest = &rest[index + segment.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_tuple("Pattern").field(&self.text).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, topic: &str) -> bool {
        Pattern::compile(pattern).matches(topic)
    }

    #[test]
    fn kinds_are_chosen_by_shape() {
        assert_eq!(Pattern::compile("chat").kind(), PatternKind::Exact("chat"));
        assert_eq!(
            Pattern::compile("priv/*").kind(),
            PatternKind::Prefix("priv/")
        );
        assert_eq!(
            Pattern::compile("priv/**").kind(),
            PatternKind::Prefix("priv/")
        );
        assert_eq!(Pattern::compile("*").kind(), PatternKind::Any);
        assert_eq!(Pattern::compile("***").kind(), PatternKind::Any);
        assert_eq!(Pattern::compile("*x").kind(), PatternKind::Glob);
        assert_eq!(Pattern::compile("a*b").kind(), PatternKind::Glob);
        assert_eq!(Pattern::compile("*x*").kind(), PatternKind::Glob);
        assert_eq!(Pattern::compile("").kind(), PatternKind::Exact(""));
    }

    #[test]
    fn as_str_is_the_original_text() {
        for text in ["", "*", "**", "a*b*c", "priv/*", "chat", "ü*ß"] {
            assert_eq!(Pattern::compile(text).as_str(), text);
            assert_eq!(Pattern::compile(text).to_string(), text);
        }
    }

    #[test]
    fn exact_matches_only_the_whole_topic() {
        assert!(matches("chat", "chat"));
        assert!(!matches("chat", "chat2"));
        assert!(!matches("chat", "cha"));
        assert!(!matches("chat", "Chat"));
        assert!(!matches("chat", ""));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn star_alone_matches_everything() {
        for topic in ["", "a", "secure/inbound", "priv/abc/def", "ö/ü/ß", "*"] {
            assert!(matches("*", topic), "{topic}");
            assert!(matches("**", topic), "{topic}");
        }
    }

    #[test]
    fn prefix_matches_the_empty_run_and_slashes() {
        assert!(matches("priv/*", "priv/"));
        assert!(matches("priv/*", "priv/abc"));
        assert!(matches("priv/*", "priv/a/b/c"));
        assert!(!matches("priv/*", "priv"));
        assert!(!matches("priv/*", "xpriv/a"));
    }

    #[test]
    fn suffix_and_infix_globs() {
        assert!(matches("*x", "x"));
        assert!(matches("*x", "abcx"));
        assert!(matches("*x", "a/b/x"));
        assert!(!matches("*x", "xa"));
        assert!(matches("*x*", "x"));
        assert!(matches("*x*", "axb"));
        assert!(!matches("*x*", "ab"));
        assert!(matches("secure/*/inbound", "secure//inbound"));
        assert!(matches("secure/*/inbound", "secure/a/b/inbound"));
        assert!(!matches("secure/*/inbound", "secure/inbound"));
    }

    #[test]
    fn several_wildcards() {
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abbbc"));
        assert!(matches("a*b*c", "acbc"));
        assert!(!matches("a*b*c", "acb"));
        assert!(!matches("a*b*c", "ab"));
        assert!(matches("a**b", "ab"));
        assert!(matches("a*b*", "ab"));
        assert!(matches("*a*b", "xxaxxb"));
        assert!(!matches("*a*b", "bxa"));
    }

    #[test]
    fn head_and_tail_do_not_overlap() {
        assert!(!matches("ab*ba", "aba"));
        assert!(matches("ab*ba", "abba"));
        assert!(matches("ab*ba", "ab/ba"));
        assert!(!matches("a*a", "a"));
        assert!(matches("a*a", "aa"));
        assert!(!matches("a*a*a", "aa"));
        assert!(matches("a*a*a", "aaa"));
    }

    #[test]
    fn repeated_segments_against_long_topics_stay_fast() {
        let long = "a".repeat(100_000);
        let pattern = Pattern::compile("a*a*a*a*a*a*a*a*a*a*b");
        assert!(!pattern.matches(&long));
        let mut ending_in_b = long.clone();
        ending_in_b.push('b');
        assert!(pattern.matches(&ending_in_b));
        assert!(Pattern::compile("a*a*a").matches(&long));
        let many_stars = "*a".repeat(1_000);
        assert!(Pattern::compile(&many_stars).matches(&long));
        assert!(!Pattern::compile(&many_stars).matches(&"a".repeat(999)));
    }

    #[test]
    fn unicode_is_literal_and_whole_characters() {
        assert!(matches("ü*ß", "üß"));
        assert!(matches("ü*ß", "ü/日本/ß"));
        assert!(!matches("ü*ß", "u/ß"));
        assert!(matches("*日本", "こんにちは日本"));
        assert!(matches("日*", "日"));
        assert!(!matches("日本*語", "日本"));
        assert!(matches("🎉*🎉", "🎉🎉"));
        assert!(!matches("🎉*🎉", "🎉"));
    }

    #[test]
    fn characters_other_than_star_are_literal() {
        assert!(matches("a?c", "a?c"));
        assert!(!matches("a?c", "abc"));
        assert!(matches("a.c*", "a.c.d"));
        assert!(!matches("a.c*", "abcd"));
        assert!(matches("[x]*", "[x]y"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("a\\*", "a\\b"));
    }
}
