//! Issue 13 §8: JSON nested deeper than 128 levels is refused wherever it enters —
//! WebSocket commands (close 1008 "Message nesting too deep") and HTTP API bodies (400) —
//! so one publisher cannot break every subscriber whose parser recurses (Python's `json`
//! raises RecursionError near 1,000). Bus input is covered in cluster/wire.rs.

mod common;
use common::*;
use serde_json::json;
use tungstenite::Message;

/// The next data frame's text, unparsed (the envelope adds levels of its own, beyond what
/// the test client's parser takes).
fn next_text(client: &mut Client) -> String {
    match client.next_message() {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn a_deeply_nested_websocket_command_is_closed_1008_and_delivers_nothing() {
    let server = start_server();
    let mut subscriber = connect(&server, APP, &token("sub", &[READ_ALL]));
    subscriber.subscribe("deep");
    subscriber.sync_without_publish();
    let mut publisher = connect(&server, APP, &token("pub", &[PUBLISH_ALL]));
    // 126 levels inside the command object and its data: 128 in all, accepted.
    let fits = format!(
        r#"{{"type":"publish","data":{{"topic":"deep","messageType":"m","payload":{}}}}}"#,
        nested(126)
    );
    publisher.send_text(&fits);
    assert!(next_text(&mut subscriber).contains(&nested(126)));
    for depth in [127, 10_000] {
        let mut publisher = connect(&server, APP, &token("pub", &[PUBLISH_ALL]));
        let deep = format!(
            r#"{{"type":"publish","data":{{"topic":"deep","messageType":"m","payload":{}}}}}"#,
            nested(depth)
        );
        publisher.send_text(&deep);
        assert_eq!(
            publisher.expect_close(),
            (1008, "Message nesting too deep".to_string()),
            "payload depth {depth}"
        );
    }
    // Nothing of it reached the subscriber; a later publication does.
    publisher.publish("deep", "m", json!("after"), "a");
    assert_eq!(subscriber.next_non_ack()["data"]["payload"], json!("after"));
}

#[test]
fn a_deeply_nested_http_body_is_answered_400() {
    let server = start_server();
    let mut subscriber = connect(&server, APP, &token("sub", &[READ_ALL]));
    subscriber.subscribe("deep");
    subscriber.sync_without_publish();
    let token = admin_token(&[PUBLISH_ALL]);
    let path = format!("/api/topics/{APP}/publish");
    for depth in [128, 100_000] {
        let body = format!(r#"{{"topic":"deep","message":{}}}"#, nested(depth));
        let (status, answer) = http(&server, "POST", &path, Some(&token), &body);
        assert_eq!(status, 400, "depth {depth}: {answer}");
        assert!(answer.contains("nesting too deep"), "{answer}");
    }
    let body = format!(r#"{{"topic":"deep","message":{}}}"#, nested(127));
    assert_eq!(http(&server, "POST", &path, Some(&token), &body).0, 200);
    assert!(
        next_text(&mut subscriber).contains(&nested(127)),
        "127 levels inside the body: accepted"
    );
}
