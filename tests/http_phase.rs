//! Issue 13 §5 and §9: what an HTTP-phase connection (accepted, not upgraded) can cost.
//!
//! A request whose head is not authorised is answered before its body is read; a request
//! (head and body) must be complete within `handshakeTimeoutSeconds`, however it trickles;
//! `maxHttpConnectionsPerWorker` bounds the connections in the HTTP phase, idle keep-alive
//! ones included (the worker stops accepting while it is reached), while upgraded WebSocket
//! connections do not count; and `HEAD` answers carry the `Content-Length` of the `GET`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A megabyte: a body announced, never sent.
const ANNOUNCED_BODY_BYTES: usize = 1024 * 1024;

fn open(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends only the head of a request announcing a 1 MiB body; returns the answer read to
/// the end (the server must answer and close without waiting for the body).
fn head_only(
    server: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {ANNOUNCED_BODY_BYTES}\r\n"
    );
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    let (status, _, body) = exchange(open(server), request.as_bytes());
    (status, body)
}

#[test]
fn an_unauthorised_request_is_answered_before_its_body_is_sent() {
    let server = start_server();
    let publish = format!("/api/topics/{APP}/publish");
    for authorization in [None, Some("Bearer not-a-token"), Some("Basic dTpw")] {
        let (status, body) = head_only(&server, "POST", &publish, authorization);
        assert_eq!(status, 401, "{authorization:?}: {body}");
    }
    // A token of another key is refused the same way.
    let foreign = token("intruder", &[PUBLISH_ALL]);
    let (status, _) = head_only(
        &server,
        "POST",
        &publish,
        Some(&format!("Bearer {foreign}")),
    );
    assert_eq!(status, 401);
    // Unknown app, unknown route, wrong method: judged on the head too.
    let admin = format!("Bearer {}", admin_token(&[PUBLISH_ALL]));
    let (status, _) = head_only(
        &server,
        "POST",
        "/api/topics/no-such-app/publish",
        Some(&admin),
    );
    assert_eq!(status, 404);
    let (status, _) = head_only(&server, "POST", "/no/such/route", None);
    assert_eq!(status, 404);
    let (status, _) = head_only(&server, "PUT", &publish, Some(&admin));
    assert_eq!(status, 405);
    let (status, _) = head_only(&server, "POST", "/admin/reload", None);
    assert_eq!(status, 403, "no server.adminKey");
    // The unauthenticated anonymous-token route takes a small body only.
    let (status, _) = head_only(&server, "POST", &format!("/token/anonymous/{APP}"), None);
    assert_eq!(status, 404, "anonymous tokens are off for this app");
    // An authorised caller still gets its body read and served.
    let body = json!({"topic": "main", "message": "hello"}).to_string();
    let (status, answer) = http(
        &server,
        "POST",
        &publish,
        Some(&admin_token(&[PUBLISH_ALL])),
        &body,
    );
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn an_anonymous_token_request_announcing_a_large_body_is_refused_unread() {
    let mut config = base_config();
    config["apps"][0]["anonymous"] = json!({"maxTokensPerMinute": 100});
    let server = start_with(config);
    let path = format!("/token/anonymous/{APP}");
    let (status, _) = head_only(&server, "POST", &path, None);
    assert_eq!(status, 413);
    let (status, answer) = http(&server, "POST", &path, None, r#"{"alg": "HS256"}"#);
    assert_eq!(status, 200, "{answer}");
}

/// Whether the server ends `stream` within `patience` while the caller keeps sending one
/// byte of `trickle` every 100 ms (the read timeout paces it). Any answer counts as not
/// ended: the request must be cut, not served.
fn cut_while_trickling(mut stream: TcpStream, trickle: &[u8], patience: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let give_up = Instant::now() + patience;
    let mut bytes = trickle.iter().cycle();
    let mut chunk = [0u8; 1024];
    while Instant::now() < give_up {
        let byte = *bytes.next().unwrap();
        if stream.write_all(&[byte]).is_err() {
            return true;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => panic!("the request was answered instead of cut"),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The `request_timeout` refusals counted so far.
fn request_timeouts(server: &TestServer) -> u64 {
    let (status, text) = http(server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    text.lines()
        .find(|line| {
            line.starts_with("ringcast_handshakes_refused_total{reason=\"request_timeout\"}")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no request_timeout counter in {text}"))
}

fn short_deadline_config() -> Value {
    let mut config = base_config();
    config["server"]["handshakeTimeoutSeconds"] = json!(1);
    config
}

/// Far beyond the 1 s deadline of [`short_deadline_config`]: only reached when nothing
/// cuts the request.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn a_request_that_trickles_its_body_is_cut_at_the_deadline() {
    let server = start_with(short_deadline_config());
    let mut stream = open(&server);
    let admin = admin_token(&[PUBLISH_ALL]);
    let head = format!(
        "POST /api/topics/{APP}/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"topic\":\"main\",\"message\":\""
    );
    stream.write_all(head.as_bytes()).unwrap();
    assert!(
        cut_while_trickling(stream, b"x", PATIENCE),
        "a body trickled a byte at a time was never cut"
    );
    assert!(request_timeouts(&server) >= 1);
}

#[test]
fn a_keep_alive_request_that_trickles_its_head_is_cut_at_the_deadline() {
    let server = start_with(short_deadline_config());
    let mut stream = open(&server);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    // A second request whose head never ends: a header line a byte at a time.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    assert!(
        cut_while_trickling(stream, b"a", PATIENCE),
        "a keep-alive request head trickled a byte at a time was never cut"
    );
}

/// Reads one response with a `Content-Length` body from a keep-alive connection.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        received.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&received).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// A keep-alive connection that has been served once (so it is surely counted).
fn idle_keep_alive(server: &TestServer) -> TcpStream {
    let mut stream = open(server);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    stream
}

/// Whether `stream` stays unanswered for a while (its request is not being served).
fn unanswered(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(
        stream.read(&mut byte),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    silent
}

/// The value of the metric line starting with `name`.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn the_http_phase_limit_holds_back_the_excess_connection_but_not_upgraded_ones() {
    let mut config = base_config();
    config["server"]["workers"] = json!(1);
    config["server"]["maxHttpConnectionsPerWorker"] = json!(2);
    let server = start_with(config);
    // Upgraded WebSocket connections are not in the HTTP phase: more than the limit.
    let mut upgraded: Vec<Client> = (0..4)
        .map(|index| connect(&server, APP, &token(&format!("ws-{index}"), &[])))
        .collect();
    // Two idle keep-alive connections fill the HTTP phase.
    let first = idle_keep_alive(&server);
    let mut second = idle_keep_alive(&server);
    // A third connection is not accepted: its request waits, unanswered.
    let mut third = open(&server);
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(unanswered(&mut third), "served beyond the limit");
    // The upgraded connections still work, and the connections in the HTTP phase are
    // served on.
    for client in &mut upgraded {
        client.sync_without_publish();
    }
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut second).0, 200);
    // Once one ends, the waiting connection is accepted and served.
    drop(first);
    assert_eq!(read_response(&mut third).0, 200);
    drop(third);
    let mut scrape = open(&server);
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, text) = read_response(&mut scrape);
    assert_eq!(status, 200);
    assert!(
        metric(&text, "ringcast_http_accept_pauses_total") >= 1,
        "{text}"
    );
    assert_eq!(
        metric(&text, "ringcast_http_connections_high_water"),
        2,
        "never more than the limit in the HTTP phase"
    );
    assert_eq!(
        metric(&text, "ringcast_http_connections{worker=\"0\"}"),
        2,
        "the idle keep-alive one and this one"
    );
}

#[test]
fn a_reload_that_raises_the_http_phase_limit_lets_the_waiting_connection_in() {
    let mut config = base_config();
    config["server"]["workers"] = json!(1);
    config["server"]["maxHttpConnectionsPerWorker"] = json!(1);
    let file = ConfigFile::new(&config);
    let server = start_from_file(&file);
    let _held = idle_keep_alive(&server);
    let mut waiting = open(&server);
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(unanswered(&mut waiting), "served beyond the limit");
    // The held connection stays open: only the reload can let the waiting one in. Before,
    // the paused accept loop slept until an HTTP connection ended and missed the new limit.
    config["server"]["maxHttpConnectionsPerWorker"] = json!(2);
    file.write(&config);
    server
        .handle
        .as_ref()
        .unwrap()
        .reload()
        .expect("reload applies");
    assert_eq!(read_response(&mut waiting).0, 200);
}

/// Sends `request` and reads the whole answer: (head, body bytes after the head).
fn answer(server: &TestServer, request: &str) -> (String, Vec<u8>) {
    let mut stream = open(server);
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    let end = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    (
        String::from_utf8_lossy(&received[..end]).to_string(),
        received[end..].to_vec(),
    )
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"))
}

#[test]
fn head_answers_carry_the_length_of_the_get_answer() {
    let server = start_server();
    for path in ["/metrics", "/stats", "/dashboard", "/health"] {
        let (head, body) = answer(
            &server,
            &format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(body.is_empty(), "{path}: a HEAD answer has no body");
        assert!(content_length(&head) > 0, "{path}: {head}");
    }
    // Where the GET body does not change between calls, the lengths are equal.
    for path in ["/dashboard", "/health"] {
        let (head, _) = answer(
            &server,
            &format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        let (get_head, get_body) = answer(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(content_length(&head), get_body.len(), "{path}");
        assert_eq!(content_length(&get_head), get_body.len(), "{path}");
    }
}

#[test]
fn a_route_without_credentials_takes_a_small_body_only() {
    let server = start_server();
    for path in ["/health", "/metrics"] {
        let (status, _) = head_only(&server, "GET", path, None);
        assert_eq!(status, 413, "{path}");
    }
    let (status, body) = http(&server, "GET", "/health", None, "{}");
    assert_eq!(status, 200, "{body}");
}
