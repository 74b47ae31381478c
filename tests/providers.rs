//! Provider webhooks behind the login door: the decision cache, failures that fail closed,
//! signing, the circuit breaker, and group fan-out.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::Mac;
use support::{
    Gateway, GatewayBuilder, Login, Reply, Upstream, Webhook, client, login, login_body, metric,
    post_json,
};

/// A gateway in front of a recording upstream, with the providers `config` adds.
async fn gateway(config: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = config(Gateway::builder(up.url())).spawn().await;
    (up, gw)
}

#[tokio::test]
async fn cache_hit_makes_no_provider_call() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(|b| b.demo_provider(&hook)).await;
    for _ in 0..5 {
        assert_eq!(login(&gw, "app", "demo", "alice-token").await.status, 200);
    }
    assert_eq!(hook.calls(), 1);
    // A different token is a different key.
    assert_eq!(login(&gw, "app", "demo", "bob-token").await.status, 200);
    assert_eq!(hook.calls(), 2);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_decision_cache_requests_total{result=\"hit\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &m,
            "drawbridge_decision_cache_requests_total{result=\"miss\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn hundred_concurrent_identical_logins_make_exactly_one_call() {
    let hook = Webhook::start(|_| Reply::allow("zoe", 3600).after(300)).await;
    let (_up, gw) = gateway(|b| b.demo_provider(&hook)).await;
    let http = client::https(&gw.ca.pem(), true);
    let url = gw.url("/auth/login");
    let logins = (0..100).map(|_| {
        let http = http.clone();
        let url = url.clone();
        tokio::spawn(async move {
            post_json(&http, &url, &login_body("app", "demo", "same-token"), None)
                .await
                .0
        })
    });
    for status in futures_util::future::join_all(logins).await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(hook.calls(), 1, "concurrent misses were not coalesced");
    let m = gw.metrics().await;
    let coalesced = metric(
        &m,
        "drawbridge_decision_cache_requests_total{result=\"coalesced\"}",
    );
    let hits = metric(
        &m,
        "drawbridge_decision_cache_requests_total{result=\"hit\"}",
    );
    assert_eq!(coalesced + hits, 99.0, "{m}");
    assert!(coalesced >= 1.0);
}

