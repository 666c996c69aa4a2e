//! The HTTP API (PROTOCOL.md §6): publish, unsubscribe, connection termination, the
//! operational endpoints, and every refusal status.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

const MANAGE_CONNECTIONS: &str = "realtime:admin:manage:connections";
const MANAGE_SUBSCRIBERS: &str = "realtime:admin:manage:subscribers";

fn publish_path(app: &str) -> String {
    format!("/api/topics/{app}/publish")
}

fn unsubscribe_path(app: &str) -> String {
    format!("/api/topics/{app}/unsubscribe")
}

/// Asserts a refusal: the status and a JSON `{"error": "<string>"}` body.
fn assert_refusal(answer: (u16, String), status: u16, what: &str) {
    assert_eq!(answer.0, status, "{what}: body {:?}", answer.1);
    let body: Value = serde_json::from_str(&answer.1)
        .unwrap_or_else(|error| panic!("{what}: body {:?} is not JSON: {error}", answer.1));
    assert!(body["error"].is_string(), "{what}: body {body}");
}

fn assert_ok(answer: (u16, String), what: &str) {
    assert_eq!(answer.0, 200, "{what}: body {:?}", answer.1);
    let body: Value = serde_json::from_str(&answer.1).unwrap();
    assert_eq!(body, json!({"ok": true}), "{what}");
}

/// One keep-alive HTTP connection: requests on it are served in order by one worker.
struct KeepAlive {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl KeepAlive {
    fn open(server: &TestServer) -> KeepAlive {
        let stream = TcpStream::connect(server.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        KeepAlive {
            stream,
            buffer: Vec::new(),
        }
    }

    fn request(&mut self, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).unwrap();
        self.read_response()
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).expect("response bytes");
        assert!(read > 0, "connection closed before a full response");
        self.buffer.extend_from_slice(&chunk[..read]);
    }

