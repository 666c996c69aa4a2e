//! Issue 7 §5: anonymous tokens, `POST /token/anonymous/{appId}`. A token is issued, it
//! connects over WebSocket with exactly the configured permissions, `sub` is random and
//! distinct, `exp - iat` is the configured ttl, `{"alg": ...}` picks the algorithm (400
//! when impossible), disabled or unknown apps answer 404, the source-address filter answers
//! 403, and the per-address rate limit answers 429 with `Retry-After`. Config errors name
//! the app and the problem.

mod common;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use ringcast::broker::apps::Registry;
use ringcast::config::Config;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::Duration;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
const ES512_APP: &str = "es512-app";
const RATE_APP: &str = "rate-app";
const OFF_APP: &str = "anonymous-off-app";
const TTL: u64 = 120;
const CHAT_WRITE: &str = "realtime:publisher:write:topic:chat";
const NEWS_READ: &str = "realtime:subscriber:read:topic:secure/news";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
}

fn config() -> Value {
    let mut config = base_config();
    let anonymous = json!({"enabled": true, "permissions": [CHAT_WRITE, NEWS_READ],
                           "ttlSeconds": TTL, "maxTokensPerMinute": 1000});
    config["apps"][0]["anonymous"] = anonymous.clone();
    // FENCED_APP allows clients from 10.0.0.0/8 only.
    config["apps"][3]["anonymous"] = anonymous.clone();
    let apps = config["apps"].as_array_mut().unwrap();
    apps.push(json!({"appId": ES512_APP,
        "authKey": {"source": "raw", "key": fixture("ec521_public.pem"), "algorithms": ["ES512"],
                    "issuer": ["https://issuer.example"], "audience": "ringcast"},
        "anonymous": {"permissions": [], "ttlSeconds": 60,
                      "signingKey": fixture("ec521_private.pem")}}));
    apps.push(json!({"appId": RATE_APP,
        "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]},
        "anonymous": {"maxTokensPerMinute": 3}}));
    apps.push(json!({"appId": OFF_APP,
        "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]},
        "anonymous": {"enabled": false}}));
    config
}

/// `POST /token/anonymous/{app}`: (status, headers, body).
fn request_token(
    server: &TestServer,
    method: &str,
    app: &str,
    body: &str,
) -> (u16, String, String) {
    send(server, method, &format!("/token/anonymous/{app}"), body)
}

fn send(server: &TestServer, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(stream, request.as_bytes())
}

fn issue(server: &TestServer, app: &str, body: &str) -> Value {
    let (status, _, body) = request_token(server, "POST", app, body);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The decoded header and claims of a compact JWS (no verification: the broker does that).
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    (next(), next())
}

#[test]
fn an_anonymous_token_connects_with_the_configured_permissions() {
    let server = start_with(config());
    let issued = issue(&server, APP, "");
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["expires_in"], TTL);
    let token = issued["access_token"].as_str().unwrap();
    let subject = issued["sub"].as_str().unwrap();
    let mut client = connect(&server, APP, token);
    client.subscribe("chat");
    client.subscribe("secure/news");
    client.sync_without_publish();
    client.publish("chat", "text", json!("hello"), "m1");
    let frame = client.next_non_ack();
    assert_eq!(frame["topic"], "chat");
    assert_eq!(frame["data"]["client"]["subject"], subject);
    assert_eq!(
        frame["data"]["client"]["permissions"],
        json!([CHAT_WRITE, NEWS_READ])
    );
    // Beyond the configured permissions: publishing elsewhere is refused.
    client.publish("other", "text", json!("no"), "m2");
    let (code, reason) = client.expect_close();
    assert_eq!(code, 1008);
    assert_eq!(reason, "Publishing to topic is forbidden!");
    // Secure topics outside the grant are refused too.
    let mut second = connect(
        &server,
        APP,
        issue(&server, APP, "{}")["access_token"].as_str().unwrap(),
    );
    second.subscribe("secure/other");
    assert_eq!(
        second.expect_close(),
        (
            1008,
            "Subscription to secure topic is forbidden!".to_string()
        )
    );
}

#[test]
fn subjects_are_random_and_distinct_and_ttl_sets_exp() {
    let server = start_with(config());
    let mut subjects = std::collections::HashSet::new();
    for _ in 0..5 {
        let issued = issue(&server, APP, "");
        let (header, claims) = decode(issued["access_token"].as_str().unwrap());
        assert_eq!(header["alg"], "HS256", "the first algorithm of authKey");
        let subject = claims["sub"].as_str().unwrap().to_string();
        assert_eq!(issued["sub"], json!(subject));
        assert!(
            subject.starts_with("anon-") && subject.len() == 37,
            "{subject}"
        );
        assert!(subjects.insert(subject), "subjects are distinct");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, TTL);
        assert!(iat.abs_diff(now()) <= 5, "iat is the issue time");
        assert_eq!(claims["permissions"], json!([CHAT_WRITE, NEWS_READ]));
    }
}

