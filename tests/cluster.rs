//! A ringcast cluster on NATS: a nats-server and 3 ringcast nodes (child processes, so a
//! node can be killed), each binding a port of its own choosing (reported in its log),
//! checked black-box over real sockets (harness: `common::cluster`, which also says what
//! happens without a nats-server).
//!
//! Waits below are bounded loops that stop as soon as the state is reached (failure
//! guards, not timing assertions).

mod common;

use common::cluster::*;
use common::*;
use ringcast::broker::interest::bucket_of;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share the machine's two cores: one cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn publications_reach_every_node_once_in_order_and_cross_the_bus_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cluster) = cluster() else { return };
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut on_a = subscriber(a, APP, "sub-a", "chat");
    let mut on_b = subscriber(b, APP, "sub-b", "chat");
    let mut on_b2 = subscriber(b, APP, "sub-b2", "chat");
    let mut on_c = subscriber(c, APP, "sub-c", "chat");
    // (Connected before the counting starts: a connection's presence event is a
    // publication too.)
    let held = [bucket_of("main"), bucket_of("chat")];
    let lonely_topic = (0..)
        .map(|n| format!("only-here-{n}"))
        .find(|topic| !held.contains(&bucket_of(topic)))
        .unwrap();
    let mut lonely = subscriber(a, APP, "lonely", &lonely_topic);
    let mut publisher = connect(&a.server, APP, &token("pub", &[PUBLISH_ALL]));
    await_interest(
        &mut publisher,
        "chat",
        &mut [&mut on_a, &mut on_b, &mut on_b2, &mut on_c],
    );
    let sent_before = a.metric("ringcast_bus_publications_sent_total");
    const COUNT: usize = 200;
    for index in 0..COUNT {
        publisher.publish("chat", "text", json!(index), &format!("m{index}"));
    }
    for subscriber in [&mut on_a, &mut on_b, &mut on_b2, &mut on_c] {
        for index in 0..COUNT {
            let frame = next_on(subscriber, "chat");
            assert_eq!(
                frame["data"]["payload"],
                json!(index),
                "in order, each once"
            );
        }
    }
    // Exactly once: nothing more arrives after a round trip through every node.
    let (status, _) = publish_http(
        &b.server,
        APP,
        json!({"topic": "chat", "messageType": "end", "message": "end"}),
    );
    assert_eq!(status, 200, "HTTP publish on another node");
    for subscriber in [&mut on_a, &mut on_b, &mut on_b2, &mut on_c] {
        let frame = next_on(subscriber, "chat");
        assert_eq!(
            frame["messageType"], "end",
            "no duplicate before the end marker"
        );
        assert_eq!(frame["data"], json!("end"));
    }
    assert_eq!(
        a.metric("ringcast_bus_publications_sent_total") - sent_before,
        COUNT as u64,
        "once per publication, not per node or subscriber"
    );
    // A topic no other node holds goes to NATS once and reaches no other node: pick one
    // whose bucket is none of those B and C hold ("main", "chat"; `priv/…` topics have
    // buckets of their own).
    let sent_before = a.metric("ringcast_bus_publications_sent_total");
    let received_before = [b, c].map(|n| n.metric("ringcast_bus_publications_received_total"));
    for index in 0..10 {
        publisher.publish(&lonely_topic, "text", json!(index), &format!("l{index}"));
    }
    for index in 0..10 {
        assert_eq!(
            next_on(&mut lonely, &lonely_topic)["data"]["payload"],
            json!(index)
        );
    }
    // Then one for B and C: NATS keeps A's order, so when it arrived the others had
    // arrived too, had NATS sent them.
    publisher.publish("chat", "text", json!("after"), "after");
    for subscriber in [&mut on_b, &mut on_c] {
        assert_eq!(
            next_on(subscriber, "chat")["data"]["payload"],
            json!("after")
        );
    }
    assert_eq!(
        a.metric("ringcast_bus_publications_sent_total") - sent_before,
        11,
        "every publication goes to NATS once"
    );
    for (node, before) in [b, c].iter().zip(received_before) {
        assert_eq!(
            node.metric("ringcast_bus_publications_received_total") - before,
            1,
            "only the publication it has subscribers of"
        );
    }
    let received = b.metric("ringcast_bus_publications_received_total");
    assert!(received >= COUNT as u64, "{received}");
}

