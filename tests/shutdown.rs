//! SIGTERM on the real binary: readiness drops, the listener closes, in-flight requests finish.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::process::Running;
use support::{Gateway, Upstream, client, login, ws};

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let up = Upstream::start().await;
    let mut gw = Running::start(&up.url(), "[shutdown]\ngrace_seconds = 10", &[]);
    let http = client::https(&gw.ca.pem(), false);
    let url = format!("https://127.0.0.1:{}/slow?ms=1500", gw.addr.port());
    let in_flight =
        tokio::spawn(async move { http.get(url.parse().unwrap()).await.map(|r| r.status()) });
    assert_eventually!(
        up.hits() == 1,
        "the slow request never reached the upstream"
    );

    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    let ready = format!("http://{}/readyz", gw.admin);
    assert_eventually!(
        client::get_text(&ready).await.0 == 503,
        "readiness never went 503 while draining"
    );
    assert_eventually!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "the listener still accepted connections while draining"
    );
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        StatusCode::OK,
        "the in-flight request was cut"
    );
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), 0);
}

#[tokio::test]
async fn sigterm_with_a_stuck_request_exits_when_the_grace_period_ends() {
    let up = Upstream::start().await;
    let mut gw = Running::start(&up.url(), "[shutdown]\ngrace_seconds = 1", &[]);
    let http = client::https(&gw.ca.pem(), false);
    let url = format!("https://127.0.0.1:{}/slow?ms=20000", gw.addr.port());
    let _stuck =
        tokio::spawn(async move { http.get(url.parse().unwrap()).await.map(|r| r.status()) });
    assert_eventually!(
        up.hits() == 1,
        "the slow request never reached the upstream"
    );

    let started = Instant::now();
    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(gw.wait_exit(Duration::from_secs(8)), 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "exited before the grace period"
    );
}

#[tokio::test]
async fn sigterm_closes_open_tunnels_with_1001() {
    let up = Upstream::start().await;
    let hook = support::Webhook::users(3600).await;
    let mut gw = Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .extra("[shutdown]\ngrace_seconds = 5"),
        &[],
    );
    let token = login(&gw, "app", "demo", "zed-token").await.session();
    let mut ws = ws::bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;

    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    let code = ws::close_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1001));
    assert_eq!(gw.wait_exit(Duration::from_secs(8)), 0);
}

#[tokio::test]
async fn on_one_cpu_a_single_threaded_runtime_serves_logins_and_tunnels_and_drains() {
    let up = Upstream::start().await;
    let hook = support::Webhook::users(3600).await;
    let mut gw = Running::start_on_one_cpu(
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .extra("[shutdown]\ngrace_seconds = 5"),
    );
    let serving = gw
        .logs()
        .lines()
        .find(|l| l.contains("drawbridge serving"))
        .map(str::to_owned)
        .expect("the serving line");
    assert!(
        serving.contains("\"runtime\":\"CurrentThread\""),
        "{serving}"
    );
    assert!(serving.contains("\"workers\":1"), "{serving}");

    let token = login(&gw, "app", "demo", "zed-token").await.session();
    let mut ws = ws::bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    ws::echo_ok(&mut ws, "one core is enough").await;

    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    let code = ws::close_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(1001));
    assert_eq!(gw.wait_exit(Duration::from_secs(8)), 0);
}
