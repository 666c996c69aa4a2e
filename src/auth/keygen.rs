//! Key generation, for the `ringcast keys` and `ringcast init` commands.
//!
//! Responsibility: make fresh signing material for any supported algorithm — an HS* secret,
//! or a private key (PKCS#8 PEM, signs tokens) with its public key (SPKI PEM, goes into the
//! config's `authKey.key` / `adminKey.key`).
//!
//! Must not: write files, read the clock, or put key material into an error or a `Debug`
//! output. It reads the operating system's random source and nothing else; it is not on the
//! broker's request path.
//!
//! Invariants: the key kind follows the algorithm (RS*/PS* → RSA [`RSA_MODULUS_BITS`],
//! ES256 → P-256, ES384 → P-384, ES512 → P-521, EdDSA → Ed25519); every generated private
//! key is accepted by [`crate::auth::mint::sign`] and its public key by the verifier; an
//! HS* secret is base64url text of as many random bytes as the hash output (RFC 7518 §3.2).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::KeypairBytes;
use getrandom::SysRng;
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

use crate::auth::algorithm::Algorithm;

/// RSA modulus size for RS*/PS* keys: 2048 bits is the RFC 7518 minimum and what the
/// hosted service generates; it is generated in about a second even in a debug build,
/// where 3072 bits takes several.
pub const RSA_MODULUS_BITS: usize = 2048;

/// Bytes of an Ed25519 seed (RFC 8032).
const ED25519_SEED_BYTES: usize = 32;

/// Why a key could not be made. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeygenError {
    /// The operating system's random source failed; retry, or check `/dev/urandom`.
    #[error("the system random source failed: {reason}")]
    Random {
        /// The source's own description of the failure.
        reason: String,
    },
    /// The generated key could not be encoded as PEM (a library failure, not an input error).
    #[error("cannot encode the generated {algorithm} key as PEM")]
    Encoding {
        /// The requested algorithm.
        algorithm: Algorithm,
    },
}

/// Fresh signing material for one algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An HS* shared secret: the config holds it, and tokens are signed with it.
    Secret {
        /// The algorithm it is meant for.
        algorithm: Algorithm,
        /// The secret string (used as its UTF-8 bytes).
        secret: String,
    },
    /// An asymmetric key pair.
    Pair {
        /// The algorithm it is meant for.
        algorithm: Algorithm,
        /// PKCS#8 PEM (`BEGIN PRIVATE KEY`): signs tokens; keep it secret.
        private_pem: String,
        /// SPKI PEM (`BEGIN PUBLIC KEY`): the config's `authKey.key` / `adminKey.key`.
        public_pem: String,
    },
}

impl KeyMaterial {
    /// The algorithm the material was made for.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            KeyMaterial::Secret { algorithm, .. } | KeyMaterial::Pair { algorithm, .. } => {
                *algorithm
            }
        }
    }

    /// What goes into the config's `key` field: the secret, or the public key PEM.
    pub fn config_key(&self) -> &str {
        match self {
            KeyMaterial::Secret { secret, .. } => secret,
            KeyMaterial::Pair { public_pem, .. } => public_pem,
        }
    }

    /// What signs tokens: the secret, or the private key PEM.
    pub fn signing_key(&self) -> &str {
        match self {
            KeyMaterial::Secret { secret, .. } => secret,
            KeyMaterial::Pair { private_pem, .. } => private_pem,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Secret { algorithm, .. } => formatter
                .debug_struct("Secret")
                .field("algorithm", algorithm)
                .field("secret", &"<redacted>")
                .finish(),
            KeyMaterial::Pair {
                algorithm,
                public_pem,
                ..
            } => formatter
                .debug_struct("Pair")
                .field("algorithm", algorithm)
                .field("private_pem", &"<redacted>")
                .field("public_pem", public_pem)
                .finish(),
        }
    }
}

