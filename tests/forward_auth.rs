//! The forward-auth door, `/auth/check`, behind a real nginx `auth_request` (the snippet shipped in
//! deploy/forward-auth/nginx.conf, run as is) in front of the sync-server stand-in, and asked
//! directly with the header sets the other shipped examples' ingresses send (Envoy Gateway,
//! Traefik and ingress-nginx cannot run here), each under the `forward_auth.uri_from` its example
//! file names.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::nginx::{LISTEN, Nginx};
use support::ws::echo_ok;
use support::{Gateway, Upstream, Webhook, post_bearer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SNIPPET: &str = include_str!("../deploy/forward-auth/nginx.conf");
const ENVOY: &str = include_str!("../deploy/forward-auth/envoy-gateway.yaml");
const TRAEFIK: &str = include_str!("../deploy/forward-auth/traefik.yaml");
const INGRESS_NGINX: &str = include_str!("../deploy/forward-auth/ingress-nginx.yaml");

/// The `[forward_auth]` section an example file says drawbridge needs: its `uri_from = "…"` line.
fn section_of(example: &str) -> String {
    let line = example
        .lines()
        .find_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix("uri_from = "))
        .expect("the example names its uri_from");
    format!("[forward_auth]\nuri_from = {line}\n")
}

/// The shipped snippet pointed at this test's gateway, CA and sync server.
fn snippet(gw: &Gateway, upstream: &Upstream) -> String {
    SNIPPET
        .replace("listen 8080;", &format!("listen {LISTEN};"))
        .replace(
            "https://drawbridge.drawbridge.svc.cluster.local",
            &format!("https://127.0.0.1:{}", gw.addr.port()),
        )
        .replace(
            "/etc/nginx/drawbridge-ca.crt",
            &gw.dir.path().join("ca.crt").display().to_string(),
        )
        .replace("http://sync-server:8080", &upstream.url())
}

struct Bed {
    gw: Gateway,
    up: Upstream,
    hook: Webhook,
    nginx: Nginx,
}

impl Bed {
    async fn start(extra: &str) -> Self {
        let up = Upstream::start().await;
        let hook = Webhook::users(600).await;
        let gw = Gateway::builder(up.url())
            .demo_provider(&hook)
            .rate_limit_off()
            .extra(&format!("{}{extra}", section_of(SNIPPET)))
            .spawn()
            .await;
        let nginx = Nginx::start(&snippet(&gw, &up)).await;
        Self {
            gw,
            up,
            hook,
            nginx,
        }
    }

    async fn login(&self, user: &str) -> String {
        support::login(&self.gw, "app", "demo", &format!("{user}-token"))
            .await
            .session()
    }

    /// A plain HTTP request through nginx; `(status, headers, body)`.
    async fn via_nginx(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, http::HeaderMap, String) {
        plain(&format!("{}{path}", self.nginx.url()), headers).await
    }

    /// A websocket on `/sync` through nginx with `headers`, which must open, echo and reach the
    /// sync server as `user`; the handshake headers the sync server saw.
    async fn ws_opens(&self, headers: &[(&str, &str)], user: &str) -> (NginxWs, http::HeaderMap) {
        let mut ws = ws_via(self.nginx.addr, "/sync", headers)
            .await
            .unwrap_or_else(|e| panic!("handshake through nginx: {e}\n{}", self.nginx.error_log()));
        echo_ok(&mut ws, "hello").await;
        let seen = self.up.seen().pop().unwrap();
        assert_eq!(seen.headers["x-drawbridge-user"], user);
        (ws, seen.headers)
    }

    /// A websocket handshake on `/sync` through nginx with `headers`, which must be refused with 401.
    async fn ws_refused(&self, headers: &[(&str, &str)]) {
        match ws_via(self.nginx.addr, "/sync", headers).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{headers:?}");
            }
            other => panic!("{headers:?}: expected a 401 handshake, got {other:?}"),
        }
    }

    /// `GET /auth/check` on the gateway itself, for `X-Original-URI: /notes` as the snippet sends
    /// it; `(status, headers)`.
    async fn check(&self, headers: &[(&str, &str)]) -> (u16, http::HeaderMap) {
        let http = support::client::https(&self.gw.ca.pem(), false);
        let mut req = support::client::request("GET", &self.gw.url("/auth/check"), "");
        req.headers_mut()
            .insert("x-original-uri", http::HeaderValue::from_static("/notes"));
        append_all(req.headers_mut(), headers);
        let (status, headers, body) = read(http.request(req).await.expect("check answered")).await;
        if status == 200 {
            assert!(body.is_empty(), "a passing check has an empty body");
        }
        (status, headers)
    }
}

