//! HTTP request heads and the WebSocket upgrade (`protocol::http`).
//!
//! Input: the bytes a peer sent before any upgrade. Checks: no panic; a head that parses
//! is never longer than `MAX_HEAD_BYTES`, and every shorter prefix of it answers "need
//! more" (nothing consumed, no early error); past `MAX_HEAD_BYTES` the answer is never
//! "need more"; `Debug` of a head never prints the query string or an `Authorization`
//! value; the accept key, query parameters and bearer tokens are computed without panic;
//! the client address resolved from the joined `X-Forwarded-For` lines is the peer or one
//! of the list's entries, never made up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::http::{self, MAX_HEAD_BYTES};

/// A secret is looked for in `Debug` output only when it is long and plain enough that
/// finding it cannot be a coincidence with the field names or the rest of the head.
fn is_distinctive(secret: &str, input: &[u8]) -> bool {
    secret.len() >= 24
        && secret
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-=&%".contains(&byte))
        && input
            .windows(secret.len())
            .filter(|window| *window == secret.as_bytes())
            .count()
            == 1
}

fuzz_target!(|data: &[u8]| {
    let head = match http::parse_request(data) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(data.len() < MAX_HEAD_BYTES, "need more past MAX_HEAD_BYTES");
            return;
        }
        Err(error) => {
            let _ = error.status();
            return;
        }
    };
    assert!(head.head_len <= data.len() && head.head_len <= MAX_HEAD_BYTES);
    // Prefixes of a complete head are incomplete, never errors (sample ~32 of them).
    let step = (head.head_len / 32).max(1);
    for end in (0..head.head_len).step_by(step) {
        assert!(
            matches!(http::parse_request(&data[..end]), Ok(None)),
            "prefix of {end} bytes of a {}-byte head was not 'need more'",
            head.head_len
        );
    }

    let debug = format!("{head:?}");
    if let Some(query) = head.query {
        if is_distinctive(query, data) {
            assert!(!debug.contains(query), "Debug printed the query string");
        }
        for name in ["access_token", "token", ""] {
            let _ = http::query_param(query, name);
        }
    }
    if let Some(authorization) = head.header("authorization") {
        if is_distinctive(authorization, data) {
            assert!(
                !debug.contains(authorization),
                "Debug printed Authorization"
            );
        }
        let _ = http::bearer_token(authorization);
    }

    let _ = http::is_websocket_upgrade(&head);
    match http::websocket_accept(&head) {
        Ok(accept) => assert_eq!(accept.len(), 28, "accept key is base64 of 20 bytes"),
        Err(error) => {
            let _ = error.status();
        }
    }
    let _ = head.content_length();
    let _ = head.keep_alive();
    if let Some(list) = head.joined_header("x-forwarded-for") {
        use ringcast::auth::{forwarded, ClientAddress};
        use std::net::{IpAddr, Ipv4Addr};
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Trust loopback and 10/8 (IPv4-mapped forms included).
        let trusted = |ip: IpAddr| match ClientAddress::from(ip) {
            ClientAddress::Known(IpAddr::V4(v4)) => v4.is_loopback() || v4.octets()[0] == 10,
            _ => false,
        };
        match forwarded::resolve(peer, Some(&list), trusted) {
            ClientAddress::Known(ip) => assert!(
                ip == peer
                    || list
                        .split(',')
                        .filter_map(forwarded::parse_entry)
                        .any(|entry| ClientAddress::from(entry) == ClientAddress::Known(ip)),
                "resolved {ip} is neither the peer nor an entry of {list:?}"
            ),
            ClientAddress::Unknown => assert!(
                list.split(',')
                    .any(|entry| !entry.trim().is_empty() && forwarded::parse_entry(entry).is_none()),
                "unknown without an entry that is not an address: {list:?}"
            ),
        }
    }
    let _ = head
        .header("sec-websocket-extensions")
        .map(ringcast::protocol::deflate::accepts_offer);

    // The query-parameter decoder on arbitrary text, with a name taken from the input too.
    if let Ok(text) = std::str::from_utf8(data) {
        let (query, name) = text.split_once('\n').unwrap_or((text, "a"));
        if let Some(value) = http::query_param(query, name) {
            assert!(value.len() <= query.len(), "decoding never grows the value");
        }
    }
});
