//! Issue 5 §8: hundreds of connections opened and killed mid-handshake and mid-frame while
//! publishers run; every surviving subscriber still receives every message in order, and
//! the broker ends up holding exactly the surviving connections.

mod common;
use common::*;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// One abrupt client. `kind` picks how it dies.
fn misbehave(server: &TestServer, kind: usize, index: usize) {
    match kind % 4 {
        // Half an HTTP request head, then gone.
        0 => {
            let mut stream = TcpStream::connect(server.address).unwrap();
            let _ = stream
                .write_all(format!("GET /apps/{APP}?access_token=abc HTTP/1.1\r\nHo").as_bytes());
        }
        // Upgraded, then half a frame (header promises 100 bytes, 10 arrive), then gone.
        1 => {
            let mut client = connect_raw(server, APP, &token(&format!("chaos-{index}"), &[]), None);
            let _ = client.stream.write_all(&[
                0x81,
                0x80 | 100,
                1,
                2,
                3,
                4,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
            ]);
        }
        // Upgraded and subscribed to the busy topic, then reset (RST, no close handshake).
        2 => {
            let mut client = connect_raw(server, APP, &token(&format!("chaos-{index}"), &[]), None);
            client.send_text(r#"{"type":"subscribe","data":{"topic":"steady"}}"#);
            let socket = socket2::Socket::from(client.stream);
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
        // Upgraded, subscribed, then a truncated JSON command (closed 1007) and gone.
        _ => {
            let mut client = connect_raw(
                server,
                APP,
                &token(&format!("chaos-{index}"), &[PUBLISH_ALL]),
                None,
            );
            client.send_text(r#"{"type":"subscribe","data":{"topic":"steady"}}"#);
            client.send_frame(0x1, b"{\"type\":\"publish\",");
        }
    }
}

fn open_connections(server: &TestServer) -> u64 {
    let (_, metrics) = http(server, "GET", "/metrics", None, "");
    metrics
        .lines()
        .filter(|line| line.starts_with("ringcast_connections{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn survivors_receive_everything_in_order_through_connection_chaos() {
    let server = start_server();
    let mut survivors: Vec<Client> = (0..4)
        .map(|index| {
            let mut client = connect(
                &server,
                APP,
                &token(&format!("survivor-{index}"), &[PUBLISH_ALL]),
            );
            client.subscribe_confirmed("steady");
            client
        })
        .collect();
    let mut publisher = connect(&server, APP, &token("publisher", &[PUBLISH_ALL]));
    const COUNT: usize = 3000;
    let address = server.address;
    let chaos: Vec<_> = (0..2)
        .map(|thread| {
            std::thread::spawn(move || {
                let server = TestServer {
                    handle: None,
                    address,
                };
                for index in 0..200 {
                    misbehave(&server, index, thread * 1000 + index);
                }
            })
        })
        .collect();
    let publishing = std::thread::spawn(move || {
        for sequence in 0..COUNT {
            publisher.publish("steady", "seq", json!(sequence), &format!("s{sequence}"));
        }
        publisher
    });
    let readers: Vec<_> = survivors
        .drain(..)
        .map(|mut client| {
            std::thread::spawn(move || {
                let mut next = 0;
                while next < COUNT {
                    let frame = client.next_non_ack();
                    if frame["topic"] == "steady" && frame["messageType"] == "seq" {
                        assert_eq!(frame["data"]["payload"], json!(next), "missed or reordered");
                        next += 1;
                    }
                }
                client
            })
        })
        .collect();
    for thread in chaos {
        thread.join().unwrap();
    }
    let mut publisher = publishing.join().unwrap();
    let survivors: Vec<Client> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    publisher.sync();
    // Every chaos connection is released (half frames and half heads time out or end with
    // their sockets); only the 4 survivors and the publisher remain.
    wait_until("only 5 connections are open", PATIENCE, || {
        open_connections(&server) == 5
    });
    drop(survivors);
}
