//! Publications cross workers (ARCHITECTURE.md "A publish, end to end" step 5): a
//! subscriber on worker 1 receives, in order, what a publisher on worker 0 sent.

mod common;
use common::*;
use serde_json::json;

#[test]
fn publications_cross_workers_in_order() {
    let server = start_server();
    let (mut on_zero, mut on_one) = clients_on_both_workers(&server, || token("u", &[PUBLISH_ALL]));
    assert_ne!(on_zero.worker(), on_one.worker());
    on_one.subscribe_confirmed("ordered");
    on_zero.subscribe_confirmed("ordered");
    const COUNT: u64 = 2000;
    let reader = std::thread::spawn(move || {
        let mut next = 0;
        while next < COUNT {
            let frame = on_one.next_non_ack();
            if frame["topic"] == "ordered" {
                assert_eq!(frame["data"]["payload"], json!(next), "out of order");
                next += 1;
            }
        }
        on_one
    });
    for sequence in 0..COUNT {
        on_zero.publish("ordered", "seq", json!(sequence), &format!("s{sequence}"));
    }
    // The publisher (worker 0) receives its own publications too, in order.
    let mut next = 0;
    while next < COUNT {
        let frame = on_zero.next_non_ack();
        assert_eq!(frame["data"]["payload"], json!(next));
        next += 1;
    }
    reader.join().unwrap();
}

#[test]
fn both_directions_and_private_topics_cross_workers() {
    let server = start_server();
    let (mut on_zero, mut on_one) = clients_on_both_workers(&server, || token("u", &[PUBLISH_ALL]));
    let zero_private = format!("priv/{}", on_zero.id());
    let one_private = format!("priv/{}", on_one.id());
    on_one.publish(&zero_private, "response", json!("to zero"), "a");
    assert_eq!(on_zero.next_non_ack()["data"]["payload"], "to zero");
    on_zero.publish(&one_private, "response", json!("to one"), "b");
    assert_eq!(on_one.next_non_ack()["data"]["payload"], "to one");
}

#[test]
fn a_subscription_is_visible_to_other_workers_once_processed() {
    // No propagation race: subscribe (confirmed by a round trip on its own worker), then a
    // publisher on the other worker publishes once — it must arrive.
    let server = start_server();
    for round in 0..20 {
        let (mut on_zero, mut on_one) =
            clients_on_both_workers(&server, || token("u", &[PUBLISH_ALL]));
        let topic = format!("fresh-{round}");
        on_one.subscribe_confirmed(&topic);
        on_zero.publish(&topic, "t", json!(round), "r");
        assert_eq!(on_one.next_non_ack()["data"]["payload"], json!(round));
    }
}
