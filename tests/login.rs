//! The native login API through real TLS, against a real provider webhook.

mod support;

use support::{
    Gateway, Login, Upstream, Webhook, client, get_bearer, login, login_body, metric, post_bearer,
    post_json,
};

async fn gateway(hook: &Webhook, extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(hook)
        .extra(extra)
        .spawn()
        .await;
    (up, gw)
}

#[tokio::test]
async fn login_mints_a_session_that_userinfo_accepts() {
    let hook = Webhook::users(3600).await;
    let (up, gw) = gateway(&hook, "").await;
    let http = client::https(&gw.ca.pem(), false);

    let Login {
        status,
        headers,
        body,
    } = login(&gw, "app1", "demo", "alice-token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "success");
    assert_eq!(body["userID"], "alice");
    assert_eq!(
        body["clientInfo"],
        serde_json::json!({"greeting": "hello alice"})
    );
    assert_eq!(body["permissions"]["read"]["everything"], true);
    let secs = body["expirationSeconds"].as_u64().unwrap();
    assert!((3590..=3600).contains(&secs), "{secs}");
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'));
    let token = body["sessionToken"].as_str().unwrap().to_owned();
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("drawbridge_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("Secure")
    );
    assert_eq!(up.hits(), 0, "the sync server saw an auth route");

    let (status, _, info) = get_bearer(&http, &gw.url("/auth/userinfo"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(info["userID"], "alice");
    assert_eq!(info["app"], "app1");
    assert_eq!(info["provider"], "demo");
    assert_eq!(info["clientInfo"]["greeting"], "hello alice");

    // The session is drawbridge's own: HS256 under a key derived from the session key, never
    // published. What the sync server verifies with the JWKS is the assertion (tests/tunnel.rs).
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    let set = support::jwks(&http, &gw).await;
    assert_eq!(set.keys.len(), 1, "only the signing key is published");
    assert!(set.find(&header.kid.unwrap()).is_none());

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_logins_total{door=\"login\",provider=\"demo\",result=\"allow\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "drawbridge_sessions_issued_total"), 1.0);
}

#[tokio::test]
async fn denial_is_401_in_the_failure_shape_with_client_info() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "").await;
    let Login { status, body, .. } = login(&gw, "app1", "demo", "nobody").await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        serde_json::json!({
            "result": "failure",
            "reason": "InvalidCredentials",
            "description": "the provider refused the token",
            "clientInfo": {"hint": "unknown token"}
        })
    );
}

#[tokio::test]
async fn malformed_requests_are_400_and_never_reach_the_provider() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let url = gw.url("/auth/login");
    for (body, needle) in [
        ("not json", "not JSON"),
        ("{\"appID\": \"a\", \"provider\": \"demo\"", "truncated"),
        ("{\"appID\": \"a\", \"provider\": \"demo\"}", "token"),
        (
            "{\"appID\": 7, \"provider\": \"demo\", \"token\": \"t\"}",
            "invalid type",
        ),
        ("[]", "expected struct"),
    ] {
        let (status, _, resp) = support::send(&http, client::request("POST", &url, body)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(resp["result"], "failure");
        assert_eq!(resp["reason"], "MalformedRequest");
        assert!(
            resp["description"].as_str().unwrap().contains(needle),
            "{body} -> {resp}"
        );
    }
    let huge = format!(
        "{{\"appID\":\"a\",\"provider\":\"demo\",\"token\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let (status, _, resp) = support::send(&http, client::request("POST", &url, huge)).await;
    assert_eq!(status, 413);
    assert_eq!(resp["reason"], "MalformedRequest");
    let (status, _, resp) = support::send(&http, client::request("GET", &url, "")).await;
    assert_eq!(status, 405);
    assert_eq!(resp["result"], "failure");
    assert_eq!(hook.calls(), 0);
}

#[tokio::test]
async fn unknown_provider_and_app_are_denied_without_any_call() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "[apps.app1]\nproviders = [\"demo\"]\n").await;
    let Login { status, body, .. } = login(&gw, "app1", "nope", "alice-token").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("InvalidApp")),
        "{body}"
    );
    let Login { status, body, .. } = login(&gw, "other-app", "demo", "alice-token").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("InvalidApp")),
        "{body}"
    );
    assert_eq!(hook.calls(), 0);
    let Login { status, .. } = login(&gw, "app1", "demo", "alice-token").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_logins_total{door=\"login\",provider=\"unknown\",result=\"deny\"}"
        ),
        1.0,
        "client-chosen provider names must not become labels"
    );
}

