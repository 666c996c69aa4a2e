//! What the command line says, and that it can be followed: a misspelt field gets "did you
//! mean", a missing file "cannot read", `localhost:PORT` is a listen address, a config
//! without apps is valid with a warning, `ringcast token` warns when the private key does
//! not match the configured public key, and the "Next:" lines of `ringcast init` run as
//! printed — naming the binary as it was started, or `cargo run` under cargo.

mod common;

use common::process::*;
use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Output;

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(hint: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ringcast-messages-{hint}-{}", rand_id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    ringcast_command(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn hs_app(id: &str) -> serde_json::Value {
    json!({"appId": id, "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]}})
}

#[test]
fn a_misspelt_field_gets_a_suggestion_and_the_position_once() {
    let dir = TempDir::new("typo");
    let server = dir.file(
        "server.json",
        r#"{"server": {"maxConection": 3}, "apps": []}"#,
    );
    let output = run(&["check-config", &server]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("unknown field `maxConection` — did you mean `maxConnections`?"),
        "{text}"
    );
    assert_eq!(text.matches("line 1 column").count(), 1, "{text}");
    assert!(
        !text.contains("expected one of"),
        "the list is replaced: {text}"
    );
    let mut app = hs_app("a1");
    app["enableWebSocketInboundTopik"] = json!(true);
    let file = dir.file("app.json", &json!({"apps": [app]}).to_string());
    let text = stderr(&run(&["check-config", &file]));
    assert!(
        text.contains("did you mean `enableWebSocketInboundTopic`?"),
        "{text}"
    );
    // Far from every field: the accepted ones are listed instead.
    let file = dir.file("far.json", r#"{"server": {"colour": "blue"}}"#);
    let text = stderr(&run(&["check-config", &file]));
    assert!(
        text.contains("unknown field `colour`, expected one of"),
        "{text}"
    );
    assert!(!text.contains("did you mean"), "{text}");
}

#[test]
fn a_missing_file_cannot_be_read_rather_than_invalid() {
    for args in [
        &["check-config", "missing.json"][..],
        &["--config", "missing.json"][..],
        &["token", "--config", "missing.json", "--app", "a"][..],
    ] {
        let output = run(args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{text}");
        assert!(
            text.contains("cannot read missing.json: "),
            "{args:?}: {text}"
        );
        assert!(!text.contains("invalid configuration"), "{args:?}: {text}");
    }
}

#[test]
fn localhost_listen_is_the_ipv4_loopback() {
    let mut config = base_config();
    config["server"]["listen"] = json!("localhost:0");
    let server = start_with(config);
    assert_eq!(server.address.ip().to_string(), "127.0.0.1");
    let mut client = connect(&server, APP, &token("local", &[PUBLISH_ALL]));
    client.subscribe_confirmed("here");

    let dir = TempDir::new("localhost");
    let file = dir.file(
        "config.json",
        &json!({"server": {"listen": "localhost:8080"}, "apps": [hs_app("a1")]}).to_string(),
    );
    let output = run(&["check-config", &file]);
    assert!(output.status.success(), "{}", stderr(&output));
    let file = dir.file("bad.json", r#"{"server": {"listen": "localhost"}}"#);
    let text = stderr(&run(&["check-config", &file]));
    assert!(text.contains("is not IP:PORT or localhost:PORT"), "{text}");

    // --listen takes it too: the broker answers on 127.0.0.1.
    let config = dir.file("run.json", &json!({"apps": [hs_app("a1")]}).to_string());
    let mut broker = Running::spawn(ringcast_command(&[
        "--config",
        &config,
        "--listen",
        "localhost:0",
    ]));
    let address = broker.listen_address();
    assert_eq!(
        address.ip().to_string(),
        "127.0.0.1",
        "localhost is the IPv4 loopback"
    );
    broker.wait_healthy(address);
    broker.sigterm();
    assert!(broker.wait_exit().success());
}

#[test]
fn a_config_without_apps_is_valid_with_a_warning() {
    let dir = TempDir::new("empty");
    let file = dir.file("empty.json", r#"{"apps": []}"#);
    let output = run(&["check-config", &file]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid (0 apps)"));
    let text = stderr(&output);
    assert!(
        text.contains("warning") && text.contains("no apps"),
        "{text}"
    );
    // A config with apps says nothing.
    let file = dir.file("one.json", &json!({"apps": [hs_app("a1")]}).to_string());
    assert_eq!(stderr(&run(&["check-config", &file])), "");
}

/// `ringcast init --alg ALG --dir DIR` with the environment of `command`; its stdout.
fn init(dir: &TempDir, alg: &str, cargo: bool) -> String {
    let path = dir.0.join("demo");
    let mut command = ringcast_command(&["init", "--alg", alg, "--dir", path.to_str().unwrap()]);
    if cargo {
        command
            .env("CARGO_PKG_NAME", "ringcast")
            .env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"));
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The indented command lines after "Next:".
fn next_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|line| *line != "Next:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(|line| line.trim().to_string())
        .collect()
}

#[test]
fn init_next_lines_run_as_printed() {
    let dir = TempDir::new("next");
    let lines = next_lines(&init(&dir, "ES256", false));
    assert_eq!(lines.len(), 3, "{lines:?}");
    let config = dir.0.join("demo/ringcast.json");
    assert_eq!(
        lines[0],
        format!("{BIN} --config {}", config.display()),
        "the first line starts the broker with the written config"
    );
    for line in &lines[1..] {
        assert!(line.starts_with(&format!("{BIN} token ")), "{line}");
        let output = std::process::Command::new("sh")
            .args(["-c", line])
            .env_remove("CARGO_PKG_NAME")
            .output()
            .unwrap();
        assert!(output.status.success(), "{line}: {}", stderr(&output));
        assert_eq!(
            stderr(&output),
            "",
            "{line}: the token verifies, no warning"
        );
        let token = String::from_utf8(output.stdout).unwrap();
        assert_eq!(token.trim().split('.').count(), 3, "{line}: {token}");
    }

    // Under `cargo run` (cargo's variables set) the hints say `cargo run --`.
    let dir = TempDir::new("next-cargo");
    let lines = next_lines(&init(&dir, "HS256", true));
    assert!(lines[0].starts_with("cargo run -- --config "), "{lines:?}");
    assert!(
        lines[1].starts_with("cargo run -- token --config "),
        "{lines:?}"
    );
}

#[test]
fn token_warns_when_the_private_key_does_not_match_the_configured_public_key() {
    let dir = TempDir::new("mismatch");
    let stdout = init(&dir, "ES256", false);
    let app = stdout
        .split_whitespace()
        .nth(3)
        .expect("ringcast init: app ID …")
        .to_string();
    let demo = dir.0.join("demo");
    let config = demo.join("ringcast.json");
    let wrong = demo.join("admin-private.pem");
    let args = [
        "token",
        "--config",
        config.to_str().unwrap(),
        "--app",
        &app,
        "--key",
        wrong.to_str().unwrap(),
    ];
    let output = run(&args);
    assert!(output.status.success(), "a warning, not a failure");
    let text = stderr(&output);
    assert!(
        text.contains("warning: the broker will refuse this token")
            && text.contains("is not the private key matching")
            && text.contains("authKey"),
        "{text}"
    );
    let token = String::from_utf8(output.stdout).unwrap();
    assert!(
        !text.contains(token.trim()),
        "the token is not in the warning"
    );
    // The matching key: no warning.
    let right = demo.join("auth-private.pem");
    let mut args = args;
    args[6] = right.to_str().unwrap();
    assert_eq!(stderr(&run(&args)), "");
    // An algorithm the key does not allow is named too.
    let hs = dir.file("hs.json", &json!({"apps": [hs_app("a1")]}).to_string());
    let output = run(&["token", "--config", &hs, "--app", "a1", "--alg", "HS512"]);
    assert!(output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("token algorithm is not allowed under app a1's authKey"),
        "{text}"
    );
}
