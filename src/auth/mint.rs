//! Token minting, for the `ringcast token` command and for tests.
//!
//! Responsibility: sign a claims object into a compact JWS with any supported algorithm,
//! and make random HS* secrets.
//!
//! Must not: read the clock (callers put `iat`/`exp` into the claims), do I/O, or put a key
//! into an error. It is not on the broker's request path.
//!
//! Invariants: the header is always `{"typ":"JWT","alg":…}` with the requested algorithm;
//! HS* never signs with a PEM key (the verifier would refuse such a token anyway);
//! ES512 signatures are raw `r || s` (132 bytes), as JWS requires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand::RngCore as _;

use crate::auth::algorithm::Algorithm;

/// Random bytes in a generated HS* secret: 256 bits, the strength of HS256.
const SECRET_RANDOM_BYTES: usize = 32;

/// PEM label of a PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of a SEC1 EC private key.
const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of a PKCS#1 RSA private key.
const PKCS1_LABEL: &str = "RSA PRIVATE KEY";

/// Why a token could not be signed. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The claims are not a JSON object; pass an object such as `{"sub": "…"}`.
    #[error("claims must be a JSON object")]
    ClaimsNotObject,
    /// The HS* secret is empty.
    #[error("{algorithm} needs a non-empty secret")]
    EmptySecret {
        /// The requested algorithm.
        algorithm: Algorithm,
    },
    /// A PEM key was given for an HS* algorithm (it would be the confusion attack).
    #[error("{algorithm} needs a shared secret, but the key is a PEM key")]
    HmacWithPemKey {
        /// The requested algorithm.
        algorithm: Algorithm,
    },
    /// The key is not a PEM private key (PKCS#8, or PKCS#1 RSA, or SEC1 EC) for the algorithm.
    #[error("the key is not a PEM private key usable for {algorithm}")]
    UnusableKey {
        /// The requested algorithm.
        algorithm: Algorithm,
    },
}

/// Signs `claims` (a JSON object) with `algorithm`.
///
/// `key` is the HS* secret (its UTF-8 bytes), or a private key PEM: PKCS#8
/// (`BEGIN PRIVATE KEY`) for every algorithm, also `BEGIN RSA PRIVATE KEY` for RS*/PS* and
/// `BEGIN EC PRIVATE KEY` for ES*.
pub fn sign(
    algorithm: Algorithm,
    key: &str,
    claims: &serde_json::Value,
) -> Result<String, MintError> {
    sign_with_key_id(algorithm, key, claims, None)
}

/// [`sign`], with a `kid` header when `key_id` is given (tokens checked against a JWKS).
pub fn sign_with_key_id(
    algorithm: Algorithm,
    key: &str,
    claims: &serde_json::Value,
    key_id: Option<&str>,
) -> Result<String, MintError> {
    if !claims.is_object() {
        return Err(MintError::ClaimsNotObject);
    }
    let unusable = MintError::UnusableKey { algorithm };
    let Some(library_algorithm) = algorithm.library_algorithm() else {
        return sign_es512(key, claims, key_id).ok_or(unusable);
    };
    let encoding_key = if algorithm.is_hmac() {
        if key.contains("-----BEGIN") {
            return Err(MintError::HmacWithPemKey { algorithm });
        }
        EncodingKey::from_secret(key.as_bytes())
            .map_err(|_| MintError::EmptySecret { algorithm })?
    } else {
        encoding_key(algorithm, key.trim()).ok_or(unusable.clone())?
    };
    let mut header = Header::new(library_algorithm);
    header.kid = key_id.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key).map_err(|_| unusable)
}

