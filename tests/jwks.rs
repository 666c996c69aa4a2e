//! Issue 7 §2: `"source": "jwks"` keys, against a local JWKS server in the test that
//! rotates its keys mid-test. Every key type (RSA RS256/PS256, EC ES256/384/512, OKP
//! EdDSA); keys picked by `kid`; a new `kid` is accepted after the refetch it triggers;
//! unknown-`kid` refetches are rate-limited (observed through the JWKS server's request
//! counter, never through timing); `Cache-Control: max-age` expiry refetches; a failing
//! endpoint keeps the previous keys; `check-config` does not fetch; credentials in a JWKS
//! URL are sent but never shown (logs, `/metrics`).
//!
//! The JWKs are built here with the key crates themselves (`rsa`, `p256`, `p384`, `p521`,
//! `ed25519-dalek`), independently of the broker's JWK parser.

mod common;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::jwks_server::JwksServer;
use common::process::{listening_address_in, wait_for_log_line};
use common::*;
use ringcast::auth::{mint, Algorithm};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
const JWKS_APP: &str = "jwks-app";
const OTHER_JWKS_APP: &str = "jwks-other-app";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The fixture private key (`<stem>_private.pem` or `<stem>_other_private.pem`) for
/// `algorithm`, and its public half as a JWK with `kid`.
fn key_pair(algorithm: Algorithm, other: bool, kid: &str) -> (String, Value) {
    use p256::pkcs8::DecodePrivateKey as _;
    let stem = match algorithm {
        Algorithm::ES256 => "ec256",
        Algorithm::ES384 => "ec384",
        Algorithm::ES512 => "ec521",
        Algorithm::EdDSA => "ed25519",
        _ => "rsa",
    };
    let private = fixture(&format!(
        "{stem}{}_private.pem",
        if other { "_other" } else { "" }
    ));
    let ec = |point: &[u8], crv: &str| {
        assert_eq!(point[0], 4, "uncompressed point");
        let half = (point.len() - 1) / 2;
        json!({"kty": "EC", "crv": crv, "kid": kid, "use": "sig",
               "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
    };
    let jwk = match algorithm {
        Algorithm::ES256 => ec(
            &p256::SecretKey::from_pkcs8_pem(&private)
                .unwrap()
                .public_key()
                .to_sec1_bytes(),
            "P-256",
        ),
        Algorithm::ES384 => ec(
            &p384::SecretKey::from_pkcs8_pem(&private)
                .unwrap()
                .public_key()
                .to_sec1_bytes(),
            "P-384",
        ),
        Algorithm::ES512 => ec(
            &p521::SecretKey::from_pkcs8_pem(&private)
                .unwrap()
                .public_key()
                .to_sec1_bytes(),
            "P-521",
        ),
        Algorithm::EdDSA => {
            let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&private).unwrap();
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                   "x": b64(signing.verifying_key().as_bytes())})
        }
        _ => {
            use rsa::traits::PublicKeyParts as _;
            let public = rsa::PrivateKey::from_pkcs8_pem(&private)
                .unwrap()
                .to_public_key();
            json!({"kty": "RSA", "kid": kid, "n": b64(&public.n_bytes()), "e": b64(&public.e_bytes())})
        }
    };
    (private, jwk)
}

fn signed(algorithm: Algorithm, private: &str, kid: &str, subject: &str) -> String {
    let claims = json!({"sub": subject, "exp": now() + 600, "permissions": [PUBLISH_ALL]});
    mint::sign_with_key_id(algorithm, private, &claims, Some(kid)).unwrap()
}

fn jwks_app(app_id: &str, url: &str, algorithms: &[&str]) -> Value {
    json!({"appId": app_id,
           "authKey": {"source": "jwks", "key": url, "algorithms": algorithms}})
}

fn server_with(apps: Vec<Value>) -> TestServer {
    let mut config = base_config();
    for app in apps {
        config["apps"].as_array_mut().unwrap().push(app);
    }
    start_with(config)
}