/// Makes fresh material for `algorithm` from the operating system's random source.
pub fn generate(algorithm: Algorithm) -> Result<KeyMaterial, KeygenError> {
    let encoding = KeygenError::Encoding { algorithm };
    let (private_pem, public_pem) = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            // RFC 7518 §3.2: an HS key at least as long as the hash output. The base64url
            // text is longer still, and it is the text's bytes that key the HMAC.
            let mut bytes = vec![0_u8; hmac_key_bytes(algorithm)];
            getrandom::fill(&mut bytes).map_err(random)?;
            let secret = URL_SAFE_NO_PAD.encode(&bytes);
            bytes.fill(0);
            return Ok(KeyMaterial::Secret { algorithm, secret });
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let private = rsa::PrivateKey::new(&mut SysRng, RSA_MODULUS_BITS).map_err(|error| {
                KeygenError::Random {
                    reason: error.to_string(),
                }
            })?;
            let public = private.to_public_key();
            (
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|pem| pem.to_string()),
                public.to_public_key_pem(LineEnding::LF),
            )
        }
        Algorithm::ES256 => {
            let private = p256::SecretKey::try_generate_from_rng(&mut SysRng).map_err(random)?;
            (
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|pem| pem.to_string()),
                private.public_key().to_public_key_pem(LineEnding::LF),
            )
        }
        Algorithm::ES384 => {
            let private = p384::SecretKey::try_generate_from_rng(&mut SysRng).map_err(random)?;
            (
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|pem| pem.to_string()),
                private.public_key().to_public_key_pem(LineEnding::LF),
            )
        }
        Algorithm::ES512 => {
            let private = p521::SecretKey::try_generate_from_rng(&mut SysRng).map_err(random)?;
            (
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|pem| pem.to_string()),
                private.public_key().to_public_key_pem(LineEnding::LF),
            )
        }
        Algorithm::EdDSA => {
            let mut seed = [0_u8; ED25519_SEED_BYTES];
            getrandom::fill(&mut seed).map_err(random)?;
            let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
            // PKCS#8 v1 (seed only, no embedded public key): the form `openssl genpkey`
            // writes and every JWT library reads.
            let private = KeypairBytes {
                secret_key: seed,
                public_key: None,
            };
            seed.fill(0);
            (
                private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map(|pem| pem.to_string()),
                signing.verifying_key().to_public_key_pem(LineEnding::LF),
            )
        }
    };
    Ok(KeyMaterial::Pair {
        algorithm,
        private_pem: private_pem.map_err(|_| encoding.clone())?,
        public_pem: public_pem.map_err(|_| encoding)?,
    })
}

/// Random bytes of an HS* secret: the hash output size (32, 48, 64).
fn hmac_key_bytes(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn random(error: getrandom::Error) -> KeygenError {
    KeygenError::Random {
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::{Verifier, VerifierConfig};
    use crate::auth::mint::sign;

    fn round_trip(algorithm: Algorithm) {
        let material = generate(algorithm).unwrap();
        assert_eq!(material.algorithm(), algorithm);
        if algorithm.is_hmac() {
            assert!(matches!(material, KeyMaterial::Secret { .. }));
            assert!(material.signing_key().len() >= hmac_key_bytes(algorithm) * 4 / 3);
        } else {
            assert!(material
                .signing_key()
                .starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(material
                .config_key()
                .starts_with("-----BEGIN PUBLIC KEY-----\n"));
        }
        let token = sign(
            algorithm,
            material.signing_key(),
            &serde_json::json!({ "sub": "keygen", "exp": 4_000_000_000_u64 }),
        )
        .unwrap();
        let verifier = Verifier::new(&VerifierConfig {
            key: material.config_key().to_string(),
            algorithms: vec![algorithm.name().to_string()],
            issuer: Vec::new(),
            audience: Vec::new(),
        })
        .unwrap();
        let claims = verifier.verify(&token, 1_700_000_000).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("keygen"));
        // A second key of the same algorithm is a different key.
        let other = generate(algorithm).unwrap();
        assert_ne!(other.signing_key(), material.signing_key());
    }

    #[test]
    fn every_non_rsa_algorithm_round_trips_through_mint_and_verify() {
        for algorithm in Algorithm::ALL {
            if !matches!(algorithm.name().as_bytes()[0], b'R' | b'P') {
                round_trip(algorithm);
            }
        }
    }

    #[test]
    fn rsa_keys_round_trip_for_pkcs1_and_pss() {
        round_trip(Algorithm::RS256);
        round_trip(Algorithm::PS512);
    }

    #[test]
    fn debug_never_prints_secrets() {
        for algorithm in [Algorithm::HS256, Algorithm::ES256] {
            let material = generate(algorithm).unwrap();
            let text = format!("{material:?}");
            assert!(text.contains("<redacted>"));
            assert!(!text.contains(material.signing_key()));
        }
    }
}
