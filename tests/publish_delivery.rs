//! PROTOCOL.md §4.3–§4.4, §5.2, §5.4, §5.5: publish, message, presence, acks.

mod common;
use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

#[test]
fn publication_reaches_subscribers_and_the_publisher_in_the_documented_envelope() {
    let server = start_server();
    let mut subscriber = connect(&server, APP, &token("reader", &[]));
    subscriber.subscribe("chat");
    subscriber.sync_without_publish();
    let mut publisher = connect(&server, APP, &token("user-01", &[PUBLISH_ALL]));
    publisher.subscribe_confirmed("chat");
    publisher.publish("chat", "text-message", json!("Hello"), "k3j9x0a1b2");
    let expected_client = json!({
        "connectionId": publisher.id(),
        "subject": "user-01",
        "permissions": [PUBLISH_ALL],
    });
    for client in [&mut subscriber, &mut publisher] {
        let frame = client.next_non_ack();
        assert_eq!(
            frame,
            json!({"topic": "chat", "messageType": "text-message", "data": {
                "client": expected_client, "subProtocol": 1, "payload": "Hello", "id": "k3j9x0a1b2"}})
        );
    }
}

#[test]
fn payload_and_id_bytes_pass_through_verbatim() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe_confirmed("raw");
    let payloads = [
        r#""Hello""#,
        r#"{"b":1,  "a" : [1.0e10, -0, "\u00e9"]}"#,
        r#"{"nested":{"deep":{"deeper":[{"x":null}]}}}"#,
        r#""héllo wörld ✓ 😀""#,
        r#""""#,
        "12345678901234567890",
    ];
    for (index, payload) in payloads.iter().enumerate() {
        let command = format!(
            r#"{{"type":"publish","data":{{"topic":"raw","messageType":"m","payload":{payload},"id":"id-{index}"}}}}"#
        );
        client.send_text(&command);
        let text = loop {
            match client.next_message() {
                Message::Text(text) if !text.contains("\"ack\"") => break text.to_string(),
                _ => continue,
            }
        };
        assert!(
            text.contains(&format!(r#""payload":{payload},"id":"id-{index}""#)),
            "payload not verbatim: {text}"
        );
    }
}

#[test]
fn non_string_id_is_passed_through_and_acked_verbatim() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe_confirmed("ids");
    client.send_text(r#"{"type":"publish","data":{"topic":"ids","payload":1,"id":42}}"#);
    let mut seen_ack = false;
    let mut seen_publication = false;
    while !(seen_ack && seen_publication) {
        let frame = client.next_json();
        if frame["messageType"] == "ack" {
            assert_eq!(frame["data"]["data"], 42);
            seen_ack = true;
        } else {
            assert_eq!(frame["data"]["id"], 42);
            seen_publication = true;
        }
    }
}

#[test]
fn message_type_defaults_to_broadcast_and_missing_id_is_generated() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe_confirmed("defaults");
    for message_type in [None, Some(Value::Null), Some(json!(""))] {
        let mut data = json!({"topic": "defaults", "payload": "p"});
        if let Some(value) = message_type {
            data["messageType"] = value;
        }
        client.send(json!({"type": "publish", "data": data}));
        let frame = client.next_non_ack();
        assert_eq!(frame["messageType"], "broadcast");
        let id = frame["data"]["id"]
            .as_str()
            .expect("generated id is a string");
        assert!(!id.is_empty() && !id.contains('.'));
    }
}

#[test]
fn ack_goes_to_the_publisher_only_after_handoff() {
    let server = start_server();
    let mut other = connect(&server, APP, &token("o", &[PUBLISH_ALL]));
    other.subscribe_confirmed("acks");
    let mut publisher = connect(&server, APP, &token("p", &[PUBLISH_ALL]));
    publisher.publish("acks", "t", json!(1), "ack-me");
    let ack = publisher.next_json();
    assert_eq!(
        ack,
        json!({"topic": "priv/acks", "messageType": "ack", "data": {"data": "ack-me"}})
    );
    // The subscriber gets the publication, never the ack.
    assert_eq!(other.next_json()["data"]["id"], "ack-me");
    other.sync();
}