#[test]
fn replies_and_admin_calls_reach_the_node_holding_the_connection() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cluster) = cluster() else { return };
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    // A reply to priv/<requester> from node A reaches the requester on node C.
    let mut requester = connect(&c.server, APP, &token("requester", &[]));
    let mut replier = connect(&a.server, APP, &token("replier", &[PUBLISH_ALL]));
    let private = format!("priv/{}", requester.id());
    await_interest(&mut replier, &private, &mut [&mut requester]);
    let reply = json!({"data": 42, "status": "ok", "id": "req-1"});
    replier.publish(&private, "response", reply.clone(), "r1");
    let frame = next_on(&mut requester, &private);
    assert_eq!(frame["messageType"], "response");
    assert_eq!(frame["data"]["payload"], reply);

    // DELETE of a connection on C, sent to A.
    let admin = admin_token(&["realtime:admin:manage:connections"]);
    let mut victim = connect(&c.server, APP, &token("victim", &[]));
    let path = format!("/api/connections/{APP}/{}", victim.id());
    until("A knows the victim's node", || {
        http(&a.server, "DELETE", &path, Some(&admin), "").0 == 200
    });
    assert_eq!(victim.expect_close().0, 4000);
    let (status, _) = http(&a.server, "DELETE", &path, Some(&admin), "");
    assert_eq!(status, 404, "gone everywhere");
    let (status, _) = http(
        &b.server,
        "DELETE",
        &format!("/api/connections/{APP}/0123456789ab"),
        Some(&admin),
        "",
    );
    assert_eq!(status, 404, "an id no node holds");

    // Unsubscribe sent to B acts on C's connection of that subject.
    let mut reader = subscriber(c, APP, "reader", "news");
    let manager = admin_token(&["realtime:admin:manage:subscribers"]);
    let body = json!({"topicPatterns": ["news"], "subject": "reader"}).to_string();
    let (status, _) = http(
        &b.server,
        "POST",
        &format!("/api/topics/{APP}/unsubscribe"),
        Some(&manager),
        &body,
    );
    assert_eq!(status, 200);
    until("reader unsubscribed on C", || {
        !still_subscribed(&mut reader, "news")
    });

    // DELETE of every connection of the app, sent to A, closes B's and C's too.
    let mut on_b = connect(&b.server, APP, &token("on-b", &[]));
    let (status, _) = http(
        &a.server,
        "DELETE",
        &format!("/api/connections/{APP}"),
        Some(&admin),
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(on_b.expect_close().0, 4000);
    assert_eq!(requester.expect_close().0, 4000);
}

#[test]
fn presence_events_reach_inbound_subscribers_on_every_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cluster) = cluster() else { return };
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut watcher_b = subscriber(b, APP, "watcher-b", "secure/inbound");
    let mut watcher_c = subscriber(c, APP, "watcher-c", "secure/inbound");
    // Interest in secure/inbound reaches A: a sender's message shows up on both.
    let mut sender = connect(&a.server, APP, &token("sender", &[]));
    until("inbound interest spread", || {
        let marker = rand_id();
        sender.send(json!({"type": "message", "data": {"messageType": "hello", "payload": marker, "id": marker}}));
        [&mut watcher_b, &mut watcher_c].into_iter().all(|watcher| {
            watcher.expect_silence(Duration::from_millis(0));
            watcher
                .socket
                .get_mut()
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut found = false;
            while let Ok(tungstenite::Message::Text(text)) = watcher.socket.read() {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["data"]["payload"] == json!(marker) {
                    found = true;
                    break;
                }
            }
            watcher
                .socket
                .get_mut()
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            found
        })
    });
    let visitor = connect(&a.server, APP, &token("visitor@example.com", &[]));
    let id = visitor.id();
    visitor.close();
    for watcher in [&mut watcher_b, &mut watcher_c] {
        let mut statuses = Vec::new();
        while statuses.len() < 2 {
            let frame = next_on(watcher, "secure/inbound");
            if frame["messageType"] == "presence" && frame["data"]["client"]["connectionId"] == id {
                assert_eq!(frame["data"]["client"]["subject"], "visitor@example.com");
                statuses.push(frame["data"]["payload"]["status"].clone());
            }
        }
        assert_eq!(statuses, vec![json!("connected"), json!("disconnected")]);
    }
}

