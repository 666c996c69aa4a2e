//! Issue 5 §7: token tricks, cross-app tokens, oversized tokens, IPv6 and IPv4-mapped
//! source rules. (Algorithm confusion, `alg: none`, expiry, admin endpoints with a client
//! token and secret-free logs are covered in handshake_refusals.rs, http_api.rs,
//! algorithms_end_to_end.rs and cli.rs.)

mod common;
use common::*;
use serde_json::json;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An HS256 token with a chosen header, signed with `secret` (by jsonwebtoken directly).
fn token_with_header(
    header: serde_json::Value,
    claims: serde_json::Value,
    secret: &[u8],
) -> String {
    let header: jsonwebtoken::Header = serde_json::from_value(header).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn claims() -> serde_json::Value {
    json!({"sub": "k", "exp": now() + 60})
}

#[test]
fn kid_is_never_used_to_pick_a_raw_key() {
    let server = start_server();
    for kid in [
        "../../../../etc/passwd",
        "' OR 1=1 --",
        "",
        "http://evil.example/jwks",
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let good = token_with_header(header.clone(), claims(), SECRET.as_bytes());
        assert!(
            try_connect(&server, APP, &good).is_ok(),
            "kid {kid:?} with the right key"
        );
        let forged = token_with_header(header, claims(), format!("key:{kid}").as_bytes());
        assert_eq!(
            try_connect(&server, APP, &forged).err(),
            Some(401),
            "kid {kid:?} as the key"
        );
    }
    // jku / x5u / jwk headers do not redirect verification either.
    let header = json!({"alg": "HS256", "jku": "http://evil.example/keys", "x5u": "http://evil.example/cert"});
    let forged = token_with_header(header, claims(), b"evil");
    assert_eq!(try_connect(&server, APP, &forged).err(), Some(401));
}

#[test]
fn a_token_for_one_app_is_refused_by_another() {
    let mut config = base_config();
    config["apps"][1]["authKey"]["key"] = json!("a-different-secret-for-the-quiet-app");
    let server = start_with(config);
    let token = token("u", &[]);
    assert!(try_connect(&server, APP, &token).is_ok());
    assert_eq!(try_connect(&server, QUIET_APP, &token).err(), Some(401));
}

#[test]
fn oversized_tokens_are_refused_without_harm() {
    let server = start_server();
    let huge = token_with(json!({"sub": "x", "exp": now() + 60, "pad": "p".repeat(20_000)}));
    let request = format!(
        "GET /apps/{APP}?access_token={huge} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (status, body) = raw_http(&server, request.as_bytes());
    assert_eq!(status, 431);
    assert!(!body.contains(&huge[..100]));
    let mut healthy = connect(&server, APP, &token("ok", &[PUBLISH_ALL]));
    healthy.sync();
}

/// A server listening on `[::]` (dual-stack) with IPv6- and IPv4-fenced apps.
fn dual_stack_server() -> TestServer {
    let key = json!({"source": "raw", "key": SECRET, "algorithms": ["HS256"]});
    start_with(json!({
        "server": {"listen": "[::]:0", "workers": 2, "pinWorkers": false},
        "apps": [
            {"appId": "v6-only", "authKey": key, "clientSourceAddress": ["::1/128"]},
            {"appId": "v4-loopback", "authKey": key, "clientSourceAddress": ["127.0.0.0/8"]},
            {"appId": "v4-denied", "authKey": key, "clientSourceAddress": ["0.0.0.0/0", "::/0", "!127.0.0.1"]}
        ]
    }))
}

fn status_from(server: &TestServer, via: SocketAddr, app: &str) -> u16 {
    let stream = TcpStream::connect(via).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://{via}/apps/{app}?access_token={}", token("u", &[]));
    let _ = server;
    match tungstenite::client::client(url, stream) {
        Ok(_) => 101,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            response.status().as_u16()
        }
        Err(error) => panic!("{error}"),
    }
}

#[test]
fn source_rules_apply_to_ipv6_and_ipv4_mapped_peers() {
    let server = dual_stack_server();
    let port = server.address.port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(status_from(&server, v6, "v6-only"), 101);
    assert_eq!(status_from(&server, v4, "v6-only"), 403);
    // Over the dual-stack socket 127.0.0.1 arrives as ::ffff:127.0.0.1 and matches IPv4 rules.
    assert_eq!(status_from(&server, v4, "v4-loopback"), 101);
    assert_eq!(status_from(&server, v6, "v4-loopback"), 403);
    assert_eq!(status_from(&server, v4, "v4-denied"), 403);
    assert_eq!(status_from(&server, v6, "v4-denied"), 101);
}
