//! The claims of a token whose signature verified: the checks every algorithm shares
//! (time, issuer, audience), the [`Claims`] ringcast keeps, and [`TokenError`], every
//! reason a token is refused (the lowest auth module that needs it).
//!
//! Must not: read the clock (time is the `now_unix_s` parameter) or see the token; it gets
//! the decoded claims part only.

use serde::Deserialize;
use std::collections::HashSet;

/// Leeway for `exp` and `nbf`, in seconds (PROTOCOL §1, decided): absorbs clock skew
/// between the token issuer and the broker.
pub const LEEWAY_S: u64 = 30;

/// Why a token was refused. `Display` is short and safe to log; it never holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS with base64url JSON parts and well-typed claims, or over
    /// `MAX_TOKEN_BYTES` (`auth::jwt`), or using `crit` header extensions. Answer 401.
    #[error("token is malformed")]
    Malformed,
    /// `alg` is `none`, unknown, or not in the configured allow-list. Answer 401.
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// JWKS source: no key of the current set has the token's `kid` (or, without `kid`, no
    /// single key fits). Answer 401; a refetch of the set has been requested (rate-limited),
    /// so the client's retry can succeed once the rotated set is in.
    #[error("token key id is not known")]
    UnknownKey,
    /// The signature does not verify with the configured key. Answer 401.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is more than [`LEEWAY_S`] in the past. Answer 401; the client gets a new token.
    #[error("token has expired")]
    Expired,
    /// `nbf` is more than [`LEEWAY_S`] in the future. Answer 401.
    #[error("token is not yet valid")]
    NotYetValid,
    /// Issuers are configured and `iss` is missing or not one of them. Answer 401.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// Audiences are configured and no `aud` value is one of them. Answer 401.
    #[error("token audience is not accepted")]
    WrongAudience,
}

/// The claims ringcast uses from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    /// `sub`, when present.
    pub subject: Option<String>,
    /// The `permissions` array followed by the space-separated `scope` entries,
    /// deduplicated, first occurrence kept.
    pub permissions: Vec<String>,
}

/// What a successful verification yields: the claims, and the token's `exp` (which the
/// token cache keeps to expire the entry with the token).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verified {
    pub claims: Claims,
    pub expires_at: Option<f64>,
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAudience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl RawAudience {
    /// Whether any value is in `accepted`.
    fn intersects(&self, accepted: &[String]) -> bool {
        match self {
            RawAudience::One(value) => accepted.contains(value),
            RawAudience::Many(values) => values.iter().any(|value| accepted.contains(value)),
        }
    }
}

/// The claims this module reads. Duplicate keys make serde fail, so a token cannot carry
/// two different `exp` values; unknown claims are ignored.
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    /// `sub`.
    #[serde(rename = "sub", default)]
    subject: Option<String>,
    /// `permissions`.
    #[serde(default)]
    permissions: Option<Vec<String>>,
    /// `scope`: space-separated permissions.
    #[serde(default)]
    scope: Option<String>,
    /// `exp`: a NumericDate, which RFC 7519 allows to be fractional.
    #[serde(rename = "exp", default)]
    expires_at: Option<f64>,
    /// `nbf`.
    #[serde(rename = "nbf", default)]
    not_before: Option<f64>,
    /// `iss`.
    #[serde(rename = "iss", default)]
    issuer: Option<String>,
    /// `aud`.
    #[serde(rename = "aud", default)]
    audience: Option<RawAudience>,
}

/// The one claims check for every algorithm: time, issuer, audience; then the result.
pub(crate) fn validate_claims(
    claims: RawClaims,
    issuers: &[String],
    audiences: &[String],
    now_unix_s: u64,
) -> Result<Verified, TokenError> {
    // Timestamps are far below 2^53, so the conversions to f64 are exact.
    let now = now_unix_s as f64;
    let leeway = LEEWAY_S as f64;
    if let Some(expires_at) = claims.expires_at {
        if now > expires_at + leeway {
            return Err(TokenError::Expired);
        }
    }
    if let Some(not_before) = claims.not_before {
        if not_before > now + leeway {
            return Err(TokenError::NotYetValid);
        }
    }
    if !issuers.is_empty() {
        match &claims.issuer {
            Some(issuer) if issuers.contains(issuer) => {}
            _ => return Err(TokenError::WrongIssuer),
        }
    }
    if !audiences.is_empty() {
        match &claims.audience {
            Some(audience) if audience.intersects(audiences) => {}
            _ => return Err(TokenError::WrongAudience),
        }
    }
    Ok(Verified {
        claims: Claims {
            subject: claims.subject,
            permissions: merge_permissions(claims.permissions, claims.scope.as_deref()),
        },
        expires_at: claims.expires_at,
    })
}

/// `permissions` then `scope` entries, deduplicated, first occurrence kept.
fn merge_permissions(permissions: Option<Vec<String>>, scope: Option<&str>) -> Vec<String> {
    let listed = permissions.unwrap_or_default();
    let scoped = scope.unwrap_or_default().split_whitespace();
    let mut seen: HashSet<String> = HashSet::new();
    let mut merged = Vec::with_capacity(listed.len());
    for permission in listed.into_iter().chain(scoped.map(str::to_owned)) {
        if !seen.contains(&permission) {
            seen.insert(permission.clone());
            merged.push(permission);
        }
    }
    merged
}