/// A fresh HS* secret: 32 random bytes from the OS, base64url without padding (43 chars).
pub fn random_hs_secret() -> String {
    let mut bytes = [0_u8; SECRET_RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PEM label of `pem` (`PRIVATE KEY`, `EC PRIVATE KEY`, …), if it is PEM.
fn pem_label(pem: &str) -> Option<&str> {
    pem.lines()
        .find_map(|line| line.trim().strip_prefix("-----BEGIN "))
        .and_then(|rest| rest.strip_suffix("-----"))
}

/// A jsonwebtoken signing key for every non-HMAC algorithm but ES512.
fn encoding_key(algorithm: Algorithm, pem: &str) -> Option<EncodingKey> {
    let label = pem_label(pem)?;
    let bytes = pem.as_bytes();
    match algorithm {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => match label {
            PKCS8_LABEL | PKCS1_LABEL => EncodingKey::from_rsa_pem(bytes).ok(),
            _ => None,
        },
        Algorithm::ES256 => match label {
            PKCS8_LABEL => EncodingKey::from_ec_pem(bytes).ok(),
            SEC1_LABEL => {
                let secret = p256::SecretKey::from_sec1_pem(pem).ok()?;
                Some(EncodingKey::from_ec_der(
                    secret.to_pkcs8_der().ok()?.as_bytes(),
                ))
            }
            _ => None,
        },
        Algorithm::ES384 => match label {
            PKCS8_LABEL => EncodingKey::from_ec_pem(bytes).ok(),
            SEC1_LABEL => {
                let secret = p384::SecretKey::from_sec1_pem(pem).ok()?;
                Some(EncodingKey::from_ec_der(
                    secret.to_pkcs8_der().ok()?.as_bytes(),
                ))
            }
            _ => None,
        },
        Algorithm::EdDSA => match label {
            PKCS8_LABEL => EncodingKey::from_ed_pem(bytes).ok(),
            _ => None,
        },
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 | Algorithm::ES512 => None,
    }
}

/// ES512 with the `p521` crate: `base64url(header) . base64url(claims) . base64url(r || s)`.
fn sign_es512(pem: &str, claims: &serde_json::Value, key_id: Option<&str>) -> Option<String> {
    use p521::ecdsa::signature::Signer as _;

    let pem = pem.trim();
    let signing_key = match pem_label(pem)? {
        PKCS8_LABEL => p521::ecdsa::SigningKey::from_pkcs8_pem(pem).ok()?,
        SEC1_LABEL => {
            let secret = p521::SecretKey::from_sec1_pem(pem).ok()?;
            p521::ecdsa::SigningKey::from(&secret)
        }
        _ => return None,
    };
    let mut header = serde_json::json!({ "typ": "JWT", "alg": Algorithm::ES512.name() });
    if let Some(key_id) = key_id {
        header["kid"] = key_id.into();
    }
    let header_bytes = serde_json::to_vec(&header).ok()?;
    let claims_bytes = serde_json::to_vec(claims).ok()?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_bytes),
        URL_SAFE_NO_PAD.encode(claims_bytes)
    );
    let signature: p521::ecdsa::Signature = signing_key.sign(signing_input.as_bytes());
    Some(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_secrets_are_long_url_safe_and_distinct() {
        let first = random_hs_secret();
        let second = random_hs_secret();
        assert_eq!(first.len(), 43);
        assert_ne!(first, second);
        assert!(first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn claims_must_be_an_object() {
        let error = sign(Algorithm::HS256, "secret", &serde_json::json!([1, 2])).unwrap_err();
        assert_eq!(error, MintError::ClaimsNotObject);
    }

    #[test]
    fn hmac_refuses_pem_and_empty_secrets() {
        let claims = serde_json::json!({ "sub": "x" });
        assert_eq!(
            sign(
                Algorithm::HS256,
                "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----",
                &claims
            ),
            Err(MintError::HmacWithPemKey {
                algorithm: Algorithm::HS256
            })
        );
        assert_eq!(
            sign(Algorithm::HS512, "", &claims),
            Err(MintError::EmptySecret {
                algorithm: Algorithm::HS512
            })
        );
    }

    #[test]
    fn garbage_keys_are_unusable_and_not_echoed() {
        let claims = serde_json::json!({ "sub": "x" });
        for algorithm in Algorithm::ALL.into_iter().filter(|a| !a.is_hmac()) {
            let error = sign(algorithm, "not-a-key-SECRETMARKER", &claims).unwrap_err();
            assert_eq!(error, MintError::UnusableKey { algorithm });
            assert!(!error.to_string().contains("SECRETMARKER"));
        }
    }

    #[test]
    fn pem_labels() {
        assert_eq!(
            pem_label("-----BEGIN EC PRIVATE KEY-----\nxx"),
            Some("EC PRIVATE KEY")
        );
        assert_eq!(
            pem_label("  -----BEGIN PRIVATE KEY-----  \n"),
            Some("PRIVATE KEY")
        );
        assert_eq!(pem_label("secret"), None);
    }
}