async fn plain(url: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, String) {
    send_plain(http::Method::GET, url, None, headers).await
}

/// `POST` a JSON body over plain HTTP; `(status, headers, body)`.
async fn post_plain(
    url: &str,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    send_plain(http::Method::POST, url, Some(body), headers).await
}

/// One request over plain HTTP (to nginx), with a JSON body when given.
async fn send_plain(
    method: http::Method,
    url: &str,
    json: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    if json.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = json.map(|j| Bytes::from(j.to_string())).unwrap_or_default();
    let mut req = req.body(Full::new(body)).unwrap();
    append_all(req.headers_mut(), headers);
    let (status, headers, body) = read(client.request(req).await.expect("nginx answered")).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Appends `headers` to `map`, a repeated name as a second line.
fn append_all(map: &mut http::HeaderMap, headers: &[(&str, &str)]) {
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
}

/// A response's status, headers and whole body.
async fn read(resp: http::Response<hyper::body::Incoming>) -> (u16, http::HeaderMap, Bytes) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// A websocket client straight to nginx (plain TCP).
type NginxWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A websocket client straight to nginx (plain TCP), with extra handshake headers.
async fn ws_via(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<NginxWs, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// A gateway in front of `up` with no provider and upgrades under `/public` open, behind the
/// shipped nginx snippet.
async fn public_only(up: &Upstream) -> (Gateway, Nginx) {
    let gw = Gateway::builder(up.url())
        .public_upgrade_paths(&["/public"])
        .extra(&section_of(SNIPPET))
        .spawn()
        .await;
    let nginx = Nginx::start(&snippet(&gw, up)).await;
    (gw, nginx)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn nginx_request_with_session_reaches_upstream_with_identity_headers() {
    let bed = Bed::start("").await;
    let token = bed.login("alice").await;
    let auth = bearer(&token);
    let cookie = format!("drawbridge_session={token}");
    for carrier in [
        ("authorization", auth.as_str()),
        ("cookie", cookie.as_str()),
    ] {
        let before = bed.up.hits();
        let (status, _, body) = bed
            .via_nginx(
                "/notes?x=1",
                &[
                    carrier,
                    ("x-drawbridge-user", "mallory"),
                    ("x-drawbridge-app", "forged"),
                ],
            )
            .await;
        assert_eq!(
            status,
            200,
            "{carrier:?}: {body}\n{}",
            bed.nginx.error_log()
        );
        assert_eq!(bed.up.hits(), before + 1);
        let seen = bed.up.seen().pop().unwrap();
        assert_eq!(seen.uri, "/notes?x=1");
        assert_eq!(seen.headers["x-drawbridge-user"], "alice", "{carrier:?}");
        assert_eq!(seen.headers["x-drawbridge-app"], "app");
        assert_eq!(seen.headers["x-drawbridge-provider"], "demo");
        assert!(!seen.headers["x-drawbridge-permissions"].is_empty());
        // No assertion unless configured: nginx drops the empty value it copies.
        assert!(
            seen.headers
                .get("x-drawbridge-assertion")
                .is_none_or(|v| v.is_empty()),
            "{carrier:?}: {:?}",
            seen.headers.get("x-drawbridge-assertion")
        );
        assert_eq!(seen.headers.get_all("x-drawbridge-user").iter().count(), 1);
    }
    assert_eventually!(
        bed.nginx.access_log().lines().count() >= 2,
        "nginx logged both requests: {}",
        bed.nginx.access_log()
    );
}

#[tokio::test]
async fn nginx_request_without_session_gets_401_and_upstream_sees_nothing() {
    let bed = Bed::start("").await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer not-a-session")],
        vec![("cookie", "drawbridge_session=forged.token.here")],
        vec![("x-drawbridge-user", "mallory")],
    ] {
        let (status, resp_headers, _) = bed.via_nginx("/notes", &headers).await;
        assert_eq!(status, 401, "{headers:?}");
        assert!(
            resp_headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "nginx relays the challenge"
        );
    }
    assert_eq!(bed.up.hits(), 0, "nothing reached the sync server");
}

#[tokio::test]
async fn nginx_websocket_opens_with_session_and_is_refused_without() {
    let bed = Bed::start("").await;
    let token = bed.login("bob").await;
    let _ws = bed
        .ws_opens(&[("authorization", &bearer(&token))], "bob")
        .await;
    let hits = bed.up.hits();

    let protocol = format!("drawbridge.bearer.{token}");
    let mut ws = ws_via(
        bed.nginx.addr,
        "/sync",
        &[("sec-websocket-protocol", protocol.as_str())],
    )
    .await;
    // The stand-in picks no subprotocol, which the client refuses after the 101; it got through.
    if let Ok(ws) = ws.as_mut() {
        ws.close(None).await.ok();
    }
    assert_eq!(
        bed.up.seen().pop().unwrap().headers["x-drawbridge-user"],
        "bob"
    );
    assert!(bed.up.hits() > hits);

    let hits = bed.up.hits();
    for headers in [vec![], vec![("authorization", "Bearer nope")]] {
        bed.ws_refused(&headers).await;
    }
    assert_eq!(
        bed.up.hits(),
        hits,
        "refused handshakes never reach the sync server"
    );
}

#[tokio::test]
async fn check_with_revoked_session_gets_401() {
    let bed = Bed::start("").await;
    let token = bed.login("carol").await;
    let auth = bearer(&token);
    assert_eq!(bed.check(&[("authorization", &auth)]).await.0, 200);
    let http = support::client::https(&bed.gw.ca.pem(), false);
    let (status, _, _) = post_bearer(&http, &bed.gw.url("/auth/logout"), &token).await;
    assert_eq!(status, 200);
    let (status, headers) = bed.check(&[("authorization", &auth)]).await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (status, _, _) = bed.via_nginx("/notes", &[("authorization", &auth)]).await;
    assert_eq!(status, 401, "through nginx too");
    assert_eq!(bed.up.hits(), 0);
}

/// `drawbridge_forward_auth_cache_requests_total{result}` now.
async fn cache_lookups(gw: &Gateway, result: &str) -> f64 {
    support::metric(
        &gw.metrics().await,
        &format!("drawbridge_forward_auth_cache_requests_total{{result=\"{result}\"}}"),
    )
}

/// The claims of an identity assertion, verified with the gateway's published keys for the sync
/// server at `audience`.
fn verified_assertion(
    jwks: &jsonwebtoken::jwk::JwkSet,
    assertion: &str,
    audience: &str,
) -> serde_json::Value {
    let kid = jsonwebtoken::decode_header(assertion)
        .unwrap()
        .kid
        .expect("a kid");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<serde_json::Value>(
        assertion,
        &jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).expect("published")).unwrap(),
        &v,
    )
    .expect("the assertion verifies with the JWKS")
    .claims
}

