//! Tests of `auth::jwt` and `auth::mint` against fixtures made by OpenSSL and PyJWT
//! (`tests/fixtures/jwt/make_fixtures.py`), and against our own signer.
//!
//! The constants below must match those of `make_fixtures.py`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use crate::auth::algorithm::Algorithm;
use crate::auth::jwt::{Claims, KeyError, TokenError, Verifier, VerifierConfig, MAX_TOKEN_BYTES};
use crate::auth::mint;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
/// The "current time" of every fixture check.
const NOW: u64 = 1_700_000_000;
const FAR_EXP: u64 = 4_102_444_800;
const SECRET: &str = "cX1$wJT71Mölsd98.r97dC4DX";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "ringcast-test";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).expect("fixture file")
}

fn tokens() -> serde_json::Value {
    serde_json::from_str(&fixture("tokens.json")).expect("tokens.json")
}

fn token(name: &str) -> String {
    tokens()[name].as_str().expect(name).to_owned()
}

fn token_for(group: &str, algorithm: Algorithm) -> String {
    tokens()[group][algorithm.name()]
        .as_str()
        .expect("token")
        .to_owned()
}

fn key_stem(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::ES256 => "ec256",
        Algorithm::ES384 => "ec384",
        Algorithm::ES512 => "ec521",
        Algorithm::EdDSA => "ed25519",
        _ => "rsa",
    }
}

fn public_key(algorithm: Algorithm) -> String {
    if algorithm.is_hmac() {
        SECRET.to_owned()
    } else {
        fixture(&format!("{}_public.pem", key_stem(algorithm)))
    }
}

fn private_key(algorithm: Algorithm) -> String {
    if algorithm.is_hmac() {
        SECRET.to_owned()
    } else {
        fixture(&format!("{}_private.pem", key_stem(algorithm)))
    }
}

fn config(key: &str, algorithms: &[&str]) -> VerifierConfig {
    VerifierConfig {
        key: key.to_owned(),
        algorithms: algorithms.iter().map(|name| name.to_string()).collect(),
        issuer: vec![ISSUER.to_owned()],
        audience: vec![AUDIENCE.to_owned()],
    }
}

fn verifier(algorithm: Algorithm) -> Verifier {
    Verifier::new(&config(&public_key(algorithm), &[algorithm.name()])).expect("verifier")
}

fn verify(algorithm: Algorithm, token: &str) -> Result<Claims, TokenError> {
    verifier(algorithm).verify(token, NOW)
}

fn expected_claims() -> Claims {
    Claims {
        subject: Some("user-01".to_owned()),
        permissions: vec![
            "realtime:publisher:write:topic:*".to_owned(),
            "realtime:subscriber:read:topic:secure/*".to_owned(),
            "realtime:admin:manage:connections".to_owned(),
        ],
    }
}

#[test]
fn fixture_constants_match_the_generator() {
    assert_eq!(tokens()["now"].as_u64(), Some(NOW));
}

#[test]
fn every_algorithm_verifies_pyjwt_tokens() {
    for algorithm in Algorithm::ALL {
        let claims = verify(algorithm, &token_for("valid", algorithm))
            .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
        assert_eq!(claims, expected_claims(), "{algorithm}");
    }
}

#[test]
fn tokens_signed_with_another_key_are_refused() {
    for algorithm in Algorithm::ALL {
        assert_eq!(
            verify(algorithm, &token_for("other_key", algorithm)),
            Err(TokenError::BadSignature),
            "{algorithm}"
        );
    }
}

#[test]
fn one_verifier_accepts_every_listed_algorithm_of_its_key() {
    let rsa = Verifier::new(&config(
        &public_key(Algorithm::RS256),
        &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    ))
    .expect("verifier");
    for name in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let algorithm = Algorithm::parse(name).expect("name");
        assert!(
            rsa.verify(&token_for("valid", algorithm), NOW).is_ok(),
            "{name}"
        );
    }
    let hmac = Verifier::new(&config(SECRET, &["HS256", "HS384", "HS512"])).expect("verifier");
    assert!(hmac
        .verify(&token_for("valid", Algorithm::HS512), NOW)
        .is_ok());
}

#[test]
fn pkcs1_rsa_public_key_is_accepted() {
    let pkcs1 = Verifier::new(&config(
        &fixture("rsa_public_pkcs1.pem"),
        &["RS256", "PS512"],
    ))
    .expect("verifier");
    assert!(pkcs1
        .verify(&token_for("valid", Algorithm::RS256), NOW)
        .is_ok());
    assert!(pkcs1
        .verify(&token_for("valid", Algorithm::PS512), NOW)
        .is_ok());
}

