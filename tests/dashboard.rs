//! `/dashboard` in a real browser: headless Chromium loads the page from the broker, the
//! page polls `/stats`, and both the rendered DOM and an OCR reading of a screenshot show
//! the broker's numbers: connections, messages in (HTTP publications included), deliveries,
//! bytes out, app names beside ids, refused handshakes by reason, and the rolling history
//! chart the page keeps.
//!
//! Needs `chromium` (Debian package) and `tesseract` (package `tesseract-ocr`), which
//! `scripts/test.sh` installs. Where they are absent the test reports itself skipped
//! (`common::skip`, summarised by `scripts/test.sh`) and passes, unless `CI` is set, where
//! it fails.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Distinctive numbers, so that OCR cannot find them by accident.
const CLIENTS: usize = 13;
const PUBLICATIONS: usize = 37;
const BAD_TOKENS: usize = 3;
const UNKNOWN_APPS: usize = 2;

/// The value of attribute `name` on the element with `id` in a dumped DOM.
fn attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    let element = &dom[dom.find(&format!("id=\"{id}\""))?..];
    let element = &element[..element.find('>')?];
    let value = &element[element.find(&format!("{name}=\""))? + name.len() + 2..];
    Some(value[..value.find('"')?].to_string())
}

fn tool(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().find_map(|name| {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
        (found.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    })
}

fn chromium(browser: &Path, profile: &Path, extra: &[String], url: &str) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
            // Let the page poll /stats a few times before the DOM or picture is taken.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn dashboard_shows_live_numbers_in_headless_chromium() {
    let (Some(browser), Some(ocr)) = (
        tool(&["chromium", "chromium-browser", "google-chrome"]),
        tool(&["tesseract"]),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and tesseract are required in CI (scripts/test.sh installs them)"
        );
        skip(
            "dashboard::dashboard_shows_live_numbers_in_headless_chromium",
            "chromium or tesseract not installed (scripts/install-system.sh installs them)",
        );
        return;
    };
    let server = start_server();
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| connect(&server, APP, &token(&format!("viewer-{i}"), &[READ_ALL])))
        .collect();
    for client in &mut clients {
        client.subscribe("ticks");
        client.sync_without_publish();
    }
    for n in 0..PUBLICATIONS {
        let (status, _) = publish_http(&server, APP, json!({"topic": "ticks", "message": n}));
        assert_eq!(status, 200);
    }
    for client in &mut clients {
        for _ in 0..PUBLICATIONS {
            client.next_non_ack();
        }
    }
    // Refused handshakes, by two reasons (the tokens never show anywhere).
    let forged = token("intruder", &[]).replace('.', "x.");
    for _ in 0..BAD_TOKENS {
        assert_eq!(try_connect(&server, APP, &forged).err(), Some(401));
    }
    for _ in 0..UNKNOWN_APPS {
        assert_eq!(
            try_connect(&server, "no-such-app", &token("x", &[])).err(),
            Some(404)
        );
    }
    let deliveries = (CLIENTS * PUBLICATIONS).to_string();
    // Every client sent one command (its subscribe); every publication came over HTTP.
    let messages_in = (CLIENTS + PUBLICATIONS).to_string();
    let url = format!("http://{}/dashboard", server.address);
    let work = std::env::temp_dir().join(format!("ringcast-dashboard-{}", rand_id()));
    std::fs::create_dir_all(&work).unwrap();

    // The DOM after the page's script ran against the live /stats.
    let dom = chromium(
        &browser,
        &work.join("profile-dom"),
        &["--dump-dom".into()],
        &url,
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.contains(&format!("id=\"connections\">{CLIENTS}<")),
        "connections not shown:\n{dom}"
    );
    assert!(
        dom.contains(&format!("id=\"deliveries\">{deliveries}<")),
        "deliveries not shown:\n{dom}"
    );
    assert!(
        dom.contains(&format!("<td>main test app</td><td>{APP}</td>")),
        "the app row, its name beside its id:\n{dom}"
    );
    assert!(
        dom.contains(&format!("id=\"messages-in\">{messages_in}<")),
        "messages in (HTTP publications included) not shown:\n{dom}"
    );
    assert!(
        dom.contains(&format!("id=\"http-publications\">{PUBLICATIONS}<")),
        "HTTP publications not shown:\n{dom}"
    );
    for (reason, count) in [("invalid_token", BAD_TOKENS), ("unknown_app", UNKNOWN_APPS)] {
        assert!(
            dom.contains(&format!(
                "<tr data-key=\"{reason}\"><td>{reason}</td><td>{count}</td></tr>"
            )),
            "refused handshakes ({reason}) not shown:\n{dom}"
        );
    }
    assert!(
        dom.contains(&format!(
            "id=\"refused-total\">{}<",
            BAD_TOKENS + UNKNOWN_APPS
        )),
        "{dom}"
    );
    assert!(!dom.contains(&forged), "a token reached the page");
    let bytes_out: u64 = attribute(&dom, "bytes-out", "data-bytes")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("bytes out not shown:\n{dom}"));
    assert!(bytes_out > 0, "{dom}");
    // The history: one sample per poll after the first, drawn as two lines.
    let samples: usize = attribute(&dom, "history", "data-samples")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert!(samples >= 2, "the history kept {samples} samples:\n{dom}");
    for line in ["history-messages", "history-deliveries"] {
        let points = attribute(&dom, line, "points").unwrap_or_default();
        assert_eq!(
            points.split_whitespace().count(),
            samples,
            "{line} is not drawn:\n{dom}"
        );
    }
    assert!(!dom.contains("id=\"status\" class=\"error\""), "{dom}");

    // The picture a person would see, read back with OCR.
    let shot = work.join("dashboard.png");
    let output = chromium(
        &browser,
        &work.join("profile-shot"),
        &[format!("--screenshot={}", shot.display())],
        &url,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = Command::new(ocr)
        .arg(&shot)
        .arg("stdout")
        .output()
        .expect("run tesseract");
    let text = String::from_utf8_lossy(&read.stdout).to_string();
    for (what, number) in [
        ("connections", CLIENTS.to_string()),
        ("messages in", messages_in),
        ("deliveries", deliveries),
    ] {
        assert!(
            text.split(|c: char| !c.is_ascii_digit())
                .any(|word| word == number),
            "the screenshot does not show {what} = {number}; OCR read:\n{text}"
        );
    }
    // Keep the screenshot for people when asked (CI artifacts), else clean up.
    if let Some(dir) = std::env::var_os("RINGCAST_KEEP_SCREENSHOTS") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("dashboard.png"));
    }
    let _ = std::fs::remove_dir_all(&work);
    drop(clients);
}

