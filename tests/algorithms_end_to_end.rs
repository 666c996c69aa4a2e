//! Every supported JWS algorithm end to end: one server with one app per key family,
//! tokens signed by ringcast's own signer and by PyJWT (`tests/fixtures/jwt/tokens.json`),
//! and the algorithm-confusion refusal.

mod common;

use common::*;
use ringcast::auth::{mint, Algorithm};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "ringcast-test";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn fixture_tokens() -> Value {
    serde_json::from_str(&fixture("tokens.json")).expect("tokens.json")
}

/// The app id serving `algorithm`, and the stem of its key files.
fn family(algorithm: Algorithm) -> (&'static str, &'static str) {
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => ("alg-hmac", ""),
        Algorithm::ES256 => ("alg-ec256", "ec256"),
        Algorithm::ES384 => ("alg-ec384", "ec384"),
        Algorithm::ES512 => ("alg-ec521", "ec521"),
        Algorithm::EdDSA => ("alg-ed25519", "ed25519"),
        _ => ("alg-rsa", "rsa"),
    }
}

fn signing_key(algorithm: Algorithm) -> String {
    if algorithm.is_hmac() {
        SECRET.to_string()
    } else {
        fixture(&format!("{}_private.pem", family(algorithm).1))
    }
}

fn app(id: &str, key: String, algorithms: &[&str]) -> Value {
    json!({
        "appId": id,
        "authKey": {"source": "raw", "key": key, "algorithms": algorithms,
                    "issuer": [ISSUER], "audience": AUDIENCE},
    })
}

/// One app per key family, each listing every algorithm its key supports.
fn algorithm_server() -> TestServer {
    start_with(json!({
        "server": {"listen": "127.0.0.1:0", "workers": 2, "pinWorkers": false},
        "apps": [
            app("alg-hmac", SECRET.to_string(), &["HS256", "HS384", "HS512"]),
            app("alg-rsa", fixture("rsa_public.pem"),
                &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]),
            app("alg-ec256", fixture("ec256_public.pem"), &["ES256"]),
            app("alg-ec384", fixture("ec384_public.pem"), &["ES384"]),
            app("alg-ec521", fixture("ec521_public.pem"), &["ES512"]),
            app("alg-ed25519", fixture("ed25519_public.pem"), &["EdDSA"]),
        ]
    }))
}

/// Publishes to the client's own private topic and returns the publication, which names
/// the subject and permissions the server took from the token.
fn echo(client: &mut Client) -> Value {
    let own = format!("priv/{}", client.id());
    client.publish(&own, "echo", json!("ping"), "echo-1");
    client.next_non_ack()
}

#[test]
fn tokens_signed_by_ringcast_connect_for_every_algorithm() {
    let server = algorithm_server();
    for algorithm in Algorithm::ALL {
        let (app_id, _) = family(algorithm);
        let subject = format!("user-{}", algorithm.name());
        let claims = json!({
            "sub": subject, "permissions": [PUBLISH_ALL], "exp": now() + 600,
            "iss": ISSUER, "aud": AUDIENCE,
        });
        let token = mint::sign(algorithm, &signing_key(algorithm), &claims)
            .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
        let mut client = try_connect(&server, app_id, &token)
            .unwrap_or_else(|status| panic!("{algorithm} refused with {status}"));
        assert_eq!(client.welcome["messageType"], "welcome", "{algorithm}");
        assert_eq!(
            client.welcome["data"]["connection"]["appId"], app_id,
            "{algorithm}"
        );
        let frame = echo(&mut client);
        assert_eq!(
            frame["data"]["client"]["subject"],
            json!(subject),
            "{algorithm}"
        );
        assert_eq!(
            frame["data"]["client"]["permissions"],
            json!([PUBLISH_ALL]),
            "{algorithm}"
        );
    }
}

