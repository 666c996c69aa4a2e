//! A verification key ready for one JWS algorithm (or, from a JWKS, one key family), and
//! the signature check with it.
//!
//! Responsibility: the one place that holds parsed public keys and secrets and asks a
//! library to check a signature: jsonwebtoken's crypto provider for every algorithm but
//! ES512, the RustCrypto `p521` crate for ES512 (jsonwebtoken 12 has no ES512). Both key
//! sources build on it: [`crate::auth::jwt`] (raw keys from the configuration) and
//! [`crate::auth::jwks`] (keys from a fetched key set); it imports neither.
//!
//! Must not: do I/O, read the clock, parse tokens or claims, or show a key (no `Debug`).
//!
//! Invariants: a [`VerificationKey::Library`] was proven usable for its algorithm when it
//! was built (a verifier was made from it once); an HMAC algorithm only ever meets an HMAC
//! secret in [`VerificationKey::check`] (algorithm-confusion guard).

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::signature::Verifier as _;
use jsonwebtoken::DecodingKey;

use crate::auth::algorithm::Algorithm;

/// Length of a raw `r || s` ES512 signature: two 66-byte P-521 scalars.
const ES512_SIGNATURE_BYTES: usize = 132;

/// A key ready for one algorithm (or, from a JWKS, for one key family).
#[derive(Clone)]
pub(crate) enum VerificationKey {
    /// Verified by jsonwebtoken's crypto provider (an HMAC secret or a public key).
    Library(DecodingKey),
    /// ES512, verified by the `p521` crate.
    P521(Box<p521::ecdsa::VerifyingKey>),
}

/// Why [`VerificationKey::check`] refused a signature; the token verifier maps it to its
/// own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// The key cannot verify this algorithm (an HS* token against a public key, or the
    /// reverse; ES512 against a library key): refuse the algorithm.
    WrongAlgorithm,
    /// The signature does not verify (or is not even well-formed).
    Invalid,
}

impl VerificationKey {
    /// `key` for `algorithm`, proven usable by building a verifier once (this parses EC
    /// and Ed points and checks that the curve matches); `None` when it is not usable.
    pub(crate) fn library(
        provider: &'static CryptoProvider,
        algorithm: Algorithm,
        key: DecodingKey,
    ) -> Option<VerificationKey> {
        let library_algorithm = algorithm.library_algorithm()?;
        (provider.verifier_factory)(&library_algorithm, &key).ok()?;
        Some(VerificationKey::Library(key))
    }

    /// Checks `signature` over `message` with this key for `algorithm`.
    pub(crate) fn check(
        &self,
        provider: &'static CryptoProvider,
        algorithm: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        match (self, algorithm.library_algorithm()) {
            (VerificationKey::Library(key), Some(library_algorithm)) => {
                // Algorithm-confusion guard, second line: HS* only ever meets a secret.
                if algorithm.is_hmac() != (key.family() == jsonwebtoken::AlgorithmFamily::Hmac) {
                    return Err(SignatureError::WrongAlgorithm);
                }
                let verifier = (provider.verifier_factory)(&library_algorithm, key)
                    .map_err(|_| SignatureError::Invalid)?;
                verifier
                    .verify(message, &signature.to_vec())
                    .map_err(|_| SignatureError::Invalid)
            }
            (VerificationKey::P521(key), None) => {
                if signature.len() != ES512_SIGNATURE_BYTES {
                    return Err(SignatureError::Invalid);
                }
                let signature = p521::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Invalid)?;
                key.verify(message, &signature)
                    .map_err(|_| SignatureError::Invalid)
            }
            // Keys are built so that ES512 pairs with `P521` and every other algorithm
            // with `Library`.
            _ => Err(SignatureError::WrongAlgorithm),
        }
    }
}
