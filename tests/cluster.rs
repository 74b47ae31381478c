//! Cluster mode: three real gateways share one real `redis-server` (and one signing key) behind
//! no load balancer but the test itself. A logout on one closes the tunnels on the others; a
//! ticket opens anywhere once; one token makes one provider call between them; Redis going away
//! loses no revocation; a gateway without Redis keeps serving.

mod support;

use std::time::{Duration, Instant};

use support::redis::Redis;
use support::ws::{bearer_client, close_of, echo_ok};
use support::{Gateway, Upstream, Webhook, client, get_bearer, login, metric, post_bearer};

/// Short enough that a missed message is repaired quickly in the tests.
const RESYNC_MS: u64 = 500;

struct Cluster {
    hook: Webhook,
    up: Upstream,
    key_dir: tempfile::TempDir,
    gws: Vec<Gateway>,
}

/// The `[session]` and `[cluster]` tables every replica shares.
fn shared_tables(key_dir: &std::path::Path, redis_url: &str, extra: &str) -> String {
    let key = key_dir.join("session.pem");
    if !key.exists() {
        let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
        std::fs::write(&key, pem).unwrap();
    }
    format!(
        "[session]\nalgorithm = \"EdDSA\"\nkey_file = {key:?}\n\
         [cluster]\nredis_url = \"{redis_url}\"\nresync_interval_ms = {RESYNC_MS}\n{extra}"
    )
}

async fn replica(
    up: &Upstream,
    hook: &Webhook,
    key_dir: &std::path::Path,
    redis_url: &str,
    extra: &str,
) -> Gateway {
    Gateway::builder(up.url())
        .demo_provider(hook)
        .rate_limit_off()
        .extra(&shared_tables(key_dir, redis_url, extra))
        .spawn()
        .await
}

async fn cluster_up(gw: &Gateway) -> bool {
    metric(&gw.metrics().await, "drawbridge_cluster_up") == 1.0
}

impl Cluster {
    /// Three replicas on `redis`, each waited for until its link is up.
    async fn start(redis: &Redis) -> Self {
        let hook = Webhook::users(3600).await;
        let up = Upstream::start().await;
        let key_dir = tempfile::tempdir().unwrap();
        let mut gws = Vec::new();
        for _ in 0..3 {
            gws.push(replica(&up, &hook, key_dir.path(), &redis.url(), "").await);
        }
        for gw in &gws {
            assert_eventually!(cluster_up(gw).await, "a replica never reached Redis");
        }
        Self {
            hook,
            up,
            key_dir,
            gws,
        }
    }

    async fn login(&self, i: usize, user: &str) -> String {
        login(&self.gws[i], "app", "demo", &format!("{user}-token"))
            .await
            .session()
    }

    /// `GET /auth/userinfo` on replica `i`: its status.
    async fn userinfo(&self, i: usize, token: &str) -> u16 {
        let gw = &self.gws[i];
        let http = client::https(&gw.ca.pem(), false);
        get_bearer(&http, &gw.url("/auth/userinfo"), token).await.0
    }

    async fn post(&self, i: usize, path: &str, token: &str) -> (u16, serde_json::Value) {
        let gw = &self.gws[i];
        let http = client::https(&gw.ca.pem(), false);
        let (status, _, body) = post_bearer(&http, &gw.url(path), token).await;
        (status, body)
    }
}

