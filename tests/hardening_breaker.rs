//! The provider circuit breaker never sticks open: a half-open trial call that is cancelled — the
//! client hangs up mid-login, or a `first_success` group lets another member win — gives the trial
//! back, and the provider is asked again without a restart.

mod support;

use std::time::{Duration, Instant};

use support::{
    Gateway, GatewayBuilder, Login, Reply, Upstream, Webhook, login, login_body, metric,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// Failures in a row that open the breaker.
const FAILURES: usize = 2;
/// Kept short so the tests wait little; the trial is found by polling, never by sleeping.
const COOLDOWN_MS: u64 = 200;

/// `fail-*` tokens get a 500, `hold-*` tokens an allow only after 20 s (the provider timeout is
/// 10 s, so such a call ends only by being cancelled), anything else an allow at once.
async fn flaky_webhook() -> Webhook {
    Webhook::start(|req| {
        let token = req["token"].as_str().unwrap_or_default();
        if token.starts_with("fail-") {
            Reply::raw(500, "down")
        } else if token.starts_with("hold-") {
            Reply::allow("held", 60).after(20_000)
        } else {
            Reply::allow(token.trim_end_matches("-token"), 60)
        }
    })
    .await
}

/// A gateway config with the flaky provider; the login rate limit is off because waiting out
/// the cooldown retries fast.
fn with_flaky_provider(up: &Upstream, hook: &Webhook) -> GatewayBuilder {
    Gateway::builder(up.url())
        .webhook_provider("flaky", hook)
        .extra(&format!(
            "timeout_ms = 10000\ncircuit_failures = {FAILURES}\ncircuit_cooldown_ms = {COOLDOWN_MS}"
        ))
        .rate_limit_off()
}

fn circuit_open(metrics: &str) -> f64 {
    metric(
        metrics,
        "drawbridge_provider_circuit_open{provider=\"flaky\"}",
    )
}

/// Fails the provider until its breaker opens, and checks it then fails fast without a call.
async fn open_the_breaker(gw: &Gateway, hook: &Webhook) {
    for i in 0..FAILURES {
        let Login { status, body, .. } = login(gw, "app", "flaky", &format!("fail-{i}")).await;
        assert_eq!(status, 502, "{body}");
    }
    assert_eq!(hook.calls(), FAILURES);
    let Login { status, .. } = login(gw, "app", "flaky", "early-token").await;
    assert_eq!(status, 502, "an open breaker let a call through");
    assert_eq!(
        hook.calls(),
        FAILURES,
        "an open breaker called the provider"
    );
    assert_eq!(circuit_open(&gw.metrics().await), 1.0);
}

/// Writes a login on a connection of its own and leaves the answer unread.
async fn start_login(
    gw: &Gateway,
    provider: &str,
    token: &str,
) -> TlsStream<tokio::net::TcpStream> {
    let mut tls = gw.tls(b"http/1.1").await;
    let body = login_body("app", provider, token).to_string();
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// Once the cooldown is over, starts a login that becomes the half-open trial and returns its
/// connection while the webhook holds the reply. Until then each attempt is answered 502 at once.
async fn trial_in_flight(gw: &Gateway, hook: &Webhook) -> TlsStream<tokio::net::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let before = hook.calls();
        let mut conn = start_login(gw, "flaky", &format!("hold-{attempt}")).await;
        let mut buf = [0u8; 512];
        loop {
            assert!(
                Instant::now() < deadline,
                "the breaker never admitted a trial"
            );
            if hook.calls() > before {
                return conn;
            }
            match tokio::time::timeout(Duration::from_millis(25), conn.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(n)) if n > 0 => {
                    let head = String::from_utf8_lossy(&buf[..n]);
                    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
                    break;
                }
                Ok(other) => panic!("the gateway closed a login unanswered: {other:?}"),
            }
        }
    }
    unreachable!()
}

#[tokio::test]
async fn breaker_trial_cancelled_by_client_disconnect_is_given_back() {
    let hook = flaky_webhook().await;
    let up = Upstream::start().await;
    let gw = with_flaky_provider(&up, &hook).spawn().await;
    open_the_breaker(&gw, &hook).await;

    let conn = trial_in_flight(&gw, &hook).await;
    // Half-open admits exactly one call: while the trial runs, others still fail fast.
    let calls = hook.calls();
    assert_eq!(login(&gw, "app", "flaky", "second-token").await.status, 502);
    assert_eq!(
        hook.calls(),
        calls,
        "a second call went out beside the trial"
    );

    // The client hangs up while the webhook still holds the trial's reply.
    drop(conn);
    assert_eventually!(
        hook.cancelled() == 1,
        "the gateway never dropped the trial call of a client that hung up"
    );

    // The provider is asked again, and its answer closes the breaker.
    assert_eventually!(
        login(&gw, "app", "flaky", "amy-token").await.status == 200,
        "the provider stayed unusable after its trial call was cancelled"
    );
    assert_eq!(
        hook.calls(),
        calls + 1,
        "the next login was not a single call"
    );
    assert_eq!(circuit_open(&gw.metrics().await), 0.0);
    let Login { status, body, .. } = login(&gw, "app", "flaky", "bea-token").await;
    assert_eq!((status, body["userID"].as_str()), (200, Some("bea")));
    assert_eq!(hook.calls(), calls + 2);
}

#[tokio::test]
async fn breaker_trial_cancelled_by_a_winning_group_member_is_given_back() {
    let hook = flaky_webhook().await;
    // The winner answers after a pause, so the flaky member's trial is on the wire when it loses.
    let fast = Webhook::start(|_| Reply::allow("fast", 60).after(500)).await;
    let up = Upstream::start().await;
    let gw = with_flaky_provider(&up, &hook)
        .webhook_provider("fast", &fast)
        .extra("[providers.any]\nkind = \"group\"\nmembers = [\"flaky\", \"fast\"]\nstrategy = \"first_success\"")
        .spawn()
        .await;
    open_the_breaker(&gw, &hook).await;

    // Group logins succeed through `fast` throughout; once the cooldown is over one of them
    // carries the flaky member's trial, which is cancelled when `fast` wins.
    let deadline = Instant::now() + Duration::from_secs(10);
    let calls = hook.calls();
    for attempt in 0.. {
        let Login { status, body, .. } = login(&gw, "app", "any", &format!("hold-{attempt}")).await;
        assert_eq!(
            (status, body["userID"].as_str()),
            (200, Some("fast")),
            "{body}"
        );
        if hook.calls() > calls {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never admitted a trial"
        );
    }
    assert_eq!(
        hook.calls(),
        calls + 1,
        "half-open admitted more than one trial"
    );
    assert_eventually!(
        hook.cancelled() == 1,
        "the losing member's trial call was not cancelled"
    );

    // The flaky provider is asked again at once, and its answer closes the breaker.
    let Login { status, body, .. } = login(&gw, "app", "flaky", "cy-token").await;
    assert_eq!(
        (status, body["userID"].as_str()),
        (200, Some("cy")),
        "the provider stayed unusable after its trial lost a group race: {body}"
    );
    assert_eq!(hook.calls(), calls + 2);
    assert_eq!(circuit_open(&gw.metrics().await), 0.0);
}
