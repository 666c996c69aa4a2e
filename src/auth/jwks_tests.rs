//! Unit tests of `auth::jwks`: parsing bounds, skipped keys, `kid` lookup, and the cache's
//! doorbell. End-to-end fetching and rotation are in `tests/jwks.rs`.

use super::*;
use crate::auth::jwt::{TokenError, Verifier, VerifierConfig};
use crate::auth::mint;
use p256::pkcs8::DecodePublicKey as _;
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The P-256 fixture public key as a JWK, built with the `p256` crate.
fn ec256_jwk(kid: &str) -> serde_json::Value {
    let key = p256::PublicKey::from_public_key_pem(&fixture("ec256_public.pem")).unwrap();
    let point = key.to_sec1_bytes();
    assert_eq!(point[0], 4);
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..65])})
}

fn document(keys: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn es256_token(kid: Option<&str>) -> String {
    let claims = json!({"sub": "u", "exp": 4_102_444_800_u64});
    mint::sign_with_key_id(
        Algorithm::ES256,
        &fixture("ec256_private.pem"),
        &claims,
        kid,
    )
    .unwrap()
}

fn verifier(cache: Arc<JwksCache>, algorithms: &[&str]) -> Verifier {
    let config = VerifierConfig {
        key: cache.url().to_string(),
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        ..VerifierConfig::default()
    };
    Verifier::with_jwks(&config, cache).unwrap()
}

#[test]
fn unusable_keys_are_skipped_not_fatal() {
    let parsed = parse_key_set(&document(vec![
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
        json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        {
            let mut encryption = ec256_jwk("enc");
            encryption["use"] = json!("enc");
            encryption
        },
        {
            let mut long = ec256_jwk("k");
            long["kid"] = json!("k".repeat(MAX_KID_BYTES + 1));
            long
        },
        {
            let mut wrong_alg = ec256_jwk("wrong");
            wrong_alg["alg"] = json!("RS256");
            wrong_alg
        },
        json!("not an object"),
        ec256_jwk("good"),
    ]))
    .unwrap();
    assert_eq!(parsed.skipped, 7);
    assert_eq!(parsed.set.key_ids().collect::<Vec<_>>(), ["good"]);
}

#[test]
fn sets_are_bounded() {
    let keys = (0..MAX_JWKS_KEYS + 3)
        .map(|i| ec256_jwk(&format!("k{i}")))
        .collect();
    let parsed = parse_key_set(&document(keys)).unwrap();
    assert_eq!(parsed.set.len(), MAX_JWKS_KEYS);
    assert_eq!(parsed.ignored, 3);
    let huge = vec![b' '; MAX_JWKS_DOCUMENT_BYTES + 1];
    assert_eq!(parse_key_set(&huge).unwrap_err(), JwksError::TooLarge);
    assert_eq!(
        parse_key_set(b"{\"no\": 1}").unwrap_err(),
        JwksError::NotJwks
    );
}

#[test]
fn kid_picks_the_key_and_unknown_kids_ring_the_doorbell() {
    let cache = Arc::new(JwksCache::new("https://issuer.example/jwks?secret=1"));
    assert_eq!(cache.url_for_logs(), "https://issuer.example/jwks");
    let (doorbell, rings) = crossbeam_channel::bounded(4);
    cache.attach(doorbell, 7);
    let verifier = verifier(cache.clone(), &["ES256"]);
    // Empty set: refused, one ring, merged while pending.
    assert_eq!(
        verifier.verify(&es256_token(Some("a")), 0),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(
        verifier.verify(&es256_token(Some("a")), 0),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(rings.try_iter().collect::<Vec<_>>(), [7]);
    assert!(cache.take_refresh_request());
    cache.install(parse_key_set(&document(vec![ec256_jwk("a")])).unwrap().set);
    assert!(verifier.verify(&es256_token(Some("a")), 0).is_ok());
    // Without a kid, the single fitting key is used.
    assert!(verifier.verify(&es256_token(None), 0).is_ok());
    assert_eq!(
        verifier.verify(&es256_token(Some("b")), 0),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(rings.try_iter().collect::<Vec<_>>(), [7]);
}

#[test]
fn a_known_kid_with_another_algorithm_is_refused_without_refetch() {
    let cache = Arc::new(JwksCache::new("https://issuer.example/jwks"));
    let (doorbell, rings) = crossbeam_channel::bounded(4);
    cache.attach(doorbell, 0);
    let mut jwk = ec256_jwk("a");
    jwk["kid"] = json!("a");
    cache.install(parse_key_set(&document(vec![jwk])).unwrap().set);
    let verifier = verifier(cache, &["ES256", "RS256"]);
    let claims = json!({"sub": "u"});
    let rs256 = mint::sign_with_key_id(
        Algorithm::RS256,
        &fixture("rsa_private.pem"),
        &claims,
        Some("a"),
    )
    .unwrap();
    assert_eq!(
        verifier.verify(&rs256, 0),
        Err(TokenError::AlgorithmNotAllowed)
    );
    assert!(rings.try_recv().is_err());
}

#[test]
fn hmac_algorithms_are_refused_with_jwks() {
    let cache = Arc::new(JwksCache::new("https://issuer.example/jwks"));
    let config = VerifierConfig {
        key: cache.url().to_string(),
        algorithms: vec!["RS256".into(), "HS256".into()],
        ..VerifierConfig::default()
    };
    assert!(Verifier::with_jwks(&config, cache).is_err());
}

#[test]
fn shown_urls_hide_userinfo_query_and_fragment() {
    for (url, shown) in [
        ("https://issuer.example/jwks", "https://issuer.example/jwks"),
        (
            "https://issuer.example/jwks?k=v#f",
            "https://issuer.example/jwks",
        ),
        (
            "http://user:password@issuer.example:8080/jwks",
            "http://***@issuer.example:8080/jwks",
        ),
        (
            "https://token@issuer.example/jwks",
            "https://***@issuer.example/jwks",
        ),
        (
            "https://@issuer.example/jwks",
            "https://***@issuer.example/jwks",
        ),
        // Unencoded delimiters in a pasted password: still hidden (up to the last '@').
        (
            "https://u:pa/ss?w#rd@issuer.example/jwks",
            "https://***@issuer.example/jwks",
        ),
        (
            "https://u:p@ss@issuer.example/jwks",
            "https://***@issuer.example/jwks",
        ),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
    let cache = JwksCache::new("http://user:password@issuer.example/jwks?key=secret");
    assert_eq!(cache.url_for_logs(), "http://***@issuer.example/jwks");
    assert!(!format!("{cache:?}").contains("password"));
    assert!(!format!("{cache:?}").contains("secret"));
    // The fetch itself keeps the credentials.
    assert_eq!(
        cache.url(),
        "http://user:password@issuer.example/jwks?key=secret"
    );
}

#[test]
fn error_texts_lose_every_secret_part_of_the_url() {
    let url = "http://user:password@issuer.example/jwks?key=secret";
    let text = format!("bad uri: {url} is missing host; also user:password and key=secret");
    let scrubbed = redact_url_in(&text, url);
    assert_eq!(
        scrubbed,
        "bad uri: http://***@issuer.example/jwks is missing host; also *** and ***"
    );
    // A client that re-renders the URL (here: without the query) is caught by the parts.
    let scrubbed = redact_url_in("GET http://user:password@issuer.example/jwks", url);
    assert!(!scrubbed.contains("password"), "{scrubbed}");
    assert_eq!(redact_url_in("http status: 404", url), "http status: 404");
}

#[test]
fn a_refetch_of_the_same_document_keeps_the_key_set_version() {
    let cache = JwksCache::new("https://issuer.example/jwks");
    assert_eq!(cache.snapshot().version(), 0);
    assert!(cache.install(parse_key_set(&document(vec![ec256_jwk("a")])).unwrap().set));
    let first = cache.snapshot().version();
    assert_ne!(first, 0);
    assert!(!cache.install(parse_key_set(&document(vec![ec256_jwk("a")])).unwrap().set));
    assert_eq!(cache.snapshot().version(), first);
    assert!(cache.install(parse_key_set(&document(vec![ec256_jwk("b")])).unwrap().set));
    assert_ne!(cache.snapshot().version(), first);
}

#[test]
fn a_cached_jwks_token_is_not_found_after_a_key_change() {
    use crate::auth::TokenCache;
    let cache = Arc::new(JwksCache::new("https://issuer.example/jwks"));
    cache.install(parse_key_set(&document(vec![ec256_jwk("a")])).unwrap().set);
    let verifier = verifier(cache.clone(), &["ES256"]);
    let tokens = TokenCache::new(1024);
    let token = es256_token(Some("a"));
    assert!(verifier.verify_cached(&tokens, "app", &token, 0).is_ok());
    assert!(verifier.verify_cached(&tokens, "app", &token, 0).is_ok());
    assert_eq!((tokens.hits(), tokens.misses()), (1, 1));
    // The set rotates to a document without key "a": the cached entry is out of reach.
    cache.install(parse_key_set(&document(vec![ec256_jwk("b")])).unwrap().set);
    assert_eq!(
        verifier.verify_cached(&tokens, "app", &token, 0),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(tokens.hits(), 1);
}
