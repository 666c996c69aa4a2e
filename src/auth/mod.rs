//! Authentication and authorisation of connections and admin calls (PROTOCOL §1–§2).
//!
//! Responsibility: everything between "a peer presents an address and a token" and "this
//! connection may publish to that topic": source-address filters, JWT verification,
//! permission sets, and token minting for tooling.
//!
//! Must not: do I/O, read the clock (time is a `now_unix_s` parameter), know about
//! sockets, HTTP or WebSocket frames, or log; callers map the errors to HTTP statuses and
//! close codes.
//!
//! Invariants: keys and secrets never appear in `Debug` output or error messages; a token
//! never appears in an error message.
//!
//! # Layout
//! - [`algorithm`]: the supported JWS algorithms.
//! - [`jwt`]: [`Verifier`], compiled from an app key configuration, verifies tokens.
//! - [`claims`]: the claim checks every algorithm shares, and the [`Claims`] kept.
//! - [`token_cache`]: [`TokenCache`], the node's verified tokens (by keyed digest), so a
//!   reconnect skips the signature check.
//! - `key`: a parsed verification key and the signature check with it (shared by
//!   [`jwt`] and [`jwks`], which import it, not each other's keys).
//! - [`jwks`]: JWKS documents parsed into bounded key sets, and the shared [`JwksCache`]
//!   a JWKS-backed verifier reads (the fetching is `runtime::jwks`).
//! - [`anonymous`]: [`AnonymousIssuer`], which mints the tokens of `POST /token/anonymous`.
//! - [`permissions`]: [`PermissionSet`], compiled once per connection from the claims.
//! - [`address`]: [`SourceFilter`], the `adminSourceAddress` / `clientSourceAddress` lists,
//!   and the [`ClientAddress`] they judge.
//! - [`forwarded`]: the client address of a request through trusted proxies
//!   (`X-Forwarded-For`).
//! - [`mint`]: signing tokens, for the `ringcast token` command and tests.
//! - [`keygen`]: fresh secrets and key pairs, for `ringcast keys` and `ringcast init`.

pub mod address;
pub mod algorithm;
pub mod anonymous;
pub mod claims;
pub mod forwarded;
pub mod jwks;
pub mod jwt;
mod key;
pub mod keygen;
pub mod mint;
pub mod permissions;
pub mod token_cache;

#[cfg(test)]
mod jwt_tests;

pub use address::{AddressError, AddressKey, ClientAddress, SourceFilter};
pub use algorithm::Algorithm;
pub use anonymous::{AnonymousError, AnonymousIssuer, IssuedToken};
pub use jwks::JwksCache;
pub use jwt::{Claims, KeyError, TokenError, Verifier, VerifierConfig, LEEWAY_S, MAX_TOKEN_BYTES};
pub use keygen::{KeyMaterial, KeygenError};
pub use mint::{random_hs_secret, sign, sign_with_key_id, MintError};
pub use permissions::PermissionSet;
pub use token_cache::TokenCache;
