//! `drawbridge demo`, run as a newcomer would: it serves, forwards, relays a websocket, and exits on SIGTERM.

mod support;

use std::io::BufRead;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::client;
use tokio_tungstenite::tungstenite::Message;

fn field(banner: &[String], label: &str) -> String {
    banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label} line in {banner:?}"))
        .to_owned()
}

#[tokio::test]
async fn demo_serves_the_sync_server_through_tls() {
    let mut reap = support::process::Demo::start();
    let child = &mut reap.0;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let banner: Vec<String> = stdout
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("A websocket session"))
        .collect();
    // The demo walks through a websocket session itself and prints it, ending with the close.
    let mut transcript = Vec::new();
    for line in stdout.by_ref().map_while(Result::ok) {
        let done = line.trim_start().starts_with("close") || line.contains("failed");
        transcript.push(line);
        if done {
            break;
        }
    }
    let transcript = transcript.join("\n");
    assert!(
        transcript.contains("101 Switching Protocols"),
        "{transcript}"
    );
    assert!(
        transcript.contains("receive  \"hello through the drawbridge\""),
        "{transcript}"
    );
    assert!(
        transcript.contains("closed the websocket: 4003 session revoked"),
        "{transcript}"
    );
    let gateway = field(&banner, "gateway");
    let admin = field(&banner, "admin");
    assert!(gateway.starts_with("https://127.0.0.1:"), "{banner:?}");
    assert!(
        banner
            .iter()
            .any(|l| l.contains(&format!("curl -k {gateway}/api/items"))),
        "{banner:?}"
    );

    // Trust the certificate the demo made, rather than skipping verification.
    let cert_dir = std::env::temp_dir().join(format!("drawbridge-demo-{}", child.id()));
    let ca = std::fs::read_to_string(cert_dir.join("tls.crt")).unwrap();
    let http = client::https(&ca, false);
    let resp = http
        .get(format!("{gateway}/api/items").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let items = client::json(resp).await;
    assert_eq!(items["items"][0]["title"], "raise the drawbridge");
    assert_eq!(items["seen"]["x-forwarded-proto"], "https");

    let addr: std::net::SocketAddr = gateway.trim_start_matches("https://").parse().unwrap();
    let (_, _, login) = support::post_json(
        &http,
        &format!("{gateway}/auth/login"),
        &support::login_body("demo-app", "demo", "alice-token"),
        None,
    )
    .await;
    let url = format!("wss://localhost:{}/sync", addr.port());
    let tls = client::connect_tls(addr, &ca, None, &[b"http/1.1"])
        .await
        .unwrap();
    let unauthenticated = tokio_tungstenite::client_async(url.as_str(), tls).await;
    assert!(
        unauthenticated.is_err(),
        "the demo's sync path opened without a session"
    );
    let tls = client::connect_tls(addr, &ca, None, &[b"http/1.1"])
        .await
        .unwrap();
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    let bearer = format!("Bearer {}", login["sessionToken"].as_str().unwrap());
    req.headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(Message::text("ping through the gate"))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("ping through the gate")
    );
    drop(ws);

    // Log in with the demo provider, look, log out.
    let (status, _, login) = support::post_json(
        &http,
        &format!("{gateway}/auth/login"),
        &support::login_body("demo-app", "demo", "bob-token"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(
        login["permissions"]["write"]["everything"], false,
        "bob is read-only"
    );
    let token = login["sessionToken"].as_str().unwrap();
    let (status, _, info) =
        support::get_bearer(&http, &format!("{gateway}/auth/userinfo"), token).await;
    assert_eq!((status, info["userID"].as_str()), (200, Some("bob")));
    let (status, _, denied) = support::post_json(
        &http,
        &format!("{gateway}/auth/login"),
        &support::login_body("demo-app", "any", "mallory"),
        None,
    )
    .await;
    assert_eq!(
        (status, denied["reason"].as_str()),
        (401, Some("InvalidCredentials"))
    );
    assert!(
        banner.iter().any(|l| l.contains("/auth/userinfo")),
        "{banner:?}"
    );

    let (status, metrics) = client::get_text(&format!("{admin}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("drawbridge_http_requests_total{route=\"forward\",status_class=\"2xx\"} 1"),
        "{metrics}"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(
        !cert_dir.exists(),
        "the demo left its certificate directory behind"
    );
}
