//! Re-authorization bounded by its interval, not by the cache: with allows cached for an hour and
//! `session.revalidate_seconds = 1`, a provider that starts denying closes the tunnel within
//! seconds; the tunnels of one provider token share one provider call per interval; a replica
//! re-checks the tunnels it holds whichever replica minted the session (the login travels sealed
//! through a real redis-server, never as the raw provider token); tunnels of an access token
//! learned at the Ditto door are re-checked too; a provider that stays unreachable closes nothing
//! and is counted.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use support::ditto::DittoServer;
use support::redis::Redis;
use support::ws::{Ws, bearer_client, close_of, echo_ok};
use support::{Gateway, Reply, Upstream, Webhook, client, login, metric};

const ALLOW: u8 = 0;
const DENY: u8 = 1;
const DOWN: u8 = 2;

/// A provider token distinctive enough to look for in Redis.
const PROVIDER_TOKEN: &str = "ann-provider-token-7f3c9e1d5b";

/// Re-checks every second; allows cached for an hour.
const LONG_CACHE: &str = "[session]\nrevalidate_seconds = 1\n[cache]\nmax_ttl_seconds = 3600";

/// A provider whose answer for every token the test switches at will.
async fn switchable() -> (Webhook, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(ALLOW));
    let m = mode.clone();
    let hook = Webhook::start(move |_| match m.load(Ordering::SeqCst) {
        ALLOW => Reply::allow("ann", 3600),
        DENY => Reply::deny(serde_json::json!({"hint": "revoked at the provider"})),
        _ => Reply::raw(503, "down"),
    })
    .await;
    (hook, mode)
}

async fn single(up: &Upstream, hook: &Webhook, extra: &str) -> Gateway {
    Gateway::builder(up.url())
        .demo_provider(hook)
        .extra(extra)
        .rate_limit_off()
        .spawn()
        .await
}

async fn open(gw: &Gateway, session: &str) -> Ws {
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", session).await;
    echo_ok(&mut ws, "hello").await;
    ws
}

fn revalidations(text: &str, result: &str) -> f64 {
    metric(
        text,
        &format!("drawbridge_session_revalidations_total{{result=\"{result}\"}}"),
    )
}

#[tokio::test]
async fn revalidation_long_cached_allow_still_closes_a_denied_tunnel_with_4003_within_seconds() {
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    let gw = single(&up, &hook, LONG_CACHE).await;
    let session = login(&gw, "app", "demo", PROVIDER_TOKEN).await.session();
    let mut ws = open(&gw, &session).await;
    mode.store(DENY, Ordering::SeqCst);
    let denied_at = Instant::now();
    // At most one interval to the next check, plus one for an answer asked just before the deny.
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4003));
    assert!(
        denied_at.elapsed() < Duration::from_millis(3500),
        "closed only after {:?}",
        denied_at.elapsed()
    );
    assert!(revalidations(&gw.metrics().await, "deny") >= 1.0);
    // The hour-long allow is not served to a new login either: the re-check replaced it.
    assert_ne!(login(&gw, "app", "demo", PROVIDER_TOKEN).await.status, 200);
}

#[tokio::test]
async fn revalidation_many_tunnels_of_one_token_make_one_provider_call_per_interval() {
    let up = Upstream::start().await;
    let (hook, _mode) = switchable().await;
    let gw = single(&up, &hook, LONG_CACHE).await;
    // Two sessions of one provider token, four tunnels each.
    let mut tunnels = Vec::new();
    for _ in 0..2 {
        let session = login(&gw, "app", "demo", PROVIDER_TOKEN).await.session();
        for _ in 0..4 {
            tunnels.push(open(&gw, &session).await);
        }
    }
    // Every tunnel has had its first check (each falls within its first interval).
    assert_eventually!(
        revalidations(&gw.metrics().await, "allow") >= 8.0,
        "the tunnels were never re-checked"
    );
    let (calls, checks) = (hook.calls(), revalidations(&gw.metrics().await, "allow"));
    let started = Instant::now();
    support::pace(3000).await;
    let (calls, checks) = (
        hook.calls() - calls,
        revalidations(&gw.metrics().await, "allow") - checks,
    );
    let intervals = started.elapsed().as_secs_f64().ceil();
    // About 24 re-checks, and about one provider call per interval between them: never one per
    // tunnel, and never none (an hour-long cached allow answers no re-check).
    assert!(checks >= 16.0, "only {checks} re-checks in 3 s");
    assert!(
        calls >= 2 && calls as f64 <= intervals + 1.0,
        "{calls} provider calls in {intervals} intervals for {checks} re-checks"
    );
    for ws in &mut tunnels {
        echo_ok(ws, "still open").await;
    }
}

