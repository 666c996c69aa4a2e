//! Criterion bench of client-token verification through ringcast's own entry points: a
//! realistic token (sub, three permissions, exp, iss) verified with HS256, ES256 and RS256
//! (`Verifier::verify`, what a first connect costs), and the same token answered by the
//! token cache (`Verifier::verify_cached` on a hit, what a reconnect costs).
//!
//! Run: `cargo bench --bench verify` (the jsonwebtoken backend is the one Cargo.toml
//! enables; docs/decisions/token-verification.md has the figures of each).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcast::auth::keygen::{self, KeyMaterial};
use ringcast::auth::{mint, Algorithm, TokenCache, Verifier, VerifierConfig};
use serde_json::json;

/// A fixed "now" inside the token's validity.
const NOW_S: u64 = 1_800_000_000;

/// The verifier for `material` and a token it accepts.
fn verifier_and_token(material: &KeyMaterial) -> (Verifier, String) {
    let algorithm = material.algorithm();
    let verifier = Verifier::new(&VerifierConfig {
        key: material.config_key().to_string(),
        algorithms: vec![algorithm.to_string()],
        issuer: vec!["https://idp.example.com/".to_string()],
        audience: Vec::new(),
    })
    .expect("a generated key configures a verifier");
    let claims = json!({
        "sub": "user-4f1c2a9e-7d3b-4e8a-9c51-2b6f0d8e3a17",
        "iss": "https://idp.example.com/",
        "iat": NOW_S - 60,
        "exp": NOW_S + 3600,
        "permissions": [
            "realtime:subscriber:read:topic:rooms/*",
            "realtime:publisher:write:topic:rooms/lobby",
            "realtime:subscriber:read:topic:priv/*"
        ]
    });
    let token = mint::sign(algorithm, material.signing_key(), &claims).expect("signs");
    assert!(verifier.verify(&token, NOW_S).is_ok());
    (verifier, token)
}

fn verification(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    for algorithm in [Algorithm::HS256, Algorithm::ES256, Algorithm::RS256] {
        let material = keygen::generate(algorithm).expect("key generation");
        let (verifier, token) = verifier_and_token(&material);
        group.bench_function(format!("first_connect/{algorithm}"), |bench| {
            bench.iter(|| verifier.verify(black_box(&token), NOW_S).unwrap())
        });
        let cache = TokenCache::new(65_536);
        verifier
            .verify_cached(&cache, "app", &token, NOW_S)
            .expect("verifies");
        group.bench_function(format!("reconnect_cached/{algorithm}"), |bench| {
            bench.iter(|| {
                verifier
                    .verify_cached(&cache, "app", black_box(&token), NOW_S)
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// A cache hit while another thread hits the same token without pause: both take the
/// same shard's lock (the worst case; different tokens mostly land on other shards).
fn contended_hit(criterion: &mut Criterion) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let material = keygen::generate(Algorithm::ES256).expect("key generation");
    let (verifier, token) = verifier_and_token(&material);
    let cache = Arc::new(TokenCache::new(65_536));
    verifier
        .verify_cached(&cache, "app", &token, NOW_S)
        .expect("verifies");
    let stop = Arc::new(AtomicBool::new(false));
    let rival = {
        let (verifier, token, cache, stop) =
            (verifier.clone(), token.clone(), cache.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(
                    verifier
                        .verify_cached(&cache, "app", &token, NOW_S)
                        .unwrap(),
                );
            }
        })
    };
    let mut group = criterion.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reconnect_cached_same_shard_2_threads/ES256", |bench| {
        bench.iter(|| {
            verifier
                .verify_cached(&cache, "app", black_box(&token), NOW_S)
                .unwrap()
        })
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    rival.join().expect("the rival thread ends");
}

criterion_group!(benches, verification, contended_hit);
criterion_main!(benches);
