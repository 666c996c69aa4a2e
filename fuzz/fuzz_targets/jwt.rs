//! JWT verification (`auth::Verifier::verify`): header and claims handling.
//!
//! Input: byte 0 picks the mode and the clock; the rest is
//! - mode 0: a raw token, verified by every fixed verifier;
//! - mode 1: `header JSON` `\n` `claims JSON`, base64url-encoded and signed with the HS256
//!   test secret, so the header and claims checks behind the signature are reached;
//! - mode 2: claims JSON signed by `auth::mint::sign` (HS256), then verified.
//!
//! Checks: no panic (clock values include 0 and `u64::MAX`); a raw token verifies with the
//! RS256 or ES512 key only under that algorithm (only the fixtures' tokens in the seeds can;
//! the fuzzer holds no private key); an HS256-signed token
//! never verifies with them (no algorithm confusion) and never fails HS256's own signature
//! check; whatever HS256
//! accepts names `alg: HS256`, carries no `crit`, is within `exp`/`nbf` (30 s leeway) and
//! matches the configured issuer and audience.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use ringcast::auth::{mint, Algorithm, TokenError, Verifier, VerifierConfig, LEEWAY_S};
use serde_json::Value;

const SECRET: &str = "fuzzing-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "ringcast-fuzz";
const NOW_CHOICES: [u64; 4] = [1_700_000_000, 0, u64::MAX, 1 << 53];

struct Verifiers {
    /// HS256 with no issuer or audience rules: the most tokens get through.
    hs256_open: Verifier,
    /// HS256 with an issuer and an audience configured.
    hs256_strict: Verifier,
    /// RS256 and ES512 with the test fixtures' public keys.
    rs256: Verifier,
    es512: Verifier,
}

fn verifiers() -> &'static Verifiers {
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let make = |key: &str, algorithm: &str, strict: bool| {
            Verifier::new(&VerifierConfig {
                key: key.to_owned(),
                algorithms: vec![algorithm.to_owned()],
                issuer: if strict {
                    vec![ISSUER.to_owned()]
                } else {
                    Vec::new()
                },
                audience: if strict {
                    vec![AUDIENCE.to_owned()]
                } else {
                    Vec::new()
                },
            })
            .expect("fixed verifier configuration")
        };
        Verifiers {
            hs256_open: make(SECRET, "HS256", false),
            hs256_strict: make(SECRET, "HS256", true),
            rs256: make(
                include_str!("../../tests/fixtures/jwt/rsa_public.pem"),
                "RS256",
                false,
            ),
            es512: make(
                include_str!("../../tests/fixtures/jwt/ec521_public.pem"),
                "ES512",
                false,
            ),
        }
    })
}

/// The `alg` of a compact token's header, if it decodes.
fn header_algorithm(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// HS256-signs `header.claims` (both already base64url) with the test secret.
fn sign_hs256(signing_input: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("HS256 key");
    jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("HS256 signing")
}

/// Parses JSON for the oracle. Lossy, because serde skips the strings of fields it ignores
/// without checking their UTF-8, so ringcast accepts (signed) claims with invalid UTF-8 in
/// an unknown field; `serde_json::Value` would refuse the whole document.
fn parse_lossy(json: &[u8]) -> Option<Value> {
    serde_json::from_str(&String::from_utf8_lossy(json)).ok()
}

/// What HS256 acceptance implies about the token's own JSON.
fn check_accepted(header: Option<&[u8]>, claims: &[u8], now: u64, strict: bool) {
    if let Some(header) = header {
        // Unparsable for the oracle (e.g. a lone surrogate escape in an ignored field).
        let Some(header) = parse_lossy(header) else {
            return;
        };
        assert_eq!(
            header["alg"], "HS256",
            "accepted a token whose alg is not HS256"
        );
        assert!(header.get("crit").is_none(), "accepted a token with crit");
    }
    let Some(claims) = parse_lossy(claims) else {
        return;
    };
    let leeway = LEEWAY_S as f64;
    if let Some(exp) = claims.get("exp").and_then(Value::as_f64) {
        assert!(now as f64 <= exp + leeway, "accepted an expired token");
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        assert!(nbf <= now as f64 + leeway, "accepted a token before nbf");
    }
    if strict {
        assert_eq!(claims["iss"], ISSUER, "accepted a foreign issuer");
        let audience_ok = match &claims["aud"] {
            Value::String(one) => one == AUDIENCE,
            Value::Array(many) => many.iter().any(|value| value == AUDIENCE),
            _ => false,
        };
        assert!(audience_ok, "accepted a foreign audience");
    }
}

/// Verifies an HS256-signed token with every verifier and checks the outcomes.
fn verify_signed(token: &str, header: Option<&[u8]>, claims: &[u8], now: u64) {
    let verifiers = verifiers();
    for (verifier, strict) in [
        (&verifiers.hs256_open, false),
        (&verifiers.hs256_strict, true),
    ] {
        match verifier.verify(token, now) {
            Ok(_) => check_accepted(header, claims, now, strict),
            // A token minted with the right secret and `alg: HS256` never fails the
            // signature check, however odd its JSON.
            Err(TokenError::BadSignature) => panic!("HS256 signature refused"),
            Err(_) => {}
        }
    }
    for verifier in [&verifiers.rs256, &verifiers.es512] {
        assert!(
            verifier.verify(token, now).is_err(),
            "an HS256-signed token verified with a public key"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let now = NOW_CHOICES[usize::from(selector >> 6)];
    let verifiers = verifiers();
    match selector % 3 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let _ = verifiers.hs256_open.verify(&token, now);
            let _ = verifiers.hs256_strict.verify(&token, now);
            // Only tokens the fixtures' private keys signed (some seeds are) verify here,
            // and only under their own algorithm.
            for (verifier, algorithm) in [(&verifiers.rs256, "RS256"), (&verifiers.es512, "ES512")]
            {
                if verifier.verify(&token, now).is_ok() {
                    assert_eq!(header_algorithm(&token).as_deref(), Some(algorithm));
                }
            }
        }
        1 => {
            let (header, claims) = match rest.iter().position(|&byte| byte == b'\n') {
                Some(index) => (&rest[..index], &rest[index + 1..]),
                None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
            };
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let token = format!("{signing_input}.{}", sign_hs256(&signing_input));
            verify_signed(&token, Some(header), claims, now);
        }
        _ => {
            let Ok(claims @ Value::Object(_)) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            let token = mint::sign(Algorithm::HS256, SECRET, &claims).expect("HS256 mint");
            verify_signed(&token, None, rest, now);
        }
    }
});
