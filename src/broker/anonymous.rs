//! The anonymous-token endpoint's per-app state: the compiled issuer and the bounded
//! per-source-address rate limiter (README "Anonymous tokens").
//!
//! Responsibility: compile an app's `anonymous` section (errors name the app and field) and
//! decide, per request, whether a source address may have another token.
//!
//! Must not: do I/O or read the clock (`now_s` is a parameter); signing is `auth::anonymous`.
//!
//! Invariants: the table holds at most [`MAX_RATE_LIMITED_ADDRESSES`] addresses per app;
//! when it is full of live windows a request is refused (429) rather than the table grown
//! or a live window evicted (evicting would hand a flooder a fresh budget). IPv6 sources are
//! counted per /64 (one host usually owns a whole /64), IPv4 per address, and every unknown
//! source (a trusted proxy's `X-Forwarded-For` entry that is not an address) shares one
//! window: it gets no budget of its own ([`ClientAddress::key`]).

use crate::auth::AnonymousIssuer;
use crate::auth::Verifier;
use crate::auth::{AddressKey, ClientAddress};
use crate::config::{AnonymousConfig, ConfigError, KeyConfig};
use std::collections::HashMap;
use std::sync::Mutex;

/// Source addresses tracked per app. Each entry is ~40 bytes, so the table stays under
/// 1 MiB; 10,000 distinct addresses within one minute is far beyond a normal page's load.
pub const MAX_RATE_LIMITED_ADDRESSES: usize = 10_000;

/// Length of a rate window in seconds (`maxTokensPerMinute`).
pub const RATE_WINDOW_S: u64 = 60;

/// A compiled, enabled `anonymous` section.
#[derive(Debug)]
pub struct AnonymousEndpoint {
    /// Mints the tokens.
    pub issuer: AnonymousIssuer,
    /// Limits them per source address.
    pub limiter: AddressRateLimiter,
}

/// Whether a request may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead (the request was counted).
    Allowed,
    /// Refuse with 429 and `Retry-After: retry_after_s`.
    Limited { retry_after_s: u64 },
}

/// One address's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When it started (unix seconds).
    started_s: u64,
    /// Requests counted in it.
    count: u64,
}

/// Fixed one-minute windows per source address, in a bounded table.
#[derive(Debug)]
pub struct AddressRateLimiter {
    /// Requests per window per address; at least 1.
    per_window: u64,
    /// Address key → window. Locked only by this endpoint's requests.
    table: Mutex<HashMap<AddressKey, Window>>,
}

impl AddressRateLimiter {
    /// `per_window` requests per address per [`RATE_WINDOW_S`] (0 is treated as 1).
    pub fn new(per_window: u64) -> AddressRateLimiter {
        AddressRateLimiter {
            per_window: per_window.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `source` at `now_s`, or says how long to wait.
    pub fn check(&self, source: ClientAddress, now_s: u64) -> RateDecision {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let key = source.key();
        if !table.contains_key(&key) && table.len() >= MAX_RATE_LIMITED_ADDRESSES {
            table.retain(|_, window| window.started_s + RATE_WINDOW_S > now_s);
            if table.len() >= MAX_RATE_LIMITED_ADDRESSES {
                let soonest = table
                    .values()
                    .map(|window| window.started_s + RATE_WINDOW_S)
                    .min()
                    .unwrap_or(now_s + 1);
                return RateDecision::Limited {
                    retry_after_s: soonest.saturating_sub(now_s).max(1),
                };
            }
        }
        let window = table.entry(key).or_insert(Window {
            started_s: now_s,
            count: 0,
        });
        if window.started_s + RATE_WINDOW_S <= now_s {
            *window = Window {
                started_s: now_s,
                count: 0,
            };
        }
        if window.count >= self.per_window {
            return RateDecision::Limited {
                retry_after_s: (window.started_s + RATE_WINDOW_S)
                    .saturating_sub(now_s)
                    .max(1),
            };
        }
        window.count += 1;
        RateDecision::Allowed
    }
}

/// Compiles an app's `anonymous` section; `None` when absent or `enabled: false`.
pub fn compile(
    app: &str,
    config: Option<&AnonymousConfig>,
    auth_key: &KeyConfig,
    verifier: &Verifier,
) -> Result<Option<AnonymousEndpoint>, ConfigError> {
    let Some(config) = config.filter(|config| config.enabled) else {
        return Ok(None);
    };
    if config.max_tokens_per_minute == 0 {
        return Err(ConfigError::new(
            Some(app),
            "anonymous.maxTokensPerMinute",
            "must be greater than 0 (never unlimited)",
        ));
    }
    let issuer = AnonymousIssuer::new(
        verifier,
        &auth_key.key,
        config.signing_key.as_deref(),
        config.permissions.clone(),
        config.ttl_seconds,
    )
    .map_err(|error| ConfigError::new(Some(app), "anonymous", error.to_string()))?;
    Ok(Some(AnonymousEndpoint {
        issuer,
        limiter: AddressRateLimiter::new(config.max_tokens_per_minute),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A known source.
    fn at(text: &str) -> ClientAddress {
        ClientAddress::from(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn windows_limit_and_reset() {
        let limiter = AddressRateLimiter::new(2);
        let ip = at("192.0.2.1");
        assert_eq!(limiter.check(ip, 100), RateDecision::Allowed);
        assert_eq!(limiter.check(ip, 110), RateDecision::Allowed);
        assert_eq!(
            limiter.check(ip, 130),
            RateDecision::Limited { retry_after_s: 30 }
        );
        assert_eq!(limiter.check(at("192.0.2.2"), 130), RateDecision::Allowed);
        assert_eq!(limiter.check(ip, 160), RateDecision::Allowed);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = AddressRateLimiter::new(1);
        assert_eq!(limiter.check(at("2001:db8::1"), 0), RateDecision::Allowed);
        assert!(matches!(
            limiter.check(at("2001:db8::2"), 0),
            RateDecision::Limited { .. }
        ));
        assert_eq!(
            limiter.check(at("2001:db8:0:1::1"), 0),
            RateDecision::Allowed
        );
        assert_eq!(limiter.check(at("10.0.0.1"), 0), RateDecision::Allowed);
        assert!(matches!(
            limiter.check(at("::ffff:10.0.0.1"), 0),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn unknown_sources_share_one_window() {
        let limiter = AddressRateLimiter::new(2);
        assert_eq!(
            limiter.check(ClientAddress::Unknown, 0),
            RateDecision::Allowed
        );
        assert_eq!(
            limiter.check(ClientAddress::Unknown, 1),
            RateDecision::Allowed
        );
        assert!(matches!(
            limiter.check(ClientAddress::Unknown, 2),
            RateDecision::Limited { .. }
        ));
        assert_eq!(limiter.check(at("192.0.2.1"), 2), RateDecision::Allowed);
    }

    #[test]
    fn a_full_table_refuses_new_addresses_until_windows_expire() {
        let limiter = AddressRateLimiter::new(5);
        for i in 0..MAX_RATE_LIMITED_ADDRESSES as u32 {
            let ip = ClientAddress::from(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            assert_eq!(limiter.check(ip, 10), RateDecision::Allowed);
        }
        let newcomer = at("192.0.2.9");
        assert_eq!(
            limiter.check(newcomer, 20),
            RateDecision::Limited { retry_after_s: 50 }
        );
        // A known address still has its own budget.
        assert_eq!(limiter.check(at("10.0.0.0"), 20), RateDecision::Allowed);
        // Once the windows end, the table is swept and the newcomer gets in.
        assert_eq!(limiter.check(newcomer, 70), RateDecision::Allowed);
    }
}