    fn read_response(&mut self) -> (u16, String) {
        let head_end = loop {
            if let Some(position) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break position + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("Content-Length");
        while self.buffer.len() < head_end + length {
            self.fill();
        }
        let body = String::from_utf8_lossy(&self.buffer[head_end..head_end + length]).to_string();
        self.buffer.drain(..head_end + length);
        (status, body)
    }
}

fn subscriber(server: &TestServer, subject: &str, topic: &str) -> Client {
    let mut client = connect(server, APP, &token(subject, &[PUBLISH_ALL]));
    client.subscribe_confirmed(topic);
    client
}

// ---------------------------------------------------------------- publish

#[test]
fn publish_answers_ok_and_delivers_the_message_as_data() {
    let server = start_server();
    let mut client = subscriber(&server, "reader", "feed");
    let messages = [
        json!({"msg": "Hello subscribers in main topic", "time": 1712000000000u64}),
        json!("just a string"),
        json!({"nested": {"deep": [1, 2, {"x": null, "y": true}], "n": -1.5}}),
        json!({"unicode": "Grüße — 日本語 — 🚀", "quote": "a \"quoted\" \\ word"}),
        json!([1, "two", 3.0]),
        json!(42),
        json!(false),
    ];
    for (index, message) in messages.iter().enumerate() {
        let message_type = format!("type-{index}");
        let answer = publish_http(
            &server,
            APP,
            json!({"topic": "feed", "messageType": message_type, "message": message}),
        );
        assert_ok(answer, "publish");
        let frame = client.next_non_ack();
        assert_eq!(frame["topic"], "feed");
        assert_eq!(frame["messageType"], json!(message_type));
        assert_eq!(frame["data"], *message, "data is the posted message itself");
        assert_eq!(frame.as_object().unwrap().len(), 3, "{frame}");
    }
}

#[test]

fn publish_of_a_null_message_is_delivered_as_null_data() {
    let server = start_server();
    let mut client = subscriber(&server, "reader", "feed");
    for field in ["message", "payload"] {
        let body = json!({"topic": "feed", "messageType": "nothing", field: null});
        assert_ok(publish_http(&server, APP, body), field);
        let frame = client.next_non_ack();
        assert_eq!(frame["messageType"], "nothing");
        assert!(frame["data"].is_null(), "{frame}");
        assert!(frame.as_object().unwrap().contains_key("data"), "{frame}");
    }
}

#[test]
fn publish_message_type_defaults_to_broadcast() {
    let server = start_server();
    let mut client = subscriber(&server, "reader", "feed");
    for body in [
        json!({"topic": "feed", "message": "no type"}),
        json!({"topic": "feed", "message": "empty type", "messageType": ""}),
        json!({"topic": "feed", "message": "null type", "messageType": null}),
    ] {
        assert_ok(publish_http(&server, APP, body.clone()), "publish");
        let frame = client.next_non_ack();
        assert_eq!(frame["messageType"], "broadcast", "{body}");
        assert_eq!(frame["data"], body["message"]);
    }
}

#[test]
fn publish_accepts_payload_as_an_alias_of_message() {
    let server = start_server();
    let mut client = subscriber(&server, "reader", "feed");
    let body = json!({"topic": "feed", "messageType": "alias", "payload": {"via": "payload"}});
    assert_ok(publish_http(&server, APP, body), "publish");
    let frame = client.next_non_ack();
    assert_eq!(frame["messageType"], "alias");
    assert_eq!(frame["data"], json!({"via": "payload"}));
}

#[test]
fn publish_with_compress_is_delivered_as_a_binary_frame() {
    let server = start_server();
    let mut client = subscriber(&server, "reader", "feed");
    let body =
        json!({"topic": "feed", "messageType": "zip", "message": {"big": "x"}, "compress": true});
    assert_ok(publish_http(&server, APP, body), "publish");
    match client.next_message() {
        Message::Binary(bytes) => {
            let frame: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(frame["topic"], "feed");
            assert_eq!(frame["messageType"], "zip");
            assert_eq!(frame["data"], json!({"big": "x"}));
        }
        other => panic!("expected a binary frame, got {other:?}"),
    }
    // compress: false stays text.
    let body = json!({"topic": "feed", "message": "plain", "compress": false});
    assert_ok(publish_http(&server, APP, body), "publish");
    match client.next_message() {
        Message::Text(text) => {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(frame["data"], "plain");
        }
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[test]
fn publish_reaches_subscribers_on_both_workers() {
    let server = start_server();
    let (mut zero, mut one) = clients_on_both_workers(&server, || token("reader", &[PUBLISH_ALL]));
    zero.subscribe_confirmed("fanout");
    one.subscribe_confirmed("fanout");
    // Several calls, so that they land on both workers (each TCP connection picks one).
    for index in 0..6 {
        let body = json!({"topic": "fanout", "messageType": "n", "message": index});
        assert_ok(publish_http(&server, APP, body), "publish");
        for client in [&mut zero, &mut one] {
            let frame = client.next_non_ack();
            assert_eq!(frame["topic"], "fanout");
            assert_eq!(frame["data"], json!(index));
        }
    }
}

#[test]
fn publish_is_refused_with_401_without_a_valid_admin_token() {
    let server = start_server();
    let body = json!({"topic": "main", "message": "x"}).to_string();
    let path = publish_path(APP);
    assert_refusal(http(&server, "POST", &path, None, &body), 401, "no token");
    assert_refusal(
        http(&server, "POST", &path, Some("garbage"), &body),
        401,
        "garbage token",
    );
    let client_key = token("backend", &[PUBLISH_ALL]);
    assert_refusal(
        http(&server, "POST", &path, Some(&client_key), &body),
        401,
        "token signed with the client key",
    );
    let expired = ringcast::auth::mint::sign(
        ringcast::auth::Algorithm::HS256,
        ADMIN_SECRET,
        &json!({"permissions": [PUBLISH_ALL], "exp": now() - 120}),
    )
    .unwrap();
    assert_refusal(
        http(&server, "POST", &path, Some(&expired), &body),
        401,
        "expired admin token",
    );
    // A non-Bearer scheme is not a token.
    let admin = admin_token(&[PUBLISH_ALL]);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Basic {admin}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_refusal(raw_http(&server, request.as_bytes()), 401, "Basic scheme");
}

#[test]
fn publish_from_outside_admin_source_address_is_refused_with_401() {
    let server = start_server();
    let admin = admin_token(&[PUBLISH_ALL]);
    let body = json!({"topic": "main", "message": "x"}).to_string();
    assert_refusal(
        http(
            &server,
            "POST",
            &publish_path(FENCED_APP),
            Some(&admin),
            &body,
        ),
        401,
        "fenced admin address",
    );
}

#[test]
fn publish_without_the_publisher_permission_is_refused_with_403() {
    let server = start_server();
    let mut client = subscriber(&server, "reader", "main-feed");
    let narrow = admin_token(&["realtime:publisher:write:topic:other"]);
    let path = publish_path(APP);
    let refused = json!({"topic": "main-feed", "message": "nope"}).to_string();
    assert_refusal(
        http(&server, "POST", &path, Some(&narrow), &refused),
        403,
        "other topic",
    );
    let none = admin_token(&[]);
    assert_refusal(
        http(&server, "POST", &path, Some(&none), &refused),
        403,
        "no permissions",
    );
    // The permitted topic works with the same token.
    let allowed = json!({"topic": "other", "message": "yes"}).to_string();
    assert_ok(
        http(&server, "POST", &path, Some(&narrow), &allowed),
        "allowed",
    );
    // Nothing from the refused calls reached the subscriber: the next frame is a marker.
    assert_ok(
        publish_http(
            &server,
            APP,
            json!({"topic": "main-feed", "message": "marker"}),
        ),
        "marker",
    );
    assert_eq!(client.next_non_ack()["data"], "marker");
}

#[test]
fn unknown_app_and_unknown_path_answer_404() {
    let server = start_server();
    let admin = admin_token(&[PUBLISH_ALL, MANAGE_CONNECTIONS, MANAGE_SUBSCRIBERS]);
    let body = json!({"topic": "main", "message": "x"}).to_string();
    assert_refusal(
        http(
            &server,
            "POST",
            &publish_path("no-such-app"),
            Some(&admin),
            &body,
        ),
        404,
        "unknown app publish",
    );
    assert_refusal(
        http(
            &server,
            "DELETE",
            "/api/connections/no-such-app",
            Some(&admin),
            "",
        ),
        404,
        "unknown app delete",
    );
    for path in [
        "/nope",
        "/api/nothing",
        &format!("/api/topics/{APP}/subscribe"),
        &format!("/api/topics/{APP}/publish/extra"),
    ] {
        assert_refusal(http(&server, "POST", path, Some(&admin), &body), 404, path);
    }
}

#[test]
fn malformed_publish_bodies_answer_400() {
    let server = start_server();
    let admin = admin_token(&[PUBLISH_ALL]);
    let path = publish_path(APP);
    let long_topic = "t".repeat(257);
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "{not json".to_string()),
        ("empty body", String::new()),
        ("not an object", "[1,2]".to_string()),
        ("missing topic", json!({"message": "x"}).to_string()),
        ("missing message", json!({"topic": "main"}).to_string()),
        (
            "empty topic",
            json!({"topic": "", "message": "x"}).to_string(),
        ),
        (
            "long topic",
            json!({"topic": long_topic, "message": "x"}).to_string(),
        ),
        (
            "control character",
            json!({"topic": "a\u{1}b", "message": "x"}).to_string(),
        ),
        (
            "topic not a string",
            json!({"topic": 5, "message": "x"}).to_string(),
        ),
    ];
    for (what, body) in cases {
        assert_refusal(http(&server, "POST", &path, Some(&admin), &body), 400, what);
    }
    // A 256-byte topic is still valid.
    let longest = json!({"topic": "t".repeat(256), "message": "x"}).to_string();
    assert_ok(
        http(&server, "POST", &path, Some(&admin), &longest),
        "256 bytes",
    );
}

#[test]
fn wrong_method_answers_405() {
    let server = start_server();
    let admin = admin_token(&[PUBLISH_ALL, MANAGE_CONNECTIONS, MANAGE_SUBSCRIBERS]);
    assert_refusal(
        http(&server, "GET", &publish_path(APP), Some(&admin), ""),
        405,
        "GET publish",
    );
    assert_refusal(
        http(&server, "GET", &unsubscribe_path(APP), Some(&admin), ""),
        405,
        "GET unsubscribe",
    );
    assert_refusal(
        http(
            &server,
            "POST",
            &format!("/api/connections/{APP}"),
            Some(&admin),
            "",
        ),
        405,
        "POST connections",
    );
    assert_refusal(
        http(&server, "POST", "/health", None, ""),
        405,
        "POST health",
    );
}

#[test]
fn body_over_max_http_body_bytes_answers_413() {
    let mut config = base_config();
    config["server"]["maxHttpBodyBytes"] = json!(1000);
    let server = start_with(config);
    let admin = admin_token(&[PUBLISH_ALL]);
    let path = publish_path(APP);
    let big = json!({"topic": "main", "message": "x".repeat(2000)}).to_string();
    assert_refusal(
        http(&server, "POST", &path, Some(&admin), &big),
        413,
        "2000 bytes",
    );
    let small = json!({"topic": "main", "message": "x".repeat(900)}).to_string();
    assert!(small.len() <= 1000);
    assert_ok(
        http(&server, "POST", &path, Some(&admin), &small),
        "under the limit",
    );
}

// ---------------------------------------------------------------- unsubscribe

#[test]
fn unsubscribe_removes_matching_subscriptions_of_the_subject_on_both_workers() {
    let server = start_server();
    let (mut zero, mut one) = clients_on_both_workers(&server, || token("shared", &[PUBLISH_ALL]));
    let mut bystander = subscriber(&server, "bystander", "news/a");
    for client in [&mut zero, &mut one] {
        client.subscribe("news/a");
        client.subscribe("news/b/c");
        client.subscribe_confirmed("keep");
    }
    // One keep-alive connection: one worker serves all three calls, and the mesh is FIFO
    // per worker pair, so the unsubscribe is applied everywhere before the publications.
    let mut api = KeepAlive::open(&server);
    let admin = admin_token(&[PUBLISH_ALL, MANAGE_SUBSCRIBERS]);
    let body = json!({"topicPatterns": ["news/*"], "subject": "shared"}).to_string();
    assert_ok(
        api.request("POST", &unsubscribe_path(APP), &admin, &body),
        "unsubscribe",
    );
    for (topic, message) in [
        ("news/a", "removed"),
        ("news/b/c", "removed too"),
        ("keep", "marker"),
    ] {
        let body = json!({"topic": topic, "message": message}).to_string();
        assert_ok(
            api.request("POST", &publish_path(APP), &admin, &body),
            topic,
        );
    }
    for client in [&mut zero, &mut one] {
        let frame = client.next_non_ack();
        assert_eq!(
            frame["topic"], "keep",
            "news/* arrived after unsubscribe: {frame}"
        );
        assert_eq!(frame["data"], "marker");
    }
    // Another subject's subscription is untouched.
    let frame = bystander.next_non_ack();
    assert_eq!(frame["topic"], "news/a");
    // The connections themselves are fine, and their own private topic still works.
    zero.sync();
    one.sync();
}

#[test]
fn unsubscribe_without_manage_subscribers_is_refused_with_403() {
    let server = start_server();
    let mut client = subscriber(&server, "shared", "news/a");
    let admin = admin_token(&[PUBLISH_ALL, MANAGE_CONNECTIONS]);
    let body = json!({"topicPatterns": ["news/*"], "subject": "shared"}).to_string();
    assert_refusal(
        http(&server, "POST", &unsubscribe_path(APP), Some(&admin), &body),
        403,
        "unsubscribe",
    );
    assert_ok(
        publish_http(
            &server,
            APP,
            json!({"topic": "news/a", "message": "still subscribed"}),
        ),
        "publish",
    );
    assert_eq!(client.next_non_ack()["data"], "still subscribed");
}

#[test]
fn unsubscribe_with_more_than_50_patterns_is_refused_with_400() {
    let server = start_server();
    let admin = admin_token(&[MANAGE_SUBSCRIBERS]);
    let path = unsubscribe_path(APP);
    let patterns: Vec<String> = (0..51).map(|i| format!("topic-{i}")).collect();
    let body = json!({"topicPatterns": patterns, "subject": "x"}).to_string();
    assert_refusal(
        http(&server, "POST", &path, Some(&admin), &body),
        400,
        "51 patterns",
    );
    let fifty = &patterns[..50];
    let body = json!({"topicPatterns": fifty, "subject": "x"}).to_string();
    assert_ok(
        http(&server, "POST", &path, Some(&admin), &body),
        "50 patterns",
    );
    for (what, body) in [
        ("not JSON", "{".to_string()),
        (
            "missing subject",
            json!({"topicPatterns": ["a"]}).to_string(),
        ),
        ("missing patterns", json!({"subject": "x"}).to_string()),
    ] {
        assert_refusal(http(&server, "POST", &path, Some(&admin), &body), 400, what);
    }
}

// ---------------------------------------------------------------- connections

fn delete(server: &TestServer, path: &str, permissions: &[&str]) -> (u16, String) {
    http(server, "DELETE", path, Some(&admin_token(permissions)), "")
}

#[test]
fn delete_one_connection_closes_it_with_4000_and_leaves_the_others_open() {
    let server = start_server();
    let (zero, one) = clients_on_both_workers(&server, || token("member", &[PUBLISH_ALL]));
    let mut third = connect(&server, APP, &token("member", &[PUBLISH_ALL]));
    let mut remaining = vec![zero, one];
    // Close both worker's clients one after the other: the call lands on either worker,
    // so one close is local or remote; the others must stay open each time.
    while let Some(mut target) = remaining.pop() {
        let path = format!("/api/connections/{APP}/{}", target.id());
        assert_ok(delete(&server, &path, &[MANAGE_CONNECTIONS]), "delete one");
        assert_eq!(
            target.expect_close(),
            (4000, "Connection terminated by admin".to_string())
        );
        for other in remaining.iter_mut() {
            other.sync();
        }
        third.sync();
    }
}

#[test]
fn delete_all_closes_every_connection_of_the_app_on_both_workers() {
    let server = start_server();
    let (mut zero, mut one) = clients_on_both_workers(&server, || token("member", &[PUBLISH_ALL]));
    let mut other_app = connect(&server, QUIET_APP, &token("member", &[PUBLISH_ALL]));
    assert_ok(
        delete(
            &server,
            &format!("/api/connections/{APP}"),
            &[MANAGE_CONNECTIONS],
        ),
        "delete all",
    );
    for client in [&mut zero, &mut one] {
        assert_eq!(
            client.expect_close(),
            (4000, "Connection terminated by admin".to_string())
        );
    }
    // Both workers have processed the call; the other app's client is still served.
    other_app.sync();
    // New connections to the app are admitted again.
    connect(&server, APP, &token("member", &[]));
}

#[test]
fn delete_of_a_malformed_connection_id_answers_404() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("member", &[PUBLISH_ALL]));
    for id in [
        "zzz",
        "12345",
        "ZZZZZZZZZZZZ",
        "0000000000ff",
        "0123456789abcdef00",
    ] {
        let path = format!("/api/connections/{APP}/{id}");
        assert_refusal(delete(&server, &path, &[MANAGE_CONNECTIONS]), 404, id);
    }
    client.sync();
}

