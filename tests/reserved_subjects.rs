//! Issue 13 §6: `priv/<subject>` and `priv/<connectionId>` share one namespace, so a token
//! whose `sub` has the exact shape of a connection id (12 lowercase hex characters) is
//! refused at the upgrade with 401 — else it would be implicitly subscribed to that
//! connection's private topic and receive its RPC replies.

mod common;
use common::*;
use serde_json::json;

fn upgrade(server: &TestServer, token: &str) -> (u16, String) {
    let request = format!(
        "GET /apps/{APP}?access_token={token} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw_http(server, request.as_bytes())
}

#[test]
fn a_sub_shaped_like_a_connection_id_is_refused_with_401() {
    let server = start_server();
    let mut victim = connect(&server, APP, &token("victim", &[PUBLISH_ALL]));
    let victim_id = victim.id();
    // The id travels in every publication's `client.connectionId` and in presence events;
    // a token minted with it as `sub` must not get the victim's private topic.
    let (status, body) = upgrade(&server, &token(&victim_id, &[]));
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("connection id"),
        "the reason says why: {body}"
    );
    // Any id-shaped sub, live or not.
    assert_eq!(
        try_connect(&server, APP, &token("0123456789ab", &[])).err(),
        Some(401)
    );
    // Near misses are ordinary subjects.
    for subject in [
        "0123456789AB",
        "0123456789a",
        "0123456789abc",
        "0123456789ag",
    ] {
        let client = try_connect(&server, APP, &token(subject, &[]));
        assert!(client.is_ok(), "sub {subject:?} is not id-shaped");
    }
    // The victim's private topic still reaches the victim alone.
    victim.publish(&format!("priv/{victim_id}"), "reply", json!("secret"), "r1");
    assert_eq!(victim.next_non_ack()["data"]["payload"], json!("secret"));
}