#[tokio::test]
async fn refresh_keeps_the_session_and_never_passes_the_decision_expiry() {
    let hook = Webhook::users(30).await;
    let (_up, gw) = gateway(&hook, "[session]\nmax_ttl_seconds = 3600\n").await;
    let http = client::https(&gw.ca.pem(), false);
    let Login { body: first, .. } = login(&gw, "a", "demo", "bob-token").await;
    let token = first["sessionToken"].as_str().unwrap();
    let (status, _, second) = support::refresh(&http, &gw, token).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["sessionToken"], first["sessionToken"]);
    let claims = |t: &serde_json::Value| -> serde_json::Value {
        let payload = t.as_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap()
    };
    let (a, b) = (
        claims(&first["sessionToken"]),
        claims(&second["sessionToken"]),
    );
    assert_eq!(a["sid"], b["sid"]);
    // A token leaves `dex` out when it equals its `exp`, as here (a 30 s decision).
    let decision_expiry = a["dex"].as_u64().or(a["exp"].as_u64());
    assert!(
        b["exp"].as_u64() <= decision_expiry,
        "refresh went past the decision: {a} {b}"
    );
    assert!(
        b["exp"].as_u64().unwrap() <= a["exp"].as_u64().unwrap() + 1,
        "a 30 s decision became a longer session"
    );
    assert_eq!(hook.calls(), 1, "refresh must not ask the provider");

    for bad in [
        serde_json::json!({"refresh": "garbage"}),
        serde_json::json!({"refresh": 5}),
    ] {
        let (status, _, body) = post_json(&http, &gw.url("/auth/token"), &bad, None).await;
        assert!(status == 401 || status == 400, "{status} {body}");
        assert_eq!(body["result"], "failure");
    }
}

#[tokio::test]
async fn after_logout_the_token_is_refused_everywhere() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let Login { body, .. } = login(&gw, "a", "demo", "carol-token").await;
    let token = body["sessionToken"].as_str().unwrap().to_owned();
    let (status, _, ticket) = post_bearer(&http, &gw.url("/auth/ticket"), &token).await;
    assert_eq!(status, 200);
    assert!(ticket["ticket"].as_str().unwrap().len() >= 32);
    assert_eq!(ticket["expiresIn"], 30);

    let (status, headers, _) = post_bearer(&http, &gw.url("/auth/logout"), &token).await;
    assert_eq!(status, 200);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );

    let (status, headers, body) = get_bearer(&http, &gw.url("/auth/userinfo"), &token).await;
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "InvalidToken");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (status, _, _) = support::refresh(&http, &gw, &token).await;
    assert_eq!(status, 401);
    let (status, _, _) = post_bearer(&http, &gw.url("/auth/ticket"), &token).await;
    assert_eq!(status, 401);
    assert_eq!(
        metric(&gw.metrics().await, "drawbridge_sessions_revoked_total"),
        1.0
    );

    // A new login gets a new, working session.
    let Login { body: again, .. } = login(&gw, "a", "demo", "carol-token").await;
    let (status, _, _) = get_bearer(
        &http,
        &gw.url("/auth/userinfo"),
        again["sessionToken"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn admin_revokes_by_user_and_purges_the_cache() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let Login { body, .. } = login(&gw, "a", "demo", "dave-token").await;
    let token = body["sessionToken"].as_str().unwrap().to_owned();
    let admin = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let revoke = http::Request::post(format!("http://{}/sessions/revoke", gw.admin_addr))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            r#"{"userID": "dave"}"#,
        )))
        .unwrap();
    let resp = admin.request(revoke).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _, _) = get_bearer(&http, &gw.url("/auth/userinfo"), &token).await;
    assert_eq!(status, 401, "a user revocation left a session working");
    // The user's cached decision went too: the next login asks the provider again.
    let calls = hook.calls();
    let Login { status, .. } = login(&gw, "a", "demo", "dave-token").await;
    assert_eq!(status, 200);
    assert_eq!(hook.calls(), calls + 1);

    let purge = http::Request::post(format!("http://{}/cache/purge", gw.admin_addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(admin.request(purge).await.unwrap().status(), 200);
    login(&gw, "a", "demo", "dave-token").await;
    assert_eq!(hook.calls(), calls + 2, "purge left the decision cached");
}

#[tokio::test]
async fn login_rate_limit_answers_429_per_client() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "[rate_limit]\nper_second = 1\nburst = 3\n").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let Login {
            status,
            headers,
            body,
        } = login(&gw, "a", "demo", "erin-token").await;
        if status == 429 {
            assert_eq!(body["reason"], "RateLimited");
            assert_eq!(headers["retry-after"], "1");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(
        &hook,
        "[cors]\nallowed_origins = [\"https://app.example\"]\n",
    )
    .await;
    let http = client::https(&gw.ca.pem(), false);
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://evil.example", false),
    ] {
        let mut req = client::request("OPTIONS", &gw.url("/auth/login"), "");
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req.headers_mut()
            .insert("access-control-request-method", "POST".parse().unwrap());
        let (status, headers, _) = support::send(&http, req).await;
        assert_eq!(status, 204);
        assert_eq!(
            headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            allowed.then_some(origin)
        );
        assert_eq!(
            headers.contains_key("access-control-allow-methods"),
            allowed
        );
    }
    let mut req = client::request(
        "POST",
        &gw.url("/auth/login"),
        login_body("a", "demo", "x-token").to_string(),
    );
    req.headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    let (_, headers, _) = support::send(&http, req).await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn cors_wildcard_never_echoes_an_origin_with_credentials() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(
        &hook,
        "[cors]\nallowed_origins = [\"*\", \"https://app.example\"]\n",
    )
    .await;
    let http = client::https(&gw.ca.pem(), false);
    // Any origin (also `null`, which sandboxed pages and files send) is answered with the literal
    // `*` and no credentials; only a listed origin is echoed with them.
    for (origin, echoed) in [
        ("https://evil.example", false),
        ("null", false),
        ("https://app.example.evil.example", false),
        ("https://app.example", true),
        ("HTTPS://APP.EXAMPLE", true),
    ] {
        for method in ["OPTIONS", "POST"] {
            let body = if method == "POST" {
                login_body("a", "demo", "alice-token").to_string()
            } else {
                String::new()
            };
            let mut req = client::request(method, &gw.url("/auth/login"), body);
            let h = req.headers_mut();
            h.insert("origin", origin.parse().unwrap());
            h.insert("access-control-request-method", "POST".parse().unwrap());
            h.insert("content-type", "application/json".parse().unwrap());
            let (_, headers, _) = support::send(&http, req).await;
            let allow_origin = headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned());
            let credentials = headers.get("access-control-allow-credentials");
            if echoed {
                assert_eq!(allow_origin.as_deref(), Some(origin), "{method} {origin}");
                assert_eq!(credentials.unwrap(), "true", "{method} {origin}");
            } else {
                assert_eq!(allow_origin.as_deref(), Some("*"), "{method} {origin}");
                assert!(credentials.is_none(), "{method} {origin}: credentials");
            }
        }
    }
}

