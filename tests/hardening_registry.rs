//! Public tunnels belong to no user and no session: revoking the user `""` or the session `""` on
//! the admin port closes none of them, and only shutdown does. Real TLS, a real websocket echo.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::ws::{bearer_client, close_of, echo_ok};
use support::{Gateway, Upstream, Webhook, login, metric};

async fn revoke(admin: std::net::SocketAddr, body: &str) -> u16 {
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("http://{admin}/sessions/revoke"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    http.request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn public_tunnel_survives_revocation_of_the_empty_user_and_session() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .public_upgrade_paths(&["/public"])
        .spawn()
        .await;
    let mut public = support::ws::client(gw.addr, &gw.ca.pem(), "/public/room", &[])
        .await
        .expect("a public tunnel opens without a session");
    echo_ok(&mut public, "before").await;
    let token = login(&gw, "app", "demo", "alice-token").await.session();
    let mut alice = bearer_client(gw.addr, &gw.ca.pem(), "/sync/room", &token).await;
    echo_ok(&mut alice, "before").await;

    for body in [r#"{"userID": ""}"#, r#"{"sid": ""}"#] {
        assert_eq!(revoke(gw.admin_addr, body).await, 200, "{body}");
    }
    echo_ok(&mut public, "after the empty user and session").await;
    echo_ok(&mut alice, "after the empty user and session").await;
    assert_eq!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active"),
        2.0
    );

    // A real user's revocation closes that user's tunnel and leaves the public one.
    assert_eq!(revoke(gw.admin_addr, r#"{"userID": "alice"}"#).await, 200);
    assert_eq!(
        close_of(&mut alice, Duration::from_secs(5)).await,
        Some(4003)
    );
    echo_ok(&mut public, "after alice's revocation").await;
}
