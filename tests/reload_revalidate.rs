//! Re-authorization of open tunnels (`session.revalidate_seconds`): a provider that starts denying
//! closes the tunnel with 4003, narrower permissions close it with 4009, and a provider that is
//! down closes nothing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use support::ws::{bearer_client, close_of, echo_ok};
use support::{Gateway, Reply, Upstream, Webhook, login, metric};

const ALLOW: u8 = 0;
const DENY: u8 = 1;
const NARROW: u8 = 2;
const DOWN: u8 = 3;

/// A provider whose answer for every token the test switches at will.
async fn switchable() -> (Webhook, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(ALLOW));
    let m = mode.clone();
    let hook = Webhook::start(move |_| match m.load(Ordering::SeqCst) {
        ALLOW => Reply::allow("ann", 3600),
        DENY => Reply::deny(serde_json::json!({"hint": "revoked at the provider"})),
        NARROW => Reply::json(
            200,
            serde_json::json!({
                "authenticated": true,
                "expirationSeconds": 3600,
                "userID": "ann",
                "permissions": {"read": {"everything": false, "queriesByCollection": {}}}
            }),
        ),
        _ => Reply::raw(503, "down"),
    })
    .await;
    (hook, mode)
}

/// A gateway re-checking every second, with allows cached for one second so each re-check can
/// reach the provider.
async fn gateway(up: &Upstream, hook: &Webhook) -> Gateway {
    Gateway::builder(up.url())
        .demo_provider(hook)
        .extra("[session]\nrevalidate_seconds = 1\n[cache]\nmax_ttl_seconds = 1")
        .rate_limit_off()
        .spawn()
        .await
}

async fn open(gw: &Gateway) -> support::ws::Ws {
    let token = login(gw, "app", "demo", "ann-token").await.session();
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    echo_ok(&mut ws, "hello").await;
    ws
}

#[tokio::test]
async fn revalidation_provider_starts_denying_closes_with_4003_and_revokes() {
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    let gw = gateway(&up, &hook).await;
    let mut ws = open(&gw).await;
    mode.store(DENY, Ordering::SeqCst);
    let denied_at = Instant::now();
    // One interval, plus the one second the last allow may stay cached.
    assert_eq!(close_of(&mut ws, Duration::from_secs(4)).await, Some(4003));
    assert!(
        denied_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        denied_at.elapsed()
    );
    let text = gw.metrics().await;
    assert!(
        metric(
            &text,
            "drawbridge_session_revalidations_total{result=\"deny\"}"
        ) >= 1.0
    );
    assert!(
        metric(&text, "drawbridge_sessions_revoked_total") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn revalidation_narrowed_permissions_close_with_4009() {
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    let gw = gateway(&up, &hook).await;
    let mut ws = open(&gw).await;
    mode.store(NARROW, Ordering::SeqCst);
    assert_eq!(close_of(&mut ws, Duration::from_secs(4)).await, Some(4009));
    let text = gw.metrics().await;
    assert!(
        metric(
            &text,
            "drawbridge_session_revalidations_total{result=\"narrowed\"}"
        ) >= 1.0
    );
    // Not a revocation: the client may log in again at once and sees the new permissions.
    assert_eq!(login(&gw, "app", "demo", "ann-token").await.status, 200);
}

#[tokio::test]
async fn revalidation_provider_down_closes_nothing() {
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    let gw = gateway(&up, &hook).await;
    let mut ws = open(&gw).await;
    mode.store(DOWN, Ordering::SeqCst);
    let calls = hook.calls();
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_session_revalidations_total{result=\"unreachable\"}"
        ) >= 2.0,
        "the re-check never met the failing provider"
    );
    assert!(
        hook.calls() > calls,
        "the re-check never asked the provider"
    );
    echo_ok(&mut ws, "still here").await;
    mode.store(ALLOW, Ordering::SeqCst);
    assert_eventually!(
        metric(
            &gw.metrics().await,
            "drawbridge_session_revalidations_total{result=\"allow\"}"
        ) >= 1.0,
        "the re-check never found the provider back"
    );
    echo_ok(&mut ws, "and still here").await;
}

#[tokio::test]
async fn revalidation_off_by_default_never_asks_again() {
    let up = Upstream::start().await;
    let (hook, mode) = switchable().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .extra("[cache]\nmax_ttl_seconds = 1")
        .spawn()
        .await;
    let mut ws = open(&gw).await;
    let calls = hook.calls();
    mode.store(DENY, Ordering::SeqCst);
    // Past two would-be intervals and the cache lifetime, the tunnel still relays.
    support::pace(2500).await;
    echo_ok(&mut ws, "untouched").await;
    assert_eq!(hook.calls(), calls);
}
