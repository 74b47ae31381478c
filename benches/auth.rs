//! The auth hot paths: a login answered from the decision cache, and session mint/verify per algorithm.
//!
//! Run: `cargo bench --bench auth`
//!
//! Targets on the project's 2-core machine: cache-hit decide < 2 µs, EdDSA session verify < 50 µs.
//! Medians from `cargo bench --bench auth` on 2026-11-23, 2 vCPU x86_64 (shared, noisy), Rust 1.95:
//!
//! | bench                               | median    | note                                      |
//! |-------------------------------------|-----------|-------------------------------------------|
//! | decide/cache_hit                    | 0.40 µs   | SHA-256 key + moka lookup                 |
//! | baseline/ed25519_signature_only     | 40.5 µs   | the bare signature check, same run        |
//! | session/verify/EdDSA                | 43.3 µs   | 1.07x the bare signature check            |
//! | session/mint/EdDSA                  | 20.6 µs   |                                           |
//! | session/verify/ES256, RS256, HS256  | 63, 28, 6.5 µs | from the first run                   |
//!
//! EdDSA verify is bound by the Ed25519 check itself; the JWT work around it costs ~3 µs.
//!
//! The forward-auth door's answer to a valid session (`cargo bench --bench auth -- forward_auth`,
//! 2026-12-07, same machine, shared with other builds; EdDSA key, HMAC session tokens):
//!
//! | bench                                   | median   | note                                        |
//! |-----------------------------------------|----------|---------------------------------------------|
//! | forward_auth/cached_hit                 | 8.5 µs   | the default: no verify, no signature        |
//! | forward_auth/cached_hit_with_assertion  | 23.1 µs  | `forward_auth.assertion = true`             |
//! | forward_auth/verify_and_sign            | 31.0 µs  | verify + sign on every check (the old path) |
//!
//! What is left on a hit is per request by design: finding the carrier, the credentials the
//! ingress forwards (`credentials::forwardable`), the revocation lookups and the answer's headers.
//!
//! The login group (the demo provider's answer for alice, EdDSA session key), before and after the
//! reply carried the token once and the claims went compact. `cargo bench --bench auth -- login/` on
//! 2026-12-07, 2 vCPU x86_64 shared with other builds (load 4-5, so single runs swing by 30%): the
//! two binaries run in turn, twice; medians of each round.
//!
//! | bench             | before (round 1, 2) | after (round 1, 2) |
//! |-------------------|---------------------|--------------------|
//! | login/mint/hmac   | 2.62, 3.71 µs       | 2.73, 2.08 µs      |
//! | login/verify/hmac | 12.6, 10.5 µs       | 8.36, 6.56 µs      |
//! | login/reply/hmac  | 1.80, 3.48 µs       | 0.93, 1.29 µs      |
//! | login/mint/key    | 23.3, 17.3 µs       | 17.4, 14.3 µs      |
//! | login/verify/key  | 83.9, 53.6 µs       | 79.0, 50.1 µs      |
//! | login/reply/key   | 1.94, 1.86 µs       | 1.39, 0.98 µs      |
//!
//! Session token: 673 → 493 bytes (HMAC), 710 → 530 bytes (key); login reply body: 1,681 → 817
//! bytes (HMAC), 1,755 → 854 bytes (key).
//!
//! Claims by reference (`hmac-ref`: HMAC tokens naming permissions and clientInfo by reference, as
//! in cluster mode), against the same claims inline (`hmac`), in one run; `-ruled` is a user with
//! per-collection write rules. `cargo bench --bench auth -- "login/(mint|verify)/hmac"`, 2026-12-08,
//! same machine, two runs:
//!
//! | bench              | inline (run 1, 2) | by reference (run 1, 2) | token bytes     |
//! |--------------------|-------------------|-------------------------|-----------------|
//! | login/mint (alice) | 1.86, 1.70 µs     | 2.16, 2.60 µs           | 493 → 451       |
//! | login/verify       | 5.64, 6.00 µs     | 5.58, 5.48 µs           |                 |
//! | login/mint (ruled) | 2.05, 2.64 µs     | 2.69, 2.67 µs           | 617 → 451       |
//! | login/verify       | 7.37, 6.13 µs     | 5.48, 5.11 µs           |                 |
//!
//! A mint by reference also hashes the set and looks it up (once per login); a verify reads 32
//! characters and a held set instead of parsing the claims (every use of the session).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use drawbridge::auth::session::{ClaimSets, Sessions, keygen};
use drawbridge::auth::{AuthCore, Decision, Door, Permissions};
use drawbridge::config::Config;