#[test]
fn claim_failures_have_their_own_errors() {
    assert_eq!(
        verify(Algorithm::RS256, &token("expired")),
        Err(TokenError::Expired)
    );
    assert_eq!(
        verify(Algorithm::ES256, &token("not_yet_valid")),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        verify(Algorithm::HS256, &token("wrong_issuer")),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        verify(Algorithm::EdDSA, &token("wrong_audience")),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn leeway_is_thirty_seconds() {
    assert!(verify(Algorithm::HS256, &token("exp_now_minus_29")).is_ok());
    assert_eq!(
        verify(Algorithm::HS256, &token("exp_now_minus_31")),
        Err(TokenError::Expired)
    );
    assert!(verify(Algorithm::HS256, &token("nbf_now_plus_29")).is_ok());
    assert_eq!(
        verify(Algorithm::HS256, &token("nbf_now_plus_31")),
        Err(TokenError::NotYetValid)
    );
    let valid = token_for("valid", Algorithm::HS256);
    let hmac = verifier(Algorithm::HS256);
    assert!(hmac.verify(&valid, FAR_EXP + 30).is_ok());
    assert_eq!(hmac.verify(&valid, FAR_EXP + 31), Err(TokenError::Expired));
}

#[test]
fn absent_exp_never_expires() {
    assert!(verifier(Algorithm::HS256)
        .verify(&token("no_exp"), u64::MAX / 2)
        .is_ok());
}

#[test]
fn issuer_and_audience_lists() {
    assert!(verify(Algorithm::ES256, &token("audience_string")).is_ok());
    assert_eq!(
        verify(Algorithm::HS256, &token("no_audience")),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        verify(Algorithm::HS256, &token("no_issuer")),
        Err(TokenError::WrongIssuer)
    );
    let lenient = VerifierConfig {
        issuer: Vec::new(),
        audience: Vec::new(),
        ..config(SECRET, &["HS256"])
    };
    let lenient = Verifier::new(&lenient).expect("verifier");
    for name in ["no_audience", "no_issuer", "wrong_issuer"] {
        assert!(lenient.verify(&token(name), NOW).is_ok(), "{name}");
    }
    let several = VerifierConfig {
        issuer: vec!["https://other.example".into(), ISSUER.into()],
        audience: vec!["nobody".into(), "someone-else".into()],
        ..config(SECRET, &["HS256"])
    };
    let several = Verifier::new(&several).expect("verifier");
    assert!(several
        .verify(&token_for("valid", Algorithm::HS256), NOW)
        .is_ok());
}

#[test]
fn scope_is_merged_and_deduplicated_and_subject_may_be_absent() {
    let claims = verify(Algorithm::HS256, &token("subject_missing_scope_only")).expect("valid");
    assert_eq!(claims.subject, None);
    assert_eq!(claims.permissions, ["a", "b", "c"]);
}

#[test]
fn alg_none_is_always_refused() {
    let none = token("alg_none");
    for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES512] {
        assert_eq!(
            verify(algorithm, &none),
            Err(TokenError::AlgorithmNotAllowed)
        );
    }
    assert_eq!(
        verifier(Algorithm::HS256).verify(&format!("{none}c2ln"), NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
}

#[test]
fn algorithm_confusion_is_refused() {
    let confused = token("hs256_with_rsa_public_pem");
    assert_eq!(
        verify(Algorithm::RS256, &confused),
        Err(TokenError::AlgorithmNotAllowed)
    );
    let rsa_pem = public_key(Algorithm::RS256);
    assert_eq!(
        Verifier::new(&config(&rsa_pem, &["HS256"])).unwrap_err(),
        KeyError::HmacWithPemKey {
            algorithm: Algorithm::HS256
        }
    );
    assert_eq!(
        Verifier::new(&config(&rsa_pem, &["RS256", "HS256"])).unwrap_err(),
        KeyError::MixedKeyKinds
    );
}

#[test]
fn algorithms_outside_the_allow_list_are_refused() {
    let hmac = verifier(Algorithm::HS256);
    assert_eq!(
        hmac.verify(&token_for("valid", Algorithm::HS384), NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
    let pss = verifier(Algorithm::PS256);
    assert_eq!(
        pss.verify(&token_for("valid", Algorithm::RS256), NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
    let es256 = verifier(Algorithm::ES256);
    assert_eq!(
        es256.verify(&token_for("valid", Algorithm::ES512), NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
}

#[test]
fn the_unicode_secret_is_used_as_utf8_bytes() {
    let valid = token_for("valid", Algorithm::HS256);
    assert!(verify(Algorithm::HS256, &valid).is_ok());
    for wrong in ["cX1$wJT71Molsd98.r97dC4DX", "cX1$wJT71Mölsd98.r97dC4D"] {
        let other = Verifier::new(&config(wrong, &["HS256"])).expect("verifier");
        assert_eq!(other.verify(&valid, NOW), Err(TokenError::BadSignature));
    }
}

#[test]
fn malformed_tokens() {
    let valid = token_for("valid", Algorithm::HS256);
    let hmac = verifier(Algorithm::HS256);
    let (_, rest) = valid.split_once('.').expect("three parts");
    let cases = [
        String::new(),
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{valid}.extra"),
        format!("!!!.{rest}"),
        format!("{}.{rest}", "bm90IGpzb24"),
        format!("{valid}==="),
        format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
    ];
    for case in &cases {
        assert_eq!(
            hmac.verify(case, NOW),
            Err(TokenError::Malformed),
            "{case:.40}"
        );
    }
    // A header with `crit` is refused before the signature is looked at.
    let critical = mint_header_variant(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, rest);
    assert_eq!(hmac.verify(&critical, NOW), Err(TokenError::Malformed));
    let missing_alg = mint_header_variant(r#"{"typ":"JWT"}"#, rest);
    assert_eq!(hmac.verify(&missing_alg, NOW), Err(TokenError::Malformed));
}

fn mint_header_variant(header_json: &str, rest: &str) -> String {
    let head = URL_SAFE_NO_PAD.encode(header_json);
    format!("{head}.{rest}")
}

#[test]
fn tampered_tokens_fail_the_signature() {
    for algorithm in Algorithm::ALL {
        let valid = token_for("valid", algorithm);
        let (signing_input, signature) = valid.rsplit_once('.').expect("three parts");
        let (head, _) = signing_input.split_once('.').expect("three parts");
        let forged_claims =
            mint::sign(Algorithm::HS256, "x", &json!({"sub": "admin"})).expect("sign");
        let forged_payload = forged_claims.split('.').nth(1).expect("payload");
        let forged = format!("{head}.{forged_payload}.{signature}");
        assert_eq!(
            verify(algorithm, &forged),
            Err(TokenError::BadSignature),
            "{algorithm}"
        );
        let mut signature_bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        signature_bytes.pop();
        let truncated = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(&signature_bytes)
        );
        assert_eq!(
            verify(algorithm, &truncated),
            Err(TokenError::BadSignature),
            "{algorithm}"
        );
    }
}

#[test]
fn badly_typed_claims_are_malformed() {
    let hmac = Verifier::new(&VerifierConfig {
        issuer: Vec::new(),
        audience: Vec::new(),
        ..config(SECRET, &["HS256"])
    })
    .expect("verifier");
    for claims in [
        json!({"exp": "tomorrow"}),
        json!({"sub": 42}),
        json!({"permissions": "realtime:admin:manage:connections"}),
        json!({"permissions": [1]}),
        json!({"aud": 5}),
    ] {
        let signed = mint::sign(Algorithm::HS256, SECRET, &claims).expect("sign");
        assert_eq!(
            hmac.verify(&signed, NOW),
            Err(TokenError::Malformed),
            "{claims}"
        );
    }
    let fractional =
        mint::sign(Algorithm::HS256, SECRET, &json!({"exp": NOW as f64 - 29.5})).expect("sign");
    assert!(hmac.verify(&fractional, NOW).is_ok());
}

#[test]
fn mint_round_trips_through_the_verifier_for_every_algorithm() {
    let claims = json!({
        "sub": "user-02",
        "iat": NOW,
        "exp": NOW + 60,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "permissions": ["realtime:publisher:write:topic:chat"],
        "scope": "realtime:admin:manage:subscribers",
    });
    for algorithm in Algorithm::ALL {
        let signed = mint::sign(algorithm, &private_key(algorithm), &claims)
            .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
        let verified = verify(algorithm, &signed).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(verified.subject.as_deref(), Some("user-02"));
        assert_eq!(
            verified.permissions,
            [
                "realtime:publisher:write:topic:chat",
                "realtime:admin:manage:subscribers"
            ]
        );
    }
}

#[test]
fn mint_accepts_traditional_private_key_formats() {
    let claims = json!({"sub": "legacy", "iss": ISSUER, "aud": AUDIENCE});
    for (algorithm, file) in [
        (Algorithm::RS256, "rsa_private_pkcs1.pem"),
        (Algorithm::PS384, "rsa_private_pkcs1.pem"),
        (Algorithm::ES256, "ec256_private_sec1.pem"),
        (Algorithm::ES384, "ec384_private_sec1.pem"),
        (Algorithm::ES512, "ec521_private_sec1.pem"),
    ] {
        let signed = mint::sign(algorithm, &fixture(file), &claims)
            .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
        assert!(verify(algorithm, &signed).is_ok(), "{algorithm}");
    }
}

#[test]
fn mint_refuses_keys_of_the_wrong_kind() {
    let claims = json!({"sub": "x"});
    for (algorithm, file) in [
        (Algorithm::RS256, "ec256_private.pem"),
        (Algorithm::ES256, "ec384_private.pem"),
        (Algorithm::ES512, "ec256_private.pem"),
        (Algorithm::EdDSA, "rsa_private.pem"),
        (Algorithm::ES512, "ec521_public.pem"),
    ] {
        assert_eq!(
            mint::sign(algorithm, &fixture(file), &claims),
            Err(mint::MintError::UnusableKey { algorithm }),
            "{algorithm} with {file}"
        );
    }
}

#[test]
fn key_errors_name_the_problem_without_the_key() {
    let cases: Vec<(VerifierConfig, KeyError)> = vec![
        (config(SECRET, &[]), KeyError::NoAlgorithms),
        (
            config(SECRET, &["XY"]),
            KeyError::UnknownAlgorithm { name: "XY".into() },
        ),
        (
            config(SECRET, &["none"]),
            KeyError::UnknownAlgorithm {
                name: "none".into(),
            },
        ),
        (
            config("", &["HS256"]),
            KeyError::EmptySecret {
                algorithm: Algorithm::HS256,
            },
        ),
        (
            config(&fixture("rsa_private.pem"), &["RS256"]),
            KeyError::PrivateKeyGiven {
                algorithm: Algorithm::RS256,
            },
        ),
        (
            config(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                &["RS256"],
            ),
            KeyError::UnusableKey {
                algorithm: Algorithm::RS256,
            },
        ),
        (
            config(SECRET, &["PS256"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::PS256,
            },
        ),
        (
            config(&public_key(Algorithm::ES256), &["RS256"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::RS256,
            },
        ),
        (
            config(&public_key(Algorithm::ES384), &["ES256"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::ES256,
            },
        ),
        (
            config(&public_key(Algorithm::ES256), &["ES256", "ES384"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::ES384,
            },
        ),
        (
            config(&public_key(Algorithm::ES256), &["ES512"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::ES512,
            },
        ),
        (
            config(&public_key(Algorithm::RS256), &["EdDSA"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::EdDSA,
            },
        ),
        (
            config(&public_key(Algorithm::EdDSA), &["ES256"]),
            KeyError::UnusableKey {
                algorithm: Algorithm::ES256,
            },
        ),
    ];
    for (config, expected) in cases {
        let error = Verifier::new(&config).unwrap_err();
        assert_eq!(error, expected);
        let message = error.to_string();
        assert!(
            !message.contains("BEGIN") && !message.contains(SECRET),
            "{message}"
        );
    }
}

#[test]
fn debug_output_redacts_keys() {
    let hmac_config = config(SECRET, &["HS256"]);
    let rsa_config = config(&public_key(Algorithm::RS256), &["RS256"]);
    for text in [
        format!("{hmac_config:?}"),
        format!("{:?}", Verifier::new(&hmac_config).expect("verifier")),
        format!("{rsa_config:?}"),
        format!("{:?}", Verifier::new(&rsa_config).expect("verifier")),
    ] {
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.contains("cX1$") && !text.contains("MIIB"), "{text}");
    }
}

#[test]
fn token_errors_do_not_echo_the_token() {
    let valid = token_for("valid", Algorithm::HS256);
    let error = verify(Algorithm::ES256, &valid).unwrap_err();
    assert!(error.to_string().len() < 40);
    assert!(!error.to_string().contains("eyJ"));
}

#[test]
fn verifier_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    let shared = std::sync::Arc::new(verifier(Algorithm::ES512));
    let token = token_for("valid", Algorithm::ES512);
    let worker = {
        let shared = std::sync::Arc::clone(&shared);
        std::thread::spawn(move || shared.verify(&token, NOW).is_ok())
    };
    assert!(worker.join().expect("thread"));
}

/// Prints tokens from our signer for a manual check with PyJWT; `--ignored` to run.
#[test]
#[ignore = "manual interoperability check"]
fn print_minted_tokens_for_pyjwt() {
    for algorithm in Algorithm::ALL {
        let signed =
            mint::sign(algorithm, &private_key(algorithm), &json!({"sub": "rust"})).expect("sign");
        println!("MINTED {} {signed}", algorithm.name());
    }
}