/// `POST <path>` on an admin port with a JSON body; the status.
async fn admin_post(gw: &Gateway, path: &str, body: &str) -> u16 {
    let admin = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}{path}", gw.admin_addr))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    admin.request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn logout_on_one_replica_closes_tunnels_on_the_others_with_4003_within_a_second() {
    let redis = Redis::start().await;
    let c = Cluster::start(&redis).await;
    let token = c.login(0, "ada").await;
    let mut tunnels = Vec::new();
    for i in [1, 2] {
        let gw = &c.gws[i];
        let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
        echo_ok(&mut ws, "before logout").await;
        tunnels.push(ws);
    }
    let started = Instant::now();
    assert_eq!(c.post(0, "/auth/logout", &token).await.0, 200);
    for ws in &mut tunnels {
        assert_eq!(close_of(ws, Duration::from_secs(1)).await, Some(4003));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    for i in [1, 2] {
        assert_eq!(c.userinfo(i, &token).await, 401, "replica {i}");
    }
    let propagated = metric(
        &c.gws[1].metrics().await,
        "drawbridge_cluster_revocation_propagation_seconds_count",
    );
    assert!(propagated >= 1.0, "no propagation observed on replica 1");

    // An admin revoke by user on one replica applies on the others too.
    let other = c.login(1, "bea").await;
    assert_eq!(c.userinfo(2, &other).await, 200);
    assert_eq!(
        admin_post(&c.gws[0], "/sessions/revoke", r#"{"userID":"bea"}"#).await,
        200
    );
    assert_eventually!(
        c.userinfo(2, &other).await == 401,
        "the user revocation never reached replica 2"
    );
}

#[tokio::test]
async fn ticket_from_one_replica_opens_on_another_and_only_once() {
    let redis = Redis::start().await;
    let c = Cluster::start(&redis).await;
    let token = c.login(0, "cy").await;
    let (status, body) = c.post(0, "/auth/ticket", &token).await;
    assert_eq!(status, 200, "{body}");
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    let path = format!("/sync?ticket={ticket}");
    let b = &c.gws[1];
    let mut ws = support::ws::client(b.addr, &b.ca.pem(), &path, &[])
        .await
        .expect("the ticket opens a tunnel on another replica");
    echo_ok(&mut ws, "through B").await;
    let hits = c.up.hits();
    let c_gw = &c.gws[2];
    let again = support::ws::client(c_gw.addr, &c_gw.ca.pem(), &path, &[]).await;
    assert!(again.is_err(), "a used ticket opened a second tunnel");
    let again_on_b = support::ws::client(b.addr, &b.ca.pem(), &path, &[]).await;
    assert!(
        again_on_b.is_err(),
        "a used ticket opened again where it was used"
    );
    assert_eq!(
        c.up.hits(),
        hits,
        "a refused ticket reached the sync server"
    );
}

#[tokio::test]
async fn one_token_on_three_replicas_makes_one_provider_call() {
    let redis = Redis::start().await;
    let c = Cluster::start(&redis).await;
    let logins = (0..300).map(|n| login(&c.gws[n % 3], "app", "demo", "dee-token"));
    for l in futures_util::future::join_all(logins).await {
        l.session();
    }
    assert_eq!(c.hook.calls(), 1, "replicas asked the provider separately");

    // A purge on one replica empties every level everywhere: the next login asks again.
    assert_eq!(admin_post(&c.gws[0], "/cache/purge", "").await, 200);
    assert_eventually!(
        {
            login(&c.gws[2], "app", "demo", "dee-token").await.session();
            c.hook.calls() == 2
        },
        "replica 2 kept serving a purged decision"
    );
}

#[tokio::test]
async fn revocations_survive_redis_going_away_and_spread_when_it_returns() {
    let mut redis = Redis::start().await;
    let c = Cluster::start(&redis).await;
    let before = c.login(0, "eve").await;
    let during = c.login(0, "fay").await;
    assert_eq!(c.post(0, "/auth/logout", &before).await.0, 200);
    assert_eventually!(
        c.userinfo(2, &before).await == 401,
        "the first logout never reached replica 2"
    );

    redis.kill();
    for gw in &c.gws {
        assert_eventually!(!cluster_up(gw).await, "a replica never noticed Redis leave");
    }
    // Logins and sessions keep working on local state; known revocations stay enforced.
    let other = c.login(2, "gus").await;
    assert_eq!(c.userinfo(1, &other).await, 200);
    assert_eq!(c.userinfo(2, &before).await, 401);
    // A logout while Redis is away holds where it was made.
    assert_eq!(c.post(1, "/auth/logout", &during).await.0, 200);
    assert_eq!(c.userinfo(1, &during).await, 401);

    // Redis comes back empty: every replica writes back what it knows, then all agree.
    redis.restart().await;
    for gw in &c.gws {
        assert_eventually!(cluster_up(gw).await, "a replica never reconnected");
    }
    for i in 0..3 {
        assert_eventually!(
            c.userinfo(i, &during).await == 401,
            "replica {i} never learned the logout made while Redis was away"
        );
        assert_eq!(
            c.userinfo(i, &before).await,
            401,
            "replica {i} forgot a revocation"
        );
    }
    // A replica started now learns both from Redis.
    let late = replica(&c.up, &c.hook, c.key_dir.path(), &redis.url(), "").await;
    assert_eventually!(
        cluster_up(&late).await,
        "the late replica never reached Redis"
    );
    let http = client::https(&late.ca.pem(), false);
    for token in [&before, &during] {
        assert_eventually!(
            get_bearer(&http, &late.url("/auth/userinfo"), token)
                .await
                .0
                == 401,
            "the late replica trusts a revoked session"
        );
    }
}

#[tokio::test]
async fn redis_down_at_start_keeps_logins_and_tickets_working_locally() {
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let gw = replica(&up, &hook, key_dir.path(), &Redis::dead_url(), "").await;
    assert!(!cluster_up(&gw).await);
    let token = login(&gw, "app", "demo", "hal-token").await.session();
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, body) = post_bearer(&http, &gw.url("/auth/ticket"), &token).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/sync?ticket={}", body["ticket"].as_str().unwrap());
    let mut ws = support::ws::client(gw.addr, &gw.ca.pem(), &path, &[])
        .await
        .expect("a local ticket opens");
    echo_ok(&mut ws, "without Redis").await;
    assert_eq!(
        post_bearer(&http, &gw.url("/auth/logout"), &token).await.0,
        200
    );
    assert_eq!(close_of(&mut ws, Duration::from_secs(1)).await, Some(4003));
}