/// Without a browser: HTTP publications have their own counter in `/metrics` (total and per
/// app) and count as messages in on `/stats`, where apps carry their names.
#[test]
fn http_publications_are_counted_in_metrics_and_stats() {
    let server = start_server();
    let mut client = connect(&server, APP, &token("reader", &[READ_ALL]));
    client.subscribe("ticks");
    client.sync_without_publish();
    for n in 0..PUBLICATIONS {
        let (status, _) = publish_http(&server, APP, json!({"topic": "ticks", "message": n}));
        assert_eq!(status, 200);
    }
    // A refused publication (a body without a topic) is not counted.
    assert_eq!(publish_http(&server, APP, json!({"message": 1})).0, 400);
    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    assert!(
        metrics.contains(&format!("ringcast_http_publications_total {PUBLICATIONS}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "ringcast_app_http_publications_total{{app=\"{APP}\"}} {PUBLICATIONS}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringcast_messages_in_total 1"),
        "{metrics}"
    );
    let (_, body) = http(&server, "GET", "/stats", None, "");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["httpPublications"], PUBLICATIONS);
    assert_eq!(
        stats["messagesIn"],
        PUBLICATIONS + 1,
        "the subscribe and the publications"
    );
    let app = &stats["apps"][0];
    assert_eq!(app["id"], APP);
    assert_eq!(app["name"], "main test app");
    assert_eq!(app["messagesIn"], PUBLICATIONS + 1);
}
