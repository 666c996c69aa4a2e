//! `X-Forwarded-For`: which address a request comes from when it arrives through proxies
//! the configuration trusts (`server.trustedProxies`).
//!
//! Responsibility: parse the header's entries and walk them from the right past trusted
//! proxies; the first address that is not a trusted proxy is the client.
//!
//! Must not: read headers itself (the caller joins every `X-Forwarded-For` field line, in
//! order, into one list: RFC 9110 §5.3), know the configuration (trust is a predicate), or
//! do any I/O or name resolution. `Forwarded` (RFC 7239) is not read at all.
//!
//! Invariants:
//! - Only a trusted peer's header is read; an untrusted peer is the client, whatever it sends.
//! - Entries left of the first untrusted address are never looked at: whatever a client
//!   writes before its proxy's entry (a forged header line included) cannot choose the
//!   address.
//! - An entry reached by the walk that is not an address (`unknown`, an obfuscated
//!   identifier, garbage) makes the source [`ClientAddress::Unknown`]; it is never skipped.
//!   Empty list elements are ignored (RFC 9110 §5.6.1.2).

use super::address::ClientAddress;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One list entry as an address: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:4711`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711` (surrounding whitespace ignored); `None` for
/// anything else.
pub fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The client address of a request from TCP peer `peer` whose `X-Forwarded-For` lines,
/// joined in order, are `forwarded_for`; `is_trusted` says whether an address is a trusted
/// proxy. When every entry is a trusted proxy the left-most one is the client.
pub fn resolve(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> ClientAddress {
    let peer = ClientAddress::from(peer);
    let (ClientAddress::Known(peer_ip), Some(list)) = (peer, forwarded_for) else {
        return peer;
    };
    if !is_trusted(peer_ip) {
        return peer;
    }
    let mut client = peer;
    for entry in list.rsplit(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let Some(ip) = parse_entry(entry) else {
            return ClientAddress::Unknown;
        };
        client = ClientAddress::from(ip);
        if !is_trusted(ip) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid address")
    }

    /// Trusts 127.0.0.0/8 and 10.0.0.0/8 (and their IPv4-mapped forms).
    fn trusted(address: IpAddr) -> bool {
        match ClientAddress::from(address) {
            ClientAddress::Known(IpAddr::V4(v4)) => v4.octets()[0] == 127 || v4.octets()[0] == 10,
            _ => false,
        }
    }

    fn client(peer: &str, forwarded_for: Option<&str>) -> ClientAddress {
        resolve(ip(peer), forwarded_for, trusted)
    }

    fn known(text: &str) -> ClientAddress {
        ClientAddress::Known(ip(text))
    }

    #[test]
    fn entries_in_every_form_parse() {
        for (entry, expected) in [
            ("192.0.2.1", "192.0.2.1"),
            (" 192.0.2.1 ", "192.0.2.1"),
            ("192.0.2.1:4711", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ] {
            assert_eq!(parse_entry(entry), Some(ip(expected)), "{entry:?}");
        }
        for garbage in [
            "unknown",
            "_hidden",
            "",
            "192.0.2",
            "192.0.2.1:",
            "192.0.2.1:99999",
            "[192.0.2.1]",
            "[2001:db8::1",
            "2001:db8::1]:80",
            "fe80::1%eth0",
            "example.org",
            "for=192.0.2.1",
            "\u{fffd}",
        ] {
            assert_eq!(parse_entry(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(client("203.0.113.9", None), known("203.0.113.9"));
        assert_eq!(
            client("203.0.113.9", Some("198.51.100.1")),
            known("203.0.113.9")
        );
        assert_eq!(client("203.0.113.9", Some("unknown")), known("203.0.113.9"));
        assert_eq!(client("::ffff:203.0.113.9", None), known("203.0.113.9"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        assert_eq!(client("127.0.0.1", None), known("127.0.0.1"));
        assert_eq!(client("127.0.0.1", Some(" , ,")), known("127.0.0.1"));
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_address_from_the_right() {
        assert_eq!(
            client("127.0.0.1", Some("203.0.113.7")),
            known("203.0.113.7")
        );
        assert_eq!(
            client("127.0.0.1", Some("198.51.100.1, 203.0.113.7, 10.0.0.2")),
            known("203.0.113.7")
        );
        assert_eq!(
            client("127.0.0.1", Some("[2001:db8::7]:443, 10.0.0.2:80")),
            known("2001:db8::7")
        );
        assert_eq!(
            client("127.0.0.1", Some("::ffff:203.0.113.7")),
            known("203.0.113.7")
        );
    }

    #[test]
    fn a_forged_line_before_the_proxys_own_does_not_choose_the_address() {
        // The client sent `X-Forwarded-For: 192.0.2.1`; its proxy added a line with the
        // address it saw. Joined in order, the forged entry is on the left.
        assert_eq!(
            client("127.0.0.1", Some("192.0.2.1, 203.0.113.66")),
            known("203.0.113.66")
        );
        // A forged entry that is garbage is left of the client too: never looked at.
        assert_eq!(
            client("127.0.0.1", Some("unknown, 203.0.113.66")),
            known("203.0.113.66")
        );
    }

    #[test]
    fn every_entry_trusted_means_the_left_most_is_the_client() {
        assert_eq!(
            client("127.0.0.1", Some("10.0.0.3, 10.0.0.2")),
            known("10.0.0.3")
        );
    }

    #[test]
    fn an_entry_that_is_not_an_address_makes_the_source_unknown() {
        for list in [
            "unknown",
            "203.0.113.7, unknown",
            "203.0.113.7, garbage, 10.0.0.2",
            "203.0.113.7, _proxy",
            "203.0.113.7, 10.0.0.2%",
        ] {
            assert_eq!(
                client("127.0.0.1", Some(list)),
                ClientAddress::Unknown,
                "{list:?}"
            );
        }
    }

    #[test]
    fn empty_list_elements_are_ignored() {
        assert_eq!(
            client("127.0.0.1", Some("203.0.113.7,, 10.0.0.2 ,")),
            known("203.0.113.7")
        );
    }
}
