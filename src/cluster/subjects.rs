//! The bus's NATS subjects (wire version 1). Sans-IO.
//!
//! Every subject is under `<prefix>.v1.` (the wire version: nodes of different versions
//! share nothing, see README "Rolling upgrades"), except the request inbox `<prefix>.inbox`
//! — so one NATS permission on `<prefix>.>` covers a node:
//! - `pub.<app>.<bucket>.<dest>` — publications ([`crate::cluster::wire`]). `<bucket>` is
//!   the topic's bucket as 3 hex digits (`broker::interest::bucket_of`); `<dest>` is the
//!   node number of the connection a `priv/<id>` topic names, `_` for every other topic.
//!   The topic itself travels in the message, never in the subject, so any UTF-8 topic of
//!   up to 256 bytes is carried and a subject never holds a wildcard, dot or space from it.
//! - a node subscribes to `pub.<app>.<bucket>.*` for every bucket it holds topics of, and
//!   to `pub.*.*.<its number>` once: the connections it holds.
//! - `admin` — app-wide admin calls every node acts on; `hello` — a node's arrival (node
//!   number conflicts are found there); `node.<number>.terminate` — close one connection
//!   on the node holding it (request/reply).

use crate::broker::interest::bucket_of;
use crate::broker::session::{node_of, private_connection_id};

/// The wire version, first token after the prefix.
pub const WIRE_VERSION: &str = "v1";
/// The `<dest>` token of a publication whose topic is not `priv/<id>`.
const ANY_NODE: &str = "_";

/// Subject names for one prefix and node.
#[derive(Debug, Clone)]
pub struct Subjects {
    pub prefix: String,
    /// This node's `nodeNumber`.
    pub node: u16,
}

impl Subjects {
    fn versioned(&self) -> String {
        format!("{}.{WIRE_VERSION}", self.prefix)
    }

    /// Where a publication of `app` to `topic` goes.
    pub fn publication(&self, app: &str, topic: &str) -> String {
        let bucket = bucket_of(topic);
        match private_connection_id(topic) {
            Some(id) => format!(
                "{}.pub.{app}.{bucket:03x}.{}",
                self.versioned(),
                node_of(id)
            ),
            None => format!("{}.pub.{app}.{bucket:03x}.{ANY_NODE}", self.versioned()),
        }
    }

    /// The subscription for the topics of one bucket of `app`.
    pub fn bucket(&self, app: &str, bucket: u16) -> String {
        format!("{}.pub.{app}.{bucket:03x}.*", self.versioned())
    }

    /// The subscription for `priv/<id>` of this node's connections, every app.
    pub fn own_connections(&self) -> String {
        format!("{}.pub.*.*.{}", self.versioned(), self.node)
    }

    /// Whether a publication subject addresses this node's connections (a bucket
    /// subscription skips it: [`Subjects::own_connections`] already delivers it).
    pub fn addresses_this_node(&self, subject: &str) -> bool {
        subject
            .rsplit('.')
            .next()
            .is_some_and(|dest| dest.parse::<u16>() == Ok(self.node))
    }

    pub fn admin(&self) -> String {
        format!("{}.admin", self.versioned())
    }

    pub fn hello(&self) -> String {
        format!("{}.hello", self.versioned())
    }

    /// The terminate request subject of node `node`.
    pub fn terminate(&self, node: u16) -> String {
        format!("{}.node.{node}.terminate", self.versioned())
    }

    /// The prefix of this client's reply inboxes.
    pub fn inbox_prefix(&self) -> String {
        format!("{}.inbox", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::interest::BUCKETS;
    use crate::broker::session::{compose_connection_id, format_connection_id};

    fn subjects() -> Subjects {
        Subjects {
            prefix: "acme.rc".into(),
            node: 7,
        }
    }

    /// What NATS accepts in a PUB subject (no whitespace, no wildcards, no empty tokens).
    fn valid_publish_subject(subject: &str) -> bool {
        subject.len() < 1024
            && subject.split('.').all(|t| {
                !t.is_empty() && !t.contains(['*', '>']) && !t.contains(char::is_whitespace)
            })
    }

    #[test]
    fn any_topic_gives_a_valid_subject_without_the_topic_in_it() {
        let s = subjects();
        let long = "é".repeat(128);
        for topic in [
            "chat",
            "a.b c*>",
            "",
            "priv/alice",
            "\u{0}\t\r\n",
            long.as_str(),
        ] {
            let subject = s.publication("app_1", topic);
            assert!(valid_publish_subject(&subject), "{subject}");
            assert!(subject.starts_with("acme.rc.v1.pub.app_1."), "{subject}");
            assert!(
                subject.ends_with("._"),
                "not a connection's topic: {subject}"
            );
        }
    }

    #[test]
    fn a_connection_topic_goes_to_the_node_in_its_id() {
        let s = subjects();
        let id = compose_connection_id(42, 0xabcdef, 3);
        let topic = format!("priv/{}", format_connection_id(id));
        let subject = s.publication("app", &topic);
        assert_eq!(
            subject,
            format!("acme.rc.v1.pub.app.{:03x}.42", bucket_of(&topic))
        );
        assert!(!s.addresses_this_node(&subject));
        let mine = format!(
            "priv/{}",
            format_connection_id(compose_connection_id(7, 1, 0))
        );
        assert!(s.addresses_this_node(&s.publication("app", &mine)));
        assert!(!s.addresses_this_node(&s.publication("app", "chat")));
    }

    #[test]
    fn subscriptions_match_the_publications_they_are_for() {
        // NATS matching: `*` is one token.
        fn matches(pattern: &str, subject: &str) -> bool {
            let (p, s): (Vec<_>, Vec<_>) =
                (pattern.split('.').collect(), subject.split('.').collect());
            p.len() == s.len() && p.iter().zip(&s).all(|(p, s)| *p == "*" || p == s)
        }
        let s = subjects();
        let topic = "room/9";
        let publication = s.publication("app", topic);
        assert!(matches(&s.bucket("app", bucket_of(topic)), &publication));
        assert!(!matches(&s.bucket("other", bucket_of(topic)), &publication));
        assert!(!matches(&s.own_connections(), &publication));
        let own = format!(
            "priv/{}",
            format_connection_id(compose_connection_id(7, 5, 1))
        );
        assert!(matches(&s.own_connections(), &s.publication("app", &own)));
        assert!(matches(
            &s.bucket("app", bucket_of(&own)),
            &s.publication("app", &own)
        ));
        for bucket in [0, BUCKETS - 1] {
            assert!(s.bucket("app", bucket).split('.').nth(5).unwrap().len() == 3);
        }
        assert!(s.inbox_prefix().starts_with("acme.rc."));
        assert!(s.terminate(3).starts_with("acme.rc.v1."));
    }
}