#[tokio::test]
async fn revalidation_unreachable_provider_closes_nothing_and_is_counted() {
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    // A stale allow (`stale_if_error`) is no fresh answer either: counted the same way.
    let gw = single(
        &up,
        &hook,
        &format!("{LONG_CACHE}\nstale_if_error_seconds = 600"),
    )
    .await;
    let session = login(&gw, "app", "demo", PROVIDER_TOKEN).await.session();
    let mut ws = open(&gw, &session).await;
    mode.store(DOWN, Ordering::SeqCst);
    let calls = hook.calls();
    assert_eventually!(
        revalidations(&gw.metrics().await, "unreachable") >= 3.0,
        "the re-checks never counted the unreachable provider"
    );
    assert!(
        hook.calls() > calls,
        "the re-check never asked the provider"
    );
    echo_ok(&mut ws, "still here").await;
    let text = gw.metrics().await;
    assert_eq!(revalidations(&text, "deny"), 0.0, "{text}");
    assert_eq!(metric(&text, "drawbridge_sessions_revoked_total"), 0.0);
}

// --- several replicas ---

/// The `[session]`, `[cache]` and `[cluster]` tables every replica shares.
fn shared_tables(key_dir: &Path, redis: &Redis) -> String {
    let key = key_dir.join("session.pem");
    if !key.exists() {
        let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
        std::fs::write(&key, pem).unwrap();
    }
    format!(
        "[session]\nalgorithm = \"EdDSA\"\nkey_file = {key:?}\nrevalidate_seconds = 1\n\
         [cache]\nmax_ttl_seconds = 3600\n\
         [cluster]\nredis_url = \"{}\"\nresync_interval_ms = 500\n",
        redis.url()
    )
}

/// Two replicas on one Redis and one session key, each waited for until its link is up.
async fn pair(build: impl Fn() -> support::GatewayBuilder, tables: &str) -> (Gateway, Gateway) {
    let a = build().extra(tables).spawn().await;
    let b = build().extra(tables).spawn().await;
    for gw in [&a, &b] {
        assert_eventually!(
            metric(&gw.metrics().await, "drawbridge_cluster_up") == 1.0,
            "a replica never reached Redis"
        );
    }
    (a, b)
}

/// Every value Redis holds, of every key, as raw bytes.
async fn redis_dump(redis: &Redis) -> Vec<(String, Vec<u8>)> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            _ => Vec::new(),
        };
        for v in values {
            out.push((key.clone(), v));
        }
    }
    out
}

#[tokio::test]
async fn revalidation_session_minted_on_one_replica_is_rechecked_by_the_replica_holding_its_tunnel()
{
    let redis = Redis::start().await;
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    let key_dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(
        || {
            Gateway::builder(up.url())
                .demo_provider(&hook)
                .rate_limit_off()
        },
        &shared_tables(key_dir.path(), &redis),
    )
    .await;
    // Minted on A; its only tunnel is on B.
    let session = login(&a, "app", "demo", PROVIDER_TOKEN).await.session();
    let mut ws = open(&b, &session).await;
    assert_eventually!(
        revalidations(&b.metrics().await, "allow") >= 1.0,
        "B never re-checked the tunnel it holds"
    );
    mode.store(DENY, Ordering::SeqCst);
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4003));
    assert!(revalidations(&b.metrics().await, "deny") >= 1.0);
    // A holds no tunnel of it, so A asked nothing.
    let on_a = a.metrics().await;
    assert_eq!(
        revalidations(&on_a, "allow") + revalidations(&on_a, "deny"),
        0.0
    );
}