#[test]
fn nats_restart_mid_stream_keeps_local_delivery_and_resumes_cross_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut cluster) = cluster() else { return };
    let mut local = subscriber(&cluster.nodes[0], APP, "local", "stream");
    let mut remote = subscriber(&cluster.nodes[1], APP, "remote", "stream");
    let mut publisher = connect(&cluster.nodes[0].server, APP, &token("pub", &[PUBLISH_ALL]));
    await_interest(&mut publisher, "stream", &mut [&mut local, &mut remote]);
    let mut next = 0;
    let publish = |publisher: &mut Client, next: &mut usize, count: usize| {
        for _ in 0..count {
            publisher.publish("stream", "tick", json!(*next), &format!("t{next}"));
            *next += 1;
        }
    };
    publish(&mut publisher, &mut next, 50);
    let mut local_seen = Vec::new();
    let mut remote_seen: Vec<u64> = Vec::new();
    for (client, seen) in [
        (&mut local, &mut local_seen),
        (&mut remote, &mut remote_seen),
    ] {
        while seen.len() < 50 {
            seen.push(
                next_on(client, "stream")["data"]["payload"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }

    cluster.nats.kill();
    let a = &cluster.nodes[0];
    until("A notices the outage", || {
        a.metric("ringcast_bus_connected") == 0
    });
    assert!(a.metric("ringcast_bus_disconnects_total") >= 1);
    publish(&mut publisher, &mut next, 50); // during the outage
    cluster.nats.restart();
    for node in &cluster.nodes {
        until("reconnected", || {
            node.metric("ringcast_bus_connected") == 1
                && node.metric("ringcast_bus_reconnects_total") >= 1
        });
    }
    // Cross-node delivery resumes: keep publishing until the remote subscriber sees it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "cross-node delivery never resumed"
        );
        publish(&mut publisher, &mut next, 10);
        let sent = next;
        while local_seen.len() < sent {
            let frame = next_on(&mut local, "stream");
            local_seen.push(frame["data"]["payload"].as_u64().unwrap());
        }
        remote.expect_silence(Duration::from_millis(0));
        remote
            .socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        while let Ok(message) = remote.socket.read() {
            if let tungstenite::Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["topic"] == "stream" && frame["messageType"] == "tick" {
                    remote_seen.push(frame["data"]["payload"].as_u64().unwrap());
                }
            }
        }
        if remote_seen.last() == Some(&(sent as u64 - 1)) {
            break;
        }
    }
    let expected: Vec<u64> = (0..next as u64).collect();
    assert_eq!(
        local_seen, expected,
        "local delivery never stopped, in order"
    );
    assert!(
        remote_seen.windows(2).all(|pair| pair[0] < pair[1]),
        "remote: in order, never twice (at most once): {remote_seen:?}"
    );
    assert_eq!(&remote_seen[..50], &expected[..50], "before the outage");
    let a = &cluster.nodes[0];
    assert!(a.metric("ringcast_bus_reconnects_total") >= 1);
}

#[test]
fn a_killed_node_leaves_nothing_behind_and_a_late_node_is_served_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut cluster) = cluster() else { return };
    let mut only_c = subscriber(&cluster.nodes[2], APP, "only-c", "c-topic");
    let mut on_b = subscriber(&cluster.nodes[1], APP, "on-b", "b-topic");
    let mut publisher = connect(&cluster.nodes[0].server, APP, &token("pub", &[PUBLISH_ALL]));
    await_interest(&mut publisher, "c-topic", &mut [&mut only_c]);
    await_interest(&mut publisher, "b-topic", &mut [&mut on_b]);

    cluster.nodes[2].kill();
    // A and B keep serving: what A publishes still reaches B, once.
    let a = &cluster.nodes[0];
    for index in 0..5 {
        publisher.publish("c-topic", "text", json!(index), &format!("c{index}"));
    }
    publisher.publish("b-topic", "text", json!("still"), "still");
    assert_eq!(
        next_on(&mut on_b, "b-topic")["data"]["payload"],
        json!("still")
    );
    assert!(a.metric("ringcast_bus_publications_sent_total") >= 6);
    assert_eq!(a.metric("ringcast_bus_connected"), 1);

    // A node joining late needs nothing from the others: NATS already holds B's
    // subscriptions, so a publication from the late node reaches B as soon as it is
    // connected.
    let late = Node::start("node-d", &cluster.nats);
    until("the late node is connected", || {
        late.metric("ringcast_bus_connected") == 1
    });
    let marker = rand_id();
    let (status, _) = publish_http(
        &late.server,
        APP,
        json!({"topic": "b-topic", "messageType": "late", "message": marker}),
    );
    assert_eq!(status, 200);
    assert!(receives(&mut on_b, &json!(marker)), "the first one arrives");
    assert_eq!(late.metric("ringcast_bus_publications_sent_total"), 1);
}