#[test]
fn the_requested_algorithm_is_used_or_refused_with_400() {
    let server = start_with(config());
    // HS app with HS256 and HS512.
    let issued = issue(&server, APP, r#"{"alg": "HS512"}"#);
    let (header, _) = decode(issued["access_token"].as_str().unwrap());
    assert_eq!(header["alg"], "HS512");
    connect(&server, APP, issued["access_token"].as_str().unwrap()).close();
    // P-521 app: ES512, with the authKey's issuer and audience in the token.
    let issued = issue(&server, ES512_APP, r#"{"alg": "ES512"}"#);
    let (header, claims) = decode(issued["access_token"].as_str().unwrap());
    assert_eq!(header["alg"], "ES512");
    assert_eq!(claims["iss"], "https://issuer.example");
    assert_eq!(claims["aud"], "ringcast");
    connect(&server, ES512_APP, issued["access_token"].as_str().unwrap()).close();
    // Impossible algorithms: 400 naming what is available.
    let (status, _, body) = request_token(&server, "POST", ES512_APP, r#"{"alg": "RS256"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("RS256") && body.contains("ES512"), "{body}");
    let (status, _, body) = request_token(&server, "POST", APP, r#"{"alg": "none"}"#);
    assert_eq!(status, 400, "{body}");
    // Malformed bodies: 400.
    for bad in ["not json", r#"{"alg": 5}"#, r#"{"algorithm": "HS256"}"#] {
        let (status, _, body) = request_token(&server, "POST", APP, bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[test]
fn disabled_unknown_and_fenced_apps_are_refused() {
    let server = start_with(config());
    for app in [QUIET_APP, OFF_APP, "no-such-app"] {
        let (status, _, body) = request_token(&server, "POST", app, "");
        assert_eq!(status, 404, "{app}: {body}");
    }
    let (status, _, _) = request_token(&server, "GET", APP, "");
    assert_eq!(status, 405);
    // The clientSourceAddress filter applies: 127.0.0.1 is outside 10.0.0.0/8.
    let (status, _, _) = request_token(&server, "POST", FENCED_APP, "");
    assert_eq!(status, 403);
}

#[test]
fn the_per_address_rate_limit_answers_429_with_retry_after() {
    let server = start_with(config());
    for _ in 0..3 {
        issue(&server, RATE_APP, "");
    }
    let (status, head, body) = request_token(&server, "POST", RATE_APP, "");
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("Retry-After: "))
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Counted per app in /metrics.
    let (_, metrics) = http(&server, "GET", "/metrics", None, "");
    for (result, count) in [("issued", 3), ("rate_limited", 1)] {
        let line = format!(
            "ringcast_anonymous_tokens_total{{app=\"{RATE_APP}\",result=\"{result}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    // Limits are per app: the main app still issues to the same address.
    issue(&server, APP, "");
}

#[test]
fn config_errors_name_the_app_and_the_problem() {
    let compile = |anonymous: Value, auth_key: Value| {
        let text =
            json!({"apps": [{"appId": "anon", "authKey": auth_key, "anonymous": anonymous}]});
        let config = Config::from_json(&text.to_string()).unwrap();
        Registry::compile(&config)
            .err()
            .map(|error| error.to_string())
    };
    let p521 =
        json!({"source": "raw", "key": fixture("ec521_public.pem"), "algorithms": ["ES512"]});
    let missing = compile(json!({}), p521.clone()).unwrap();
    assert!(
        missing.contains("app anon") && missing.contains("signingKey is required"),
        "{missing}"
    );
    let mismatch = compile(
        json!({"signingKey": fixture("ec521_other_private.pem")}),
        p521.clone(),
    )
    .unwrap();
    assert!(mismatch.contains("do not match"), "{mismatch}");
    let wrong_kind = compile(
        json!({"signingKey": fixture("rsa_private.pem")}),
        p521.clone(),
    )
    .unwrap();
    assert!(
        wrong_kind.contains("cannot sign any of authKey.algorithms"),
        "{wrong_kind}"
    );
    assert!(
        !wrong_kind.contains("PRIVATE KEY"),
        "no key material in errors"
    );
    let hs = json!({"source": "raw", "key": SECRET, "algorithms": ["HS256"]});
    let other_secret = compile(json!({"signingKey": "another-secret"}), hs.clone()).unwrap();
    assert!(other_secret.contains("do not match"), "{other_secret}");
    assert!(compile(json!({"ttlSeconds": 0}), hs.clone())
        .unwrap()
        .contains("ttlSeconds"));
    assert!(compile(json!({"maxTokensPerMinute": 0}), hs.clone())
        .unwrap()
        .contains("maxTokensPerMinute"));
    assert_eq!(compile(json!({"permissions": [PUBLISH_ALL]}), hs), None);
}

#[test]
fn the_app_may_be_named_in_the_body_instead_of_the_path() {
    let server = start_with(config());
    let body = json!({"appId": APP}).to_string();
    let (status, _, answer) = send(&server, "POST", "/token/anonymous", &body);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let token = answer["access_token"].as_str().unwrap();
    connect(&server, APP, token);
    // Without any app: 400 naming both forms; a body contradicting the path: 400.
    let (status, _, answer) = send(&server, "POST", "/token/anonymous", "");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("appId"), "{answer}");
    let other = json!({"appId": "someone-else"}).to_string();
    let (status, _, _) = send(&server, "POST", &format!("/token/anonymous/{APP}"), &other);
    assert_eq!(status, 400);
}
