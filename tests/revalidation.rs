//! Re-authorization bounded by its interval, not by the cache: with allows cached for an hour and
//! `session.revalidate_seconds = 1`, a provider that starts denying closes the tunnel within
//! seconds; the tunnels of one provider token share one provider call per interval; a replica
//! re-checks the tunnels it holds whichever replica minted the session (the login travels sealed
//! through a real redis-server, never as the raw provider token); tunnels of an access token
//! learned at the Ditto door are re-checked too; a provider that stays unreachable closes nothing
//! and is counted.

mod support;

use std::time::{Duration, Instant};

use support::ditto::DittoServer;
use support::redis::Redis;
use support::ws::{Ws, bearer_client, close_of, closes_within, echo_ok};
use support::{
    Answer, Gateway, GatewayBuilder, Switch, Upstream, Webhook, client, login, metric,
    revalidations,
};

/// A provider token distinctive enough to look for in Redis.
const PROVIDER_TOKEN: &str = "ann-provider-token-7f3c9e1d5b";

/// Re-checks every second; allows cached for an hour.
const LONG_CACHE: &str = "[session]\nrevalidate_seconds = 1\n[cache]\nmax_ttl_seconds = 3600";

/// A gateway in front of `up` whose provider `demo` is `hook`, with no login rate limit.
fn demo(up: &Upstream, hook: &Webhook) -> GatewayBuilder {
    Gateway::builder(up.url())
        .demo_provider(hook)
        .rate_limit_off()
}

async fn single(up: &Upstream, hook: &Webhook, extra: &str) -> Gateway {
    demo(up, hook).extra(extra).spawn().await
}

async fn open(gw: &Gateway, session: &str) -> Ws {
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", session).await;
    echo_ok(&mut ws, "hello").await;
    ws
}

/// Waits until `gw` has re-checked a tunnel and found it allowed; then the provider starts
/// denying, and `ws` closes with 4003 within seconds.
async fn denied_after_a_recheck(gw: &Gateway, switch: &Switch, ws: &mut Ws) {
    assert_eventually!(
        revalidations(&gw.metrics().await, "allow") >= 1.0,
        "the tunnel was never re-checked"
    );
    switch.set(Answer::Deny);
    assert_eq!(close_of(ws, Duration::from_secs(5)).await, Some(4003));
}

#[tokio::test]
async fn revalidation_long_cached_allow_still_closes_a_denied_tunnel_with_4003_within_seconds() {
    let up = Upstream::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let gw = single(&up, &hook, LONG_CACHE).await;
    let session = login(&gw, "app", "demo", PROVIDER_TOKEN).await.session();
    let mut ws = open(&gw, &session).await;
    switch.set(Answer::Deny);
    // At most one interval to the next check, plus one for an answer asked just before the deny.
    closes_within(&mut ws, 4003, Instant::now(), Duration::from_millis(3500)).await;
    assert!(revalidations(&gw.metrics().await, "deny") >= 1.0);
    // The hour-long allow is not served to a new login either: the re-check replaced it.
    assert_ne!(login(&gw, "app", "demo", PROVIDER_TOKEN).await.status, 200);
}

