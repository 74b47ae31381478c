//! The Ditto SDK door: the SDK's auth calls relayed byte for byte, logins pre-checked at the gate,
//! and the learned access token then required on the Ditto websocket.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::ditto::{CHALLENGE_REPLY, DittoServer};
use support::{Gateway, Login, Webhook, client, login, metric};
use tokio_tungstenite::tungstenite::Message;

async fn gateway(sync: &DittoServer, hook: &Webhook, ditto: &str) -> Gateway {
    Gateway::builder(sync.url())
        .webhook_provider("my-auth", hook)
        .extra("[ditto]\nenabled = true")
        .extra(ditto)
        .spawn()
        .await
}

const SDK_VERSION: &str = "LinJs5.1.0_4f3a2b1c";

/// The SDK's login form, as the Node SDK 5.1 sends it.
fn login_form(token: &str) -> String {
    format!(
        "appId=app-1&token={token}&provider=my-auth&siteId=12345&chToken=ch-0b1c2d3e4f&chSigB64=c2ln&peerKeyB64=cGVlcg%3D%3D&jwtVersion=1&includeX509=true"
    )
}

async fn post_form(gw: &Gateway, path: &str, body: String) -> (u16, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let http = client::https(&gw.ca.pem(), false);
    let mut req = client::request("POST", &gw.url(path), body);
    req.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    req.headers_mut().insert("accept", "*/*".parse().unwrap());
    req.headers_mut()
        .insert("x-ditto-sdk-version", SDK_VERSION.parse().unwrap());
    let resp = http.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (
        status,
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn challenge_is_relayed_byte_for_byte() {
    let sync = DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&sync, &hook, "path_prefix = \"/gw\"\n").await;
    let (status, headers, body) =
        post_form(&gw, "/gw/_ditto/auth/challenge?x=1", String::new()).await;
    assert_eq!(status, 200);
    assert_eq!(body, CHALLENGE_REPLY.as_bytes());
    assert_eq!(headers["x-ditto-server"], "stand-in");
    let got = &sync.received()[0];
    assert_eq!(
        (got.method.as_str(), got.uri.as_str()),
        ("POST", "/gw/_ditto/auth/challenge?x=1")
    );
    assert_eq!(got.headers["x-ditto-sdk-version"], SDK_VERSION);
    assert_eq!(got.headers["accept"], "*/*");
    assert!(got.body.is_empty());
    assert_eq!(hook.calls(), 0, "the challenge needs no provider");
}

#[tokio::test]
async fn denied_login_is_answered_at_the_gate_in_the_sdk_failure_shape() {
    let sync = DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&sync, &hook, "").await;
    let (status, _, body) = post_form(&gw, "/_ditto/auth/login", login_form("stolen")).await;
    assert_eq!(status, 401);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["result"], "failure");
    assert_eq!(v["reason"], "InvalidCredentials");
    assert!(v["description"].is_string());
    assert_eq!(
        v["clientInfo"],
        serde_json::json!({"hint": "unknown token"})
    );
    assert!(
        sync.received().is_empty(),
        "the sync server saw a denied login"
    );
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_logins_total{door=\"ditto\",provider=\"my-auth\",result=\"deny\"}"
        ),
        1.0
    );
    let (status, _, body) =
        post_form(&gw, "/_ditto/auth/login", "appId=a&provider=my-auth".into()).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn allowed_login_is_relayed_byte_for_byte_and_its_reply_unchanged() {
    let sync = DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&sync, &hook, "").await;
    let form = login_form("kate-token");
    let (status, headers, body) = post_form(&gw, "/_ditto/auth/login", form.clone()).await;
    assert_eq!(status, 200);
    let got = &sync.received()[0];
    assert_eq!(
        got.body,
        form.as_bytes(),
        "the login body changed on the way"
    );
    assert_eq!(got.uri, "/_ditto/auth/login");
    assert_eq!(
        got.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(got.headers["x-ditto-sdk-version"], SDK_VERSION);
    assert_eq!(headers["x-ditto-server"], "stand-in");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["result"], "success");
    assert_eq!(v["accessToken"], "access-for-kate-token");
    assert_eq!(hook.calls(), 1);
    // The same decision cache as every door: a second login costs no webhook call.
    post_form(&gw, "/_ditto/auth/login", form).await;
    assert_eq!(hook.calls(), 1);
}

use support::ws::Ws;

async fn ditto_ws(
    gw: &Gateway,
    header: Option<(&str, &str)>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let headers: Vec<_> = header.into_iter().collect();
    support::ws::client(gw.addr, &gw.ca.pem(), "/_ditto/ws", &headers).await
}

#[tokio::test]
async fn learned_access_token_is_required_on_the_ditto_websocket_and_bounds_it() {
    let sync = DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&sync, &hook, "require_known_token = true\n").await;
    assert!(ditto_ws(&gw, None).await.is_err(), "opened without a token");
    assert!(
        ditto_ws(&gw, Some(("x-ditto-auth", "access-for-nobody")))
            .await
            .is_err()
    );

    sync.set_access_seconds(2);
    let (status, _, _) = post_form(&gw, "/_ditto/auth/login", login_form("liam-token")).await;
    assert_eq!(status, 200);
    let mut ws = ditto_ws(&gw, Some(("x-ditto-auth", "access-for-liam-token")))
        .await
        .expect("a learned token opens it");
    ws.send(Message::text("sync me")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("sync me"));
    // The sync server still gets its own token.
    let seen = sync
        .received()
        .into_iter()
        .find(|r| r.uri == "/_ditto/ws")
        .unwrap();
    assert_eq!(seen.headers["x-ditto-auth"], "access-for-liam-token");
    // The tunnel ends at the token's accessExpiry.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(6), ws.next())
            .await
            .expect("no close at accessExpiry")
        {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(4001));
    // Bearer works too, for a fresh login.
    sync.set_access_seconds(3600);
    post_form(&gw, "/_ditto/auth/login", login_form("mona-token")).await;
    let mut ws = ditto_ws(&gw, Some(("authorization", "Bearer access-for-mona-token")))
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
}

#[tokio::test]
async fn without_require_known_token_the_ditto_websocket_needs_a_session_unless_public() {
    let sync = DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&sync, &hook, "").await;
    assert!(
        ditto_ws(&gw, None).await.is_err(),
        "opened without a session"
    );
    assert!(
        ditto_ws(&gw, Some(("x-ditto-auth", "access-for-anyone")))
            .await
            .is_err(),
        "a Ditto token is no drawbridge session"
    );
    assert!(
        !sync.received().iter().any(|r| r.uri == "/_ditto/ws"),
        "the sync server saw an ungated websocket"
    );
    let Login { status, body, .. } = login(&gw, "app-1", "my-auth", "nina-token").await;
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Bearer {}", body["sessionToken"].as_str().unwrap());
    let mut ws = ditto_ws(&gw, Some(("authorization", bearer.as_str())))
        .await
        .expect("a session opens it");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    // Listed as public, it is relayed as is; the sync server checks its token in-stream.
    let open = Gateway::builder(sync.url())
        .public_upgrade_paths(&["/_ditto/ws"])
        .webhook_provider("my-auth", &hook)
        .extra("[ditto]\nenabled = true")
        .spawn()
        .await;
    let mut ws = ditto_ws(&open, None)
        .await
        .expect("relayed; the sync server checks its token in-stream");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
}
