//! `ringcast subscribe` and `ringcast publish`, the debug client: the development banner's
//! commands work exactly as printed, subscribe prints every frame as it arrives, publish
//! goes over a WebSocket (acknowledged) or the HTTP API, and refusals or closes from the
//! broker are clear errors that never echo the token.

mod common;

use common::process::*;
use common::*;
use serde_json::{json, Value};
use std::process::Output;

/// The rest of the banner line starting with `label`, split into words (the banner's
/// commands hold no quoted arguments).
fn banner_command(running: &Running, label: &str) -> Vec<String> {
    running.stdout_until(|line| {
        line.strip_prefix(label)
            .map(|rest| rest.split_whitespace().map(str::to_string).collect())
    })
}

/// Runs a printed command line (its first word is the program).
fn run_printed(words: &[String]) -> Output {
    let mut command = std::process::Command::new(&words[0]);
    command
        .args(&words[1..])
        .env_remove("RINGCAST_TOKEN")
        .env_remove("CARGO_PKG_NAME")
        .env_remove("CARGO_MANIFEST_DIR");
    command.output().expect("run the printed command")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn the_development_banner_commands_work_as_printed() {
    let mut broker = Running::spawn(ringcast_command(&["--listen", ANY_PORT, "--workers", "2"]));
    let address = broker.listen_address();
    let subscribe = banner_command(&broker, "subscribe:");
    let publish = banner_command(&broker, "publish:");
    let http_publish = banner_command(&broker, "HTTP publish:");
    broker.stdout_until(|line| line.contains("cargo install websocat").then_some(()));
    broker.wait_healthy(address);
    assert_eq!(
        subscribe[0], BIN,
        "a hint names the binary as it was started"
    );
    assert_eq!(&subscribe[1..2], ["subscribe"]);

    let mut command = std::process::Command::new(&subscribe[0]);
    command.args(&subscribe[1..]).env_remove("RINGCAST_TOKEN");
    let subscriber = Running::spawn(command);
    subscriber.stderr_until(|line| line.starts_with("subscribed to chat").then_some(()));

    let published = run_printed(&publish);
    assert!(published.status.success(), "{}", text(&published.stderr));
    assert!(text(&published.stdout).contains("published to chat (acknowledged)"));
    let frame: Value = subscriber.stdout_until(|line| serde_json::from_str(line).ok());
    assert_eq!(frame["topic"], "chat");
    assert_eq!(frame["data"]["payload"], "hello");

    let published = run_printed(&http_publish);
    assert!(published.status.success(), "{}", text(&published.stderr));
    let frame: Value = subscriber.stdout_until(|line| serde_json::from_str(line).ok());
    assert_eq!(
        frame,
        json!({"topic": "chat", "messageType": "broadcast", "data": "hello"})
    );

    drop(subscriber);
    broker.sigterm();
    assert!(broker.wait_exit().success());
}

fn url(server: &TestServer) -> String {
    format!("ws://{}", server.address)
}

#[test]
fn subscribe_prints_each_frame_and_publish_uses_websocket_or_http() {
    let server = start_server();
    let reader = token("reader", &[READ_ALL]);
    let writer = token("writer", &[PUBLISH_ALL]);
    let subscriber = Running::spawn(ringcast_command(&[
        "subscribe",
        "--url",
        &format!("{}/apps/{APP}?access_token={reader}", url(&server)),
        "--count",
        "3",
        "news",
        "weather",
    ]));
    subscriber.stderr_until(|line| {
        line.starts_with("subscribed to news, weather")
            .then_some(())
    });

    let websocket = ringcast_command(&[
        "publish",
        "--url",
        &url(&server),
        "--app",
        APP,
        "--token",
        &writer,
        "--type",
        "alert",
        "--json",
        "news",
        r#"{"level": 3,  "text":"storm"}"#,
    ])
    .output()
    .unwrap();
    assert!(websocket.status.success(), "{}", text(&websocket.stderr));
    assert_eq!(
        text(&websocket.stdout).trim(),
        "published to news (acknowledged)"
    );

    // The HTTP API, with the admin token from the environment and a bare HOST:PORT.
    let admin = admin_token(&[PUBLISH_ALL]);
    let over_http = ringcast_command(&[
        "publish",
        "--http",
        "--url",
        &server.address.to_string(),
        "--app",
        APP,
        "weather",
        "sunny",
    ])
    .env("RINGCAST_TOKEN", &admin)
    .output()
    .unwrap();
    assert!(over_http.status.success(), "{}", text(&over_http.stderr));
    assert_eq!(
        text(&over_http.stdout).trim(),
        "published to weather (HTTP 200)"
    );
    let compressed = ringcast_command(&[
        "publish",
        "--url",
        &url(&server),
        "--app",
        APP,
        "--token",
        &writer,
        "--compress",
        "news",
        "zipped",
    ])
    .output()
    .unwrap();
    assert!(compressed.status.success(), "{}", text(&compressed.stderr));

    let frames: Vec<Value> = (0..3)
        .map(|_| subscriber.stdout_until(|line| serde_json::from_str(line).ok()))
        .collect();
    assert_eq!(frames[0]["messageType"], "alert");
    // Verbatim: the payload's bytes as given, spacing included.
    assert_eq!(
        frames[0]["data"]["payload"],
        json!({"level": 3, "text": "storm"})
    );
    assert_eq!(
        frames[1],
        json!({"topic": "weather", "messageType": "broadcast", "data": "sunny"})
    );
    assert_eq!(frames[2]["data"]["payload"], "zipped");
    let mut subscriber = subscriber;
    assert!(
        subscriber.wait_exit().success(),
        "--count 3 ends the subscriber"
    );
}

#[test]
fn refusals_and_closes_are_clear_errors_without_the_token() {
    let server = start_server();
    let run = |args: &[&str]| ringcast_command(args).output().unwrap();
    let reader = token("reader", &[READ_ALL]);
    let forged = token("x", &[PUBLISH_ALL]).replace('.', "Q.");
    let url = url(&server);
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "publish", "--url", &url, "--app", APP, "--token", &reader, "news", "hi",
            ],
            "the broker closed the connection: 1008 Publishing to topic is forbidden!",
            &reader,
        ),
        (
            vec![
                "publish", "--url", &url, "--app", APP, "--token", &forged, "news", "hi",
            ],
            "HTTP 401",
            &forged,
        ),
        (
            vec![
                "subscribe",
                "--url",
                &url,
                "--app",
                "no-such-app",
                "--token",
                &reader,
                "x",
            ],
            "HTTP 404",
            &reader,
        ),
        (
            // A client token is not an admin token.
            vec![
                "publish", "--http", "--url", &url, "--app", APP, "--token", &reader, "news", "hi",
            ],
            "HTTP 401",
            &reader,
        ),
        (
            vec!["publish", "--url", &url, "--app", APP, "news", "hi"],
            "token --config FILE --app",
            "",
        ),
        (
            vec![
                "publish", "--url", &url, "--app", APP, "--token", &reader, "--json", "news", "{",
            ],
            "--json: MESSAGE is not JSON",
            &reader,
        ),
    ];
    for (args, expected, secret) in cases {
        let output = run(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if !secret.is_empty() {
            assert!(!stderr.contains(secret), "the token was echoed: {stderr}");
        }
    }
}