#[tokio::test]
async fn revalidation_many_tunnels_of_one_token_make_one_provider_call_per_interval() {
    let up = Upstream::start().await;
    let (hook, _switch) = Webhook::switchable().await;
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
    let (hook, switch) = Webhook::switchable().await;
    // A stale allow (`stale_if_error`) is no fresh answer either: counted the same way.
    let gw = single(
        &up,
        &hook,
        &format!("{LONG_CACHE}\nstale_if_error_seconds = 600"),
    )
    .await;
    let session = login(&gw, "app", "demo", PROVIDER_TOKEN).await.session();
    let mut ws = open(&gw, &session).await;
    switch.set(Answer::Down);
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

/// Two replicas (the gateways go first, the Redis and the key last).
struct Pair {
    a: Gateway,
    b: Gateway,
    redis: Redis,
    _key_dir: tempfile::TempDir,
}

/// Two replicas as `build` makes them, on a new redis-server and one session key, re-checking
/// every second with allows cached for an hour; each waited for until its link is up.
async fn pair(build: impl Fn() -> GatewayBuilder) -> Pair {
    let redis = Redis::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("session.pem");
    let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
    std::fs::write(&key, pem).unwrap();
    let tables = format!(
        "[session]\nalgorithm = \"EdDSA\"\nkey_file = {key:?}\nrevalidate_seconds = 1\n\
         [cache]\nmax_ttl_seconds = 3600\n\
         [cluster]\nredis_url = \"{}\"\nresync_interval_ms = 500\n",
        redis.url()
    );
    let a = build().extra(&tables).spawn().await;
    let b = build().extra(&tables).spawn().await;
    for gw in [&a, &b] {
        assert_eventually!(
            metric(&gw.metrics().await, "drawbridge_cluster_up") == 1.0,
            "a replica never reached Redis"
        );
    }
    Pair {
        a,
        b,
        redis,
        _key_dir: key_dir,
    }
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
        // The command reading every value of a key of this type, and its arguments after the key.
        let (read, range): (&str, &[i64]) = match kind.as_str() {
            "string" => ("GET", &[]),
            "set" => ("SMEMBERS", &[]),
            "zset" => ("ZRANGE", &[0, -1]),
            "hash" => ("HGETALL", &[]),
            "list" => ("LRANGE", &[0, -1]),
            _ => continue,
        };
        let mut cmd = redis::cmd(read);
        cmd.arg(&key).arg(range);
        let values: Vec<Vec<u8>> = if read == "GET" {
            vec![cmd.query_async(&mut conn).await.unwrap()]
        } else {
            cmd.query_async(&mut conn).await.unwrap()
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
    let up = Upstream::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let Pair { a, b, .. } = &pair(|| demo(&up, &hook)).await;
    // Minted on A; its only tunnel is on B.
    let session = login(a, "app", "demo", PROVIDER_TOKEN).await.session();
    let mut ws = open(b, &session).await;
    denied_after_a_recheck(b, &switch, &mut ws).await;
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
    let up = Upstream::start().await;
    let (hook, _switch) = Webhook::switchable().await;
    let Pair { a, b, redis, .. } = &pair(|| demo(&up, &hook)).await;
    let session = login(a, "app", "demo", PROVIDER_TOKEN).await.session();
    // Read at once: the login answered only after the material was written.
    let dump = redis_dump(redis).await;
    let grants: Vec<_> = dump.iter().filter(|(k, _)| k.contains("grant:")).collect();
    assert_eq!(
        grants.len(),
        1,
        "one sealed grant per session: {:?}",
        keys(&dump)
    );
    assert!(grants[0].1.len() > PROVIDER_TOKEN.len());
    // B opens it and re-checks with it.
    let mut ws = open(b, &session).await;
    assert_eventually!(
        revalidations(&b.metrics().await, "allow") >= 1.0,
        "B never re-checked with the shared material"
    );
    echo_ok(&mut ws, "still open").await;
    // Nowhere in Redis, in any key or value, is the provider token.
    let token = PROVIDER_TOKEN.as_bytes();
    for (key, value) in redis_dump(redis).await {
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

/// A gateway in front of the Ditto stand-in `sync` whose provider `my-auth` is `hook`, gating
/// the Ditto websocket on tokens it has seen issued.
fn ditto(sync: &DittoServer, hook: &Webhook) -> GatewayBuilder {
    Gateway::builder(sync.url())
        .webhook_provider("my-auth", hook)
        .extra("[ditto]\nenabled = true\nrequire_known_token = true")
}

#[tokio::test]
async fn revalidation_ditto_token_the_provider_starts_denying_closes_with_4003_and_opens_no_more() {
    let sync = DittoServer::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let gw = ditto(&sync, &hook).extra(LONG_CACHE).spawn().await;
    assert_eq!(ditto_login(&gw, "liam-token").await, 200);
    let mut ws = ditto_ws(&gw, "access-for-liam-token").await.unwrap();
    echo_ok(&mut ws, "sync me").await;
    denied_after_a_recheck(&gw, &switch, &mut ws).await;
    assert!(
        ditto_ws(&gw, "access-for-liam-token").await.is_err(),
        "the denied token opened another tunnel"
    );
}

#[tokio::test]
async fn revalidation_ditto_token_learned_on_one_replica_opens_on_another_at_once_and_is_rechecked_there()
 {
    let sync = DittoServer::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let Pair { a, b, .. } = &pair(|| ditto(&sync, &hook)).await;
    assert_eq!(ditto_login(a, "liam-token").await, 200);
    // No waiting: the learned token and its login were written before A answered.
    let mut ws = ditto_ws(b, "access-for-liam-token")
        .await
        .expect("the token learned on A opens on B at once");
    echo_ok(&mut ws, "sync me").await;
    denied_after_a_recheck(b, &switch, &mut ws).await;
    // Forgotten everywhere: B at once, A as soon as the revocation reaches it.
    assert!(ditto_ws(b, "access-for-liam-token").await.is_err());
    assert_eventually!(
        ditto_ws(a, "access-for-liam-token").await.is_err(),
        "A still opens the token B found denied"
    );
}
