//! Anonymous tokens: the self-hosted form of the hosted service's anonymous-token endpoint
//! (`POST /token/anonymous/{appId}`, README "Anonymous tokens").
//!
//! Responsibility: given an app's `anonymous` section and its compiled `authKey` verifier,
//! prove at config load which algorithms the signing key can produce *and* the `authKey`
//! accepts, then mint short-lived client tokens with a random `sub` and the configured
//! permissions.
//!
//! Must not: do I/O, read the clock (`now_unix_s` is a parameter), rate-limit (the broker
//! does, per source address), or put the signing key into `Debug` or an error.
//!
//! Invariants: every token it issues verifies with the app's `authKey` (each algorithm is
//! proven by a probe token at construction); `sub` is `anon-` and 32 random hex digits
//! (128 bits from the OS), so subjects are distinct and unguessable; `exp = iat + ttl`.

use std::fmt;

use rand::RngCore as _;
use serde_json::json;

use crate::auth::algorithm::Algorithm;
use crate::auth::jwt::Verifier;
use crate::auth::mint;

/// Longest anonymous-token lifetime accepted in the configuration: one day. Anonymous
/// tokens are meant to be short-lived; a client fetches a new one per connection.
pub const MAX_ANONYMOUS_TTL_SECONDS: u64 = 86_400;

/// Prefix of every anonymous subject.
pub const ANONYMOUS_SUBJECT_PREFIX: &str = "anon-";

/// Why an `anonymous` section cannot be used. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnonymousKeyError {
    /// The app's `authKey` is a JWKS: the broker cannot know which published key its signing
    /// key belongs to. Use a raw `authKey`.
    #[error("anonymous tokens need a raw authKey (a JWKS authKey is not supported)")]
    JwksAuthKey,
    /// `signingKey` is required: the `authKey` holds a public key.
    #[error("signingKey is required when authKey is a public key: give the private key PEM")]
    MissingSigningKey,
    /// The key signs none of `authKey.algorithms` (wrong key type or curve, or not a key).
    #[error("signingKey cannot sign any of authKey.algorithms {algorithms:?} (it must be the HS secret or the private key matching authKey)")]
    NoSignableAlgorithm {
        /// `authKey.algorithms`.
        algorithms: Vec<Algorithm>,
    },
    /// The key signs `algorithm` but `authKey` rejects the result: not the matching key.
    #[error("a token signed with signingKey for {algorithm} does not verify with authKey: the keys do not match")]
    KeyMismatch {
        /// The algorithm probed.
        algorithm: Algorithm,
    },
    /// `ttlSeconds` is 0 or above [`MAX_ANONYMOUS_TTL_SECONDS`].
    #[error("ttlSeconds must be 1 to {MAX_ANONYMOUS_TTL_SECONDS}")]
    BadTtl,
}

/// Why a token request is refused (answer 400, except `Signing`: 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnonymousError {
    /// The requested `alg` is not one this app can issue.
    #[error("alg {requested:?} is not available for this app's anonymous tokens; available: {available}")]
    AlgorithmNotAvailable {
        /// The requested name (a JWS `alg`, not a secret).
        requested: String,
        /// The algorithms that are, comma-separated.
        available: String,
    },
    /// Signing failed although the key was proven at load (should not happen).
    #[error("the token could not be signed")]
    Signing,
}

/// A minted token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Its random `sub`.
    pub subject: String,
    /// Seconds until `exp`.
    pub expires_in_s: u64,
    /// The algorithm it was signed with.
    pub algorithm: Algorithm,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("subject", &self.subject)
            .field("expires_in_s", &self.expires_in_s)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// A compiled `anonymous` section.