#[tokio::test]
async fn check_by_default_answers_every_identity_header_and_an_empty_assertion() {
    let bed = Bed::start("").await;
    let token = bed.login("erin").await;
    let auth = bearer(&token);
    for round in 0..2 {
        let (status, h) = bed.check(&[("authorization", &auth)]).await;
        assert_eq!(status, 200, "check {round}");
        assert_eq!(h["x-drawbridge-user"], "erin", "check {round}");
        assert_eq!(h["x-auth-request-user"], "erin");
        assert_eq!(h["x-drawbridge-app"], "app");
        assert_eq!(h["x-drawbridge-provider"], "demo");
        assert!(!h["x-drawbridge-permissions"].is_empty());
        assert_eq!(
            h["x-drawbridge-assertion"], "",
            "check {round}: no assertion unless forward_auth.assertion is on"
        );
        assert_eq!(h.get_all("x-drawbridge-assertion").iter().count(), 1);
        assert_eq!(h["x-auth-request-email"], "", "present, empty");
    }
    assert_eq!(cache_lookups(&bed.gw, "miss").await, 1.0, "verified once");
    assert_eq!(
        cache_lookups(&bed.gw, "hit").await,
        1.0,
        "then answered from the cache"
    );
}

#[tokio::test]
async fn check_with_assertion_on_signs_a_fresh_jti_for_every_check() {
    let bed = Bed::start("assertion = true\n").await;
    let token = bed.login("frank").await;
    let auth = bearer(&token);
    let http = support::client::https(&bed.gw.ca.pem(), false);
    let jwks = support::jwks(&http, &bed.gw).await;
    let audience = format!("http://{}", bed.up.addr);
    let mut jtis = Vec::new();
    for _ in 0..3 {
        let (status, h) = bed.check(&[("authorization", &auth)]).await;
        assert_eq!(status, 200);
        assert_eq!(h["x-drawbridge-user"], "frank");
        let claims = verified_assertion(
            &jwks,
            h["x-drawbridge-assertion"].to_str().unwrap(),
            &audience,
        );
        assert_eq!(claims["sub"], "frank");
        jtis.push(claims["jti"].as_str().expect("a jti").to_owned());
    }
    assert!(
        cache_lookups(&bed.gw, "hit").await >= 2.0,
        "the session came from the cache"
    );
    let mut distinct = jtis.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), jtis.len(), "a jti was reused: {jtis:?}");

    // Through nginx, the sync server gets the assertion too.
    let (status, _, body) = bed.via_nginx("/notes", &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    let seen = bed.up.seen().pop().unwrap();
    let claims = verified_assertion(
        &jwks,
        seen.headers["x-drawbridge-assertion"].to_str().unwrap(),
        &audience,
    );
    assert!(!jtis.contains(&claims["jti"].as_str().unwrap().to_owned()));
}

