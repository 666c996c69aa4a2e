//! Permission sets: the permission strings of a token, compiled once (PROTOCOL §2).
//!
//! Responsibility: turn the `permissions`/`scope` strings of a verified token into
//! lookup structures, and answer "may this connection publish to / subscribe to this topic"
//! and the two admin questions.
//!
//! Must not: parse, allocate or compile anything in the checks (they run on every publish);
//! decide which topics need a permission at all (that `secure/…` and foreign `priv/…`
//! topics need a subscriber permission is the caller's rule); verify tokens.
//!
//! Invariants:
//! - A set is built once per connection, when the connection opens, and never changes.
//! - Unknown permission strings are ignored, never an error: tokens may carry permissions
//!   for other services.
//! - A topic rule list is checked cheapest first: catch-all flag, exact-name hash set,
//!   prefix list, then general globs.

use std::collections::HashSet;

use crate::topic::pattern::{Pattern, PatternKind};

/// Grants publishing to topics matching the pattern that follows.
pub const PUBLISH_PREFIX: &str = "realtime:publisher:write:topic:";
/// Grants subscribing to topics matching the pattern that follows.
pub const SUBSCRIBE_PREFIX: &str = "realtime:subscriber:read:topic:";
/// Grants terminating connections over HTTP.
pub const MANAGE_CONNECTIONS: &str = "realtime:admin:manage:connections";
/// Grants removing subscriptions over HTTP.
pub const MANAGE_SUBSCRIBERS: &str = "realtime:admin:manage:subscribers";

/// The compiled permissions of one connection or one admin call.
#[derive(Debug, Clone, Default)]
pub struct PermissionSet {
    /// Topics this holder may publish to.
    publish: TopicRules,
    /// Topics this holder may subscribe to (where subscribing needs a permission).
    subscribe: TopicRules,
    /// `realtime:admin:manage:connections` was granted.
    manage_connections: bool,
    /// `realtime:admin:manage:subscribers` was granted.
    manage_subscribers: bool,
}

/// The patterns of one kind of topic permission, indexed by shape.
#[derive(Debug, Clone, Default)]
struct TopicRules {
    /// A `*` pattern was granted: every topic matches.
    any: bool,
    /// Patterns without a wildcard.
    exact: HashSet<Box<str>>,
    /// The literals of `literal*` patterns.
    prefixes: Vec<Box<str>>,
    /// Every other pattern (rare in practice).
    globs: Vec<Pattern>,
}

impl TopicRules {
    /// Adds one pattern, filed under its shape. Duplicates are dropped.
    fn add(&mut self, pattern_text: &str) {
        let pattern = Pattern::compile(pattern_text);
        match pattern.kind() {
            PatternKind::Any => self.any = true,
            PatternKind::Exact(name) => {
                self.exact.insert(name.into());
            }
            PatternKind::Prefix(prefix) => {
                if !self.prefixes.iter().any(|known| &**known == prefix) {
                    self.prefixes.push(prefix.into());
                }
            }
            PatternKind::Glob => {
                if !self
                    .globs
                    .iter()
                    .any(|known| known.as_str() == pattern_text)
                {
                    self.globs.push(pattern);
                }
            }
        }
    }

    /// Whether any granted pattern matches `topic`. Does not allocate.
    fn allows(&self, topic: &str) -> bool {
        self.any
            || self.exact.contains(topic)
            || self
                .prefixes
                .iter()
                .any(|prefix| topic.starts_with(&**prefix))
            || self.globs.iter().any(|glob| glob.matches(topic))
    }
}

impl PermissionSet {
    /// Compiles the permission strings of a token. Unknown strings are ignored.
    pub fn compile(permissions: &[String]) -> PermissionSet {
        let mut set = PermissionSet::default();
        for permission in permissions {
            if let Some(pattern) = permission.strip_prefix(PUBLISH_PREFIX) {
                set.publish.add(pattern);
            } else if let Some(pattern) = permission.strip_prefix(SUBSCRIBE_PREFIX) {
                set.subscribe.add(pattern);
            } else if permission == MANAGE_CONNECTIONS {
                set.manage_connections = true;
            } else if permission == MANAGE_SUBSCRIBERS {
                set.manage_subscribers = true;
            }
        }
        set
    }