#[tokio::test]
async fn slow_login_body_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "[limits]\nheader_read_timeout_ms = 300\n").await;
    let mut tls = gw.tls(b"http/1.1").await;
    tls.write_all(
        b"POST /auth/login HTTP/1.1\r\nhost: localhost\r\ncontent-length: 200\r\n\r\n{\"appID\":",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("the slow body was never cut off")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("MalformedRequest"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(hook.calls(), 0);
}

#[tokio::test]
async fn key_signed_sessions_verify_against_the_jwks_alone_and_carry_their_grants() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "[session]\ntoken_signing = \"key\"").await;
    let http = client::https(&gw.ca.pem(), false);
    let Login { status, body, .. } = login(&gw, "app1", "demo", "alice-token").await;
    assert_eq!(status, 200, "{body}");
    let token = body["sessionToken"].as_str().unwrap().to_owned();
    let set = support::jwks(&http, &gw).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let jwk = set.find(&kid).expect("the token's kid is published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&["drawbridge"]);
    v.set_issuer(&["drawbridge"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("session verifies against the JWKS");
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.claims["app"], "app1");
    assert_eq!(data.claims["prv"], "demo");
    assert!(data.claims["sid"].is_string() && data.claims["jti"].is_string());
    // What the provider granted rides in the token itself, in the compact form.
    assert_eq!(
        data.claims["prm"],
        serde_json::json!({"r": true, "w": {"c": {"tasks": ["_id.owner == 'alice'"]}}}),
        "{}",
        data.claims
    );
    assert_eq!(
        data.claims["cli"],
        serde_json::json!({"greeting": "hello alice"})
    );
}

/// How many of the reply's JSON values are exactly `token`.
fn times_carried(body: &serde_json::Value, token: &str) -> usize {
    body.as_object()
        .unwrap()
        .values()
        .filter(|v| v.as_str() == Some(token))
        .count()
}

#[tokio::test]
async fn login_and_refresh_replies_carry_the_token_once_and_set_the_cookie() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let Login { headers, body, .. } = login(&gw, "app1", "demo", "alice-token").await;
    let token = body["sessionToken"]
        .as_str()
        .expect("sessionToken")
        .to_owned();
    let (_, refreshed_headers, refreshed) = support::refresh(&http, &gw, &token).await;
    let fresh = refreshed["sessionToken"]
        .as_str()
        .expect("sessionToken")
        .to_owned();
    for (headers, body, token) in [
        (&headers, &body, &token),
        (&refreshed_headers, &refreshed, &fresh),
    ] {
        assert_eq!(times_carried(body, token), 1, "{body}");
        assert!(body.get("token").is_none(), "{body}");
        let cookie = headers["set-cookie"].to_str().unwrap();
        assert!(
            cookie.starts_with(&format!("drawbridge_session={token};")),
            "browsers keep their cookie: {cookie}"
        );
    }
}

#[tokio::test]
async fn token_field_token_names_the_token_token_once() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(&hook, "[native]\ntoken_field = \"token\"\n").await;
    let http = client::https(&gw.ca.pem(), false);
    let Login { headers, body, .. } = login(&gw, "app1", "demo", "alice-token").await;
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(body.get("sessionToken").is_none(), "{body}");
    assert_eq!(times_carried(&body, &token), 1, "{body}");
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with(&format!("drawbridge_session={token};"))
    );
    let (status, _, info) = get_bearer(&http, &gw.url("/auth/userinfo"), &token).await;
    assert_eq!(
        (status, &info["userID"]),
        (200, &serde_json::json!("alice"))
    );
}