/// A webhook that allows everything for an hour, so the first decide fills the cache.
async fn allow_all_webhook() -> String {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(
                            br#"{"authenticated":true,"expirationSeconds":3600,"userID":"bench"}"#,
                        ),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/auth")
}

fn decide(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let core = rt.block_on(async {
        let url = allow_all_webhook().await;
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[providers.bench]\nkind = \"webhook\"\nurl = \"{url}\"\n"
        );
        let config = Config::from_toml(&text, &drawbridge::config::System).unwrap();
        let core = AuthCore::from_config(&config.auth).unwrap();
        let first = core.decide(Door::Login, "app", "bench", "a-token-of-realistic-length-0123456789abcdef").await;
        assert!(matches!(first, Ok(Decision::Allow(_))));
        core
    });
    c.bench_function("decide/cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                core.decide(
                    Door::Login,
                    "app",
                    "bench",
                    black_box("a-token-of-realistic-length-0123456789abcdef"),
                )
                .await
                .unwrap(),
            )
        });
    });
}

/// The floor under EdDSA verify: one bare Ed25519 signature check, measured in the same run.
fn ed25519_baseline(c: &mut Criterion) {
    use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let message = vec![b'x'; 600];
    let signature = pair.sign(&message);
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    c.bench_function("baseline/ed25519_signature_only", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), black_box(signature.as_ref()))
                .unwrap()
        });
    });
}

/// An allow for `user` with `permissions` and `client_info`, good for an hour.
fn allow_for(
    user: &str,
    permissions: Permissions,
    client_info: Option<serde_json::Value>,
) -> drawbridge::auth::Allow {
    drawbridge::auth::Allow {
        user_id: user.into(),
        expires_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600,
        permissions: permissions.into(),
        client_info: client_info.map(Into::into),
        metadata: None,
        profile: None,
    }
}

fn sessions(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let allow = allow_for(
        "bench-user",
        Permissions::default(),
        Some(serde_json::json!({"name": "bench"})),
    );
    for alg in ["EdDSA", "ES256", "RS256", "HS256"] {
        let algorithm: jsonwebtoken::Algorithm = alg.parse().unwrap();
        let key = dir.path().join(alg);
        std::fs::write(&key, keygen(algorithm).unwrap()).unwrap();
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[session]\nalgorithm = \"{alg}\"\nkey_file = {key:?}\n"
        );
        let config = Config::from_toml(&text, &drawbridge::config::System).unwrap();
        let sessions = Sessions::from_config(&config.auth.session).unwrap();
        let token = sessions.mint(&allow, "app", "bench").unwrap().token;
        c.bench_function(&format!("session/verify/{alg}"), |b| {
            b.iter(|| black_box(sessions.verify(black_box(&token)).unwrap()));
        });
        c.bench_function(&format!("session/mint/{alg}"), |b| {
            b.iter(|| black_box(sessions.mint(black_box(&allow), "app", "bench").unwrap()));
        });
        let claims = sessions.verify(&token).unwrap();
        c.bench_function(&format!("session/assertion/{alg}"), |b| {
            b.iter(|| {
                black_box(
                    sessions
                        .assertion(black_box(&claims), "sync", Duration::from_secs(60))
                        .unwrap(),
                )
            });
        });
        if alg == "HS256" {
            continue;
        }
        // Session tokens signed with the key itself (`token_signing = "key"`), against the HMAC default above.
        let keyed = Config::from_toml(
            &format!("{text}token_signing = \"key\"\n"),
            &drawbridge::config::System,
        )
        .unwrap();
        let keyed = Sessions::from_config(&keyed.auth.session).unwrap();
        let token = keyed.mint(&allow, "app", "bench").unwrap().token;
        c.bench_function(&format!("session/verify/{alg}-key-signed"), |b| {
            b.iter(|| black_box(keyed.verify(black_box(&token)).unwrap()));
        });
        c.bench_function(&format!("session/mint/{alg}-key-signed"), |b| {
            b.iter(|| black_box(keyed.mint(black_box(&allow), "app", "bench").unwrap()));
        });
    }
}

