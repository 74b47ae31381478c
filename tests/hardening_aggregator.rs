//! The webhook aggregator is not an open token oracle: without a signing secret it refuses every
//! call, with one it answers only good signatures, unsigned use is an explicit and loudly warned
//! opt-in, every call counts against the per-client-IP rate limit, and a signed call is answered
//! once: its replay is refused on the same gateway and on another sharing a real `redis-server`.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use hmac::Mac;
use support::process::Running;
use support::{Gateway, Upstream, Webhook, client};

const SECRET: &[u8] = b"the aggregator's shared secret";
const WARNING: &str = "aggregator.allow_unsigned";

fn sign_with(key: &[u8], t: u64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn sign(t: u64, body: &str) -> String {
    sign_with(SECRET, t, body)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

/// The `[aggregator]` table for each way the door can be configured.
enum Door {
    /// Nothing set: the default.
    Default,
    Signed,
    Unsigned,
}

impl Door {
    fn toml(&self) -> String {
        match self {
            Self::Default => String::new(),
            Self::Signed => format!("[aggregator]\nsigning_secret = \"{}\"\n", secret_b64()),
            Self::Unsigned => "[aggregator]\nallow_unsigned = true\n".to_owned(),
        }
    }
}

async fn gateway(hook: &Webhook, door: &Door, extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(hook)
        .extra(&door.toml())
        .extra(extra)
        .spawn()
        .await;
    (up, gw)
}

async fn call(
    http: &client::HttpsClient,
    gw: &Gateway,
    method: &str,
    path: &str,
    body: &str,
    signature: Option<&str>,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let mut req = client::request(method, &gw.url(path), body.to_owned());
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(s) = signature {
        req.headers_mut()
            .insert("ditto-signature", s.parse().unwrap());
    }
    support::send(http, req).await
}

/// A refusal in the webhook reply shape that tells nothing about the token or its user.
fn assert_refused_blind(what: &str, status: u16, body: &serde_json::Value) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["authenticated"], false, "{what}: {body}");
    for field in [
        "userID",
        "permissions",
        "expirationSeconds",
        "identityServiceMetadata",
    ] {
        assert!(
            body.get(field).is_none(),
            "{what}: {field} disclosed: {body}"
        );
    }
    assert!(body["clientInfo"].is_null(), "{what}: {body}");
}

fn legacy(token: &str) -> String {
    format!(r#"{{"appID": "app", "provider": "demo", "token": "{token}"}}"#)
}

#[tokio::test]
async fn aggregator_without_a_secret_refuses_every_call_and_discloses_nothing() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, &Door::Default, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let v1 = r#"{"databaseID": "app", "version": "1", "token": "kim-token"}"#;
    let body = legacy("kim-token");
    let self_signed = sign_with(b"a key of the caller's choosing", now(), &body);
    for (what, method, path, body, sig) in [
        ("legacy shape", "POST", "/auth/webhook", body.as_str(), None),
        (
            "v1 shape, provider in the path",
            "POST",
            "/auth/webhook/demo",
            v1,
            None,
        ),
        (
            "signed with a made-up key",
            "POST",
            "/auth/webhook",
            body.as_str(),
            Some(self_signed.as_str()),
        ),
        (
            "garbage signature",
            "POST",
            "/auth/webhook",
            body.as_str(),
            Some("t=1,v1=00"),
        ),
        ("not JSON", "POST", "/auth/webhook", "garbage", None),
        ("wrong method", "GET", "/auth/webhook", "", None),
    ] {
        let (status, _, resp) = call(&http, &gw, method, path, body, sig).await;
        assert_refused_blind(what, status, &resp);
        assert!(
            resp["error"]
                .as_str()
                .unwrap_or_default()
                .contains("signing_secret"),
            "{what}: the refusal does not say how to enable the door: {resp}"
        );
    }
    assert_eq!(hook.calls(), 0, "a disabled aggregator asked the provider");
}