#[test]
fn tokens_signed_by_pyjwt_connect_for_every_algorithm() {
    let server = algorithm_server();
    let tokens = fixture_tokens();
    let mut checked = 0;
    for algorithm in Algorithm::ALL {
        let token = tokens["valid"][algorithm.name()]
            .as_str()
            .unwrap_or_else(|| panic!("no valid PyJWT token for {algorithm}"));
        if expiry(token).is_some_and(|exp| exp <= now() + 60) {
            skip(
                &format!("algorithms_end_to_end::tokens_signed_by_pyjwt_connect_for_every_algorithm[{algorithm}]"),
                "the PyJWT fixture token has expired (regenerate tests/fixtures/jwt with make_fixtures.py)",
            );
            continue;
        }
        let (app_id, _) = family(algorithm);
        let mut client = try_connect(&server, app_id, token)
            .unwrap_or_else(|status| panic!("PyJWT {algorithm} token refused with {status}"));
        let frame = echo(&mut client);
        assert_eq!(frame["data"]["client"]["subject"], "user-01", "{algorithm}");
        // `permissions` and `scope` are merged, duplicates dropped.
        assert_eq!(
            frame["data"]["client"]["permissions"],
            json!([
                "realtime:publisher:write:topic:*",
                "realtime:subscriber:read:topic:secure/*",
                "realtime:admin:manage:connections",
            ]),
            "{algorithm}"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "every PyJWT token has expired; regenerate the fixtures"
    );
}

/// The `exp` claim of a token, read without verification.
fn expiry(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

#[test]
fn tokens_signed_with_another_key_are_refused_with_401_for_every_algorithm() {
    let server = algorithm_server();
    let tokens = fixture_tokens();
    for algorithm in Algorithm::ALL {
        let token = tokens["other_key"][algorithm.name()].as_str().unwrap();
        let (app_id, _) = family(algorithm);
        assert_eq!(
            try_connect(&server, app_id, token).err(),
            Some(401),
            "{algorithm}"
        );
    }
}

#[test]
fn algorithm_families_do_not_accept_each_others_tokens() {
    let server = algorithm_server();
    let tokens = fixture_tokens();
    // A valid ES512 token at the ES256 app, an RS256 one at the HMAC app, and so on.
    for (algorithm, app_id) in [
        (Algorithm::ES512, "alg-ec256"),
        (Algorithm::ES256, "alg-ec384"),
        (Algorithm::RS256, "alg-hmac"),
        (Algorithm::HS256, "alg-rsa"),
        (Algorithm::EdDSA, "alg-rsa"),
        (Algorithm::PS256, "alg-ed25519"),
    ] {
        let token = tokens["valid"][algorithm.name()].as_str().unwrap();
        assert_eq!(
            try_connect(&server, app_id, token).err(),
            Some(401),
            "{algorithm} at {app_id}"
        );
    }
}

#[test]
fn hs256_token_keyed_with_the_rsa_public_pem_is_refused_with_401() {
    let server = algorithm_server();
    // Algorithm confusion: HMAC over the public key text, offered to the RS256 app.
    let public_pem = fixture("rsa_public.pem");
    let claims = json!({
        "sub": "mallory", "permissions": [PUBLISH_ALL], "exp": now() + 600,
        "iss": ISSUER, "aud": AUDIENCE,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()).unwrap();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .unwrap();
    assert_eq!(try_connect(&server, "alg-rsa", &forged).err(), Some(401));
    // The same attack made by PyJWT.
    let pyjwt = fixture_tokens()["hs256_with_rsa_public_pem"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(try_connect(&server, "alg-rsa", &pyjwt).err(), Some(401));
    // And `alg: none`.
    let none = fixture_tokens()["alg_none"].as_str().unwrap().to_string();
    for app_id in ["alg-rsa", "alg-hmac", "alg-ec521"] {
        assert_eq!(
            try_connect(&server, app_id, &none).err(),
            Some(401),
            "{app_id}"
        );
    }
}

#[test]
fn issuer_and_audience_are_checked_end_to_end() {
    let server = algorithm_server();
    let tokens = fixture_tokens();
    for name in [
        "wrong_issuer",
        "wrong_audience",
        "no_issuer",
        "no_audience",
        "expired",
    ] {
        let token = tokens[name].as_str().unwrap();
        assert_eq!(
            try_connect(&server, family_of(token), token).err(),
            Some(401),
            "{name}"
        );
    }
    // A string `aud` is accepted like a list.
    let token = tokens["audience_string"].as_str().unwrap();
    connect(&server, family_of(token), token);
}

/// The app whose key signs `token`, from its header's `alg`.
fn family_of(token: &str) -> &'static str {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    family(Algorithm::parse(header["alg"].as_str().unwrap()).unwrap()).0
}
