//! `/dashboard` in a real browser: headless Chromium loads the page from the broker, the
//! page polls `/stats`, and both the rendered DOM and an OCR reading of a screenshot show
//! the broker's numbers.
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
use std::time::Duration;

/// Distinctive numbers, so that OCR cannot find them by accident.
const CLIENTS: usize = 13;
const PUBLICATIONS: usize = 37;

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
    let deliveries = (CLIENTS * PUBLICATIONS).to_string();
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
        dom.contains(&format!("<td>{APP}</td>")),
        "the app row:\n{dom}"
    );
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
    std::thread::sleep(Duration::from_millis(10));
}