const OPS_SECRET: &str = "cluster-ops-secret";

/// Rewrites a node's configuration file and reloads it over HTTP (answered once every
/// worker of that node runs the new configuration).
fn reload(node: &Node, config: &mut Value) {
    let current: Value =
        serde_json::from_str(&std::fs::read_to_string(node.config_path()).unwrap()).unwrap();
    // The listener is not reloadable: keep the text the node started with (port 0).
    config["server"]["listen"] = current["server"]["listen"].clone();
    config["server"]["cluster"] = current["server"]["cluster"].clone();
    if let Some(driver) = current["server"].get("ioDriver") {
        config["server"]["ioDriver"] = driver.clone();
    }
    std::fs::write(node.config_path(), config.to_string()).unwrap();
    let ops = ringcast::auth::mint::sign(
        ringcast::auth::Algorithm::HS256,
        OPS_SECRET,
        &json!({"sub": "ops", "exp": now() + 600}),
    )
    .unwrap();
    let (status, body) = http(&node.server, "POST", "/admin/reload", Some(&ops), "");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn apps_added_and_removed_by_reload_join_and_leave_the_cluster() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start(binary);
    let mut config = base_config();
    config["server"]["adminKey"] =
        json!({"source": "raw", "key": OPS_SECRET, "algorithms": ["HS256"]});
    let nodes: Vec<Node> = ["node-a", "node-b"]
        .iter()
        .map(|name| Node::start_with(name, &nats, config.clone()))
        .collect();
    for node in &nodes {
        until("the nodes are connected", || {
            node.metric("ringcast_bus_connected") == 1
        });
    }
    // Both nodes get a new app by reload; it works across them like any other.
    let late = "late-app";
    let mut with_late = config.clone();
    with_late["apps"]
        .as_array_mut()
        .unwrap()
        .push(json!({"appId": late,
        "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]}}));
    for node in &nodes {
        reload(node, &mut with_late.clone());
    }
    let mut on_b = subscriber(&nodes[1], late, "on-b", "news");
    let mut publisher = subscriber(&nodes[0], late, "pub", "elsewhere");
    await_interest(&mut publisher, "news", &mut [&mut on_b]);
    publisher.publish("news", "text", json!("across"), "x1");
    assert_eq!(
        next_on(&mut on_b, "news")["data"]["payload"],
        json!("across")
    );

    // Node B drops the app: its connection is closed with 4000 and its subscriptions
    // leave NATS, so B no longer receives that app's publications.
    let b = &nodes[1];
    let held = b.metric("ringcast_bus_subscriptions");
    reload(b, &mut config.clone());
    assert_eq!(on_b.expect_close().0, 4000);
    until("B unsubscribed the removed app's buckets", || {
        b.metric("ringcast_bus_subscriptions") < held
    });
    until("B no longer receives the removed app's topic", || {
        let before = b.metric("ringcast_bus_publications_received_total")
            + b.metric("ringcast_bus_publications_unwanted_total");
        publisher.publish("news", "text", json!("nobody"), &rand_id());
        publisher.sync();
        // A negative check has no event to wait for: this pause is the room a
        // publication still delivered to B would have to show in its counters.
        std::thread::sleep(Duration::from_millis(100));
        b.metric("ringcast_bus_publications_received_total")
            + b.metric("ringcast_bus_publications_unwanted_total")
            == before
    });
    for node in &nodes {
        let _ = std::fs::remove_file(node.config_path());
    }
}

/// A bare NATS client speaking the text protocol, standing in for anyone who can publish
/// on the cluster's subjects (not a ringcast node).
struct Intruder(std::net::TcpStream);

impl Intruder {
    fn connect(nats: &Nats) -> Intruder {
        let stream = std::net::TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut intruder = Intruder(stream);
        std::io::Write::write_all(&mut intruder.0, b"CONNECT {\"verbose\":false}\r\n").unwrap();
        intruder
    }

    fn publish(&mut self, subject: &str, payload: &[u8]) {
        let head = format!("PUB {subject} {}\r\n", payload.len());
        let mut message = head.into_bytes();
        message.extend_from_slice(payload);
        message.extend_from_slice(b"\r\n");
        std::io::Write::write_all(&mut self.0, &message).unwrap();
    }

    /// PING → PONG: everything published before has reached the NATS server.
    fn flush(&mut self) {
        std::io::Write::write_all(&mut self.0, b"PING\r\n").unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"PONG\r\n") {
            std::io::Read::read_exact(&mut self.0, &mut byte).unwrap();
            seen.push(byte[0]);
        }
    }
}

#[test]
fn forged_bus_input_is_counted_and_dropped_never_reaching_subscribers() {
    use ringcast::cluster::wire::encode_publication;
    use ringcast::protocol::frame::{encode_frame, OpCode};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start(binary);
    let node = Node::start("node-a", &nats);
    until("node connected to NATS", || {
        node.metric("ringcast_bus_connected") == 1
    });
    let mut client = subscriber(&node, APP, "watcher", "chat");
    let mut intruder = Intruder::connect(&nats);
    let frame = |opcode: OpCode, payload: &[u8]| {
        let mut out = Vec::new();
        encode_frame(opcode, payload, &mut out);
        out
    };
    let publication = |plain: &[u8]| encode_publication("intruder", APP, "chat", plain, None);
    let subjects = ringcast::cluster::subjects::Subjects {
        prefix: "test.ringcast".into(),
        node: 9,
    };
    let subject = subjects.publication(APP, "chat");
    let subject = subject.as_str();
    // The node's subscription to the bucket of "chat" is in effect once a well-formed
    // probe from the intruder arrives.
    until("the node's bucket subscription is in effect", || {
        let probe = br#"{"topic":"chat","messageType":"probe","data":{"payload":"probe"}}"#;
        intruder.publish(subject, &publication(&frame(OpCode::Text, probe)));
        intruder.flush();
        receives(&mut client, &json!({"payload": "probe"}))
    });
    // A close frame injected into every subscriber's stream.
    intruder.publish(subject, &publication(&frame(OpCode::Close, b"\x03\xe8bye")));
    // A frame whose length says more than it carries, then a masked one.
    let mut short = frame(OpCode::Text, br#"{"a":1}"#);
    short[1] += 40;
    intruder.publish(subject, &publication(&short));
    let mut masked = frame(OpCode::Text, br#"{"a":1}"#);
    masked[1] |= 0x80;
    intruder.publish(subject, &publication(&masked));
    // JSON nested 1,000 deep (Python subscribers' parsers would choke), and not JSON.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    intruder.publish(subject, &publication(&frame(OpCode::Text, deep.as_bytes())));
    intruder.publish(subject, &publication(&frame(OpCode::Text, b"{nope")));
    // Not even the binary layout; an admin call that is not JSON; one with 51 patterns.
    intruder.publish(subject, b"\x01garbage");
    intruder.publish(&subjects.admin(), b"{\"op\":");
    let patterns: Vec<String> = (0..51).map(|i| format!("chat{i}")).collect();
    let unsubscribe = json!({"op": "unsubscribe", "origin": "intruder", "app": APP,
        "subject": "watcher", "patterns": patterns});
    intruder.publish(&subjects.admin(), unsubscribe.to_string().as_bytes());
    // Last, a well-formed publication: it is delivered, and it is the first frame the
    // subscriber sees — nothing before it got through.
    let good = br#"{"topic":"chat","messageType":"forwarded","data":{"payload":"ok"}}"#;
    intruder.publish(subject, &publication(&frame(OpCode::Text, good)));
    intruder.flush();
    let first = loop {
        let frame = client.next_json();
        if frame["messageType"] != "probe" {
            break frame;
        }
    };
    assert_eq!(first["messageType"], "forwarded", "{first}");
    assert!(
        still_subscribed(&mut client, "chat"),
        "the forged unsubscribe did nothing"
    );
    let invalid = |reason: &str| {
        node.metric(&format!(
            "ringcast_bus_invalid_messages_total{{reason=\"{reason}\"}}"
        ))
    };
    until("every forged message counted", || {
        invalid("bad_frame") == 3
            && invalid("bad_payload") == 2
            && invalid("malformed") == 2
            && invalid("too_large") == 1
    });
}