#[tokio::test]
async fn aggregator_with_a_secret_refuses_every_bad_signature_and_answers_a_good_one() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, &Door::Signed, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let body = legacy("max-token");
    let t = now();
    let good = sign(t, &body);
    let good_mac = good.split_once(",v1=").unwrap().1.to_owned();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("unsigned", None),
        ("empty header", Some(String::new())),
        ("stale", Some(sign(t - 600, &body))),
        ("from the future", Some(sign(t + 600, &body))),
        ("garbage", Some("t=abc,v1=zz".to_owned())),
        ("no timestamp", Some(format!("v1={good_mac}"))),
        ("no mac", Some(format!("t={t}"))),
        ("wrong key", Some(sign_with(b"another key", t, &body))),
        ("zero mac", Some(format!("t={t},v1={}", "00".repeat(32)))),
        ("another body", Some(sign(t, &legacy("someone-else-token")))),
        (
            "timestamp swapped",
            Some(format!("t={},v1={good_mac}", t - 1)),
        ),
        (
            "truncated mac",
            Some(format!("t={t},v1={}", &good_mac[..32])),
        ),
    ];
    for (what, sig) in &cases {
        let (status, _, resp) =
            call(&http, &gw, "POST", "/auth/webhook", &body, sig.as_deref()).await;
        assert_refused_blind(what, status, &resp);
    }
    assert_eq!(hook.calls(), 0, "a badly signed call reached the provider");

    let (status, _, resp) = call(&http, &gw, "POST", "/auth/webhook", &body, Some(&good)).await;
    assert_eq!(
        (status, resp["userID"].as_str()),
        (200, Some("max")),
        "{resp}"
    );
    assert_eq!(resp["authenticated"], true);
    let v1 = r#"{"databaseID": "app", "version": "1", "token": "lou-token"}"#;
    let (status, _, resp) = call(
        &http,
        &gw,
        "POST",
        "/auth/webhook/demo",
        v1,
        Some(&sign(now(), v1)),
    )
    .await;
    assert_eq!(
        (status, resp["userID"].as_str()),
        (200, Some("lou")),
        "{resp}"
    );
    assert_eq!(hook.calls(), 2);
}

#[tokio::test]
async fn aggregator_with_allow_unsigned_answers_unsigned_calls() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, &Door::Unsigned, "").await;
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, resp) = call(
        &http,
        &gw,
        "POST",
        "/auth/webhook",
        &legacy("noa-token"),
        None,
    )
    .await;
    assert_eq!(
        (status, resp["userID"].as_str()),
        (200, Some("noa")),
        "{resp}"
    );
    let (status, _, resp) = call(&http, &gw, "POST", "/auth/webhook", &legacy("wrong"), None).await;
    assert_eq!(
        (status, resp["authenticated"].as_bool()),
        (200, Some(false))
    );
    assert_eq!(hook.calls(), 2);
}

#[tokio::test]
async fn aggregator_burst_past_the_rate_limit_gets_429_signed_or_not() {
    for door in [Door::Signed, Door::Unsigned, Door::Default] {
        let hook = Webhook::users(120).await;
        let (_up, gw) = gateway(&hook, &door, "[rate_limit]\nper_second = 1\nburst = 3\n").await;
        let http = client::https(&gw.ca.pem(), false);
        let answered = match door {
            Door::Default => 401,
            Door::Signed | Door::Unsigned => 200,
        };
        let mut statuses = Vec::new();
        for i in 0..6 {
            let body = legacy(&format!("u{i}-token"));
            let sig = matches!(door, Door::Signed).then(|| sign(now(), &body));
            let (status, headers, resp) =
                call(&http, &gw, "POST", "/auth/webhook", &body, sig.as_deref()).await;
            if status == 429 {
                assert_eq!(headers["retry-after"], "1");
                assert!(resp.get("userID").is_none(), "{resp}");
            }
            statuses.push(status);
        }
        let door_name = door.toml();
        assert_eq!(&statuses[..3], &[answered; 3], "{door_name}: {statuses:?}");
        assert!(statuses[3..].contains(&429), "{door_name}: {statuses:?}");
        let limited = statuses.iter().filter(|s| **s == 429).count();
        let expected_calls = if answered == 200 { 6 - limited } else { 0 };
        assert_eq!(
            hook.calls(),
            expected_calls,
            "{door_name}: a rate-limited call reached the provider"
        );
    }
}

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(
        &path,
        format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{text}"),
    )
    .unwrap();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .arg("check")
        .arg("--config")
        .arg(Path::new(&path))
        .arg("--skip-files")
        .env_remove("DRAWBRIDGE_CONFIG")
        .output()
        .expect("drawbridge runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_says_the_aggregator_is_disabled_until_a_secret_is_set() {
    let (code, out, err) = check("");
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("aggregator"))
        .unwrap_or_else(|| panic!("no aggregator line: {out}"));
    assert!(line.contains("disabled"), "{line}");
    assert!(line.contains("aggregator.signing_secret"), "{line}");
    assert!(!err.contains(WARNING), "{err}");

    let (code, out, err) = check(&Door::Signed.toml());
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("aggregator")).unwrap();
    assert!(line.contains("ditto-signature"), "{line}");
    assert!(!line.contains("disabled"), "{line}");
    assert!(!err.contains(WARNING), "{err}");
}

