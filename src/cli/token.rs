//! `ringcast token`: mint a token with an app's key from the configuration (HS* secrets)
//! or a private key file (`--key`), then check that the broker would accept it.
//!
//! The check verifies the new token with the key exactly as the broker compiles it from the
//! same file (`"source": "raw"` keys; a JWKS key cannot be checked offline). When it does
//! not verify — typically `--key` is not the private key matching the configured public key,
//! or `--alg` is not in the key's `algorithms` — a warning on stderr says why; the token is
//! still printed (exit 0), as a token for another broker may be what was asked for.

use super::hint;
use anyhow::{bail, Context as _};
use clap::Args;
use ringcast::auth::{mint, Algorithm, TokenError, Verifier};
use ringcast::config::{AppConfig, KeyConfig};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every permission a development token carries.
pub const ALL_PERMISSIONS: [&str; 4] = [
    "realtime:publisher:write:topic:*",
    "realtime:subscriber:read:topic:*",
    "realtime:admin:manage:connections",
    "realtime:admin:manage:subscribers",
];

#[derive(Args)]
pub struct TokenArgs {
    #[arg(long)]
    config: String,
    /// The app id (not needed with --server-admin).
    #[arg(long, required_unless_present = "server_admin", default_value = "")]
    app: String,
    /// Sign with `server.adminKey` (for `POST /admin/reload`) instead of an app's key.
    #[arg(long, conflicts_with = "admin")]
    server_admin: bool,
    /// Sign for the HTTP API (the app's adminKey) instead of WebSocket clients (authKey).
    #[arg(long)]
    admin: bool,
    /// `sub` claim.
    #[arg(long)]
    sub: Option<String>,
    /// A permission string; repeatable. None given: every permission.
    #[arg(long = "permission")]
    permissions: Vec<String>,
    /// Lifetime: e.g. 3600, 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Private key PEM for RS/PS/ES/EdDSA algorithms.
    #[arg(long)]
    key: Option<String>,
    /// Algorithm (default: the key's first configured algorithm).
    #[arg(long)]
    alg: Option<String>,
    /// `kid` header: the key id in the app's JWKS (`"source": "jwks"` keys).
    #[arg(long)]
    kid: Option<String>,
}

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(position) => text.split_at(position),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("invalid --ttl `{text}`"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("invalid --ttl unit in `{text}` (use s, m, h or d)"),
    };
    Ok(value * factor)
}

/// What a token is made of, besides the key.
pub struct Claims<'a> {
    pub subject: Option<&'a str>,
    pub permissions: &'a [String],
    pub ttl_seconds: u64,
}

pub fn mint_token(
    key: &KeyConfig,
    private_key: Option<&str>,
    algorithm: Option<&str>,
    claims_in: &Claims<'_>,
    key_id: Option<&str>,
) -> anyhow::Result<String> {
    let name = algorithm
        .or_else(|| key.algorithms.first().map(String::as_str))
        .context("the key lists no algorithm")?;
    let algorithm = Algorithm::parse(name).with_context(|| format!("unknown algorithm {name}"))?;
    let secret = if algorithm.is_hmac() {
        key.key.clone()
    } else {
        let path = private_key.with_context(|| {
            format!("{name} tokens need --key PRIVATE.pem (the config holds only the public key)")
        })?;
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    };
    let now = now_seconds();
    let mut claims = serde_json::json!({
        "iat": now,
        "exp": now + claims_in.ttl_seconds,
        "permissions": claims_in.permissions,
    });
    if let Some(subject) = claims_in.subject {
        claims["sub"] = subject.into();
    }
    if let Some(issuer) = key.issuer.first() {
        claims["iss"] = issuer.clone().into();
    }
    if let Some(audience) = &key.audience {
        if let Some(first) = audience.to_vec().first() {
            claims["aud"] = first.clone().into();
        }
    }
    mint::sign_with_key_id(algorithm, &secret, &claims, key_id).context("cannot sign the token")
}

/// Why the broker would refuse `token` under `key` (a `"source": "raw"` key), or `None`
/// when it verifies — or cannot be checked here (a JWKS key).
pub fn refusal(key: &KeyConfig, token: &str) -> Option<TokenError> {
    if key.source != "raw" {
        return None;
    }
    let verifier = Verifier::new(&ringcast::broker::apps::verifier_config(key)).ok()?;
    verifier.verify(token, now_seconds()).err()
}

pub fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let config = super::load_config(&args.config)?;
    let (key, which) = if args.server_admin {
        let key = config
            .server
            .admin_key
            .as_ref()
            .with_context(|| format!("no server.adminKey in {}", args.config))?;
        (key, "server.adminKey".to_string())
    } else {
        let app: &AppConfig = config
            .apps
            .iter()
            .find(|app| app.app_id == args.app)
            .with_context(|| format!("no app `{}` in {}", args.app, args.config))?;
        if args.admin {
            let key = app.admin_key.as_ref().context("this app has no adminKey")?;
            (key, format!("app {}'s adminKey", app.app_id))
        } else {
            (&app.auth_key, format!("app {}'s authKey", app.app_id))
        }
    };
    let permissions: Vec<String> = if args.permissions.is_empty() {
        ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect()
    } else {
        args.permissions.clone()
    };
    let claims = Claims {
        subject: args.sub.as_deref(),
        permissions: &permissions,
        ttl_seconds: parse_ttl(&args.ttl)?,
    };
    let token = mint_token(
        key,
        args.key.as_deref(),
        args.alg.as_deref(),
        &claims,
        args.kid.as_deref(),
    )?;
    if let Some(reason) = refusal(key, &token) {
        let cause = match (reason, &args.key) {
            (TokenError::BadSignature, Some(private)) => format!(
                "{} is not the private key matching {which}'s public key in {}",
                hint::quote(private),
                args.config
            ),
            _ => format!("{reason} under {which} in {}", args.config),
        };
        eprintln!("ringcast: warning: the broker will refuse this token: {cause}");
    }
    println!("{token}");
    Ok(())
}
