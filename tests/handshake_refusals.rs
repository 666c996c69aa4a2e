//! Refusals before the WebSocket upgrade (PROTOCOL.md §3): plain HTTP answers with a
//! `{"error": …}` JSON body, never the token, and never a disturbance of open clients.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use ringcast::auth::{mint, Algorithm};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;

/// A raw upgrade request for `/apps/{app}` with the given query and extra header lines.
fn upgrade_request(path_and_query: &str, headers: &[&str]) -> Vec<u8> {
    let mut request = format!("GET {path_and_query} HTTP/1.1\r\nHost: test\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

const UPGRADE_HEADERS: [&str; 4] = [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// Sends an upgrade request carrying `token`, returns (status, body) and checks the body
/// is `{"error": "<string>"}` without the token.
fn refused(server: &TestServer, app: &str, token: &str) -> (u16, String) {
    let request = upgrade_request(
        &format!("/apps/{app}?access_token={token}"),
        &UPGRADE_HEADERS,
    );
    let (status, body) = raw_http(server, &request);
    check_error_body(&body, token);
    (status, body)
}

fn check_error_body(body: &str, token: &str) {
    let parsed: Value = serde_json::from_str(body)
        .unwrap_or_else(|error| panic!("refusal body {body:?} is not JSON: {error}"));
    assert!(
        parsed["error"].is_string(),
        "refusal body {body:?} has no error string"
    );
    if !token.is_empty() {
        assert!(
            !body.contains(token),
            "refusal body {body:?} echoes the token"
        );
    }
}

fn claims_with(extra: Value) -> Value {
    let mut claims = json!({"sub": "alice", "permissions": [PUBLISH_ALL], "exp": now() + 600});
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

#[test]
fn unknown_app_is_refused_with_404() {
    let server = start_server();
    let token = token("alice", &[]);
    assert_eq!(try_connect(&server, "no-such-app", &token).err(), Some(404));
    let (status, _) = refused(&server, "no-such-app", &token);
    assert_eq!(status, 404);
}

#[test]
fn missing_token_is_refused_with_401() {
    let server = start_server();
    let request = upgrade_request(&format!("/apps/{APP}"), &UPGRADE_HEADERS);
    let (status, body) = raw_http(&server, &request);
    assert_eq!(status, 401);
    check_error_body(&body, "");
    let empty = upgrade_request(&format!("/apps/{APP}?access_token="), &UPGRADE_HEADERS);
    assert_eq!(raw_http(&server, &empty).0, 401);
}

#[test]
fn garbage_token_is_refused_with_401() {
    let server = start_server();
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"] {
        assert_eq!(
            try_connect(&server, APP, garbage).err(),
            Some(401),
            "{garbage}"
        );
        assert_eq!(refused(&server, APP, garbage).0, 401, "{garbage}");
    }
}

#[test]
fn expired_token_is_refused_with_401() {
    let server = start_server();
    let expired = token_with(claims_with(json!({"exp": now() - 120})));
    assert_eq!(try_connect(&server, APP, &expired).err(), Some(401));
    assert_eq!(refused(&server, APP, &expired).0, 401);
}

#[test]
fn token_expired_within_the_30_second_leeway_is_accepted() {
    let server = start_server();
    let recent = token_with(claims_with(json!({"exp": now() - 10})));
    let client = connect(&server, APP, &recent);
    assert_eq!(client.welcome["messageType"], "welcome");
}

#[test]
fn token_not_yet_valid_is_refused_with_401() {
    let server = start_server();
    let early = token_with(claims_with(json!({"nbf": now() + 300})));
    assert_eq!(try_connect(&server, APP, &early).err(), Some(401));
    assert_eq!(refused(&server, APP, &early).0, 401);
}

#[test]
fn token_signed_with_another_secret_is_refused_with_401() {
    let server = start_server();
    let forged = mint::sign(
        Algorithm::HS256,
        "some-other-secret",
        &claims_with(json!({})),
    )
    .unwrap();
    assert_eq!(try_connect(&server, APP, &forged).err(), Some(401));
    assert_eq!(refused(&server, APP, &forged).0, 401);
}

#[test]
fn algorithm_outside_the_allow_list_is_refused_with_401() {
    let server = start_server();
    // The test apps allow HS256 and HS512 only.
    let hs384 = mint::sign(Algorithm::HS384, SECRET, &claims_with(json!({}))).unwrap();
    assert_eq!(try_connect(&server, APP, &hs384).err(), Some(401));
    assert_eq!(refused(&server, APP, &hs384).0, 401);
    // Control: an allowed algorithm with the same secret connects.
    let hs512 = mint::sign(Algorithm::HS512, SECRET, &claims_with(json!({}))).unwrap();
    connect(&server, APP, &hs512);
}

#[test]
fn alg_none_token_is_refused_with_401() {
    let server = start_server();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims_with(json!({})).to_string());
    for unsigned in [
        format!("{header}.{claims}."),
        format!("{header}.{claims}.c2lnbmF0dXJl"),
    ] {
        assert_eq!(try_connect(&server, APP, &unsigned).err(), Some(401));
        assert_eq!(refused(&server, APP, &unsigned).0, 401);
    }
}

#[test]
fn peer_outside_client_source_address_is_refused_with_403() {
    let server = start_server();
    let token = token("alice", &[]);
    assert_eq!(try_connect(&server, FENCED_APP, &token).err(), Some(403));
    assert_eq!(refused(&server, FENCED_APP, &token).0, 403);
}

/// Retries a connect until it is admitted: a close is processed asynchronously.
fn connect_eventually(server: &TestServer, app: &str, token: &str) -> Client {
    wait_for("the connect is admitted", PATIENCE, || {
        match try_connect(server, app, token) {
            Ok(client) => Some(client),
            Err(429) => None,
            Err(status) => panic!("connect refused with {status}"),
        }
    })
}

#[test]
fn app_connection_limit_refuses_with_429_and_a_close_frees_a_slot() {
    let server = start_server();
    // LIMITED_APP: maxConnections 3.
    let mut open: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|sub| connect(&server, LIMITED_APP, &token(sub, &[])))
        .collect();
    let fourth = token("d", &[]);
    assert_eq!(try_connect(&server, LIMITED_APP, &fourth).err(), Some(429));
    assert_eq!(refused(&server, LIMITED_APP, &fourth).0, 429);
    // Other apps are not affected by LIMITED_APP's limit.
    connect(&server, APP, &fourth);
    open.pop().unwrap().close();
    let admitted = connect_eventually(&server, LIMITED_APP, &fourth);
    assert_eq!(admitted.welcome["messageType"], "welcome");
    // Full again.
    assert_eq!(
        try_connect(&server, LIMITED_APP, &token("e", &[])).err(),
        Some(429)
    );
}

#[test]
fn subject_connection_limit_refuses_with_429_and_a_close_frees_a_slot() {
    let server = start_server();
    // LIMITED_APP: maxConnectionsPerSubject 2 (and maxConnections 3).
    let same = token("same", &[]);
    let first = connect(&server, LIMITED_APP, &same);
    let _second = connect(&server, LIMITED_APP, &same);
    assert_eq!(try_connect(&server, LIMITED_APP, &same).err(), Some(429));
    assert_eq!(refused(&server, LIMITED_APP, &same).0, 429);
    // The app still has a third slot, for another subject.
    let other = connect(&server, LIMITED_APP, &token("other", &[]));
    drop(other);
    first.close();
    // Both closes free their slots eventually; `same` gets one back.
    let again = connect_eventually(&server, LIMITED_APP, &same);
    assert_eq!(again.welcome["messageType"], "welcome");
}

#[test]
fn get_without_upgrade_headers_is_refused_with_400() {
    let server = start_server();
    let token = token("alice", &[]);
    let request = upgrade_request(&format!("/apps/{APP}?access_token={token}"), &[]);
    let (status, body) = raw_http(&server, &request);
    assert_eq!(status, 400);
    check_error_body(&body, &token);
}

#[test]
fn upgrade_without_sec_websocket_key_is_refused_with_400() {
    let server = start_server();
    let token = token("alice", &[]);
    let request = upgrade_request(
        &format!("/apps/{APP}?access_token={token}"),
        &UPGRADE_HEADERS[..3],
    );
    let (status, body) = raw_http(&server, &request);
    assert_eq!(status, 400);
    check_error_body(&body, &token);
}

#[test]
fn upgrade_with_websocket_version_8_is_refused_with_400() {
    let server = start_server();
    let token = token("alice", &[]);
    let request = upgrade_request(
        &format!("/apps/{APP}?access_token={token}"),
        &[
            UPGRADE_HEADERS[0],
            UPGRADE_HEADERS[1],
            "Sec-WebSocket-Version: 8",
            UPGRADE_HEADERS[3],
        ],
    );
    let (status, body) = raw_http(&server, &request);
    assert_eq!(status, 400);
    check_error_body(&body, &token);
}

#[test]
fn raw_upgrade_with_valid_token_switches_protocols() {
    // Control for the raw refusal requests above: the same request with a good token upgrades.
    let server = start_server();
    let token = token("alice", &[]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&upgrade_request(
            &format!("/apps/{APP}?access_token={token}"),
            &UPGRADE_HEADERS,
        ))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed in the head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
}

fn read_json(socket: &mut tungstenite::WebSocket<TcpStream>) -> Value {
    loop {
        match socket.read().expect("a frame") {
            tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            tungstenite::Message::Binary(bytes) => return serde_json::from_slice(&bytes).unwrap(),
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

#[test]
fn authorization_bearer_header_is_accepted_instead_of_access_token() {
    let server = start_server();
    let token = token("alice", &[PUBLISH_ALL]);
    let url = format!("ws://{}/apps/{APP}", server.address);
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        tungstenite::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (socket, response) = tungstenite::client::client(request, stream)
        .unwrap_or_else(|error| panic!("bearer header refused: {error}"));
    assert_eq!(response.status().as_u16(), 101);
    let mut socket = socket;
    let welcome = read_json(&mut socket);
    assert_eq!(welcome["messageType"], "welcome");
    assert_eq!(welcome["data"]["connection"]["appId"], APP);
    // The connection works: a round trip on its private topic.
    let own = format!(
        "priv/{}",
        welcome["data"]["connection"]["id"].as_str().unwrap()
    );
    let publish = json!({"type": "publish", "data": {"topic": own, "messageType": "echo", "payload": "via bearer", "id": "b1"}});
    socket
        .send(tungstenite::Message::text(publish.to_string()))
        .unwrap();
    loop {
        let frame = read_json(&mut socket);
        if frame["messageType"] == "echo" {
            assert_eq!(frame["data"]["payload"], "via bearer");
            assert_eq!(frame["data"]["client"]["subject"], "alice");
            break;
        }
    }

    // A bad bearer token is refused like a bad access_token.
    let mut bad = url.as_str().into_client_request().unwrap();
    bad.headers_mut().insert(
        tungstenite::http::header::AUTHORIZATION,
        "Bearer not-a-token".parse().unwrap(),
    );
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match tungstenite::client::client(bad, stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        Err(error) => panic!("unexpected error {error}"),
        Ok(_) => panic!("a bad bearer token was accepted"),
    }
}

#[test]
fn refused_clients_do_not_disturb_an_open_one() {
    let server = start_server();
    let mut open = connect(&server, APP, &token("steady", &[PUBLISH_ALL]));
    open.subscribe_confirmed("news");
    let expired = token_with(claims_with(json!({"exp": now() - 120})));
    assert_eq!(try_connect(&server, APP, &expired).err(), Some(401));
    assert_eq!(
        try_connect(&server, "no-such-app", &expired).err(),
        Some(404)
    );
    assert_eq!(
        try_connect(&server, FENCED_APP, &token("x", &[])).err(),
        Some(403)
    );
    assert_eq!(try_connect(&server, APP, "garbage").err(), Some(401));
    let bad = upgrade_request(&format!("/apps/{APP}"), &[]);
    assert_eq!(raw_http(&server, &bad).0, 400);
    let (status, _) = publish_http(
        &server,
        APP,
        json!({"topic": "news", "message": "still here"}),
    );
    assert_eq!(status, 200);
    let frame = open.next_non_ack();
    assert_eq!(frame["topic"], "news");
    assert_eq!(frame["data"], "still here");
}

#[test]

fn authorization_scheme_is_case_insensitive_on_the_upgrade() {
    let server = start_server();
    let token = token("alice", &[]);
    for scheme in ["bearer", "BEARER"] {
        let header = format!("Authorization: {scheme} {token}");
        let mut headers = UPGRADE_HEADERS.to_vec();
        headers.push(&header);
        let request = upgrade_request(&format!("/apps/{APP}"), &headers);
        let mut stream = TcpStream::connect(server.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&request).unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(
            &head,
            b"HTTP/1.1 101",
            "scheme {scheme}: {}",
            String::from_utf8_lossy(&head)
        );
    }
}
