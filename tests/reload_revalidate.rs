//! Re-authorization of open tunnels (`session.revalidate_seconds`): a provider that starts denying
//! closes the tunnel with 4003, narrower permissions close it with 4009, and a provider that is
//! down closes nothing.

mod support;

use std::time::{Duration, Instant};

use support::ws::{bearer_client, close_of, closes_within, echo_ok};
use support::{Answer, Gateway, Upstream, Webhook, login, metric, revalidations};

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
    let (hook, switch) = Webhook::switchable().await;
    let gw = gateway(&up, &hook).await;
    let mut ws = open(&gw).await;
    switch.set(Answer::Deny);
    // One interval, plus the one second the last allow may stay cached.
    closes_within(&mut ws, 4003, Instant::now(), Duration::from_secs(3)).await;
    let text = gw.metrics().await;
    assert!(revalidations(&text, "deny") >= 1.0);
    assert!(
        metric(&text, "drawbridge_sessions_revoked_total") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn revalidation_narrowed_permissions_close_with_4009() {
    let up = Upstream::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let gw = gateway(&up, &hook).await;
    let mut ws = open(&gw).await;
    switch.set(Answer::Narrow);
    assert_eq!(close_of(&mut ws, Duration::from_secs(4)).await, Some(4009));
    assert!(revalidations(&gw.metrics().await, "narrowed") >= 1.0);
    // Not a revocation: the client may log in again at once and sees the new permissions.
    assert_eq!(login(&gw, "app", "demo", "ann-token").await.status, 200);
}

#[tokio::test]
async fn revalidation_provider_down_closes_nothing() {
    let up = Upstream::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let gw = gateway(&up, &hook).await;
    let mut ws = open(&gw).await;
    switch.set(Answer::Down);
    let calls = hook.calls();
    assert_eventually!(
        revalidations(&gw.metrics().await, "unreachable") >= 2.0,
        "the re-check never met the failing provider"
    );
    assert!(
        hook.calls() > calls,
        "the re-check never asked the provider"
    );
    echo_ok(&mut ws, "still here").await;
    switch.set(Answer::Allow);
    assert_eventually!(
        revalidations(&gw.metrics().await, "allow") >= 1.0,
        "the re-check never found the provider back"
    );
    echo_ok(&mut ws, "and still here").await;
}

#[tokio::test]
async fn revalidation_off_by_default_never_asks_again() {
    let up = Upstream::start().await;
    let (hook, switch) = Webhook::switchable().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .extra("[cache]\nmax_ttl_seconds = 1")
        .spawn()
        .await;
    let mut ws = open(&gw).await;
    let calls = hook.calls();
    switch.set(Answer::Deny);
    // Past two would-be intervals and the cache lifetime, the tunnel still relays.
    support::pace(2500).await;
    echo_ok(&mut ws, "untouched").await;
    assert_eq!(hook.calls(), calls);
}
