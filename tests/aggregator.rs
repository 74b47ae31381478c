//! The webhook aggregator door: a sync server's webhook calls answered in the webhook format,
//! with the caller's ditto-signature checked.

mod support;

use base64::Engine;
use hmac::Mac;
use support::{Gateway, Login, Upstream, Webhook, client, login};

const SECRET: &[u8] = b"the aggregator's shared secret";

fn sign(t: u64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn gateway(hook: &Webhook, signed: bool) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let aggregator = if signed {
        format!(
            "[aggregator]\nsigning_secret = \"{}\"\n",
            base64::engine::general_purpose::STANDARD.encode(SECRET)
        )
    } else {
        // Unsigned use is an explicit opt-in.
        "[aggregator]\nallow_unsigned = true\n".to_owned()
    };
    let gw = Gateway::builder(up.url())
        .demo_provider(hook)
        .extra(&aggregator)
        .spawn()
        .await;
    (up, gw)
}

async fn call(
    gw: &Gateway,
    path: &str,
    body: &str,
    signature: Option<String>,
) -> (u16, serde_json::Value) {
    let http = client::https(&gw.ca.pem(), false);
    let mut req = client::request("POST", &gw.url(path), body.to_owned());
    if let Some(s) = signature {
        req.headers_mut()
            .insert("ditto-signature", s.parse().unwrap());
    }
    let (status, _, json) = support::send(&http, req).await;
    (status, json)
}

#[tokio::test]
async fn both_request_shapes_get_webhook_replies() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, false).await;
    let legacy = r#"{"appID": "app", "provider": "demo", "token": "kim-token"}"#;
    let (status, body) = call(&gw, "/auth/webhook", legacy, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["authenticated"], true);
    assert_eq!(body["userID"], "kim");
    assert!(body["expirationSeconds"].as_u64().unwrap() <= 120);
    assert_eq!(
        body["identityServiceMetadata"],
        serde_json::json!({"source": "test"})
    );
    assert_eq!(body["clientInfo"]["greeting"], "hello kim");

    let v1 = r#"{"databaseID": "app", "version": "1", "token": "lee-token"}"#;
    let (status, body) = call(&gw, "/auth/webhook/demo", v1, None).await;
    assert_eq!((status, body["userID"].as_str()), (200, Some("lee")));

    let (status, body) = call(
        &gw,
        "/auth/webhook/demo",
        r#"{"appID": "app", "token": "nope"}"#,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"authenticated": false, "clientInfo": {"hint": "unknown token"}})
    );

    // The same decision cache serves every door.
    let (_, body) = call(&gw, "/auth/webhook", legacy, None).await;
    assert_eq!(body["authenticated"], true);
    assert_eq!(hook.calls(), 3);
    let Login { status, .. } = login(&gw, "app", "demo", "kim-token").await;
    assert_eq!(status, 200);
    assert_eq!(hook.calls(), 3);
}

#[tokio::test]
async fn bad_requests_are_refused_without_a_provider_call() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, false).await;
    for (path, body) in [
        ("/auth/webhook", r#"{"appID": "app", "token": "x"}"#),
        (
            "/auth/webhook/demo",
            r#"{"appID": "app", "provider": "other", "token": "x"}"#,
        ),
        ("/auth/webhook", r#"{"provider": "demo", "token": "x"}"#),
        ("/auth/webhook", "garbage"),
    ] {
        let (status, resp) = call(&gw, path, body, None).await;
        assert_eq!(status, 400, "{body}: {resp}");
    }
    assert_eq!(hook.calls(), 0);
}

#[tokio::test]
async fn signed_aggregator_accepts_a_good_signature_and_refuses_bad_or_stale_ones() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, true).await;
    let body = r#"{"appID": "app", "provider": "demo", "token": "max-token"}"#;
    let (status, resp) = call(&gw, "/auth/webhook", body, Some(sign(now(), body))).await;
    assert_eq!(
        (status, resp["authenticated"].as_bool()),
        (200, Some(true)),
        "{resp}"
    );

    let cases = [
        ("missing", None),
        ("stale", Some(sign(now() - 600, body))),
        (
            "wrong body",
            Some(sign(
                now(),
                r#"{"appID": "app", "provider": "demo", "token": "other"}"#,
            )),
        ),
        ("garbage", Some("t=abc,v1=zz".to_owned())),
        (
            "wrong key",
            Some(format!("t={},v1={}", now(), "00".repeat(32))),
        ),
    ];
    for (what, sig) in cases {
        let (status, resp) = call(&gw, "/auth/webhook", body, sig).await;
        assert_eq!(status, 401, "{what}: {resp}");
        assert_eq!(resp["authenticated"], false, "{what}");
    }
    assert_eq!(hook.calls(), 1);
}
