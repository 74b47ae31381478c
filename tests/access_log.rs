//! The access log (`log.access = true`): one JSON line per HTTP request, with the canonical path
//! without its query, the status, the route, the duration, the bytes sent and the user when known.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Gateway, Reply, Upstream, Webhook, client, get_bearer, login};

const TOKEN: &str = "provider-token-access-41c9";

fn line_for(path: &Path, request_path: &str) -> Option<Value> {
    support::json_lines(path)
        .into_iter()
        .find(|l| l["path"] == request_path)
}

#[tokio::test]
async fn access_log_one_line_per_request_with_canonical_path_status_bytes_and_user() {
    let hook = Webhook::start(|req| match req["token"].as_str() {
        Some(TOKEN) => Reply::allow("quinn", 600),
        _ => Reply::deny(serde_json::json!({})),
    })
    .await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .rate_limit_off()
        .extra(&format!(
            "[log]\naccess = true\naccess_path = {:?}",
            access.to_str().unwrap()
        ))
        .spawn()
        .await;
    let http = client::https(&gw.ca.pem(), false);

    let (status, _, body) = support::send(
        &http,
        client::request(
            "GET",
            &gw.url("/x/../bytes?n=1234&ticket=query-secret-77"),
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = login(&gw, "app", "demo", TOKEN).await.session();
    let (status, _, _) = get_bearer(&http, &gw.url("/auth/userinfo"), &session).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        support::send(&http, client::request("GET", &gw.url("/x/refuse"), "")).await;
    assert_eq!(status, 403);

    assert_eventually!(
        support::json_lines(&access).len() >= 4,
        "not every request was logged: {:?}",
        support::json_lines(&access)
    );
    let forward = line_for(&access, "/bytes").expect("the forwarded request");
    assert_eq!(forward["event"], "http_request");
    assert_eq!(forward["method"], "GET");
    assert_eq!(forward["status"], 200);
    assert_eq!(forward["route"], "forward");
    assert_eq!(forward["bytes"], 1234);
    assert_eq!(forward["client_ip"], "127.0.0.1");
    assert!(forward["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(forward.get("user").is_none(), "{forward}");
    assert!(forward["ts"].as_str().unwrap().ends_with('Z'));

    let login_line = line_for(&access, "/auth/login").expect("the login");
    assert_eq!(login_line["method"], "POST");
    assert_eq!(login_line["route"], "login");
    assert_eq!(login_line["status"], 200);
    assert_eq!(login_line["user"], "quinn");
    let userinfo = line_for(&access, "/auth/userinfo").expect("the userinfo call");
    assert_eq!(userinfo["user"], "quinn");
    assert_eq!(line_for(&access, "/x/refuse").unwrap()["status"], 403);

    let text = std::fs::read_to_string(&access).unwrap();
    for secret in [TOKEN, session.as_str(), "query-secret-77", "ticket="] {
        assert!(!text.contains(secret), "the access log holds {secret:?}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn log_drop_counters_exported_while_logs_are_off() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, _) =
        support::send(&http, client::request("GET", &gw.url("/bytes?n=3"), "")).await;
    assert_eq!(status, 200);
    let m = gw.metrics().await;
    assert!(m.contains("drawbridge_access_log_dropped_total 0"), "{m}");
    assert!(m.contains("drawbridge_audit_dropped_total 0"), "{m}");
    gw.shutdown().await;
}
