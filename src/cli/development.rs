//! The development app (`ringcast` without `--config`) and the banner that says how to use
//! it: its id, a client and an admin token, and complete commands — `ringcast subscribe`,
//! `ringcast publish` (WebSocket and HTTP), curl, and websocat for those who have it — with
//! the address, id and tokens filled in, written the way this binary was started (`hint`).
//!
//! The key is generated for this run and never written anywhere, so another process cannot
//! know it: the banner's commands carry the tokens.

use super::hint;
use super::token::{mint_token, Claims, ALL_PERMISSIONS};
use ringcast::auth::mint;
use ringcast::config::{Config, KeyConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Lifetime of the banner's tokens.
const DEVELOPMENT_TOKEN_SECONDS: u64 = 3600;

/// A config with one development app keyed by a fresh HS256 secret.
pub fn development_config() -> Config {
    let secret = mint::random_hs_secret();
    let app_id = format!("{:032x}", rand_u128());
    let key = KeyConfig {
        source: "raw".into(),
        key: secret,
        algorithms: vec!["HS256".into()],
        issuer: Vec::new(),
        audience: None,
    };
    let app = format!(
        r#"{{"appId":"{app_id}","name":"Development app","authKey":{{"source":"raw","key":"x","algorithms":["HS256"]}},"enableWebSocketInboundTopic":true}}"#
    );
    let mut config = Config::from_json(&format!(r#"{{"apps":[{app}]}}"#))
        .expect("the built-in development config is valid");
    config.apps[0].auth_key = key.clone();
    config.apps[0].admin_key = Some(key);
    config
}

fn rand_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut value = 0u128;
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(super::token::now_seconds() as u128);
        value = (value << 64) | hasher.finish() as u128;
    }
    value
}

/// Where a client on this machine reaches a listener bound to `address` (an unspecified
/// address, `0.0.0.0` or `::`, is reached through the loopback).
fn reachable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port())
        }
        _ => address,
    }
}

pub fn print_banner(config: &Config, address: SocketAddr) -> anyhow::Result<()> {
    let app = &config.apps[0];
    let permissions: Vec<String> = ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect();
    let claims = |subject| Claims {
        subject: Some(subject),
        permissions: &permissions,
        ttl_seconds: DEVELOPMENT_TOKEN_SECONDS,
    };
    let client = mint_token(&app.auth_key, None, None, &claims("developer"), None)?;
    let admin = mint_token(&app.auth_key, None, None, &claims("admin"), None)?;
    let id = &app.app_id;
    let address = reachable(address);
    let ringcast = hint::command();
    println!(
        "\nringcast development app (HS256 key generated for this run; tokens valid 1 h)\n\
         app id:       {id}\n\
         client token: {client}\n\
         admin token:  {admin}\n\n\
         subscribe:    {ringcast} subscribe --url ws://{address} --app {id} --token {client} chat\n\
         publish:      {ringcast} publish --url ws://{address} --app {id} --token {client} chat hello\n\
         HTTP publish: {ringcast} publish --http --url http://{address} --app {id} --token {admin} chat hello\n\
         with curl:    curl -X POST http://{address}/api/topics/{id}/publish \\\n\
         \x20               -H 'Authorization: Bearer {admin}' -H 'Content-Type: application/json' \\\n\
         \x20               -d '{{\"topic\":\"chat\",\"messageType\":\"text\",\"message\":\"hello\"}}'\n\
         websocat:     websocat 'ws://{address}/apps/{id}?access_token={client}'\n\
         \x20             then type: {{\"type\":\"subscribe\",\"data\":{{\"topic\":\"chat\"}}}}\n\
         \x20             (websocat is not packaged by Debian: `cargo install websocat`, about a minute)\n"
    );
    Ok(())
}
