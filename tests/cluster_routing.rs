//! Cluster routing through NATS (issue 15): per-node state bounded by what the node
//! serves, `priv/<id>` routed by the node number in the id, buckets, node number
//! conflicts, NATS's `max_payload`, and a NATS cluster of two servers. Harness:
//! `common::cluster` (which also says what happens without a nats-server).

mod common;

use common::cluster::*;
use common::*;
use ringcast::broker::interest::{bucket_of, BUCKETS};
use serde_json::json;
use std::sync::Mutex;

/// The tests share the machine's two cores: one cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A nats-server and nodes A and B on it, both connected; `None` when skipped.
fn two_nodes() -> Option<(Nats, Node, Node)> {
    let nats = Nats::start(nats_binary()?);
    let (a, b) = two_nodes_on(&nats);
    Some((nats, a, b))
}

/// Nodes A and B on `nats`, both connected.
fn two_nodes_on(nats: &Nats) -> (Node, Node) {
    let a = Node::start("node-a", nats);
    let b = Node::start("node-b", nats);
    for node in [&a, &b] {
        until("connected", || node.metric("ringcast_bus_connected") == 1);
    }
    (a, b)
}

#[test]
fn connections_on_one_node_leave_no_state_and_no_traffic_on_the_others() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start_monitored(binary);
    let (a, b) = two_nodes_on(&nats);
    let mut watcher = subscriber(&b, APP, "watcher", "chat");
    let mut publisher = connect(&a.server, APP, &token("pub", &[PUBLISH_ALL]));
    // Once a probe reached the watcher, B's bus has made every subscription its clients
    // asked for (hints are handled in order): its state is settled.
    await_interest(&mut publisher, "chat", &mut [&mut watcher]);
    let b_subscriptions = b.metric("ringcast_bus_subscriptions");
    // Everything NATS delivered to B, whatever the subject (nats-server's own count).
    let b_traffic = || nats.messages_to("ringcast-node-b");
    let b_before = b_traffic();
    // 150 connections with subjects of their own on A: each has `priv/<id>` and
    // `priv/<subject>`, and nothing of it reaches B.
    let a_before = a.metric("ringcast_bus_subscriptions");
    let clients: Vec<Client> = (0..150)
        .map(|n| connect(&a.server, APP, &token(&format!("user-{n}"), &[READ_ALL])))
        .collect();
    until("A holds the buckets of its connections' topics", || {
        a.metric("ringcast_bus_subscriptions") > a_before
    });
    // A fence from A: A's bus sends in order, so whatever it would have sent B about
    // those connections arrives before it.
    publisher.publish("chat", "text", json!("fence"), "fence");
    assert_eq!(
        next_on(&mut watcher, "chat")["data"]["payload"],
        json!("fence")
    );
    assert_eq!(
        b_traffic() - b_before,
        1,
        "B got the fence, nothing about A's connections"
    );
    assert_eq!(b.metric("ringcast_bus_subscriptions"), b_subscriptions);
    let held = a.metric("ringcast_bus_subscriptions");
    assert!(
        held <= 1 + u64::from(BUCKETS),
        "bounded by the buckets, not the connections: {held}"
    );
    // priv/<id> of a connection on A, published on B: routed by the node number in the id.
    let mut target = clients.into_iter().last().unwrap();
    let private = format!("priv/{}", target.id());
    let marker = rand_id();
    let (status, _) = publish_http(
        &b.server,
        APP,
        json!({"topic": private, "messageType": "direct", "message": marker}),
    );
    assert_eq!(status, 200);
    assert_eq!(next_on(&mut target, &private)["data"], json!(marker));
}

#[test]
fn a_shared_bucket_costs_a_message_never_a_misdelivery() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_nats, a, b)) = two_nodes() else {
        return;
    };
    // Two topics of one bucket: B holds subscribers of the first only.
    let wanted = "room-0".to_string();
    let other = (1..)
        .map(|n| format!("room-{n}"))
        .find(|topic| bucket_of(topic) == bucket_of(&wanted))
        .unwrap();
    let mut on_b = subscriber(&b, APP, "on-b", &wanted);
    let mut publisher = connect(&a.server, APP, &token("pub", &[PUBLISH_ALL]));
    await_interest(&mut publisher, &wanted, &mut [&mut on_b]);
    let unwanted = b.metric("ringcast_bus_publications_unwanted_total");
    publisher.publish(&other, "text", json!("not for b"), "x");
    publisher.publish(&wanted, "text", json!("for b"), "y");
    let frame = next_on(&mut on_b, &wanted);
    assert_eq!(frame["data"]["payload"], json!("for b"), "{frame}");
    assert_eq!(
        b.metric("ringcast_bus_publications_unwanted_total") - unwanted,
        1,
        "the other topic's publication reached B and was dropped there"
    );
}

#[test]
fn two_nodes_with_one_node_number_both_say_so() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start(binary);
    let first = Node::start_numbered("first", 7, &nats.url(), base_config());
    until("connected", || first.metric("ringcast_bus_connected") == 1);
    let second = Node::start_numbered("second", 7, &nats.url(), base_config());
    for node in [&first, &second] {
        until("the conflict is seen on both nodes", || {
            node.metric("ringcast_bus_node_number_conflicts_total") >= 1
        });
    }
    for node in [first, second] {
        let _ = std::fs::remove_file(node.config_path());
    }
}

