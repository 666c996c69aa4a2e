//! Source-address filters: `adminSourceAddress` / `clientSourceAddress` (PROTOCOL §1), and
//! the [`ClientAddress`] they judge.
//!
//! Responsibility: parse the configured entries once, and decide whether a client address
//! may connect; key client addresses for per-address limits ([`ClientAddress::key`]).
//!
//! Must not: look at headers (`X-Forwarded-For` is resolved by [`super::forwarded`], and
//! the caller passes the address it settled on); do any I/O or name resolution.
//!
//! Invariants:
//! - At most [`SourceFilter::MAX_ENTRIES`] entries; a filter that parsed holds only valid
//!   networks, with host bits cleared.
//! - A peer is refused when it matches any `!` (deny) entry, or when positive entries exist
//!   and it matches none. Deny always wins.
//! - An unknown source ([`ClientAddress::Unknown`]) matches no entry, allow or deny: a
//!   filter with any entry refuses it (it cannot be shown to be allowed, nor not to be
//!   denied); only a filter without entries (absent or `[]`) lets it through.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), in peers and in entries, are treated as
//!   the IPv4 address, so a dual-stack listener behaves like an IPv4 one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

/// Where a request comes from, as far as the broker can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddress {
    /// The TCP peer, or the address trusted proxies vouched for. IPv4-mapped IPv6 is held
    /// as IPv4 (see [`ClientAddress::from`]).
    Known(IpAddr),
    /// A trusted proxy's `X-Forwarded-For` held an entry that is not an address (e.g.
    /// `unknown`) where the client's address should be. Matches no filter entry.
    Unknown,
}

/// The key under which per-address limits count a client: an IPv4 address as its
/// IPv4-mapped IPv6 form, an IPv6 address as its /64 (one host usually owns a whole /64, so
/// counting single IPv6 addresses would be no limit at all), and every unknown source under
/// one shared key that no address produces. 16 bytes, byte-aligned, so it costs a session
/// no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey([u8; 16]);

impl AddressKey {
    /// The key of every [`ClientAddress::Unknown`]: all ones. An IPv6 /64 key has its low
    /// 64 bits clear and an IPv4 key its high 80 bits clear, so no address maps here.
    const UNKNOWN: AddressKey = AddressKey([0xff; 16]);
}

impl ClientAddress {
    /// The address, if known.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            ClientAddress::Known(ip) => Some(ip),
            ClientAddress::Unknown => None,
        }
    }

    /// The per-address limit key (see [`AddressKey`]).
    pub fn key(self) -> AddressKey {
        const HOST_BITS_OF_A_64: u32 = 64;
        match self {
            ClientAddress::Known(IpAddr::V4(v4)) => AddressKey(v4.to_ipv6_mapped().octets()),
            ClientAddress::Known(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(v4.to_ipv6_mapped().octets()),
                None => {
                    let network = (u128::from(v6) >> HOST_BITS_OF_A_64) << HOST_BITS_OF_A_64;
                    AddressKey(network.to_be_bytes())
                }
            },
            ClientAddress::Unknown => AddressKey::UNKNOWN,
        }
    }
}

impl From<IpAddr> for ClientAddress {
    /// A known address; `::ffff:a.b.c.d` becomes `a.b.c.d`.
    fn from(ip: IpAddr) -> ClientAddress {
        ClientAddress::Known(unmap_ipv4(ip))
    }
}

impl fmt::Display for ClientAddress {
    /// The address, or `unknown` (the welcome frame's `remoteAddress`).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddress::Known(ip) => ip.fmt(formatter),
            ClientAddress::Unknown => formatter.write_str("unknown"),
        }
    }
}

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

    /// The filter used when the configuration field is absent: no entries, so every
    /// address passes (like `["0.0.0.0/0", "::/0"]`), and so does an unknown source.
    pub fn allow_all() -> SourceFilter {
        SourceFilter {
            allowed: Vec::new(),
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

    /// Whether `source` may connect: [`SourceFilter::allows`] for a known address; an
    /// unknown one only when the filter has no entries (see the module invariants).
    pub fn allows_source(&self, source: ClientAddress) -> bool {
        match source {
            ClientAddress::Known(ip) => self.allows(ip),
            ClientAddress::Unknown => self.allowed.is_empty() && self.denied.is_empty(),
        }
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
    fn an_unknown_source_matches_no_entry() {
        let unknown = ClientAddress::Unknown;
        assert!(SourceFilter::allow_all().allows_source(unknown));
        assert!(filter(&[]).allows_source(unknown));
        assert!(!filter(&["0.0.0.0/0", "::/0"]).allows_source(unknown));
        assert!(!filter(&["10.0.0.0/8"]).allows_source(unknown));
        assert!(
            !filter(&["!10.1.1.1"]).allows_source(unknown),
            "it cannot be shown not to be the denied address"
        );
        let known = ClientAddress::from(ip("10.2.3.4"));
        assert!(filter(&["10.0.0.0/8"]).allows_source(known));
        assert!(!filter(&["!10.2.3.4"]).allows_source(known));
    }

    #[test]
    fn address_keys_count_ipv4_per_address_and_ipv6_per_64() {
        let key = |text: &str| ClientAddress::from(ip(text)).key();
        assert_eq!(key("192.0.2.1"), key("::ffff:192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        let unknown = ClientAddress::Unknown.key();
        for text in [
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::",
        ] {
            assert_ne!(key(text), unknown, "{text}");
        }
        assert_eq!(unknown, ClientAddress::Unknown.key());
    }

    #[test]
    fn client_addresses_print_as_the_welcome_shows_them() {
        assert_eq!(
            ClientAddress::from(ip("::ffff:10.0.0.1")).to_string(),
            "10.0.0.1"
        );
        assert_eq!(ClientAddress::Unknown.to_string(), "unknown");
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