#[tokio::test]
async fn short_expiration_seconds_is_honoured() {
    let hook = Webhook::users(1).await;
    let (_up, gw) = gateway(|b| b.demo_provider(&hook)).await;
    let Login { status, body, .. } = login(&gw, "app", "demo", "fay-token").await;
    assert_eq!(status, 200);
    assert!(body["expirationSeconds"].as_u64().unwrap() <= 1, "{body}");
    assert_eq!(login(&gw, "app", "demo", "fay-token").await.status, 200);
    let started = Instant::now();
    assert_eventually!(
        {
            login(&gw, "app", "demo", "fay-token").await;
            hook.calls() == 2
        },
        "the allow outlived its expirationSeconds"
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn denial_is_cached_only_for_the_negative_ttl() {
    let hook = Webhook::users(3600).await;
    let (_up, gw) = gateway(|b| {
        b.demo_provider(&hook)
            .extra("[cache]\nnegative_ttl_seconds = 1")
    })
    .await;
    assert_eq!(login(&gw, "app", "demo", "wrong").await.status, 401);
    assert_eq!(login(&gw, "app", "demo", "wrong").await.status, 401);
    assert_eq!(hook.calls(), 1, "a denial was not cached at all");
    assert_eventually!(
        {
            login(&gw, "app", "demo", "wrong").await;
            hook.calls() == 2
        },
        "the denial outlived negative_ttl_seconds"
    );
}

#[tokio::test]
async fn provider_timeout_is_503_and_nothing_is_cached() {
    let hook = Webhook::start(|_| Reply::allow("slow", 3600).after(2000)).await;
    let (_up, gw) = gateway(|b| {
        b.demo_provider(&hook)
            .extra("timeout_ms = 200\nretries = 0")
    })
    .await;
    let started = Instant::now();
    let Login { status, body, .. } = login(&gw, "app", "demo", "t").await;
    assert_eq!(status, 503);
    assert_eq!(body["result"], "failure");
    assert_eq!(body["reason"], "Timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(login(&gw, "app", "demo", "t").await.status, 503);
    assert_eq!(hook.calls(), 2, "a timeout was cached");
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_provider_requests_total{outcome=\"timeout\",provider=\"demo\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "drawbridge_logins_total{door=\"login\",provider=\"demo\",result=\"timeout\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn garbage_oversized_and_failing_replies_are_502_internal_and_counted() {
    let huge = format!(
        "{{\"authenticated\": true, \"expirationSeconds\": 60, \"userID\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let hook = Webhook::start(move |req| match req["token"].as_str().unwrap_or_default() {
        "garbage" => Reply::raw(200, "<html>oops</html>"),
        "wrong-types" => Reply::json(200, serde_json::json!({"authenticated": "yes"})),
        "no-expiry" => Reply::json(
            200,
            serde_json::json!({"authenticated": true, "userID": "u"}),
        ),
        "huge" => Reply::raw(200, huge.clone()),
        "server-error" => Reply::json(
            500,
            serde_json::json!({"authenticated": true, "expirationSeconds": 60}),
        ),
        _ => Reply::allow("ok", 60),
    })
    .await;
    let (_up, gw) = gateway(|b| b.demo_provider(&hook).extra("circuit_failures = 0")).await;
    for token in [
        "garbage",
        "wrong-types",
        "no-expiry",
        "huge",
        "server-error",
    ] {
        let Login { status, body, .. } = login(&gw, "app", "demo", token).await;
        assert_eq!(status, 502, "{token}: {body}");
        assert_eq!(body["reason"], "Internal", "{token}");
        assert_eq!(body["result"], "failure");
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_provider_requests_total{outcome=\"bad_reply\",provider=\"demo\"}"
        ),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "drawbridge_provider_requests_total{outcome=\"bad_status\",provider=\"demo\"}"
        ),
        1.0
    );
    // Nothing failed was cached: each asks again.
    login(&gw, "app", "demo", "garbage").await;
    assert_eq!(hook.calls(), 6);
}

#[tokio::test]
async fn unreachable_provider_is_502_and_retries_only_connect_errors() {
    let dead = support::upstream::dead_url().await;
    let (_up, gw) = gateway(|b| {
        b.extra(&format!(
            "[providers.gone]\nkind = \"webhook\"\nurl = \"{dead}/auth\"\nretries = 2"
        ))
    })
    .await;
    let Login { status, body, .. } = login(&gw, "app", "gone", "t").await;
    assert_eq!((status, body["reason"].as_str()), (502, Some("Internal")));
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_provider_requests_total{outcome=\"unreachable\",provider=\"gone\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn signed_calls_match_the_documented_algorithm() {
    let secret = b"a shared secret of some length";
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let hook = Webhook::users(60).await;
    let (_up, gw) = gateway(|b| {
        b.demo_provider(&hook).extra(&format!(
            "signing_secret = \"{b64}\"\nrequest_format = \"v1\"\nheaders = {{ \"x-api-key\" = \"k1\" }}"
        ))
    })
    .await;
    assert_eq!(login(&gw, "app", "demo", "gus-token").await.status, 200);
    let call = &hook.log()[0];
    // Recompute the signature here, from the documented algorithm, without drawbridge's code:
    // v1 = hex(HMAC-SHA256(key = secret, msg = "<t>.<raw body>")).
    let header = call.headers["ditto-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&call.body);
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t.parse().unwrap()) < 10);
    assert_eq!(call.headers["x-api-key"], "k1");
    let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"databaseID": "app", "version": "1", "provider": "demo", "token": "gus-token"})
    );
}

#[tokio::test]
async fn legacy_request_shape_is_the_default() {
    let hook = Webhook::users(60).await;
    let (_up, gw) = gateway(|b| b.demo_provider(&hook)).await;
    login(&gw, "app", "demo", "hal-token").await;
    let body: serde_json::Value = serde_json::from_slice(&hook.log()[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"appID": "app", "provider": "demo", "token": "hal-token"})
    );
    assert!(!hook.log()[0].headers.contains_key("ditto-signature"));
}

#[tokio::test]
async fn circuit_opens_after_consecutive_failures_and_fails_fast() {
    let hook = Webhook::start(|_| Reply::raw(503, "down")).await;
    let (_up, gw) = gateway(|b| {
        b.demo_provider(&hook)
            .extra("circuit_failures = 3\ncircuit_cooldown_ms = 60000")
    })
    .await;
    for i in 0..6 {
        let Login { status, .. } = login(&gw, "app", "demo", &format!("t{i}")).await;
        assert_eq!(status, 502);
    }
    assert_eq!(hook.calls(), 3, "an open circuit still called the provider");
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "drawbridge_provider_circuit_open{provider=\"demo\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "drawbridge_provider_requests_total{outcome=\"circuit_open\",provider=\"demo\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn stale_allow_is_served_while_the_provider_fails() {
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = broken.clone();
    let hook = Webhook::start(move |_| {
        if switch.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::raw(500, "down")
        } else {
            Reply::allow("ivy", 1)
        }
    })
    .await;
    let (_up, gw) = gateway(|b| {
        b.webhook_provider("flaky", &hook)
            .extra("circuit_failures = 0\n[cache]\nstale_if_error_seconds = 60")
    })
    .await;
    assert_eq!(login(&gw, "app", "flaky", "ivy-token").await.status, 200);
    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    // Once the 1 s allow expires, the failing provider is asked and the stale allow is served instead.
    assert_eventually!(
        login(&gw, "app", "flaky", "ivy-token").await.status == 200 && hook.calls() >= 2,
        "no stale allow was served while the provider was failing"
    );
    assert!(
        metric(
            &gw.metrics().await,
            "drawbridge_decision_cache_requests_total{result=\"stale\"}"
        ) >= 1.0
    );
    // A token never allowed gets no stale answer.
    assert_eq!(login(&gw, "app", "flaky", "other-token").await.status, 502);
}