/// The forward-auth door's decision on a valid session: answered from the verified-session cache
/// (the hash of the token, the cache, the revocation check, the rendered headers), with and
/// without a freshly signed assertion, against verifying the token and signing every time.
fn forward_auth(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("session.pem");
    std::fs::write(&key, keygen(jsonwebtoken::Algorithm::EdDSA).unwrap()).unwrap();
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[session]\nalgorithm = \"EdDSA\"\nkey_file = {key:?}\n"
    );
    let config = Config::from_toml(&text, &drawbridge::config::System).unwrap();
    let door = drawbridge::bench::ForwardAuthCheck::new(config).unwrap();
    let allow = allow_for("bench-user", Permissions::default(), None);
    let token = door.sessions().mint(&allow, "app", "bench").unwrap().token;
    let mut request = http::HeaderMap::new();
    request.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    request.insert(http::header::COOKIE, "theme=dark".parse().unwrap());
    request.insert("x-original-uri", "/notes".parse().unwrap());
    let answered = door.cached(&request, false).expect("the session passes");
    assert_eq!(answered["x-drawbridge-user"], "bench-user");
    assert_eq!(answered["x-drawbridge-assertion"], "");
    let mut group = c.benchmark_group("forward_auth");
    group.bench_function("cached_hit", |b| {
        b.iter(|| black_box(door.cached(black_box(&request), false).unwrap()));
    });
    group.bench_function("cached_hit_with_assertion", |b| {
        b.iter(|| black_box(door.cached(black_box(&request), true).unwrap()));
    });
    group.bench_function("verify_and_sign", |b| {
        b.iter(|| black_box(door.uncached(black_box(&request)).unwrap()));
    });
    group.finish();
}

/// A typical login: the demo provider's answer for alice (read and write everything, her
/// clientInfo), an EdDSA session key, sessions HMAC-signed (the default) or signed with the key.
/// Mints, verifies and the login reply's JSON body; prints each token's length once.
fn login(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let allow = allow_for(
        "alice",
        serde_json::from_value(serde_json::json!({
            "read": {"everything": true, "queriesByCollection": {}},
            "write": {"everything": true, "queriesByCollection": {}},
        }))
        .unwrap(),
        Some(serde_json::json!({"displayName": "alice", "readOnly": false})),
    );
    let key = dir.path().join("session.pem");
    std::fs::write(&key, keygen(jsonwebtoken::Algorithm::EdDSA).unwrap()).unwrap();
    // A user with per-collection rules, as a provider that scopes writes answers.
    let ruled = allow_for(
        "alice",
        serde_json::from_value(serde_json::json!({
            "read": {"everything": true, "queriesByCollection": {}},
            "write": {"everything": false, "queriesByCollection": {
                "tasks": ["_id.owner == 'alice'"],
                "notes": ["author == 'alice' && !archived"],
            }},
        }))
        .unwrap(),
        Some(serde_json::json!({"displayName": "alice", "readOnly": false, "team": "blue"})),
    );
    // `hmac-ref`: HMAC tokens naming their claims by reference (the cluster store keeps them).
    for (signing, allow) in [
        ("hmac", &allow),
        ("hmac-ref", &allow),
        ("key", &allow),
        ("hmac-ruled", &ruled),
        ("hmac-ref-ruled", &ruled),
    ] {
        let token_signing = if signing == "key" { "key" } else { "hmac" };
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[session]\nkey_file = {key:?}\ntoken_signing = \"{token_signing}\"\n"
        );
        let config = Config::from_toml(&text, &drawbridge::config::System).unwrap();
        let mut sessions = Sessions::from_config(&config.auth.session).unwrap();
        if signing.starts_with("hmac-ref") {
            sessions = sessions.with_claim_sets(std::sync::Arc::new(ClaimSets::new(true)));
        }
        let minted = sessions.mint(allow, "demo-app", "demo").unwrap();
        let reply = drawbridge::bench::login_reply(&minted);
        eprintln!(
            "login/{signing}: session token {} bytes, login reply body {} bytes",
            minted.token.len(),
            reply.len()
        );
        c.bench_function(&format!("login/mint/{signing}"), |b| {
            b.iter(|| black_box(sessions.mint(black_box(allow), "demo-app", "demo").unwrap()));
        });
        c.bench_function(&format!("login/verify/{signing}"), |b| {
            b.iter(|| black_box(sessions.verify(black_box(&minted.token)).unwrap()));
        });
        c.bench_function(&format!("login/reply/{signing}"), |b| {
            b.iter(|| black_box(drawbridge::bench::login_reply(black_box(&minted))));
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decide, ed25519_baseline, sessions, forward_auth, login
}
criterion_main!(benches);