#[tokio::test]
async fn check_of_a_cached_session_revoked_by_logout_or_admin_gets_401() {
    let bed = Bed::start("").await;
    let gina = bed.login("gina").await;
    let hank = bed.login("hank").await;
    for token in [&gina, &hank] {
        for _ in 0..2 {
            assert_eq!(bed.check(&[("authorization", &bearer(token))]).await.0, 200);
        }
    }
    assert!(
        cache_lookups(&bed.gw, "hit").await >= 2.0,
        "both sessions are cached"
    );

    let http = support::client::https(&bed.gw.ca.pem(), false);
    let (status, _, _) = post_bearer(&http, &bed.gw.url("/auth/logout"), &gina).await;
    assert_eq!(status, 200);
    let cookie = format!("drawbridge_session={gina}");
    for carrier in [("authorization", bearer(&gina)), ("cookie", cookie)] {
        let (status, _) = bed.check(&[(carrier.0, &carrier.1)]).await;
        assert_eq!(status, 401, "{}: logged out", carrier.0);
    }
    assert_eq!(bed.check(&[("authorization", &bearer(&hank))]).await.0, 200);

    let admin = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}/sessions/revoke", bed.gw.admin_addr))
        .body(Full::new(Bytes::from(
            serde_json::json!({ "userID": "hank" }).to_string(),
        )))
        .unwrap();
    assert_eq!(admin.request(req).await.unwrap().status(), 200);
    assert_eq!(
        bed.check(&[("authorization", &bearer(&hank))]).await.0,
        401,
        "the user's sessions are revoked"
    );
}

/// `GET /auth/check/notes` on `gw` with `token` as a bearer: the status.
async fn check_status(gw: &Gateway, token: &str) -> u16 {
    let http = support::client::https(&gw.ca.pem(), false);
    let mut req = support::client::request("GET", &gw.url("/auth/check/notes"), "");
    req.headers_mut()
        .insert("authorization", bearer(token).parse().unwrap());
    read(http.request(req).await.unwrap()).await.0
}

#[tokio::test]
async fn check_of_a_cached_session_logged_out_on_another_replica_gets_401() {
    let redis = support::redis::Redis::start().await;
    let fleet =
        support::fleet::Fleet::start(2, &format!("redis_url = \"{}\"\n", redis.url())).await;
    let token = fleet.login(0, "jack").await;
    let replica = &fleet.gws[1];
    assert_eq!(check_status(replica, &token).await, 200);
    assert_eq!(check_status(replica, &token).await, 200);
    assert_eq!(
        cache_lookups(replica, "hit").await,
        1.0,
        "cached on replica 1"
    );

    assert_eq!(fleet.post(0, "/auth/logout", &token).await.0, 200);
    assert_eventually!(
        check_status(replica, &token).await == 401,
        "replica 1 kept admitting a session logged out on replica 0"
    );
    assert_eq!(
        check_status(replica, &token).await,
        401,
        "and stays refused"
    );
}

#[tokio::test]
async fn check_after_a_session_key_reload_verifies_the_token_again_under_the_new_keys() {
    let up = Upstream::start().await;
    let hook = Webhook::users(600).await;
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let path = dir.path().join(name);
        let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (key_a, key_b) = (key("a.pem"), key("b.pem"));
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .rate_limit_off()
        .extra(&format!(
            "[forward_auth]\nassertion = true\n[session]\nkey_file = {key_a:?}\n"
        ))
        .spawn_reloading_in(tempfile::tempdir().unwrap())
        .await;
    let token = support::login(&gw, "app", "demo", "ivy-token")
        .await
        .session();
    let http = support::client::https(&gw.ca.pem(), false);
    let check = || async {
        let mut req = support::client::request("GET", &gw.url("/auth/check/notes"), "");
        req.headers_mut()
            .insert("authorization", bearer(&token).parse().unwrap());
        let (status, h, _) = read(http.request(req).await.unwrap()).await;
        let kid = h
            .get("x-drawbridge-assertion")
            .and_then(|v| jsonwebtoken::decode_header(v.to_str().ok()?).ok()?.kid);
        (status, kid)
    };
    let (status, kid_a) = check().await;
    assert_eq!(status, 200);
    assert_eq!(check().await.0, 200);
    let (hits, misses) = (
        cache_lookups(&gw, "hit").await,
        cache_lookups(&gw, "miss").await,
    );
    assert_eq!((hits, misses), (1.0, 1.0));

    let reloads = || async {
        support::metric(
            &gw.metrics().await,
            "drawbridge_config_reloads_total{result=\"success\"}",
        )
    };
    let before = reloads().await;
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&key_a, &key_b);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eventually!(
        reloads().await > before,
        "the new session key was never applied"
    );

    // The old key keeps verifying its tokens after a rotation; the new generation verifies the
    // token again rather than answering from what the old one verified.
    let (status, kid_b) = check().await;
    assert_eq!(status, 200);
    assert_ne!(kid_a, kid_b, "the assertion is signed by the new key");
    assert_eq!(
        cache_lookups(&gw, "miss").await,
        misses + 1.0,
        "verified again"
    );
    assert_eq!(
        cache_lookups(&gw, "hit").await,
        hits,
        "nothing answered from the old cache"
    );
    assert_eq!(check().await.0, 200);
    assert_eq!(cache_lookups(&gw, "hit").await, hits + 1.0, "cached again");
}