#[test]
fn every_key_type_verifies_through_the_jwks() {
    let jwks = JwksServer::start();
    let kinds = [
        (Algorithm::RS256, "rsa"),
        (Algorithm::PS256, "rsa"),
        (Algorithm::ES256, "p256"),
        (Algorithm::ES384, "p384"),
        (Algorithm::ES512, "p521"),
        (Algorithm::EdDSA, "ed25519"),
    ];
    let mut keys = Vec::new();
    let mut privates = HashMap::new();
    for (algorithm, kid) in kinds {
        let (private, jwk) = key_pair(algorithm, false, kid);
        if !privates.contains_key(kid) {
            keys.push(jwk);
        }
        privates.insert(kid, private);
    }
    jwks.set("/keys", 200, &keys, "max-age=300");
    let server = server_with(vec![jwks_app(
        JWKS_APP,
        &jwks.url("/keys"),
        &["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"],
    )]);
    for (algorithm, kid) in kinds {
        let token = signed(algorithm, &privates[kid], kid, "jwks-user");
        let mut client = connect(&server, JWKS_APP, &token);
        client.sync();
        // The same kid and algorithm, signed by another key: refused.
        let (other, _) = key_pair(algorithm, true, kid);
        let forged = signed(algorithm, &other, kid, "jwks-user");
        assert_eq!(
            try_connect(&server, JWKS_APP, &forged).err(),
            Some(401),
            "{algorithm} forged"
        );
    }
    // A kid of one family used with another family's algorithm is refused.
    let confused = signed(Algorithm::ES256, &privates["p256"], "rsa", "x");
    assert_eq!(try_connect(&server, JWKS_APP, &confused).err(), Some(401));
    assert_eq!(jwks.count("/keys"), 1, "one fetch served everything");
}

#[test]
fn rotated_keys_are_picked_up_and_unknown_kid_refetches_are_rate_limited() {
    let jwks = JwksServer::start();
    let (first_private, first) = key_pair(Algorithm::ES256, false, "first");
    let (second_private, second) = key_pair(Algorithm::ES256, true, "second");
    jwks.set("/a", 200, std::slice::from_ref(&first), "max-age=300");
    jwks.set("/b", 200, std::slice::from_ref(&first), "max-age=300");
    let server = server_with(vec![
        jwks_app(JWKS_APP, &jwks.url("/a"), &["ES256"]),
        jwks_app(OTHER_JWKS_APP, &jwks.url("/b"), &["ES256"]),
    ]);
    jwks.wait_for_count("/a", 1);
    let first_token = signed(Algorithm::ES256, &first_private, "first", "u1");
    connect(&server, JWKS_APP, &first_token).close();

    // Rotation upstream: "first" removed, "second" added.
    jwks.set("/a", 200, std::slice::from_ref(&second), "max-age=300");
    let second_token = signed(Algorithm::ES256, &second_private, "second", "u2");
    // The cached set does not know "second" yet: refused, and a refetch is triggered.
    assert_eq!(
        try_connect(&server, JWKS_APP, &second_token).err(),
        Some(401)
    );
    // Retried until the refetch is in (every retry is another unknown-kid ring).
    let client = wait_for(
        "the rotated key is fetched",
        PATIENCE,
        || match try_connect(&server, JWKS_APP, &second_token) {
            Ok(client) => Some(client),
            Err(status) => {
                assert_eq!(status, 401);
                None
            }
        },
    );
    client.close();
    assert_eq!(
        jwks.count("/a"),
        2,
        "exactly one refetch for all those retries"
    );

    // The removed key is gone; its kid is unknown now, and so is a made-up one. Both ring
    // inside the 30 s interval, so neither causes a fetch.
    assert_eq!(
        try_connect(&server, JWKS_APP, &first_token).err(),
        Some(401)
    );
    let made_up = signed(Algorithm::ES256, &second_private, "made-up", "u3");
    assert_eq!(try_connect(&server, JWKS_APP, &made_up).err(), Some(401));
    // Rings are handled in order: once the other app's ring (sent after those) has caused
    // its fetch, the rings for /a have been decided.
    jwks.wait_for_count("/b", 1);
    let other_unknown = signed(Algorithm::ES256, &first_private, "not-in-b", "u4");
    assert_eq!(
        try_connect(&server, OTHER_JWKS_APP, &other_unknown).err(),
        Some(401)
    );
    jwks.wait_for_count("/b", 2);
    assert_eq!(
        jwks.count("/a"),
        2,
        "unknown kids within 30 s did not refetch"
    );
    // The current key still works.
    connect(&server, JWKS_APP, &second_token).close();
}

#[test]
fn max_age_expiry_refetches_without_any_unknown_kid() {
    let jwks = JwksServer::start();
    let (first_private, first) = key_pair(Algorithm::EdDSA, false, "ed-1");
    let (second_private, second) = key_pair(Algorithm::EdDSA, true, "ed-2");
    jwks.set("/keys", 200, &[first], "public, max-age=1");
    let server = server_with(vec![jwks_app(JWKS_APP, &jwks.url("/keys"), &["EdDSA"])]);
    connect(
        &server,
        JWKS_APP,
        &signed(Algorithm::EdDSA, &first_private, "ed-1", "a"),
    )
    .close();
    jwks.set("/keys", 200, &[second], "public, max-age=1");
    let rotated_at = jwks.count("/keys");
    // Two more fetches: the first of them surely saw the new set and was installed before
    // the fetcher (one thread, one fetch at a time) sent the second.
    jwks.wait_for_count("/keys", rotated_at + 2);
    connect(
        &server,
        JWKS_APP,
        &signed(Algorithm::EdDSA, &second_private, "ed-2", "b"),
    )
    .close();
    assert_eq!(
        try_connect(
            &server,
            JWKS_APP,
            &signed(Algorithm::EdDSA, &first_private, "ed-1", "c")
        )
        .err(),
        Some(401)
    );
}