#[test]
fn a_publication_above_the_nats_max_payload_is_counted_and_delivered_locally() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start(binary);
    // HTTP bodies up to 2 MiB: more than NATS's default 1 MiB max_payload.
    let mut config = base_config();
    config["server"]["maxHttpBodyBytes"] = json!(2 * 1024 * 1024);
    let a = Node::start_with("node-a", &nats, config.clone());
    let b = Node::start_with("node-b", &nats, config);
    for node in [&a, &b] {
        until("connected", || node.metric("ringcast_bus_connected") == 1);
    }
    let mut local = subscriber(&a, APP, "local", "big");
    let mut remote = subscriber(&b, APP, "remote", "big");
    let mut publisher = connect(&a.server, APP, &token("pub", &[PUBLISH_ALL]));
    await_interest(&mut publisher, "big", &mut [&mut local, &mut remote]);
    let large = "x".repeat(1536 * 1024);
    let (status, _) = publish_http(
        &a.server,
        APP,
        json!({"topic": "big", "messageType": "large", "message": large}),
    );
    assert_eq!(status, 200);
    assert_eq!(next_on(&mut local, "big")["messageType"], "large");
    assert_eq!(
        a.metric("ringcast_bus_publications_dropped_total{reason=\"too_large\"}"),
        1
    );
    // B never sees it: the next small one is the first it gets.
    publisher.publish("big", "small", json!("small"), "s");
    assert_eq!(next_on(&mut remote, "big")["messageType"], "small");
    for node in [a, b] {
        let _ = std::fs::remove_file(node.config_path());
    }
}

#[test]
fn nodes_on_two_servers_of_a_nats_cluster_deliver_to_each_other() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(binary) = nats_binary() else { return };
    let (first, second) = Nats::start_pair(binary);
    let a = Node::start("node-a", &first);
    let b = Node::start("node-b", &second);
    for node in [&a, &b] {
        until("connected", || node.metric("ringcast_bus_connected") == 1);
    }
    let mut on_b = subscriber(&b, APP, "on-b", "chat");
    let mut on_a = subscriber(&a, APP, "on-a", "chat");
    let mut publisher = connect(&a.server, APP, &token("pub", &[PUBLISH_ALL]));
    // Subscriptions take effect on the other server once NATS propagated them.
    await_interest(&mut publisher, "chat", &mut [&mut on_a, &mut on_b]);
    for index in 0..50 {
        publisher.publish("chat", "text", json!(index), &format!("m{index}"));
    }
    for client in [&mut on_a, &mut on_b] {
        for index in 0..50 {
            assert_eq!(
                next_on(client, "chat")["data"]["payload"],
                json!(index),
                "in order"
            );
        }
    }
    // Exactly once: after a round trip through B nothing more has arrived.
    let (status, _) = publish_http(
        &b.server,
        APP,
        json!({"topic": "chat", "messageType": "end", "message": "end"}),
    );
    assert_eq!(status, 200);
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(
            next_on(client, "chat")["messageType"],
            "end",
            "no duplicate"
        );
    }
    // A reply to a connection on B, from A, and an admin call for it sent to A.
    let private = format!("priv/{}", on_b.id());
    publisher.publish(&private, "response", json!("direct"), "d");
    assert_eq!(
        next_on(&mut on_b, &private)["data"]["payload"],
        json!("direct")
    );
    let admin = admin_token(&["realtime:admin:manage:connections"]);
    let path = format!("/api/connections/{APP}/{}", on_b.id());
    assert_eq!(http(&a.server, "DELETE", &path, Some(&admin), "").0, 200);
    assert_eq!(on_b.expect_close().0, 4000);
}

#[test]
fn a_connection_topic_reaches_its_owner_and_explicit_subscribers_once_each() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((_nats, a, b)) = two_nodes() else {
        return;
    };
    // The owner on B; one client on B and one on A subscribed to its private topic (a
    // permission allows it): B gets the publication on its own-connections subscription
    // and on the bucket its explicit subscriber holds, and must deliver it once.
    let mut owner = connect(&b.server, APP, &token("owner", &[]));
    let private = format!("priv/{}", owner.id());
    let mut watcher_b = subscriber(&b, APP, "watcher-b", &private);
    let mut watcher_a = subscriber(&a, APP, "watcher-a", &private);
    let mut publisher = connect(&a.server, APP, &token("pub", &[PUBLISH_ALL]));
    await_interest(
        &mut publisher,
        &private,
        &mut [&mut owner, &mut watcher_b, &mut watcher_a],
    );
    for index in 0..20 {
        publisher.publish(&private, "text", json!(index), &format!("p{index}"));
    }
    publisher.publish(&private, "end", json!("end"), "end");
    for client in [&mut owner, &mut watcher_b, &mut watcher_a] {
        for index in 0..20 {
            assert_eq!(
                next_on(client, &private)["data"]["payload"],
                json!(index),
                "in order, once"
            );
        }
        assert_eq!(
            next_on(client, &private)["messageType"],
            "end",
            "no duplicate"
        );
    }
}