#[test]
fn delete_without_manage_connections_is_refused_with_403() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("member", &[PUBLISH_ALL]));
    let one = format!("/api/connections/{APP}/{}", client.id());
    let all = format!("/api/connections/{APP}");
    for path in [&one, &all] {
        assert_refusal(
            delete(&server, path, &[PUBLISH_ALL, MANAGE_SUBSCRIBERS]),
            403,
            path,
        );
        assert_refusal(http(&server, "DELETE", path, None, ""), 401, path);
    }
    client.sync();
}

// ---------------------------------------------------------------- operational

#[test]
fn health_answers_200_status_ok() {
    let server = start_server();
    let (status, body) = http(&server, "GET", "/health", None, "");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );
}

#[test]
fn metrics_answers_200_in_the_prometheus_text_format() {
    let server = start_server();
    let _client = connect(&server, APP, &token("member", &[]));
    let (status, body) = http(&server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    assert!(body.contains("ringcast_connections"), "{body}");
    assert!(body.contains("ringcast_io_driver"), "{body}");
    assert!(body.contains("# TYPE"), "{body}");
}

#[test]
fn keep_alive_connection_answers_pipelined_requests() {
    let server = start_server();
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = "GET /health HTTP/1.1\r\nHost: test\r\n\r\n";
    stream
        .write_all(format!("{request}{request}").as_bytes())
        .unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let count = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .matches("HTTP/1.1 200")
            .count()
    };
    while count(&received) < 2 {
        let read = stream
            .read(&mut chunk)
            .expect("two responses before the timeout");
        assert!(
            read > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.matches(r#"{"status":"ok"}"#).count(), 2, "{text}");
    // And the connection stays usable for a third, sequential request.
    let mut api = KeepAlive {
        stream,
        buffer: Vec::new(),
    };
    let admin = admin_token(&[PUBLISH_ALL]);
    let body = json!({"topic": "main", "message": "x"}).to_string();
    assert_ok(
        api.request("POST", &publish_path(APP), &admin, &body),
        "third",
    );
}

#[test]
fn admin_calls_of_one_app_do_not_touch_another_apps_connections() {
    let server = start_server();
    let mut victim = connect(&server, APP, &token("shared", &[PUBLISH_ALL]));
    victim.subscribe_confirmed("news/a");
    let admin = admin_token(&[PUBLISH_ALL, MANAGE_CONNECTIONS, MANAGE_SUBSCRIBERS]);
    let mut api = KeepAlive::open(&server);
    // QUIET_APP's admin names APP's connection id and APP's subject.
    let path = format!("/api/connections/{QUIET_APP}/{}", victim.id());
    // Not a connection of QUIET_APP: 404, and nothing is closed.
    assert_refusal(
        api.request("DELETE", &path, &admin, ""),
        404,
        "delete other app's id",
    );
    let body = json!({"topicPatterns": ["*"], "subject": "shared"}).to_string();
    assert_ok(
        api.request("POST", &unsubscribe_path(QUIET_APP), &admin, &body),
        "unsubscribe other app's subject",
    );
    // A publication in QUIET_APP on the same topic name does not cross over either.
    let body = json!({"topic": "news/a", "message": "quiet"}).to_string();
    assert_ok(
        api.request("POST", &publish_path(QUIET_APP), &admin, &body),
        "publish in the other app",
    );
    let body = json!({"topic": "news/a", "message": "still here"}).to_string();
    assert_ok(
        api.request("POST", &publish_path(APP), &admin, &body),
        "publish",
    );
    let frame = victim.next_non_ack();
    assert_eq!(frame["data"], "still here", "{frame}");
    victim.sync();
}

#[test]
fn delete_of_a_well_formed_but_unknown_connection_is_404_on_every_worker() {
    let server = start_server();
    let token = admin_token(&["realtime:admin:manage:connections"]);
    // The low byte names the owning worker: ask both workers (whichever serves the call).
    for id in [
        "0123456789".to_string() + "00",
        "0123456789".to_string() + "01",
    ] {
        for _ in 0..4 {
            let (status, body) = http(
                &server,
                "DELETE",
                &format!("/api/connections/{APP}/{id}"),
                Some(&token),
                "",
            );
            assert_eq!(status, 404, "{id}: {body}");
        }
    }
    // A live connection on either worker is found from either worker.
    let (zero, one) = clients_on_both_workers(&server, || common::token("u", &[]));
    for mut client in [zero, one] {
        let (status, _) = http(
            &server,
            "DELETE",
            &format!("/api/connections/{APP}/{}", client.id()),
            Some(&token),
            "",
        );
        assert_eq!(status, 200);
        assert_eq!(
            client.expect_close(),
            (4000, "Connection terminated by admin".to_string())
        );
    }
}
