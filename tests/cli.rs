//! The `ringcast` binary: `check-config`, `token`, running the broker from a config file
//! (port conflicts, SIGTERM), the development mode, and tokens kept out of the logs.

mod common;

use common::process::{listening_address_in, wait_for_log_line, ANY_PORT};
use common::*;
use ringcast::auth::{Verifier, VerifierConfig};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

/// Writes `contents` to a fresh file under the temp dir and returns its path.
fn temp_file(hint: &str, contents: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "ringcast-cli-{}-{nanos}-{}-{hint}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn hs_app(id: &str) -> Value {
    json!({"appId": id, "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]},
           "adminKey": {"source": "raw", "key": ADMIN_SECRET, "algorithms": ["HS256"]}})
}

fn config_file(config: &Value) -> PathBuf {
    temp_file("config.json", &config.to_string())
}

fn ringcast(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ringcast")
}

fn check_config(config: &Value) -> Output {
    let path = config_file(config);
    let output = ringcast(&["check-config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn assert_invalid(output: &Output, mentions: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {text}");
    for needle in mentions {
        assert!(
            text.contains(needle),
            "stderr does not mention {needle:?}: {text}"
        );
    }
}

// ---------------------------------------------------------------- check-config

#[test]
fn check_config_accepts_a_valid_file() {
    let config = json!({
        "server": {"listen": "127.0.0.1:0", "workers": 2},
        "apps": [hs_app("one"), {
            "appId": "two",
            "authKey": {"source": "raw", "key": fixture("rsa_public.pem"), "algorithms": ["RS256", "PS512"]},
            "clientSourceAddress": ["10.0.0.0/8", "!10.1.1.1", "::1"],
        }]
    });
    let output = check_config(&config);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid"));
}

#[test]
fn check_config_refuses_an_unknown_field_and_names_it() {
    let output = check_config(&json!({"server": {"listn": "127.0.0.1:1"}, "apps": []}));
    assert_invalid(&output, &["listn"]);
    let mut app = hs_app("one");
    app["colour"] = json!("blue");
    assert_invalid(&check_config(&json!({"apps": [app]})), &["colour"]);
}

#[test]
fn check_config_refuses_11_source_entries_naming_app_and_field() {
    let mut app = hs_app("crowded-app");
    let entries: Vec<String> = (0..11).map(|i| format!("10.0.0.{i}")).collect();
    app["clientSourceAddress"] = json!(entries);
    assert_invalid(
        &check_config(&json!({"apps": [app]})),
        &["crowded-app", "clientSourceAddress"],
    );
    // Ten entries are fine.
    let mut app = hs_app("crowded-app");
    app["clientSourceAddress"] = json!(entries[..10]);
    assert_eq!(check_config(&json!({"apps": [app]})).status.code(), Some(0));
}

#[test]
fn check_config_refuses_a_bad_cidr_naming_the_entry() {
    for bad in ["10.0.0.0/33", "not-an-address", "!300.1.1.1"] {
        let mut app = hs_app("cidr-app");
        app["adminSourceAddress"] = json!(["192.0.2.0/24", bad]);
        assert_invalid(
            &check_config(&json!({"apps": [app]})),
            &["cidr-app", "adminSourceAddress", bad],
        );
    }
}

#[test]
fn check_config_refuses_an_unparsable_pem_naming_app_and_auth_key() {
    let app = json!({"appId": "pem-app", "authKey": {"source": "raw",
        "key": "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----",
        "algorithms": ["RS256"]}});
    let output = check_config(&json!({"apps": [app]}));
    assert_invalid(&output, &["pem-app", "authKey"]);
    assert!(
        !stderr(&output).contains("not base64 at all"),
        "the key is echoed"
    );
}

#[test]
fn check_config_refuses_an_unknown_algorithm() {
    let app = json!({"appId": "alg-app", "authKey": {"source": "raw", "key": "s", "algorithms": ["XS999"]}});
    assert_invalid(
        &check_config(&json!({"apps": [app]})),
        &["alg-app", "XS999"],
    );
    let none = json!({"appId": "alg-app", "authKey": {"source": "raw", "key": "s", "algorithms": ["none"]}});
    assert_invalid(&check_config(&json!({"apps": [none]})), &["alg-app"]);
}

#[test]
fn check_config_refuses_a_missing_file_and_bad_json() {
    let output = ringcast(&["check-config", "/nonexistent/ringcast/config.json"]);
    assert_invalid(&output, &["/nonexistent/ringcast/config.json"]);
    let path = temp_file("broken.json", "{\"apps\": [");
    let output = ringcast(&["check-config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(2));
}

// ---------------------------------------------------------------- token

fn mint_with_cli(config: &Value, extra: &[&str]) -> String {
    let path = config_file(config);
    let mut args = vec!["token", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = ringcast(&args);
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {stdout:?}");
    token
}

fn verifier(key: &str, algorithms: &[&str]) -> Verifier {
    Verifier::new(&VerifierConfig {
        key: key.to_string(),
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        issuer: Vec::new(),
        audience: Vec::new(),
    })
    .unwrap()
}

fn exp_of(token: &str) -> u64 {
    use base64::Engine as _;
    let claims = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["exp"]
        .as_u64()
        .unwrap()
}

#[test]
fn token_command_mints_an_hs256_token_the_verifier_accepts() {
    let config = json!({"apps": [hs_app("token-app")]});
    let permission = "realtime:publisher:write:topic:chat/*";
    let before = now();
    let token = mint_with_cli(
        &config,
        &[
            "--app",
            "token-app",
            "--sub",
            "alice",
            "--permission",
            permission,
            "--ttl",
            "10m",
        ],
    );
    let claims = verifier(SECRET, &["HS256"])
        .verify(&token, now())
        .expect("valid token");
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    assert_eq!(claims.permissions, [permission]);
    let exp = exp_of(&token);
    assert!(
        exp >= before + 600 && exp <= now() + 600,
        "exp {exp} is not now + 10 min"
    );
    // Not signed with the admin key.
    assert!(verifier(ADMIN_SECRET, &["HS256"])
        .verify(&token, now())
        .is_err());
    // --admin signs with the adminKey.
    let admin = mint_with_cli(&config, &["--app", "token-app", "--admin", "--sub", "ops"]);
    let claims = verifier(ADMIN_SECRET, &["HS256"])
        .verify(&admin, now())
        .expect("admin token");
    assert_eq!(claims.subject.as_deref(), Some("ops"));
    assert_eq!(
        claims.permissions.len(),
        4,
        "no --permission: every permission"
    );
}

#[test]
fn token_command_mints_an_es512_token_with_a_private_key_file() {
    let public = fixture("ec521_public.pem");
    let config = json!({"apps": [{"appId": "es512-app",
        "authKey": {"source": "raw", "key": public, "algorithms": ["ES512"]}}]});
    let permission = "realtime:subscriber:read:topic:secure/*";
    let key = fixture_path("ec521_private.pem");
    let token = mint_with_cli(
        &config,
        &[
            "--app",
            "es512-app",
            "--sub",
            "alice",
            "--permission",
            permission,
            "--ttl",
            "10m",
            "--key",
            &key,
        ],
    );
    let claims = verifier(&public, &["ES512"])
        .verify(&token, now())
        .expect("valid ES512 token");
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    assert_eq!(claims.permissions, [permission]);
}

#[test]
fn token_command_needs_a_private_key_for_public_key_algorithms() {
    let config = json!({"apps": [{"appId": "es512-app",
        "authKey": {"source": "raw", "key": fixture("ec521_public.pem"), "algorithms": ["ES512"]}}]});
    let path = config_file(&config);
    let output = ringcast(&[
        "token",
        "--config",
        path.to_str().unwrap(),
        "--app",
        "es512-app",
    ]);
    assert_invalid(&output, &["--key"]);
    let output = ringcast(&[
        "token",
        "--config",
        path.to_str().unwrap(),
        "--app",
        "no-such-app",
    ]);
    assert_invalid(&output, &["no-such-app"]);
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------- running the broker

/// Kills the child on drop, so that a failing test leaves no broker behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Running {
    fn sigterm(&self) {
        let pid = self.0.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits for the exit (bounded: a failure guard, not a timing assertion).
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_for("ringcast exits", limit, || self.0.try_wait().unwrap())
    }
}

/// Waits until `GET /health` answers 200 on `address`.
fn wait_healthy(address: SocketAddr, child: &mut Running) {
    let probe = TestServer {
        handle: None,
        address,
    };
    wait_until("ringcast is healthy", PATIENCE, || {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("ringcast exited early with {status}");
        }
        TcpStream::connect(address).is_ok() && http(&probe, "GET", "/health", None, "").0 == 200
    });
}

#[test]
fn broker_refuses_a_used_port_stops_on_sigterm_and_never_logs_tokens() {
    let mut config = base_config();
    config["server"]["listen"] = json!(ANY_PORT);
    let path = config_file(&config);
    let log_path = temp_file("stderr.log", "");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut first = Running(
        Command::new(BIN)
            .args(["--config", path.to_str().unwrap()])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let address = listening_address_in(&log_path);
    wait_healthy(address, &mut first);

    // A second broker on the same port refuses to start.
    config["server"]["listen"] = json!(address.to_string());
    let second_path = config_file(&config);
    let mut second = Running(
        Command::new(BIN)
            .args(["--config", second_path.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = second.wait_exit(Duration::from_secs(30));
    let mut second_err = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut second_err).unwrap();
    assert!(!status.success(), "the second broker started: {second_err}");
    assert!(
        second_err.contains("already in use"),
        "stderr: {second_err}"
    );

    // The first is unaffected: a refused and an accepted connection, both with tokens.
    let server = TestServer {
        handle: None,
        address,
    };
    let refused_token = ringcast::auth::mint::sign(
        ringcast::auth::Algorithm::HS256,
        "a-different-secret",
        &json!({"sub": "intruder", "exp": now() + 600}),
    )
    .unwrap();
    let expired_token = token_with(json!({"sub": "late", "exp": now() - 600}));
    assert_eq!(try_connect(&server, APP, &refused_token).err(), Some(401));
    assert_eq!(try_connect(&server, APP, &expired_token).err(), Some(401));
    let accepted_token = token("visitor", &[PUBLISH_ALL]);
    let mut client = connect(&server, APP, &accepted_token);
    client.subscribe_confirmed("news");
    let admin = admin_token(&[PUBLISH_ALL]);
    let body = json!({"topic": "news", "message": "hello"}).to_string();
    let path_publish = format!("/api/topics/{APP}/publish");
    assert_eq!(
        http(&server, "POST", &path_publish, Some(&admin), &body).0,
        200
    );
    assert_eq!(client.next_non_ack()["data"], "hello");

    // SIGTERM: connections are closed with 1001 and the process exits 0.
    first.sigterm();
    assert_eq!(client.expect_close().0, 1001);
    let status = first.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status {status}");

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&second_path);
    assert!(
        logs.contains("listening"),
        "stderr was not captured: {logs}"
    );
    for (what, secret) in [
        ("refused token", &refused_token),
        ("expired token", &expired_token),
        ("accepted token", &accepted_token),
        ("admin token", &admin),
    ] {
        assert!(
            !logs.contains(secret.as_str()),
            "the {what} appears in the logs"
        );
        // Not even its signature part.
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "the {what}'s signature appears in the logs"
        );
    }
}

#[test]
fn development_mode_prints_working_tokens() {
    let log_path = temp_file("development.log", "");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Running(
        Command::new(BIN)
            .args(["--listen", ANY_PORT, "--workers", "2"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let address = listening_address_in(&log_path);
    let _ = std::fs::remove_file(&log_path);
    let stdout = child.0.stdout.take().unwrap();
    let (lines, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut app_id = None;
    let mut client_token = None;
    let mut admin = None;
    while admin.is_none() {
        let line = receive
            .recv_timeout(Duration::from_secs(30))
            .expect("the development banner");
        let value = |prefix: &str| {
            line.trim()
                .strip_prefix(prefix)
                .map(|v| v.trim().to_string())
        };
        if let Some(value) = value("app id:") {
            app_id = Some(value);
        } else if let Some(value) = value("client token:") {
            client_token = Some(value);
        } else if let Some(value) = value("admin token:") {
            admin = Some(value);
        }
    }
    let app_id = app_id.expect("app id line");
    let client_token = client_token.expect("client token line");
    let admin = admin.unwrap();
    wait_healthy(address, &mut child);

    let server = TestServer {
        handle: None,
        address,
    };
    let mut client = connect(&server, &app_id, &client_token);
    assert_eq!(client.welcome["messageType"], "welcome");
    assert_eq!(client.welcome["data"]["connection"]["appId"], json!(app_id));
    client.subscribe_confirmed("chat");
    // The admin token works with the HTTP API.
    let body = json!({"topic": "chat", "messageType": "text", "message": "hello"}).to_string();
    let path = format!("/api/topics/{app_id}/publish");
    assert_eq!(http(&server, "POST", &path, Some(&admin), &body).0, 200);
    let frame = client.next_non_ack();
    assert_eq!(frame["data"], "hello");

    child.sigterm();
    let status = child.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn sighup_reloads_and_json_logs_name_each_close_reason_without_secrets() {
    let mut config = base_config();
    config["server"]["listen"] = json!(ANY_PORT);
    config["server"]["adminKey"] =
        json!({"source": "raw", "key": "ops-secret", "algorithms": ["HS256"]});
    let path = config_file(&config);
    let log_path = temp_file("json.log", "");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Running(
        Command::new(BIN)
            .args(["--config", path.to_str().unwrap(), "--log-format", "json"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let mut child = child;
    let address = listening_address_in(&log_path);
    wait_healthy(address, &mut child);
    let server = TestServer {
        handle: None,
        address,
    };

    // A client closes normally; another is cut by a protocol violation.
    let client_token = token("closer", &[]);
    let client = connect(&server, APP, &client_token);
    let id = client.id();
    client.close();
    let mut bad = connect(&server, APP, &token("bad", &[]));
    bad.send_text("not json");
    assert_eq!(bad.expect_close().0, 1007);

    // SIGHUP re-reads the file: a new app appears.
    let added = "added-by-sighup";
    config["apps"]
        .as_array_mut()
        .unwrap()
        .push(json!({"appId": added, "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]}}));
    std::fs::write(&path, config.to_string()).unwrap();
    assert_eq!(
        try_connect(&server, added, &token("x", &[])).err(),
        Some(404)
    );
    let pid = child.0.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for_log_line(&log_path, |line| line.contains("configuration reloaded"));
    connect(&server, added, &token("newcomer", &[]));

    // The same through HTTP, with a token minted by `ringcast token --server-admin`.
    let minted = ringcast(&[
        "token",
        "--config",
        path.to_str().unwrap(),
        "--server-admin",
    ]);
    assert!(minted.status.success(), "{}", stderr(&minted));
    let ops_token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    let (status, body) = http(&server, "POST", "/admin/reload", Some(&ops_token), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"generation\":3"), "{body}");

    // An invalid file is rejected; the process keeps serving.
    std::fs::write(&path, "{").unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for_log_line(&log_path, |line| line.contains("reload rejected"));
    connect(&server, added, &token("still", &[]));

    child.sigterm();
    child.wait_exit(Duration::from_secs(30));
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&path);
    // Every line is one JSON object.
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let close_of = |connection: &str| {
        lines
            .iter()
            .find(|line| line["message"] == "connection closed" && line["connection"] == connection)
            .cloned()
    };
    let closed = close_of(&id).unwrap_or_else(|| panic!("no close line for {id}:\n{logs}"));
    assert_eq!(closed["reason"], "client_closed");
    assert_eq!(closed["level"], "INFO");
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "connection closed" && line["reason"] == "invalid_json"),
        "{logs}"
    );
    let signature = client_token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a token reached the logs");
}
