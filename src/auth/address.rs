//! Source-address filters: `adminSourceAddress` / `clientSourceAddress` (PROTOCOL §1).
//!
//! Responsibility: parse the configured entries once, and decide whether a peer address
//! may connect.
//!
//! Must not: look at headers (`X-Forwarded-For` trust is decided by the caller, which then
//! passes the address it trusts); do any I/O or name resolution.
//!
//! Invariants:
//! - At most [`SourceFilter::MAX_ENTRIES`] entries; a filter that parsed holds only valid
//!   networks, with host bits cleared.
//! - A peer is refused when it matches any `!` (deny) entry, or when positive entries exist
//!   and it matches none. Deny always wins.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), in peers and in entries, are treated as
//!   the IPv4 address, so a dual-stack listener behaves like an IPv4 one.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

/// Marks a deny entry.
const DENY_MARKER: char = '!';

/// Errors in a source-address list. They name the offending entry (addresses are not
/// secrets); the caller adds the app id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// More entries than [`SourceFilter::MAX_ENTRIES`]; shorten the list, e.g. by using CIDRs.
    #[error("{count} source address entries given, at most {max} are allowed", max = SourceFilter::MAX_ENTRIES)]
    TooManyEntries {
        /// How many entries were given.
        count: usize,
    },
    /// The entry is neither an IP address nor a CIDR, with an optional leading `!`.
    #[error("source address entry {entry:?} is not an IP address or CIDR (optionally prefixed with '!')")]
    InvalidEntry {
        /// The entry as configured.
        entry: String,
    },
}

/// A parsed allow/deny list of networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFilter {
    /// Positive entries; when non-empty a peer must match one of them.
    allowed: Vec<IpNet>,
    /// `!` entries; a peer matching one is always refused.
    denied: Vec<IpNet>,
}

impl SourceFilter {
    /// The most entries one list may hold (PROTOCOL §1, mirroring the upstream service).
    pub const MAX_ENTRIES: usize = 10;

    /// The filter used when the configuration field is absent: `["0.0.0.0/0", "::/0"]`.
    pub fn allow_all() -> SourceFilter {
        SourceFilter {
            allowed: vec![
                IpNet::V4(Ipv4Net::default()),
                IpNet::V6(ipnet::Ipv6Net::default()),
            ],
            denied: Vec::new(),
        }
    }

    /// Parses entries such as `"10.2.0.0/16"`, `"!172.15.6.66"`, `"::1"`, `"2001:db8::/32"`.
    /// A bare address means a /32 (IPv4) or /128 (IPv6). Surrounding whitespace is ignored.
    pub fn parse(entries: &[String]) -> Result<SourceFilter, AddressError> {
        if entries.len() > Self::MAX_ENTRIES {
            return Err(AddressError::TooManyEntries {
                count: entries.len(),
            });
        }
        let mut filter = SourceFilter {
            allowed: Vec::new(),
            denied: Vec::new(),
        };
        for entry in entries {
            let trimmed = entry.trim();
            let (is_deny, network_text) = match trimmed.strip_prefix(DENY_MARKER) {
                Some(rest) => (true, rest.trim_start()),
                None => (false, trimmed),
            };
            let network =
                parse_network(network_text).ok_or_else(|| AddressError::InvalidEntry {
                    entry: entry.clone(),
                })?;
            if is_deny {
                filter.denied.push(network);
            } else {
                filter.allowed.push(network);
            }
        }
        Ok(filter)
    }

    /// Whether `peer` may connect (see the module invariants).
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = unmap_ipv4(peer);
        if self.denied.iter().any(|network| network.contains(&peer)) {
            return false;
        }
        self.allowed.is_empty() || self.allowed.iter().any(|network| network.contains(&peer))
    }
}