#[tokio::test]
async fn revalidation_material_in_redis_holds_no_raw_provider_token() {
    let redis = Redis::start().await;
    let up = Upstream::start().await;
    let (hook, _mode) = switchable().await;
    let key_dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(
        || {
            Gateway::builder(up.url())
                .demo_provider(&hook)
                .rate_limit_off()
        },
        &shared_tables(key_dir.path(), &redis),
    )
    .await;
    let session = login(&a, "app", "demo", PROVIDER_TOKEN).await.session();
    // Read at once: the login answered only after the material was written.
    let dump = redis_dump(&redis).await;
    let grants: Vec<_> = dump.iter().filter(|(k, _)| k.contains("grant:")).collect();
    assert_eq!(
        grants.len(),
        1,
        "one sealed grant per session: {:?}",
        keys(&dump)
    );
    assert!(grants[0].1.len() > PROVIDER_TOKEN.len());
    // B opens it and re-checks with it.
    let mut ws = open(&b, &session).await;
    assert_eventually!(
        revalidations(&b.metrics().await, "allow") >= 1.0,
        "B never re-checked with the shared material"
    );
    echo_ok(&mut ws, "still open").await;
    // Nowhere in Redis, in any key or value, is the provider token.
    let token = PROVIDER_TOKEN.as_bytes();
    for (key, value) in redis_dump(&redis).await {
        assert!(
            !key.contains(PROVIDER_TOKEN),
            "the provider token names {key}"
        );
        assert!(
            !value.windows(token.len()).any(|w| w == token),
            "the provider token shows in {key}"
        );
    }
}

fn keys(dump: &[(String, Vec<u8>)]) -> Vec<&str> {
    dump.iter().map(|(k, _)| k.as_str()).collect()
}

// --- the Ditto door ---

/// The SDK's login form for the provider `my-auth`.
async fn ditto_login(gw: &Gateway, token: &str) -> u16 {
    let http = client::https(&gw.ca.pem(), false);
    let form = format!(
        "appId=app-1&token={token}&provider=my-auth&siteId=1&chToken=c&chSigB64=c2ln&peerKeyB64=cGVlcg%3D%3D&jwtVersion=1&includeX509=true"
    );
    let mut req = client::request("POST", &gw.url("/_ditto/auth/login"), form);
    req.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    support::send(&http, req).await.0
}

async fn ditto_ws(gw: &Gateway, access: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    support::ws::client(
        gw.addr,
        &gw.ca.pem(),
        "/_ditto/ws",
        &[("x-ditto-auth", access)],
    )
    .await
}

const DITTO: &str = "[ditto]\nenabled = true\nrequire_known_token = true";

#[tokio::test]
async fn revalidation_ditto_token_the_provider_starts_denying_closes_with_4003_and_opens_no_more() {
    let sync = DittoServer::start().await;
    let (hook, mode) = switchable().await;
    let gw = Gateway::builder(sync.url())
        .webhook_provider("my-auth", &hook)
        .extra(DITTO)
        .extra(LONG_CACHE)
        .spawn()
        .await;
    assert_eq!(ditto_login(&gw, "liam-token").await, 200);
    let mut ws = ditto_ws(&gw, "access-for-liam-token").await.unwrap();
    echo_ok(&mut ws, "sync me").await;
    assert_eventually!(
        revalidations(&gw.metrics().await, "allow") >= 1.0,
        "the Ditto tunnel was never re-checked"
    );
    mode.store(DENY, Ordering::SeqCst);
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4003));
    assert!(
        ditto_ws(&gw, "access-for-liam-token").await.is_err(),
        "the denied token opened another tunnel"
    );
}

#[tokio::test]
async fn revalidation_ditto_token_learned_on_one_replica_opens_on_another_at_once_and_is_rechecked_there()
 {
    let redis = Redis::start().await;
    let sync = DittoServer::start().await;
    let (hook, mode) = switchable().await;
    let key_dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(
        || {
            Gateway::builder(sync.url())
                .webhook_provider("my-auth", &hook)
                .extra(DITTO)
        },
        &shared_tables(key_dir.path(), &redis),
    )
    .await;
    assert_eq!(ditto_login(&a, "liam-token").await, 200);
    // No waiting: the learned token and its login were written before A answered.
    let mut ws = ditto_ws(&b, "access-for-liam-token")
        .await
        .expect("the token learned on A opens on B at once");
    echo_ok(&mut ws, "sync me").await;
    assert_eventually!(
        revalidations(&b.metrics().await, "allow") >= 1.0,
        "B never re-checked the Ditto tunnel it holds"
    );
    mode.store(DENY, Ordering::SeqCst);
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4003));
    // Forgotten everywhere: B at once, A as soon as the revocation reaches it.
    assert!(ditto_ws(&b, "access-for-liam-token").await.is_err());
    assert_eventually!(
        ditto_ws(&a, "access-for-liam-token").await.is_err(),
        "A still opens the token B found denied"
    );
}