#[tokio::test]
async fn required_cluster_makes_readyz_503_while_redis_is_unreachable() {
    let mut redis = Redis::start().await;
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let gw = replica(&up, &hook, key_dir.path(), &redis.url(), "required = true").await;
    let ready = format!("http://{}/readyz", gw.admin_addr);
    assert_eq!(client::get_text(&ready).await.0, 200);
    redis.kill();
    assert_eventually!(
        client::get_text(&ready).await.0 == 503,
        "readyz stayed 200 without Redis"
    );
    let (_, text) = client::get_text(&ready).await;
    assert!(text.contains("cluster"), "{text}");
    // Still serving: a login works.
    login(&gw, "app", "demo", "ida-token").await.session();
    redis.restart().await;
    assert_eventually!(
        client::get_text(&ready).await.0 == 200,
        "readyz never recovered with Redis back"
    );
}

#[tokio::test]
async fn ditto_token_learned_on_one_replica_opens_the_websocket_on_another() {
    use support::ditto::DittoServer;
    let redis = Redis::start().await;
    let sync = DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let key_dir = tempfile::tempdir().unwrap();
    let mut gws = Vec::new();
    for _ in 0..2 {
        let gw = Gateway::builder(sync.url())
            .webhook_provider("my-auth", &hook)
            .extra("[ditto]\nenabled = true\nrequire_known_token = true")
            .extra(&shared_tables(key_dir.path(), &redis.url(), ""))
            .spawn()
            .await;
        assert_eventually!(cluster_up(&gw).await, "a replica never reached Redis");
        gws.push(gw);
    }
    let token = [("x-ditto-auth", "access-for-liam-token")];
    let (a, b) = (&gws[0], &gws[1]);
    assert!(
        support::ws::client(b.addr, &b.ca.pem(), "/_ditto/ws", &token)
            .await
            .is_err(),
        "opened before any login"
    );
    // The SDK logs in through replica A...
    let http = client::https(&a.ca.pem(), false);
    let form = "appId=app-1&token=liam-token&provider=my-auth&siteId=1&chToken=c&chSigB64=c2ln&peerKeyB64=cGVlcg%3D%3D&jwtVersion=1&includeX509=true";
    let mut req = client::request("POST", &a.url("/_ditto/auth/login"), form.to_owned());
    req.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    assert_eq!(support::send(&http, req).await.0, 200);
    // ...and its websocket lands on replica B.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ws = loop {
        if let Ok(ws) = support::ws::client(b.addr, &b.ca.pem(), "/_ditto/ws", &token).await {
            break ws;
        }
        assert!(
            Instant::now() < deadline,
            "the token learned on A never opened the websocket on B"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    echo_ok(&mut ws, "sync me").await;
}
