//! Logs never carry a provider token, a session token, a cookie or an Authorization header,
//! even at debug level.

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::process::Running;
use support::{Gateway, Login, Reply, Upstream, Webhook, client, get_bearer, login, post_bearer};

#[tokio::test]
async fn no_secret_reaches_the_logs_at_debug_level() {
    const PROVIDER_TOKEN: &str = "provider-token-7f3a9c1e5b";
    const FAILING_TOKEN: &str = "failing-token-0d2b4f6a8c";
    let hook = Webhook::start(|req| match req["token"].as_str() {
        Some(PROVIDER_TOKEN) => Reply::allow("quinn", 600),
        _ => Reply::raw(500, "provider exploded"),
    })
    .await;
    let up = Upstream::start().await;
    let gw = Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .extra("circuit_failures = 0"),
        &[("DRAWBRIDGE_LOG", "debug")],
    );
    let http = client::https(&gw.ca.pem(), false);
    let Login { status, body, .. } = login(&gw, "app", "demo", PROVIDER_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    let session = body["sessionToken"].as_str().unwrap().to_owned();
    let Login { status, .. } = login(&gw, "app", "demo", FAILING_TOKEN).await;
    assert_eq!(status, 502);
    let (status, _, _) = get_bearer(&http, &gw.url("/auth/userinfo"), &session).await;
    assert_eq!(status, 200);
    support::refresh(&http, &gw, &session).await;
    // A forwarded request carrying credentials, and one to a dead path.
    let mut req = client::request("GET", &gw.url("/api/x"), "");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {session}").parse().unwrap(),
    );
    req.headers_mut().insert(
        "cookie",
        "drawbridge_session=cookie-secret-91ab".parse().unwrap(),
    );
    support::send(&http, req).await;
    post_bearer(&http, &gw.url("/auth/logout"), &session).await;
    get_bearer(&http, &gw.url("/auth/userinfo"), &session).await;

    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    let mut gw = gw;
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), 0);
    let logs = gw.logs();
    assert!(
        logs.lines().count() > 5,
        "too few log lines to mean anything:\n{logs}"
    );
    assert!(
        logs.contains("provider call failed"),
        "the failing provider was not logged:\n{logs}"
    );
    let signature = session.rsplit('.').next().unwrap();
    for secret in [
        PROVIDER_TOKEN,
        FAILING_TOKEN,
        signature,
        "cookie-secret-91ab",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}\n{logs}"
        );
    }
    assert!(
        !logs.to_ascii_lowercase().contains("bearer "),
        "an Authorization header reached the logs"
    );
}
