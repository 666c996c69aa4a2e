//! Issue 16 §0: a worker writes each subscriber once per batch of everything it has ready.
//! Publications posted over HTTP while a large fan-out is held back by
//! `flushIntervalMicros` join the same write per subscriber, instead of one send per
//! subscriber per publication (what every HTTP publish cost before).

mod common;
use common::*;
use serde_json::json;

#[test]
fn http_publications_to_a_large_audience_share_one_write_per_subscriber() {
    let mut config = base_config();
    config["server"]["workers"] = json!(1);
    // The longest hold there is, so that the publications below surely land in it.
    config["server"]["flushIntervalMicros"] = json!(100_000);
    let server = start_with(config);
    let subscribers: Vec<Client> = (0..100)
        .map(|i| {
            let mut client = connect(&server, APP, &token(&format!("s{i}"), &[READ_ALL]));
            client.subscribe("news");
            client.sync_without_publish();
            client
        })
        .collect();
    let writes_before = metric(&server, "ringcast_writes_total");
    let deliveries_before = metric(&server, "ringcast_deliveries_total");
    for n in 0..20 {
        let (status, body) = publish_http(&server, APP, json!({"topic": "news", "message": n}));
        assert_eq!(status, 200, "{body}");
    }
    for mut client in subscribers {
        for n in 0..20 {
            assert_eq!(
                client.next_non_ack()["data"],
                json!(n),
                "in order, none lost"
            );
        }
    }
    let writes = metric(&server, "ringcast_writes_total") - writes_before;
    let deliveries = metric(&server, "ringcast_deliveries_total") - deliveries_before;
    assert_eq!(deliveries, 2000);
    // One write per delivery before; now each subscriber gets a few writes in all.
    assert!(
        writes <= deliveries / 4,
        "{writes} writes for {deliveries} deliveries"
    );
}

#[test]
fn holding_writes_back_never_pushes_a_subscriber_over_its_pending_limit() {
    let mut config = base_config();
    config["server"]["workers"] = json!(1);
    config["server"]["flushIntervalMicros"] = json!(100_000);
    config["server"]["maxPendingBytes"] = json!(262_144);
    let server = start_with(config);
    let mut subscribers: Vec<Client> = (0..80)
        .map(|i| {
            let mut client = connect(&server, APP, &token(&format!("s{i}"), &[READ_ALL]));
            client.subscribe("burst");
            client.sync_without_publish();
            client
        })
        .collect();
    let mut publisher = connect(&server, APP, &token("p", &[PUBLISH_ALL]));
    // ~500 KB for every subscriber, far past its 256 KiB limit if it all waited out a hold.
    let filler = "x".repeat(1000);
    for n in 0..500 {
        publisher.publish("burst", "b", json!([n, filler]), &n.to_string());
    }
    for client in subscribers.iter_mut() {
        for n in 0..500 {
            let frame = client.next_non_ack();
            assert_eq!(
                frame["data"]["payload"][0],
                json!(n),
                "no 4008 close, none lost"
            );
        }
    }
    assert_eq!(
        metric(&server, "ringcast_closes_total{reason=\"slow_consumer\"}"),
        0
    );
}