#[test]
fn check_warns_when_unsigned_aggregator_calls_are_allowed() {
    let (code, out, err) = check(&Door::Unsigned.toml());
    assert_eq!(code, 0, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("warning") && l.contains(WARNING))
        .unwrap_or_else(|| panic!("no warning on stderr: {err}"));
    assert!(warning.contains("anyone"), "{warning}");
    let line = out.lines().find(|l| l.starts_with("aggregator")).unwrap();
    assert!(line.contains("unsigned"), "{line}");
}

#[test]
fn check_refuses_a_secret_together_with_allow_unsigned() {
    let (code, _, err) = check(&format!(
        "[aggregator]\nsigning_secret = \"{}\"\nallow_unsigned = true\n",
        secret_b64()
    ));
    assert_eq!(code, 64);
    assert!(err.contains("aggregator.allow_unsigned: "), "{err}");
}

#[tokio::test]
async fn unsigned_aggregator_is_warned_about_at_startup() {
    let up = Upstream::start().await;
    let running = Running::start(&up.url(), &Door::Unsigned.toml(), &[]);
    let logs = running.logs();
    let warned = logs.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["level"] == "WARN" && v["message"].as_str().unwrap_or_default().contains(WARNING)
        })
    });
    assert!(warned, "no startup warning: {logs}");

    let quiet = Running::start(&up.url(), &Door::Signed.toml(), &[]);
    assert!(!quiet.logs().contains(WARNING), "{}", quiet.logs());
}

/// `(status, body)` of the same signed call sent to `gw`.
async fn signed_call(gw: &Gateway, body: &str, signature: &str) -> (u16, serde_json::Value) {
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, resp) = call(&http, gw, "POST", "/auth/webhook", body, Some(signature)).await;
    (status, resp)
}

#[tokio::test]
async fn signed_call_replayed_on_the_same_gateway_is_refused() {
    let hook = Webhook::users(120).await;
    let (_up, gw) = gateway(&hook, &Door::Signed, "").await;
    let body = legacy("ray-token");
    let sig = sign(now(), &body);
    let (status, resp) = signed_call(&gw, &body, &sig).await;
    assert_eq!(
        (status, resp["userID"].as_str()),
        (200, Some("ray")),
        "{resp}"
    );
    for (what, replay) in [
        ("the same call", sig.clone()),
        (
            "the same call with an extra v1",
            format!("{sig},v1={}", "00".repeat(32)),
        ),
        (
            "the same call with its v1 entries reordered",
            format!(
                "t={},v1={},{}",
                sig.split_once(',').unwrap().0.trim_start_matches("t="),
                "11".repeat(32),
                sig.split_once(',').unwrap().1
            ),
        ),
    ] {
        let (status, resp) = signed_call(&gw, &body, &replay).await;
        assert_refused_blind(what, status, &resp);
    }
    assert_eq!(hook.calls(), 1, "a replay reached the provider");
    // A new call (another body, or the same body signed at another second) is answered.
    let other = legacy("sue-token");
    let (status, _) = signed_call(&gw, &other, &sign(now(), &other)).await;
    assert_eq!(status, 200);
    let (status, _) = signed_call(&gw, &body, &sign(now() - 2, &body)).await;
    assert_eq!(
        status, 200,
        "the same body signed at another second is a new call"
    );
}

#[tokio::test]
async fn signed_call_replayed_on_another_replica_sharing_redis_is_refused() {
    let redis = support::redis::Redis::start().await;
    let hook = Webhook::users(120).await;
    let cluster = format!(
        "{}[cluster]\nredis_url = \"{}\"\n",
        support::shared_session_table(),
        redis.url()
    );
    let (_up_a, a) = gateway(&hook, &Door::Signed, &cluster).await;
    let (_up_b, b) = gateway(&hook, &Door::Signed, &cluster).await;
    for gw in [&a, &b] {
        assert_eventually!(
            support::metric(&gw.metrics().await, "drawbridge_cluster_up") == 1.0,
            "a replica never reached Redis"
        );
    }
    let body = legacy("tom-token");
    let sig = sign(now(), &body);
    let (status, resp) = signed_call(&a, &body, &sig).await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = signed_call(&b, &body, &sig).await;
    assert_refused_blind("replayed on the other replica", status, &resp);
    let (status, resp) = signed_call(&a, &body, &sig).await;
    assert_refused_blind("replayed on the first replica", status, &resp);
    assert_eq!(hook.calls(), 1, "a replay reached the provider");
}
