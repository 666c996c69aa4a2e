//! Operations: per-app metrics and refusal reasons, `/stats`, `/dashboard`, the monitoring
//! address filter, and configuration reload (`POST /admin/reload`, `ServerHandle::reload`).

mod common;

use common::*;
use ringcast::auth::{mint, Algorithm};
use serde_json::{json, Value};

const SERVER_ADMIN_SECRET: &str = "server-admin-secret-for-reload";

fn metric(metrics: &str, line_start: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Polls `/metrics` until `line_start` shows `want` (counters written by other workers
/// become visible at their own pace); returns the last text for the failure message.
fn wait_metric(server: &TestServer, line_start: &str, want: u64) -> String {
    wait_for(&format!("{line_start} reaches {want}"), PATIENCE, || {
        let (status, text) = http(server, "GET", "/metrics", None, "");
        assert_eq!(status, 200);
        (metric(&text, line_start) == Some(want)).then_some(text)
    })
}

fn server_admin_token() -> String {
    mint::sign(
        Algorithm::HS256,
        SERVER_ADMIN_SECRET,
        &json!({"sub": "operator", "exp": now() + 600}),
    )
    .unwrap()
}

fn reload_http(server: &TestServer) -> (u16, Value) {
    let (status, body) = http(
        server,
        "POST",
        "/admin/reload",
        Some(&server_admin_token()),
        "",
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn metrics_count_per_app_and_refusals_by_reason() {
    let server = start_server();
    let mut a = connect(&server, APP, &token("a", &[PUBLISH_ALL, READ_ALL]));
    let mut b = connect(&server, APP, &token("b", &[READ_ALL]));
    let _quiet = connect(&server, QUIET_APP, &token("q", &[]));
    a.subscribe_confirmed("news");
    b.subscribe("news");
    b.sync_without_publish();
    a.publish("news", "text", json!("hello"), "m1");
    assert_eq!(b.next_non_ack()["data"]["payload"], "hello");
    assert_eq!(a.next_non_ack()["data"]["payload"], "hello");

    assert_eq!(
        try_connect(&server, "no-such-app", &token("x", &[])).err(),
        Some(404)
    );
    let forged = mint::sign(Algorithm::HS256, "wrong", &json!({"exp": now() + 60})).unwrap();
    assert_eq!(try_connect(&server, APP, &forged).err(), Some(401));
    let no_token = format!(
        "GET /apps/{APP} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(raw_http(&server, no_token.as_bytes()).0, 401);

    let app_label = format!("ringcast_app_connections{{app=\"{APP}\"}}");
    let text = wait_metric(&server, &app_label, 2);
    assert_eq!(
        metric(
            &text,
            &format!("ringcast_app_connections{{app=\"{QUIET_APP}\"}}")
        ),
        Some(1)
    );
    // a: 3 commands (subscribe, sync publish, publish); b: 1 subscribe.
    let messages = format!("ringcast_app_messages_in_total{{app=\"{APP}\"}}");
    assert_eq!(metric(&text, &messages), Some(4), "{text}");
    // The sync marker reached a, "hello" reached both.
    let deliveries = format!("ringcast_app_deliveries_total{{app=\"{APP}\"}}");
    assert_eq!(metric(&text, &deliveries), Some(3), "{text}");
    for (reason, count) in [
        ("unknown_app", 1),
        ("invalid_token", 1),
        ("missing_token", 1),
    ] {
        let line = format!("ringcast_handshakes_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &line), Some(count), "{reason}: {text}");
    }
    assert!(text.contains("ringcast_frames_dropped_total 0"), "{text}");
    assert!(text.contains("ringcast_slow_consumers_total 0"), "{text}");
    assert!(text.contains("ringcast_outbox_high_water"), "{text}");
    assert!(text.contains("ringcast_config_generation 1"), "{text}");
    assert!(text.contains("ringcast_io_driver{driver="), "{text}");

    // A close is counted under its typed reason; the app's gauge follows.
    a.socket.close(None).unwrap();
    while a.socket.read().is_ok() {}
    wait_metric(
        &server,
        "ringcast_closes_total{reason=\"client_closed\"}",
        1,
    );
    wait_metric(&server, &app_label, 1);
}

#[test]
fn stats_and_dashboard_are_served() {
    let server = start_server();
    let mut a = connect(&server, APP, &token("a", &[PUBLISH_ALL, READ_ALL]));
    a.subscribe_confirmed("ticks");
    let (status, body) = http(&server, "GET", "/stats", None, "");
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["workers"], 2);
    assert_eq!(stats["configGeneration"], 1);
    let app = stats["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["id"] == APP)
        .expect("the app is listed");
    assert_eq!(app["connections"], 1);
    assert_eq!(app["messagesIn"], 2, "subscribe + sync publish");
    assert_eq!(app["deliveries"], 1, "the sync marker");
    assert_eq!(stats["closes"]["client_closed"], 0);
    assert!(stats["refused"].get("invalid_token").is_some());

    let (status, page) = http(&server, "GET", "/dashboard", None, "");
    assert_eq!(status, 200);
    assert!(page.contains("<title>ringcast dashboard</title>"), "{page}");
    assert!(page.contains("fetch(\"stats\""), "the page polls /stats");
    assert_eq!(http(&server, "POST", "/stats", None, "").0, 405);
}

#[test]
fn monitoring_endpoints_honour_their_source_filter() {
    let mut config = base_config();
    config["server"]["monitoringSourceAddress"] = json!(["10.0.0.0/8"]);
    let server = start_with(config);
    for path in ["/metrics", "/stats", "/dashboard"] {
        assert_eq!(http(&server, "GET", path, None, "").0, 403, "{path}");
    }
    // Health stays open for load balancers; the broker itself is unaffected.
    assert_eq!(http(&server, "GET", "/health", None, "").0, 200);
    connect(&server, APP, &token("a", &[]));
}

fn reload_config() -> Value {
    let mut config = base_config();
    config["server"]["adminKey"] =
        json!({"source": "raw", "key": SERVER_ADMIN_SECRET, "algorithms": ["HS256"]});
    config
}

fn app_index(config: &Value, id: &str) -> usize {
    config["apps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|app| app["appId"] == id)
        .unwrap()
}

#[test]
fn reload_adds_removes_rotates_keys_and_changes_limits_without_dropping_others() {
    let mut config = reload_config();
    let file = ConfigFile::new(&config);
    let server = start_from_file(&file);

    let mut keeper = connect(&server, APP, &token("keeper", &[PUBLISH_ALL, READ_ALL]));
    keeper.subscribe_confirmed("news");
    let mut listener = connect(&server, APP, &token("listener", &[READ_ALL]));
    listener.subscribe("news");
    listener.sync_without_publish();
    let mut doomed = connect(&server, QUIET_APP, &token("doomed", &[READ_ALL]));
    doomed.sync_without_publish();

    // Next generation: QUIET_APP removed, a new app added, APP's key rotated and its
    // message size limit lowered.
    let rotated = "rotated-secret-after-reload";
    let quiet = app_index(&config, QUIET_APP);
    config["apps"].as_array_mut().unwrap().remove(quiet);
    let app = app_index(&config, APP);
    config["apps"][app]["authKey"] =
        json!({"source": "raw", "key": rotated, "algorithms": ["HS256"]});
    config["apps"][app]["maxMessageBytes"] = json!(512);
    config["apps"]
        .as_array_mut()
        .unwrap()
        .push(json!({"appId": "added-app", "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]}}));
    file.write(&config);

    let (status, answer) = reload_http(&server);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reload"]["added"], json!(["added-app"]));
    assert_eq!(answer["reload"]["removed"], json!([QUIET_APP]));
    assert_eq!(answer["reload"]["generation"], 2);

    // The removed app's connection is closed with 4000.
    let (code, reason) = doomed.expect_close();
    assert_eq!(code, 4000);
    assert_eq!(reason, "App removed from the configuration");
    assert_eq!(
        try_connect(&server, QUIET_APP, &token("late", &[])).err(),
        Some(404)
    );

    // The kept app's connections were not dropped and still deliver.
    keeper.publish("news", "text", json!("after reload"), "r1");
    assert_eq!(listener.next_non_ack()["data"]["payload"], "after reload");

    // Its key rotated: old tokens are refused, new ones accepted.
    assert_eq!(
        try_connect(&server, APP, &token("old-key", &[])).err(),
        Some(401)
    );
    let new_token = mint::sign(
        Algorithm::HS256,
        rotated,
        &json!({"sub": "new-key", "exp": now() + 600}),
    )
    .unwrap();
    connect(&server, APP, &new_token);

    // The added app accepts connections (on every worker: the answer came after all
    // workers confirmed the new generation).
    for _ in 0..4 {
        connect(&server, "added-app", &token("newcomer", &[]));
    }

    // The lowered limit applies to connections opened before the reload: 1009.
    let big = "x".repeat(600);
    keeper.publish("news", "text", json!(big), "big");
    assert_eq!(keeper.expect_close().0, 1009);

    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    assert!(
        metrics.contains("ringcast_config_generation 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringcast_closes_total{reason=\"app_removed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn kept_apps_keep_their_live_state_across_reloads() {
    let mut config = reload_config();
    let limited = app_index(&config, LIMITED_APP);
    config["apps"][limited]["maxConnections"] = json!(2);
    let file = ConfigFile::new(&config);
    let server = start_from_file(&file);
    let _one = connect(&server, LIMITED_APP, &token("one", &[]));
    let _two = connect(&server, LIMITED_APP, &token("two", &[]));
    assert_eq!(
        try_connect(&server, LIMITED_APP, &token("three", &[])).err(),
        Some(429)
    );

    // Raising the limit admits exactly one more: the open connections still count.
    config["apps"][limited]["maxConnections"] = json!(3);
    file.write(&config);
    let (status, answer) = reload_http(&server);
    assert_eq!(status, 200, "{answer}");
    let _three = connect(&server, LIMITED_APP, &token("three", &[]));
    assert_eq!(
        try_connect(&server, LIMITED_APP, &token("four", &[])).err(),
        Some(429)
    );
}

#[test]
fn an_invalid_configuration_is_rejected_and_the_old_one_stays() {
    let mut config = reload_config();
    let file = ConfigFile::new(&config);
    let server = start_from_file(&file);
    let mut client = connect(&server, APP, &token("stays", &[PUBLISH_ALL, READ_ALL]));

    file.write_text("{ this is not json");
    let (status, answer) = reload_http(&server);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("previous one stays"),
        "{answer}"
    );

    // Valid JSON, invalid content (a bad source entry): also rejected, naming the app.
    let app = app_index(&config, APP);
    config["apps"][app]["clientSourceAddress"] = json!(["not-an-address"]);
    file.write(&config);
    let (status, answer) = reload_http(&server);
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains(APP), "{answer}");

    // Nothing changed: the old generation serves old and new connections.
    client.subscribe_confirmed("still-here");
    connect(&server, APP, &token("newcomer", &[]));
    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    assert!(
        metrics.contains("ringcast_config_generation 1"),
        "{metrics}"
    );

    // Server settings that need a restart are reported, not applied.
    let mut config = reload_config();
    config["server"]["pingIntervalSeconds"] = json!(5);
    file.write(&config);
    let outcome = server.handle.as_ref().unwrap().reload().unwrap();
    assert!(
        outcome
            .restart_required
            .contains(&"server.pingIntervalSeconds".to_string()),
        "{:?}",
        outcome.restart_required
    );
}

#[test]
fn the_reload_endpoint_needs_the_server_admin_token() {
    // Without server.adminKey the endpoint is disabled.
    let server = start_server();
    assert_eq!(http(&server, "POST", "/admin/reload", Some("x"), "").0, 403);
    // A server started without a file has nothing to re-read.
    let error = server.handle.as_ref().unwrap().reload().unwrap_err();
    assert!(error.contains("without a configuration file"), "{error}");

    let file = ConfigFile::new(&reload_config());
    let server = start_from_file(&file);
    assert_eq!(http(&server, "POST", "/admin/reload", None, "").0, 401);
    // An app's admin token is not the server's.
    let app_admin = admin_token(&[]);
    assert_eq!(
        http(&server, "POST", "/admin/reload", Some(&app_admin), "").0,
        401
    );
    assert_eq!(
        http(
            &server,
            "GET",
            "/admin/reload",
            Some(&server_admin_token()),
            ""
        )
        .0,
        405
    );
    assert_eq!(reload_http(&server).0, 200);
}