#[tokio::test]
async fn check_answers_identity_and_oauth2_proxy_headers_on_any_method_and_subpath() {
    let bed = Bed::start("").await;
    let token = bed.login("dave").await;
    let http = support::client::https(&bed.gw.ca.pem(), false);
    for (method, path, forwarded) in [
        ("GET", "/auth/check", "/notes"),
        ("POST", "/auth/check", "/notes"),
        ("HEAD", "/auth/check/traefik", "/traefik"),
        ("DELETE", "/auth/check/any/path", "/any/path"),
    ] {
        let mut req = support::client::request(method, &bed.gw.url(path), "");
        req.headers_mut()
            .insert("authorization", bearer(&token).parse().unwrap());
        req.headers_mut()
            .insert("x-original-uri", forwarded.parse().unwrap());
        let resp = http.request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{method} {path}");
        let h = resp.headers();
        assert_eq!(h["x-drawbridge-user"], "dave");
        assert_eq!(h["x-auth-request-user"], "dave");
        assert_eq!(h["x-drawbridge-app"], "app");
        assert_eq!(h["x-drawbridge-provider"], "demo");
        assert!(h.contains_key("x-drawbridge-permissions"));
        assert!(h.contains_key("x-drawbridge-assertion"));
    }
}

#[tokio::test]
async fn check_applies_path_rules_to_the_forwarded_uri_and_refuses_ambiguity() {
    let bed = Bed::start("").await;
    let bed_public = {
        let up = Upstream::start().await;
        Gateway::builder(up.url())
            .public_upgrade_paths(&["/public"])
            .extra("[forward_auth]\nuri_from = \"header:x-forwarded-uri\"")
            .spawn()
            .await
    };
    let http = support::client::https(&bed_public.ca.pem(), false);
    let check = |headers: Vec<(&'static str, &'static str)>| {
        let http = http.clone();
        let url = bed_public.url("/auth/check");
        async move {
            let mut req = support::client::request("GET", &url, "");
            for (k, v) in headers {
                req.headers_mut().append(k, v.parse().unwrap());
            }
            let resp = http.request(req).await.unwrap();
            (resp.status().as_u16(), resp.headers().clone())
        }
    };
    for headers in [
        vec![("x-forwarded-uri", "/public/room")],
        vec![
            ("x-forwarded-uri", "/%70ublic/room?x=1"),
            ("x-forwarded-method", "GET"),
        ],
        vec![
            ("x-forwarded-uri", "//public/./room"),
            ("x-forwarded-host", "sync.example"),
        ],
        vec![
            ("x-forwarded-uri", "/public/room"),
            ("x-original-uri", "/public/./room?agrees"),
        ],
    ] {
        let (status, h) = check(headers.clone()).await;
        assert_eq!(status, 200, "{headers:?}");
        for name in [
            "x-drawbridge-user",
            "x-drawbridge-assertion",
            "x-auth-request-user",
        ] {
            assert_eq!(
                h[name], "",
                "{headers:?}: no identity on a public path, only blanks"
            );
        }
    }
    for headers in [
        vec![("x-forwarded-uri", "/sync")],
        vec![("x-forwarded-uri", "/public/../sync")],
        vec![("x-forwarded-uri", "/publicity")],
    ] {
        assert_eq!(check(headers.clone()).await.0, 401, "{headers:?}");
    }
    for headers in [
        vec![],
        vec![("x-original-uri", "/public/room")],
        vec![("x-forwarded-uri", "/public%2F..%2Fsync")],
        vec![("x-forwarded-uri", "/public/%2e%2e%5csync")],
        vec![
            ("x-forwarded-uri", "/sync"),
            ("x-original-uri", "/public/room"),
        ],
        vec![
            ("x-forwarded-uri", "/public/a"),
            ("x-forwarded-uri", "/public/a"),
        ],
    ] {
        assert_eq!(check(headers.clone()).await.0, 403, "{headers:?}");
    }
    // Forwarded headers decide the rule only: they never stand for an identity.
    let (status, _) = bed
        .check(&[
            ("x-forwarded-user", "alice"),
            ("x-drawbridge-user", "alice"),
        ])
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn check_without_session_redirects_when_signin_url_is_set() {
    let bed = Bed::start("signin_url = \"https://login.example/start\"").await;
    let (status, headers) = bed.check(&[]).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "https://login.example/start");
    let (status, _) = bed.check(&[("authorization", "Bearer junk")]).await;
    assert_eq!(status, 302);
    let token = bed.login("erin").await;
    assert_eq!(
        bed.check(&[("authorization", &bearer(&token))]).await.0,
        200
    );
}