/// Parses a CIDR or a bare address; `None` when it is neither.
fn parse_network(text: &str) -> Option<IpNet> {
    let network = if text.contains('/') {
        IpNet::from_str(text).ok()?
    } else {
        IpNet::from(IpAddr::from_str(text).ok()?)
    };
    Some(unmap_network(network.trunc()))
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
fn unmap_ipv4(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

/// An IPv6 network inside `::ffff:0:0/96` becomes the IPv4 network it maps.
fn unmap_network(network: IpNet) -> IpNet {
    const MAPPED_PREFIX_LENGTH: u8 = 96;
    match network {
        IpNet::V6(v6) if v6.prefix_len() >= MAPPED_PREFIX_LENGTH => {
            match v6.addr().to_ipv4_mapped() {
                Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - MAPPED_PREFIX_LENGTH)
                    .map(IpNet::V4)
                    .unwrap_or(network),
                None => network,
            }
        }
        _ => network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(entries: &[&str]) -> SourceFilter {
        let owned: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        SourceFilter::parse(&owned).expect("valid entries")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid address")
    }

    #[test]
    fn allow_all_allows_both_families() {
        let all = SourceFilter::allow_all();
        for peer in [
            "127.0.0.1",
            "203.0.113.7",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(all.allows(ip(peer)), "{peer}");
        }
    }

    #[test]
    fn empty_list_allows_everyone() {
        let empty = filter(&[]);
        assert!(empty.allows(ip("198.51.100.1")));
        assert!(empty.allows(ip("fe80::1")));
    }

    #[test]
    fn ipv4_cidr_and_bare_address() {
        let allowed = filter(&["10.2.0.0/16", "192.0.2.7"]);
        assert!(allowed.allows(ip("10.2.0.1")));
        assert!(allowed.allows(ip("10.2.255.255")));
        assert!(!allowed.allows(ip("10.3.0.1")));
        assert!(allowed.allows(ip("192.0.2.7")));
        assert!(!allowed.allows(ip("192.0.2.8")));
        assert!(!allowed.allows(ip("::1")));
    }

    #[test]
    fn host_bits_in_a_cidr_are_ignored() {
        let allowed = filter(&["10.2.3.4/16"]);
        assert!(allowed.allows(ip("10.2.200.1")));
    }

    #[test]
    fn ipv6_cidr_and_bare_address() {
        let allowed = filter(&["::1", "2001:db8::/32"]);
        assert!(allowed.allows(ip("::1")));
        assert!(!allowed.allows(ip("::2")));
        assert!(allowed.allows(ip("2001:db8:ffff::1")));
        assert!(!allowed.allows(ip("2001:db9::1")));
        assert!(!allowed.allows(ip("127.0.0.1")));
    }

    #[test]
    fn deny_takes_precedence() {
        let mixed = filter(&["10.2.0.0/16", "!172.15.6.66", "!10.2.9.0/24"]);
        assert!(mixed.allows(ip("10.2.0.1")));
        assert!(!mixed.allows(ip("10.2.9.1")));
        assert!(!mixed.allows(ip("172.15.6.66")));
        assert!(!mixed.allows(ip("172.15.6.67")), "positive entries exist");
        let deny_only = filter(&["!172.15.6.66"]);
        assert!(!deny_only.allows(ip("172.15.6.66")));
        assert!(deny_only.allows(ip("172.15.6.67")), "no positive entries");
        assert!(deny_only.allows(ip("::1")));
        let everything_but = filter(&["0.0.0.0/0", "!0.0.0.0/0"]);
        assert!(!everything_but.allows(ip("1.2.3.4")));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_treated_as_ipv4() {
        let allowed = filter(&["10.2.0.0/16", "!10.2.0.66"]);
        assert!(allowed.allows(ip("::ffff:10.2.0.1")));
        assert!(!allowed.allows(ip("::ffff:10.2.0.66")));
        assert!(!allowed.allows(ip("::ffff:10.3.0.1")));
        let mapped_entry = filter(&["::ffff:192.0.2.0/120"]);
        assert!(mapped_entry.allows(ip("192.0.2.9")));
        assert!(mapped_entry.allows(ip("::ffff:192.0.2.9")));
        assert!(!mapped_entry.allows(ip("192.0.3.9")));
    }

    #[test]
    fn whitespace_around_entries_is_ignored() {
        let allowed = filter(&[" 10.0.0.0/8 ", "! 10.9.9.9"]);
        assert!(allowed.allows(ip("10.1.1.1")));
        assert!(!allowed.allows(ip("10.9.9.9")));
    }

    #[test]
    fn ten_entries_accepted_eleven_refused() {
        let ten: Vec<String> = (0..10).map(|index| format!("10.0.{index}.0/24")).collect();
        assert!(SourceFilter::parse(&ten).is_ok());
        let eleven: Vec<String> = (0..11).map(|index| format!("10.0.{index}.0/24")).collect();
        assert_eq!(
            SourceFilter::parse(&eleven),
            Err(AddressError::TooManyEntries { count: 11 })
        );
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for bad in [
            "10.2.0.0/33",
            "300.1.1.1",
            "example.org",
            "",
            "!",
            "!!10.0.0.1",
            "10.0.0.0/",
            "::1/129",
            "10.0.0.0/8/8",
        ] {
            let entries = vec!["10.0.0.0/8".to_string(), bad.to_string()];
            let error = SourceFilter::parse(&entries).expect_err(bad);
            assert_eq!(
                error,
                AddressError::InvalidEntry {
                    entry: bad.to_string()
                }
            );
            assert!(error.to_string().contains(&format!("{bad:?}")));
        }
    }
}