#[test]
fn a_failing_endpoint_keeps_the_previous_keys() {
    let jwks = JwksServer::start();
    let (private, jwk) = key_pair(Algorithm::ES384, false, "p384");
    jwks.set("/keys", 200, std::slice::from_ref(&jwk), "max-age=1");
    let server = server_with(vec![jwks_app(JWKS_APP, &jwks.url("/keys"), &["ES384"])]);
    let token = signed(Algorithm::ES384, &private, "p384", "a");
    connect(&server, JWKS_APP, &token).close();
    jwks.set("/keys", 500, &[], "max-age=1");
    let failing_from = jwks.count("/keys");
    jwks.wait_for_count("/keys", failing_from + 2);
    connect(&server, JWKS_APP, &token).close();
    // An empty but valid document does replace the set (keys were really removed).
    jwks.set("/keys", 200, &[], "max-age=1");
    let emptied_from = jwks.count("/keys");
    jwks.wait_for_count("/keys", emptied_from + 2);
    assert_eq!(try_connect(&server, JWKS_APP, &token).err(), Some(401));
    // Fetches are counted per URL, failures included; the emptied set shows 0 keys.
    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    let url = jwks.url("/keys");
    let failed = format!("ringcast_jwks_fetches_total{{url=\"{url}\",result=\"failed\"}} ");
    let failures: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(failed.as_str()))
        .unwrap_or_else(|| panic!("{failed} missing:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(failures >= 2, "{metrics}");
    assert!(
        metrics.contains(&format!("ringcast_jwks_keys{{url=\"{url}\"}} 0")),
        "{metrics}"
    );
}

#[test]
fn check_config_accepts_jwks_without_fetching_and_refuses_hmac() {
    let dir = std::env::temp_dir().join(format!("ringcast-jwks-{}", rand_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    // Port 9 on loopback: nothing listens; a fetch would fail, but none is made.
    let app = jwks_app(
        JWKS_APP,
        "https://127.0.0.1:9/jwks.json",
        &["RS256", "ES512"],
    );
    std::fs::write(&path, json!({"apps": [app]}).to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (bad, expected) in [
        (
            jwks_app(JWKS_APP, "https://127.0.0.1:9/jwks.json", &["HS256"]),
            "HS256 cannot be used with a JWKS source",
        ),
        (
            jwks_app(JWKS_APP, "file:///etc/passwd", &["RS256"]),
            "JWKS URL must start with https://",
        ),
    ] {
        std::fs::write(&path, json!({"apps": [bad]}).to_string()).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains("authKey"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_token_command_puts_the_kid_into_the_header() {
    let jwks = JwksServer::start();
    let (private, jwk) = key_pair(Algorithm::ES512, false, "cli-key");
    jwks.set("/keys", 200, &[jwk], "max-age=300");
    let dir = std::env::temp_dir().join(format!("ringcast-jwks-{}", rand_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config_path, key_path) = (dir.join("config.json"), dir.join("private.pem"));
    let app = jwks_app(JWKS_APP, &jwks.url("/keys"), &["ES512"]);
    std::fs::write(&config_path, json!({"apps": [app.clone()]}).to_string()).unwrap();
    std::fs::write(&key_path, private).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "token",
            "--config",
            config_path.to_str().unwrap(),
            "--app",
            JWKS_APP,
        ])
        .args(["--key", key_path.to_str().unwrap(), "--kid", "cli-key"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "cli-key");
    assert_eq!(header["alg"], "ES512");
    let server = server_with(vec![app]);
    connect(&server, JWKS_APP, &token).close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_keeps_loaded_key_sets_and_fetches_new_urls() {
    let jwks = JwksServer::start();
    let (private, jwk) = key_pair(Algorithm::ES256, false, "kept");
    // A long max-age: the only fetches are the start-up one and the reload's new URL.
    jwks.set("/kept", 200, std::slice::from_ref(&jwk), "max-age=3600");
    let (other_private, other_jwk) = key_pair(Algorithm::EdDSA, false, "added");
    jwks.set(
        "/added",
        200,
        std::slice::from_ref(&other_jwk),
        "max-age=3600",
    );
    let mut config = base_config();
    config["apps"]
        .as_array_mut()
        .unwrap()
        .push(jwks_app(JWKS_APP, &jwks.url("/kept"), &["ES256"]));
    let file = ConfigFile::new(&config);
    let server = start_from_file(&file);
    let token = signed(Algorithm::ES256, &private, "kept", "a");
    connect(&server, JWKS_APP, &token).close();
    assert_eq!(jwks.count("/kept"), 1);

    config["apps"].as_array_mut().unwrap().push(jwks_app(
        OTHER_JWKS_APP,
        &jwks.url("/added"),
        &["EdDSA"],
    ));
    file.write(&config);
    let outcome = server.handle.as_ref().unwrap().reload().unwrap();
    assert_eq!(outcome.added, vec![OTHER_JWKS_APP.to_string()]);
    // The new URL was fetched before the reload answered; the kept one was not refetched.
    assert_eq!(jwks.count("/added"), 1);
    assert_eq!(jwks.count("/kept"), 1);
    connect(&server, JWKS_APP, &token).close();
    let other = signed(Algorithm::EdDSA, &other_private, "added", "b");
    connect(&server, OTHER_JWKS_APP, &other).close();
}

/// The broker binary, killed on drop (a failing test leaves no process behind).
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn credentials_in_a_jwks_url_are_sent_but_never_shown() {
    const PASSWORD: &str = "pa55word-never-shown";
    const QUERY_SECRET: &str = "query-secret-never-shown";
    let jwks = JwksServer::start();
    let (private, jwk) = key_pair(Algorithm::ES256, false, "with-credentials");
    jwks.set("/keys", 200, &[jwk], "max-age=300");
    let address = jwks.address;
    let url = format!("http://jwks-user:{PASSWORD}@{address}/keys?client_secret={QUERY_SECRET}");
    // Answers 404: the failure is logged with its reason.
    let failing = format!("http://jwks-user:{PASSWORD}@{address}/missing");
    // Not a valid URL (no host; nothing to look up): the client's error must not quote it.
    let malformed = format!("http://jwks-user:{PASSWORD}@/malformed");
    let mut config = base_config();
    for (app, url) in [
        (JWKS_APP, &url),
        (OTHER_JWKS_APP, &failing),
        ("jwks-malformed-app", &malformed),
    ] {
        config["apps"]
            .as_array_mut()
            .unwrap()
            .push(jwks_app(app, url, &["ES256"]));
    }
    let dir = std::env::temp_dir().join(format!("ringcast-jwks-{}", rand_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config_path, log_path) = (dir.join("config.json"), dir.join("stderr.log"));
    std::fs::write(&config_path, config.to_string()).unwrap();
    let _broker = Broker(
        Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["--config", config_path.to_str().unwrap()])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
            .spawn()
            .unwrap(),
    );
    let server = TestServer {
        handle: None,
        address: listening_address_in(&log_path),
    };

    // The fetch used the credentials (ureq sends the userinfo as Basic authentication).
    let token = signed(Algorithm::ES256, &private, "with-credentials", "a");
    connect(&server, JWKS_APP, &token).close();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("jwks-user:{PASSWORD}"));
    assert_eq!(jwks.authorization("/keys"), Some(format!("Basic {basic}")));
    // An unknown kid: a debug line about the refetch, with the URL.
    let unknown = signed(Algorithm::ES256, &private, "unknown-kid", "a");
    assert_eq!(try_connect(&server, JWKS_APP, &unknown).err(), Some(401));
    jwks.wait_for_count("/keys", 2);
    wait_for_log_line(&log_path, |line| line.contains("JWKS refetch: unknown kid"));
    // Then the start-up failures (logged before the listener opened) are in the file too.
    let logs = wait_for_log_line(&log_path, |line| line.contains("JWKS fetch failed"));

    // Metrics name each URL in its shown form only.
    let (status, metrics) = http(&server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    let shown = format!("http://***@{address}/keys");
    assert!(
        metrics.contains(&format!("ringcast_jwks_keys{{url=\"{shown}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("url=\"http://***@{address}/missing\"")),
        "{metrics}"
    );
    assert!(logs.contains(&shown), "the shown URL is logged:\n{logs}");
    for (what, text) in [("/metrics", &metrics), ("the logs", &logs)] {
        for secret in [PASSWORD, QUERY_SECRET, "jwks-user", &basic] {
            assert!(
                !text.contains(secret),
                "{secret} appears in {what}:\n{text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