#[tokio::test]
async fn check_with_provider_token_asks_the_provider_once_for_many_checks() {
    let bed = Bed::start("accept_provider_tokens = true\napp = \"app\"\nprovider = \"demo\"").await;
    for _ in 0..20 {
        let (status, headers) = bed.check(&[("authorization", "Bearer frank-token")]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-drawbridge-user"], "frank");
        assert_eq!(headers["x-auth-request-user"], "frank");
        assert!(
            !headers.contains_key("set-cookie"),
            "no session is minted for a provider token"
        );
    }
    assert_eq!(bed.hook.calls(), 1, "the decision cache answered the rest");
    let (status, _) = bed.check(&[("authorization", "Bearer nobody")]).await;
    assert_eq!(status, 401);
    let (status, _, _) = bed
        .via_nginx("/notes", &[("authorization", "Bearer frank-token")])
        .await;
    assert_eq!(status, 200, "through nginx as well");
    assert_eq!(
        bed.up.seen().pop().unwrap().headers["x-drawbridge-user"],
        "frank"
    );
    let metrics = bed.gw.metrics().await;
    assert!(
        metrics.contains("door=\"forward_auth\""),
        "provider decisions are counted for the door"
    );
}

#[tokio::test]
async fn nginx_public_path_passes_without_session_and_drops_forged_identity() {
    let up = Upstream::start().await;
    let (_gw, nginx) = public_only(&up).await;
    let (status, _, body) = plain(
        &format!("{}/public/room", nginx.url()),
        &[
            ("x-drawbridge-user", "mallory"),
            ("x-auth-request-user", "mallory"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", nginx.error_log());
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.uri, "/public/room");
    assert!(
        !seen.headers.contains_key("x-drawbridge-user"),
        "a client's own identity header never reaches the sync server: {:?}",
        seen.headers
    );
    let (status, _, _) = plain(&format!("{}/private", nginx.url()), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn check_answers_the_session_email_as_x_auth_request_email() {
    let hook = Webhook::start(|_| {
        support::Reply::json(
            200,
            serde_json::json!({
                "authenticated": true, "expirationSeconds": 600, "userID": "gina",
                "userInfo": {"email": "gina@example.com"}
            }),
        )
    })
    .await;
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .spawn()
        .await;
    let token = support::login(&gw, "app", "demo", "any").await.session();
    let http = support::client::https(&gw.ca.pem(), false);
    let mut req = support::client::request("GET", &gw.url("/auth/check/notes"), "");
    req.headers_mut().insert(
        "cookie",
        format!("drawbridge_session={token}").parse().unwrap(),
    );
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-request-user"], "gina");
    assert_eq!(resp.headers()["x-auth-request-email"], "gina@example.com");
}

/// One shipped example's ingress, replayed: the door path and the headers it sends drawbridge for
/// a client request to `path`, and the headers a client can add that it passes on untouched.
struct Shape {
    name: &'static str,
    example: &'static str,
    door: fn(&str) -> String,
    sends: fn(&str) -> Vec<(&'static str, String)>,
    spoofable: &'static [&'static str],
}

/// What a client adds to name another path: every source drawbridge knows, each for `/public/x`.
fn spoof(name: &str) -> (&'static str, &'static str) {
    match name {
        "x-original-uri" => ("x-original-uri", "/public/x"),
        "x-forwarded-uri" => ("x-forwarded-uri", "/public/x"),
        "x-original-url" => ("x-original-url", "https://sync.example.com/public/x"),
        other => panic!("no spoof for {other}"),
    }
}

const SHAPES: [Shape; 3] = [
    // Envoy Gateway's extAuth: the original path appended to the door's, every client header
    // passed on, its own x-forwarded-proto and x-request-id added.
    Shape {
        name: "envoy-gateway",
        example: ENVOY,
        door: |path| format!("/auth/check{path}"),
        sends: |_| {
            vec![
                ("x-forwarded-proto", "https".to_owned()),
                ("x-request-id", "7f1c".to_owned()),
            ]
        },
        spoofable: &["x-original-uri", "x-forwarded-uri", "x-original-url"],
    },
    // Traefik's ForwardAuth with trustForwardHeader: false: its own X-Forwarded-* (a client's
    // copies replaced), the address's path, every other client header passed on.
    Shape {
        name: "traefik",
        example: TRAEFIK,
        door: |_| "/auth/check".to_owned(),
        sends: |path| {
            vec![
                ("x-forwarded-method", "GET".to_owned()),
                ("x-forwarded-proto", "https".to_owned()),
                ("x-forwarded-host", "sync.example.com".to_owned()),
                ("x-forwarded-uri", path.to_owned()),
                ("x-forwarded-for", "203.0.113.7".to_owned()),
            ]
        },
        spoofable: &["x-original-uri", "x-original-url"],
    },
    // ingress-nginx's auth-url: the controller's X-Original-URL and friends, every other client
    // header passed on.
    Shape {
        name: "ingress-nginx",
        example: INGRESS_NGINX,
        door: |_| "/auth/check".to_owned(),
        sends: |path| {
            vec![
                ("x-original-url", format!("https://sync.example.com{path}")),
                ("x-original-method", "GET".to_owned()),
                ("x-sent-from", "nginx-ingress-controller".to_owned()),
                ("x-auth-request-redirect", path.to_owned()),
                ("x-forwarded-for", "203.0.113.7".to_owned()),
            ]
        },
        spoofable: &["x-original-uri", "x-forwarded-uri"],
    },
];

#[tokio::test]
async fn client_naming_another_path_gets_403_in_every_shipped_shape() {
    let hook = Webhook::users(600).await;
    for shape in SHAPES {
        let up = Upstream::start().await;
        let gw = Gateway::builder(up.url())
            .demo_provider(&hook)
            .public_upgrade_paths(&["/public"])
            .extra(&section_of(shape.example))
            .spawn()
            .await;
        let http = support::client::https(&gw.ca.pem(), false);
        let token = support::login(&gw, "app", "demo", "alice-token")
            .await
            .session();
        let ask = |path: &str, extra: Vec<(&'static str, String)>| {
            let mut req = support::client::request("GET", &gw.url(&(shape.door)(path)), "");
            for (k, v) in (shape.sends)(path).into_iter().chain(extra) {
                req.headers_mut().append(k, v.parse().unwrap());
            }
            let http = http.clone();
            async move { http.request(req).await.unwrap().status().as_u16() }
        };
        let name = shape.name;
        assert_eq!(ask("/sync", vec![]).await, 401, "{name}: no session");
        assert_eq!(ask("/public/x", vec![]).await, 200, "{name}: public path");
        let session = ("authorization", bearer(&token));
        assert_eq!(ask("/sync", vec![session.clone()]).await, 200, "{name}");
        for spoofed in shape.spoofable {
            let (k, v) = spoof(spoofed);
            let status = ask("/sync", vec![(k, v.to_owned())]).await;
            assert_eq!(status, 403, "{name}: a client's {k} names the path");
            let status = ask("/sync", vec![(k, v.to_owned()), session.clone()]).await;
            assert_eq!(status, 403, "{name}: {k} with a session too");
            // A copy that agrees is harmless.
            let agrees = v.replace("/public/x", "/sync");
            assert_eq!(ask("/sync", vec![(k, agrees)]).await, 401, "{name}: {k}");
        }
        // The named source missing is refused, whatever else is there.
        let mut req = support::client::request("GET", &gw.url("/auth/check"), "");
        if name == "envoy-gateway" {
            req.headers_mut()
                .insert("x-original-uri", "/public/x".parse().unwrap());
        }
        req.headers_mut()
            .insert("authorization", bearer(&token).parse().unwrap());
        let status = http.request(req).await.unwrap().status().as_u16();
        assert_eq!(status, 403, "{name}: the named source is missing");
        assert_eq!(up.hits(), 0, "the door never forwards");
    }
}

#[tokio::test]
async fn nginx_client_cannot_name_the_checked_path() {
    let up = Upstream::start().await;
    let (_gw, nginx) = public_only(&up).await;
    for (k, v) in [
        spoof("x-original-uri"),
        spoof("x-forwarded-uri"),
        spoof("x-original-url"),
    ] {
        let (status, _, body) = plain(&format!("{}/sync", nginx.url()), &[(k, v)]).await;
        // nginx sets X-Original-URI itself, so a client's copy is replaced (401, no session);
        // the other two reach the door and disagree with it (403).
        let want = if k == "x-original-uri" { 401 } else { 403 };
        assert_eq!(status, want, "{k}: {body}");
    }
    assert_eq!(up.hits(), 0, "nothing reached the sync server");
    let (status, _, _) = plain(&format!("{}/public/x", nginx.url()), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(up.hits(), 1);
}

/// Every header value the sync server saw, as text.
fn header_text(headers: &http::HeaderMap) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect()
}

#[tokio::test]
async fn nginx_forwards_the_apps_credentials_but_never_the_session() {
    let bed = Bed::start("").await;
    let token = bed.login("alice").await;
    let auth = bearer(&token);
    let session_cookie = format!("theme=dark; drawbridge_session={token}; lang=en");
    for (headers, cookie, authorization) in [
        (
            vec![("cookie", session_cookie.as_str())],
            Some("theme=dark; lang=en"),
            None,
        ),
        (
            vec![("authorization", auth.as_str()), ("cookie", "theme=dark")],
            Some("theme=dark"),
            None,
        ),
        (
            vec![
                ("cookie", session_cookie.as_str()),
                ("authorization", "Basic dXNlcjpwdw=="),
            ],
            Some("theme=dark; lang=en"),
            Some("Basic dXNlcjpwdw=="),
        ),
    ] {
        let (status, _, body) = bed.via_nginx("/notes", &headers).await;
        assert_eq!(status, 200, "{headers:?}: {body}");
        let seen = bed.up.seen().pop().unwrap();
        let text = header_text(&seen.headers);
        assert!(
            !text.contains(&token),
            "the session reached the sync server:\n{text}"
        );
        assert_eq!(
            seen.headers.get("cookie").map(|v| v.to_str().unwrap()),
            cookie,
            "{headers:?}"
        );
        assert_eq!(
            seen.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap()),
            authorization,
            "{headers:?}"
        );
        assert_eq!(seen.headers["x-drawbridge-user"], "alice");
    }
    // The protocol entry carrier on a websocket handshake.
    let protocol = format!("drawbridge.bearer.{token}, chat");
    let ws = ws_via(
        bed.nginx.addr,
        "/sync",
        &[("sec-websocket-protocol", protocol.as_str())],
    )
    .await;
    drop(ws);
    let seen = bed.up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-drawbridge-user"], "alice");
    let text = header_text(&seen.headers);
    assert!(
        !text.contains(&token),
        "the session reached the sync server:\n{text}"
    );
    assert_eq!(seen.headers["sec-websocket-protocol"], "chat");
}

#[tokio::test]
async fn browser_behind_nginx_logs_in_on_the_apps_host_and_opens_a_websocket_with_the_cookie() {
    let bed = Bed::start("").await;
    let (status, headers, body) = post_plain(
        &format!("{}/auth/login", bed.nginx.url()),
        &support::login_body("app", "demo", "alice-token"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", bed.nginx.error_log());
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with("drawbridge_session="),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("Path=/;") && !set_cookie.to_ascii_lowercase().contains("domain="),
        "a host-only cookie for the whole app host: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let token = cookie.trim_start_matches("drawbridge_session=").to_owned();
    assert_eq!(
        bed.up.hits(),
        0,
        "the login was drawbridge's, not the sync server's"
    );

    let (_ws, seen) = bed.ws_opens(&[("cookie", cookie.as_str())], "alice").await;
    assert!(!header_text(&seen).contains(&token));

    // userinfo through the same host, with the cookie alone.
    let (status, _, body) = bed
        .via_nginx("/auth/userinfo", &[("cookie", &cookie)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\""), "{body}");
    // The door and the aggregator are not routed to drawbridge: they are the sync server's
    // paths, behind the check like any other.
    let hits = bed.up.hits();
    for path in ["/auth/check", "/auth/webhook"] {
        let (status, _, _) = bed.via_nginx(path, &[]).await;
        assert_eq!(status, 401, "{path}");
    }
    assert_eq!(bed.up.hits(), hits);
    let (status, _, _) = bed.via_nginx("/auth/webhook", &[("cookie", &cookie)]).await;
    assert_eq!(status, 200);
    assert_eq!(bed.up.seen().pop().unwrap().uri, "/auth/webhook");

    // Logout through the app's host; the cookie then opens nothing.
    let (status, _, body) = post_plain(
        &format!("{}/auth/logout", bed.nginx.url()),
        &serde_json::json!({}),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    bed.ws_refused(&[("cookie", cookie.as_str())]).await;
}
