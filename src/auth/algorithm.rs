//! JWS signature algorithms supported by ringcast (PROTOCOL §1).
//!
//! Responsibility: name the algorithms, parse their JWS names, and say which key kind each
//! one needs. Must not: hold keys or do cryptography (that is `jwt` and `mint`).
//!
//! Invariants: `none` is not an algorithm here and never parses; names are case-sensitive,
//! exactly as in RFC 7518 (`EdDSA` as in RFC 8037).

use std::fmt;

/// A JWS `alg` value that ringcast can verify and sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512 (verified with the `p521` crate, not jsonwebtoken).
    ES512,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm, in the order of RFC 7518.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// Parses a JWS `alg` name; `None` for unknown names and for `none`.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether this is an HMAC algorithm, keyed by a shared secret instead of a PEM key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The jsonwebtoken equivalent; `None` for ES512, which jsonwebtoken 12 lacks.
    pub(crate) fn library_algorithm(self) -> Option<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm as Library;
        Some(match self {
            Algorithm::HS256 => Library::HS256,
            Algorithm::HS384 => Library::HS384,
            Algorithm::HS512 => Library::HS512,
            Algorithm::RS256 => Library::RS256,
            Algorithm::RS384 => Library::RS384,
            Algorithm::RS512 => Library::RS512,
            Algorithm::PS256 => Library::PS256,
            Algorithm::PS384 => Library::PS384,
            Algorithm::PS512 => Library::PS512,
            Algorithm::ES256 => Library::ES256,
            Algorithm::ES384 => Library::ES384,
            Algorithm::EdDSA => Library::EdDSA,
            Algorithm::ES512 => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for algorithm in Algorithm::ALL {
            assert_eq!(Algorithm::parse(algorithm.name()), Some(algorithm));
            assert_eq!(algorithm.to_string(), algorithm.name());
        }
    }

    #[test]
    fn unknown_names_and_none_do_not_parse() {
        for name in [
            "none", "None", "NONE", "", "hs256", "ES256K", "EDDSA", "XY", "RS1",
        ] {
            assert_eq!(Algorithm::parse(name), None, "{name}");
        }
    }

    #[test]
    fn only_hs_algorithms_are_hmac() {
        let hmac: Vec<Algorithm> = Algorithm::ALL
            .into_iter()
            .filter(|algorithm| algorithm.is_hmac())
            .collect();
        assert_eq!(hmac, [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
    }

    #[test]
    fn every_algorithm_but_es512_maps_to_the_library() {
        for algorithm in Algorithm::ALL {
            assert_eq!(
                algorithm.library_algorithm().is_none(),
                algorithm == Algorithm::ES512
            );
        }
    }
}