    /// Whether publishing to `topic` is granted. Does not allocate.
    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish.allows(topic)
    }

    /// Whether subscribing to `topic` is granted. Does not allocate.
    pub fn can_subscribe(&self, topic: &str) -> bool {
        self.subscribe.allows(topic)
    }

    /// Whether terminating connections over HTTP is granted.
    pub fn can_manage_connections(&self) -> bool {
        self.manage_connections
    }

    /// Whether removing subscriptions over HTTP is granted.
    pub fn can_manage_subscribers(&self) -> bool {
        self.manage_subscribers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(permissions: &[&str]) -> PermissionSet {
        let owned: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        PermissionSet::compile(&owned)
    }

    #[test]
    fn empty_set_grants_nothing() {
        let permissions = set(&[]);
        assert!(!permissions.can_publish("main"));
        assert!(!permissions.can_subscribe("secure/inbound"));
        assert!(!permissions.can_manage_connections());
        assert!(!permissions.can_manage_subscribers());
    }

    #[test]
    fn exact_topic() {
        let permissions = set(&["realtime:publisher:write:topic:chat"]);
        assert!(permissions.can_publish("chat"));
        assert!(!permissions.can_publish("chat2"));
        assert!(!permissions.can_publish("cha"));
        assert!(!permissions.can_subscribe("chat"));
    }

    #[test]
    fn prefix_topic() {
        let permissions = set(&[
            "realtime:subscriber:read:topic:priv/*",
            "realtime:subscriber:read:topic:priv/*",
        ]);
        assert_eq!(permissions.subscribe.prefixes.len(), 1);
        assert!(permissions.can_subscribe("priv/4389b2ed1a7e"));
        assert!(permissions.can_subscribe("priv/"));
        assert!(permissions.can_subscribe("priv/a/b"));
        assert!(!permissions.can_subscribe("priv"));
        assert!(!permissions.can_subscribe("secure/inbound"));
        assert!(!permissions.can_publish("priv/x"));
    }

    #[test]
    fn catch_all() {
        let permissions = set(&[
            "realtime:publisher:write:topic:*",
            "realtime:subscriber:read:topic:*",
        ]);
        for topic in ["main", "secure/inbound", "priv/abc", "ö/ü", ""] {
            assert!(permissions.can_publish(topic));
            assert!(permissions.can_subscribe(topic));
        }
        assert!(!permissions.can_manage_connections());
    }

    #[test]
    fn general_glob() {
        let permissions = set(&["realtime:publisher:write:topic:rooms/*/chat"]);
        assert!(permissions.can_publish("rooms/1/chat"));
        assert!(permissions.can_publish("rooms/a/b/chat"));
        assert!(!permissions.can_publish("rooms/1/chat/x"));
        assert!(!permissions.can_publish("rooms/chat"));
    }

    #[test]
    fn secure_and_private_topics() {
        let permissions = set(&[
            "realtime:subscriber:read:topic:secure/inbound",
            "realtime:subscriber:read:topic:priv/user-01",
            "realtime:publisher:write:topic:secure/*",
        ]);
        assert!(permissions.can_subscribe("secure/inbound"));
        assert!(!permissions.can_subscribe("secure/other"));
        assert!(permissions.can_subscribe("priv/user-01"));
        assert!(!permissions.can_subscribe("priv/user-02"));
        assert!(permissions.can_publish("secure/anything/deep"));
        assert!(!permissions.can_publish("priv/user-01"));
    }

    #[test]
    fn admin_permissions() {
        let connections = set(&["realtime:admin:manage:connections"]);
        assert!(connections.can_manage_connections());
        assert!(!connections.can_manage_subscribers());
        let subscribers = set(&["realtime:admin:manage:subscribers"]);
        assert!(subscribers.can_manage_subscribers());
        assert!(!subscribers.can_manage_connections());
        assert!(!subscribers.can_publish("main"));
    }

    #[test]
    fn unknown_strings_are_ignored() {
        let permissions = set(&[
            "realtime:admin:manage:everything",
            "realtime:publisher:write:queue:*",
            "REALTIME:PUBLISHER:WRITE:TOPIC:*",
            "realtime:publisher:write:topic",
            "openid profile",
            "",
            "realtime:publisher:write:topic:main",
        ]);
        assert!(permissions.can_publish("main"));
        assert!(!permissions.can_publish("other"));
        assert!(!permissions.can_subscribe("main"));
        assert!(!permissions.can_manage_connections());
        assert!(!permissions.can_manage_subscribers());
    }

    #[test]
    fn empty_pattern_grants_only_the_empty_topic() {
        let permissions = set(&["realtime:publisher:write:topic:"]);
        assert!(permissions.can_publish(""));
        assert!(!permissions.can_publish("main"));
    }
}
