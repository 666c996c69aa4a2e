//! Issue 13 §1: a connection id taken from a topic (`priv/<id>`) names a worker only when
//! that worker exists; any other id is simply not delivered, and neither the sender's
//! connection nor any worker suffers for it.

mod common;
use common::*;
use serde_json::json;

#[test]
fn private_ids_naming_no_worker_are_not_delivered_and_harm_no_one() {
    let server = start_server(); // 2 workers
    let token = || token(&format!("u-{}", rand_id()), &[PUBLISH_ALL, READ_ALL]);
    let (mut zero, mut one) = clients_on_both_workers(&server, token);
    zero.subscribe_confirmed("after");
    one.subscribe_confirmed("after");
    // Low bytes: 0xff and 0x40 used to overflow `1 << worker` (a debug-build panic that
    // killed the worker; a wrapped bit in release), 0x3f is the bus bit, 0x02 a worker
    // index beyond the two this server runs.
    for id in [
        "0000000000ff",
        "abcdef000040",
        "00000000003f",
        "123456000002",
    ] {
        for client in [&mut zero, &mut one] {
            client.publish(&format!("priv/{id}"), "probe", json!(id), id);
            // The sender's connection still answers, and in order.
            client.sync();
        }
    }
    // Both workers are alive and still fan out to each other.
    zero.publish("after", "check", json!("from-zero"), "z");
    for client in [&mut zero, &mut one] {
        let frame = client.next_non_ack();
        assert_eq!(frame["data"]["payload"], json!("from-zero"));
    }
    one.publish("after", "check", json!("from-one"), "o");
    for client in [&mut zero, &mut one] {
        let frame = client.next_non_ack();
        assert_eq!(frame["data"]["payload"], json!("from-one"));
    }
}