#[test]
fn acks_can_be_disabled_per_app() {
    let server = start_server();
    let mut client = connect(&server, QUIET_APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe("q");
    client.publish("q", "t", json!(1), "no-ack");
    let frame = client.next_json();
    assert_eq!(frame["data"]["id"], "no-ack");
    let own = format!("priv/{}", client.id());
    client.publish(&own, "marker", json!(2), "m");
    assert_eq!(
        client.next_json()["messageType"],
        "marker",
        "no ack frame expected"
    );
}

#[test]
fn forbidden_publish_delivers_nothing_and_closes_1008() {
    let server = start_server();
    let mut watcher = connect(&server, APP, &token("w", &[PUBLISH_ALL]));
    watcher.subscribe_confirmed("guarded");
    let mut intruder = connect(
        &server,
        APP,
        &token("i", &["realtime:publisher:write:topic:other/*"]),
    );
    intruder.publish("guarded", "t", json!("evil"), "e1");
    assert_eq!(
        intruder.expect_close(),
        (1008, "Publishing to topic is forbidden!".to_string())
    );
    watcher.publish("guarded", "t", json!("good"), "g1");
    assert_eq!(watcher.next_non_ack()["data"]["payload"], "good");
}

#[test]
fn compress_true_arrives_as_a_binary_frame() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe_confirmed("zip");
    client.send(json!({"type": "publish", "data": {"topic": "zip", "messageType": "z", "compress": true, "payload": {"a": 1}, "id": "z1"}}));
    loop {
        match client.next_message() {
            Message::Binary(bytes) => {
                let frame: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(frame["data"]["payload"], json!({"a": 1}));
                return;
            }
            Message::Text(text) => assert!(text.contains("\"ack\""), "expected binary, got {text}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn binary_frames_holding_json_commands_are_accepted() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("u", &[PUBLISH_ALL]));
    client.subscribe_confirmed("bin");
    let command = json!({"type": "publish", "data": {"topic": "bin", "payload": "b", "id": "b1"}});
    client
        .socket
        .send(Message::binary(command.to_string().into_bytes()))
        .unwrap();
    assert_eq!(client.next_non_ack()["data"]["payload"], "b");
}

#[test]
fn inbound_message_arrives_on_secure_inbound_and_is_acked() {
    let server = start_server();
    let mut backend = connect(&server, APP, &token("backend", &[READ_ALL, PUBLISH_ALL]));
    backend.subscribe_confirmed("secure/inbound");
    let mut device = connect(&server, APP, &token("device-9", &[]));
    device.send(json!({"type": "message", "data": {"topic": "ignored", "messageType": "gettime", "payload": {"q": 1}, "id": "7f3a"}}));
    assert_eq!(
        device.next_json(),
        json!({"topic": "priv/acks", "messageType": "ack", "data": {"data": "7f3a"}})
    );
    let frame = loop {
        let frame = backend.next_non_ack();
        if frame["messageType"] != "presence" {
            break frame;
        }
    };
    assert_eq!(frame["topic"], "secure/inbound");
    assert_eq!(frame["messageType"], "gettime");
    assert_eq!(frame["data"]["client"]["subject"], "device-9");
    assert_eq!(frame["data"]["payload"], json!({"q": 1}));
    assert_eq!(frame["data"]["id"], "7f3a");
}

#[test]
fn rpc_reply_routes_to_the_requesters_private_topic() {
    let server = start_server();
    let mut replier = connect(&server, APP, &token("server", &[READ_ALL, PUBLISH_ALL]));
    replier.subscribe_confirmed("secure/inbound");
    let mut requester = connect(&server, APP, &token("client", &[]));
    requester.send(
        json!({"type": "message", "data": {"messageType": "gettime", "payload": null, "id": "r1"}}),
    );
    let request = loop {
        let frame = replier.next_non_ack();
        if frame["messageType"] == "gettime" {
            break frame;
        }
    };
    let reply_to = format!(
        "priv/{}",
        request["data"]["client"]["connectionId"].as_str().unwrap()
    );
    replier.publish(
        &reply_to,
        "response",
        json!({"data": 1712, "status": "ok", "id": "r1"}),
        "x",
    );
    let reply = requester.next_non_ack();
    assert_eq!(reply["topic"], reply_to);
    assert_eq!(reply["messageType"], "response");
    assert_eq!(reply["data"]["payload"]["id"], "r1");
}

#[test]
fn inbound_message_is_dropped_without_ack_when_disabled() {
    let server = start_server();
    let mut client = connect(&server, QUIET_APP, &token("u", &[PUBLISH_ALL]));
    client.send(json!({"type": "message", "data": {"messageType": "x", "payload": 1, "id": "d1"}}));
    let own = format!("priv/{}", client.id());
    client.publish(&own, "marker", json!(2), "m");
    assert_eq!(client.next_json()["messageType"], "marker");
}

#[test]
fn presence_connected_and_disconnected_reach_inbound_subscribers() {
    let server = start_server();
    let mut backend = connect(&server, APP, &token("backend", &[READ_ALL, PUBLISH_ALL]));
    backend.subscribe_confirmed("secure/inbound");
    let visitor = connect(&server, APP, &token("user0@example.com", &["p:x"]));
    let id = visitor.id();
    let connected = backend.next_non_ack();
    assert_eq!(
        connected,
        json!({"topic": "secure/inbound", "messageType": "presence", "data": {
            "client": {"connectionId": id, "subject": "user0@example.com", "permissions": ["p:x"]},
            "subProtocol": 1, "payload": {"code": 0, "status": "connected"}}})
    );
    visitor.close();
    let disconnected = backend.next_non_ack();
    assert_eq!(
        disconnected["data"]["payload"],
        json!({"code": -1, "status": "disconnected"})
    );
    assert_eq!(disconnected["data"]["client"]["connectionId"], id.as_str());
}
