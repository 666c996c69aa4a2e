//! Topic patterns (`topic::pattern::Pattern`) and permission sets (`auth::PermissionSet`).
//!
//! Input: UTF-8 text, lines. Lines before the first empty line are patterns; the others
//! are topics. Checks: no panic; `Pattern::matches` agrees with a plain dynamic-programming
//! glob matcher (`*` = any run, everything else literal, whole topic); `as_str` returns the
//! text compiled; a permission set built from `publisher`/`subscriber` grants of the
//! patterns allows exactly the topics some pattern matches, for both directions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::auth::permissions::{PUBLISH_PREFIX, SUBSCRIBE_PREFIX};
use ringcast::auth::PermissionSet;
use ringcast::topic::pattern::Pattern;

/// Reference matcher, O(pattern × topic), over chars.
fn reference_matches(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let topic: Vec<char> = topic.chars().collect();
    // matched[j]: the pattern prefix processed so far matches topic[..j].
    let mut matched = vec![false; topic.len() + 1];
    matched[0] = true;
    for &symbol in &pattern {
        let mut next = vec![false; topic.len() + 1];
        if symbol == '*' {
            let mut any = false;
            for j in 0..=topic.len() {
                any |= matched[j];
                next[j] = any;
            }
        } else {
            for j in 0..topic.len() {
                next[j + 1] = matched[j] && topic[j] == symbol;
            }
        }
        matched = next;
    }
    matched[topic.len()]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Bound the reference matcher's quadratic work.
    if text.len() > 4096 {
        return;
    }
    let (pattern_lines, topic_lines) = text.split_once("\n\n").unwrap_or((text, ""));
    let patterns: Vec<&str> = pattern_lines.split('\n').take(16).collect();
    let topics: Vec<&str> = topic_lines
        .split('\n')
        .take(16)
        .chain(patterns.iter().copied())
        .collect();

    let compiled: Vec<Pattern> = patterns.iter().map(|text| Pattern::compile(text)).collect();
    for (pattern, text) in compiled.iter().zip(&patterns) {
        assert_eq!(pattern.as_str(), *text);
        let _ = pattern.kind();
        for topic in &topics {
            assert_eq!(
                pattern.matches(topic),
                reference_matches(text, topic),
                "pattern {text:?} on topic {topic:?}"
            );
        }
    }

    let mut grants: Vec<String> = Vec::new();
    for (index, pattern) in patterns.iter().enumerate() {
        let prefix = if index % 2 == 0 {
            PUBLISH_PREFIX
        } else {
            SUBSCRIBE_PREFIX
        };
        grants.push(format!("{prefix}{pattern}"));
    }
    // Raw lines too, so unknown and admin permission strings are exercised.
    grants.extend(patterns.iter().map(|line| line.to_string()));
    let set = PermissionSet::compile(&grants);
    for topic in &topics {
        let granted = |parity: usize| {
            patterns
                .iter()
                .enumerate()
                .filter(|(index, _)| index % 2 == parity)
                .any(|(_, pattern)| reference_matches(pattern, topic))
        };
        // A raw line may itself be a grant (it starts with a prefix): include those.
        let raw = |prefix: &str| {
            patterns
                .iter()
                .filter_map(|line| line.strip_prefix(prefix))
                .any(|pattern| reference_matches(pattern, topic))
        };
        assert_eq!(
            set.can_publish(topic),
            granted(0) || raw(PUBLISH_PREFIX),
            "publish {topic:?}"
        );
        assert_eq!(
            set.can_subscribe(topic),
            granted(1) || raw(SUBSCRIBE_PREFIX),
            "subscribe {topic:?}"
        );
    }
    let _ = (set.can_manage_connections(), set.can_manage_subscribers());
});