pub struct AnonymousIssuer {
    /// Algorithms proven to round-trip with `authKey`, in `authKey` order; the first is the
    /// default. Never empty.
    algorithms: Vec<Algorithm>,
    /// HS* secret or private key PEM.
    signing_key: String,
    /// Copied into every token.
    permissions: Vec<String>,
    /// Token lifetime.
    ttl_seconds: u64,
    /// `iss` to put in (the first accepted issuer), when `authKey` checks issuers.
    issuer: Option<String>,
    /// `aud` to put in (the first accepted audience), when `authKey` checks audiences.
    audience: Option<String>,
}

impl fmt::Debug for AnonymousIssuer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AnonymousIssuer")
            .field("algorithms", &self.algorithms)
            .field("signing_key", &"<redacted>")
            .field("permissions", &self.permissions)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish()
    }
}

impl AnonymousIssuer {
    /// Proves `signing_key` against `verifier` (the app's compiled `authKey`) for each of its
    /// algorithms. `signing_key` `None` reuses `authkey_secret` (HS* apps only).
    pub fn new(
        verifier: &Verifier,
        authkey_secret: &str,
        signing_key: Option<&str>,
        permissions: Vec<String>,
        ttl_seconds: u64,
    ) -> Result<AnonymousIssuer, AnonymousKeyError> {
        if verifier.uses_jwks() {
            return Err(AnonymousKeyError::JwksAuthKey);
        }
        if ttl_seconds == 0 || ttl_seconds > MAX_ANONYMOUS_TTL_SECONDS {
            return Err(AnonymousKeyError::BadTtl);
        }
        let all: Vec<Algorithm> = verifier.algorithms().collect();
        let signing_key = match signing_key {
            Some(key) => key.to_owned(),
            None if all.iter().all(|algorithm| algorithm.is_hmac()) => authkey_secret.to_owned(),
            None => return Err(AnonymousKeyError::MissingSigningKey),
        };
        let mut issuer = AnonymousIssuer {
            algorithms: Vec::new(),
            signing_key,
            permissions,
            ttl_seconds,
            issuer: verifier.issuers().first().cloned(),
            audience: verifier.audiences().first().cloned(),
        };
        for algorithm in all.iter().copied() {
            let claims = issuer.claims("anon-probe", 0);
            let Ok(token) = mint::sign(algorithm, &issuer.signing_key, &claims) else {
                continue;
            };
            if verifier.verify(&token, 0).is_err() {
                return Err(AnonymousKeyError::KeyMismatch { algorithm });
            }
            issuer.algorithms.push(algorithm);
        }
        if issuer.algorithms.is_empty() {
            return Err(AnonymousKeyError::NoSignableAlgorithm { algorithms: all });
        }
        Ok(issuer)
    }

    /// The algorithms tokens can be issued with; the first is the default.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The configured lifetime.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// The claims of a token for `subject` issued at `now_unix_s`.
    fn claims(&self, subject: &str, now_unix_s: u64) -> serde_json::Value {
        let mut claims = json!({
            "sub": subject,
            "permissions": self.permissions,
            "iat": now_unix_s,
            "exp": now_unix_s + self.ttl_seconds,
        });
        if let Some(issuer) = &self.issuer {
            claims["iss"] = issuer.clone().into();
        }
        if let Some(audience) = &self.audience {
            claims["aud"] = audience.clone().into();
        }
        claims
    }