#[tokio::test]
async fn first_success_group_takes_the_first_allow_and_cancels_the_rest() {
    let fast = Webhook::start(|_| Reply::allow("fast", 60).after(50)).await;
    let slow = Webhook::start(|_| Reply::allow("slow", 60).after(3000)).await;
    let deny = Webhook::start(|_| Reply::deny(serde_json::json!({"from": "deny"}))).await;
    let (_up, gw) = gateway(|b| {
        b.webhook_provider("fast", &fast)
            .webhook_provider("slow", &slow)
            .webhook_provider("deny", &deny)
            .extra("[providers.any]\nkind = \"group\"\nmembers = [\"slow\", \"deny\", \"fast\"]\nstrategy = \"first_success\"")
    })
    .await;
    let started = Instant::now();
    let Login { status, body, .. } = login(&gw, "app", "any", "tok").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userID"], "fast");
    assert!(started.elapsed() < Duration::from_millis(2000));
    assert_eq!(
        (fast.calls(), slow.calls(), deny.calls()),
        (1, 1, 1),
        "all members are asked at once"
    );
    assert_eventually!(slow.cancelled() == 1, "the losing call was not cancelled");
    assert_eq!(slow.finished(), 0);
    // Each member was asked under its own name.
    let asked: serde_json::Value = serde_json::from_slice(&fast.log()[0].body).unwrap();
    assert_eq!(asked["provider"], "fast");
}

#[tokio::test]
async fn all_group_needs_every_member_and_intersects_permissions() {
    let a = Webhook::start(|_| {
        Reply::json(
            200,
            serde_json::json!({"authenticated": true, "expirationSeconds": 600, "userID": "u",
                "permissions": {"read": {"everything": true}, "write": {"everything": true}, "remoteQuery": true}}),
        )
    })
    .await;
    let b = Webhook::start(|req| match req["token"].as_str() {
        Some("good") => Reply::json(
            200,
            serde_json::json!({"authenticated": true, "expirationSeconds": 60, "userID": "u",
                "permissions": {"read": {"everything": false, "queriesByCollection": {"tasks": ["owner == 'u'"]}},
                                "write": {"everything": false}, "remoteQuery": false}}),
        ),
        _ => Reply::deny(serde_json::json!({"from": "b"})),
    })
    .await;
    let (_up, gw) = gateway(|gw| {
        gw.webhook_provider("a", &a)
            .webhook_provider("b", &b)
            .extra(
                "[providers.both]\nkind = \"group\"\nmembers = [\"a\", \"b\"]\nstrategy = \"all\"",
            )
    })
    .await;
    let Login { status, body, .. } = login(&gw, "app", "both", "good").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["permissions"]["read"],
        serde_json::json!({"everything": false, "queriesByCollection": {"tasks": ["owner == 'u'"]}})
    );
    assert_eq!(body["permissions"]["write"]["everything"], false);
    assert_eq!(body["permissions"]["remoteQuery"], false);
    assert!(
        body["expirationSeconds"].as_u64().unwrap() <= 60,
        "the earliest expiry must win"
    );
    let Login { status, body, .. } = login(&gw, "app", "both", "bad").await;
    assert_eq!(status, 401);
    assert_eq!(body["clientInfo"], serde_json::json!({"from": "b"}));
}

#[tokio::test]
async fn ordered_group_falls_through_denials_and_errors_only_when_told() {
    let broken = Webhook::start(|_| Reply::raw(500, "no")).await;
    let no = Webhook::start(|_| Reply::deny(serde_json::json!(null))).await;
    let yes = Webhook::users(60).await;
    let (_up, gw) = gateway(|b| {
        b.webhook_provider("broken", &broken)
            .extra("circuit_failures = 0")
            .webhook_provider("no", &no)
            .webhook_provider("yes", &yes)
            .extra(
                "[providers.strict]\nkind = \"group\"\nmembers = [\"no\", \"broken\", \"yes\"]\nstrategy = \"ordered\"\n\
                 [providers.lenient]\nkind = \"group\"\nmembers = [\"no\", \"broken\", \"yes\"]\nstrategy = \"ordered\"\nfallthrough_on_error = true",
            )
    })
    .await;
    let Login { status, body, .. } = login(&gw, "app", "strict", "jo-token").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (502, Some("Internal")),
        "{body}"
    );
    assert_eq!(yes.calls(), 0, "strict ordering went past an error");
    let Login { status, body, .. } = login(&gw, "app", "lenient", "jo-token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userID"], "jo");
    assert_eq!((no.calls(), broken.calls(), yes.calls()), (2, 2, 1));
}