    /// Mints a token with a fresh random subject, signed with `requested` (a JWS `alg`
    /// name) or the default algorithm.
    pub fn issue(
        &self,
        requested: Option<&str>,
        now_unix_s: u64,
    ) -> Result<IssuedToken, AnonymousError> {
        let algorithm = match requested {
            None => self.algorithms[0],
            Some(name) => Algorithm::parse(name)
                .filter(|algorithm| self.algorithms.contains(algorithm))
                .ok_or_else(|| AnonymousError::AlgorithmNotAvailable {
                    requested: name.chars().take(32).collect(),
                    available: self
                        .algorithms
                        .iter()
                        .map(|algorithm| algorithm.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?,
        };
        let subject = random_subject();
        let claims = self.claims(&subject, now_unix_s);
        let token = mint::sign(algorithm, &self.signing_key, &claims)
            .map_err(|_| AnonymousError::Signing)?;
        Ok(IssuedToken {
            token,
            subject,
            expires_in_s: self.ttl_seconds,
            algorithm,
        })
    }
}

/// `anon-` and 128 random bits in hex.
fn random_subject() -> String {
    let mut bytes = [0_u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut subject = String::with_capacity(ANONYMOUS_SUBJECT_PREFIX.len() + 32);
    subject.push_str(ANONYMOUS_SUBJECT_PREFIX);
    for byte in bytes {
        subject.push_str(&format!("{byte:02x}"));
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::VerifierConfig;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
    }

    fn verifier(key: &str, algorithms: &[&str]) -> Verifier {
        Verifier::new(&VerifierConfig {
            key: key.into(),
            algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
            issuer: vec!["https://issuer.example".into()],
            audience: vec!["aud-1".into()],
        })
        .unwrap()
    }

    #[test]
    fn hs_app_reuses_the_secret_and_tokens_verify() {
        let verifier = verifier("s3cret", &["HS256", "HS512"]);
        let issuer = AnonymousIssuer::new(&verifier, "s3cret", None, vec!["p".into()], 60).unwrap();
        assert_eq!(issuer.algorithms(), [Algorithm::HS256, Algorithm::HS512]);
        let first = issuer.issue(None, 1_000).unwrap();
        let second = issuer.issue(Some("HS512"), 1_000).unwrap();
        assert_eq!(second.algorithm, Algorithm::HS512);
        assert_ne!(first.subject, second.subject);
        assert!(first.subject.starts_with("anon-") && first.subject.len() == 37);
        let claims = verifier.verify(&first.token, 1_000).unwrap();
        assert_eq!(claims.subject.as_deref(), Some(first.subject.as_str()));
        assert_eq!(claims.permissions, ["p"]);
        assert!(format!("{issuer:?}").contains("redacted"));
    }

    #[test]
    fn unavailable_algorithm_is_a_clear_error() {
        let verifier = verifier("s3cret", &["HS256"]);
        let issuer = AnonymousIssuer::new(&verifier, "s3cret", None, vec![], 60).unwrap();
        let error = issuer.issue(Some("ES512"), 0).unwrap_err();
        assert!(error.to_string().contains("ES512"), "{error}");
        assert!(error.to_string().contains("HS256"), "{error}");
    }

    #[test]
    fn public_key_apps_need_the_matching_private_key() {
        let verifier = verifier(&fixture("ec521_public.pem"), &["ES512"]);
        assert_eq!(
            AnonymousIssuer::new(&verifier, "", None, vec![], 60).unwrap_err(),
            AnonymousKeyError::MissingSigningKey
        );
        let other = fixture("ec521_other_private.pem");
        assert_eq!(
            AnonymousIssuer::new(&verifier, "", Some(&other), vec![], 60).unwrap_err(),
            AnonymousKeyError::KeyMismatch {
                algorithm: Algorithm::ES512
            }
        );
        let rsa = fixture("rsa_private.pem");
        assert!(matches!(
            AnonymousIssuer::new(&verifier, "", Some(&rsa), vec![], 60).unwrap_err(),
            AnonymousKeyError::NoSignableAlgorithm { .. }
        ));
        let right = fixture("ec521_private.pem");
        let issuer = AnonymousIssuer::new(&verifier, "", Some(&right), vec![], 60).unwrap();
        let issued = issuer.issue(Some("ES512"), 5).unwrap();
        assert!(verifier.verify(&issued.token, 5).is_ok());
    }

    #[test]
    fn ttl_is_bounded() {
        let verifier = verifier("s3cret", &["HS256"]);
        for ttl in [0, MAX_ANONYMOUS_TTL_SECONDS + 1] {
            assert_eq!(
                AnonymousIssuer::new(&verifier, "s3cret", None, vec![], ttl).unwrap_err(),
                AnonymousKeyError::BadTtl
            );
        }
    }
}
