//! Cluster mode: three real gateways share one real `redis-server` (and one signing key) behind
//! no load balancer but the test itself. A logout on one closes the tunnels on the others; a
//! ticket opens anywhere once; one token makes one provider call between them; Redis going away
//! loses no revocation; a gateway without Redis keeps serving. What Redis holds is input: malformed
//! entries of every kind are skipped and counted while the link stays up, and a glob in the key
//! prefix purges nothing of another deployment. A stalled, silent, refusing or password-refusing
//! Redis is bounded and warned about with its reason; `check` refuses incomplete URLs; a provider
//! whose settings changed stops getting shared answers; all against a real `redis-server`.

mod support;

use std::time::{Duration, Instant};

use support::process::Running;
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
    // Its claim set could not be shared, so the token carries its claims itself.
    let claims = token_payload(&token);
    assert!(
        claims.get("ref").is_none() && claims["prm"].is_object(),
        "{claims}"
    );
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

/// The claims of a session token, as its payload carries them.
fn token_payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn claims_named_by_reference_reach_every_replica_and_a_changed_set_is_refused() {
    let redis = Redis::start().await;
    let c = Cluster::start(&redis).await;
    let token = c.login(0, "rae").await;
    let claims = token_payload(&token);
    let reference = claims["ref"]
        .as_str()
        .unwrap_or_else(|| panic!("no claim set by reference in {claims}"));
    assert!(
        claims.get("prm").is_none() && claims.get("cli").is_none(),
        "{claims}"
    );
    let mut conn = redis_conn(&redis).await;
    let stored = keys(&mut conn, &format!("*claims:{reference}")).await;
    assert_eq!(
        stored.len(),
        1,
        "the set is in Redis before the token is handed out"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&stored[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl >= 3_600_000,
        "kept {ttl} ms, less than the session can live (an hour)"
    );

    // The other replicas hold the set from the login's message: the same permissions and
    // clientInfo as the provider gave, even once Redis has lost it.
    let userinfo = |gw: &Gateway, token: &str| {
        let http = client::https(&gw.ca.pem(), false);
        let url = gw.url("/auth/userinfo");
        let token = token.to_owned();
        async move { get_bearer(&http, &url, &token).await }
    };
    for i in [1, 2] {
        assert_eventually!(
            userinfo(&c.gws[i], &token).await.0 == 200,
            "replica {i} never took the session"
        );
    }
    let _: () = redis::cmd("DEL")
        .arg(&stored[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    for i in [1, 2] {
        let (status, _, body) = userinfo(&c.gws[i], &token).await;
        assert_eq!(status, 200, "replica {i}: {body}");
        assert_eq!(body["clientInfo"]["greeting"], "hello rae", "{body}");
        assert_eq!(
            body["permissions"]["write"]["queriesByCollection"]["tasks"][0], "_id.owner == 'rae'",
            "{body}"
        );
        assert_eq!(body["permissions"]["read"]["everything"], true, "{body}");
    }
    let sam = c.login(0, "sam").await;
    let sam_ref = token_payload(&sam)["ref"].as_str().unwrap().to_owned();
    // Neither in Redis nor held: a replica started since asks for a new login.
    let late = replica(&c.up, &c.hook, c.key_dir.path(), &redis.url(), "").await;
    assert_eventually!(
        cluster_up(&late).await,
        "the late replica never reached Redis"
    );
    let (status, _, body) = userinfo(&late, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("log in again"), "{body}");

    // A login before it started: the late replica reads its set from Redis, and a refresh there
    // names it again.
    let (status, _, body) = userinfo(&late, &sam).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clientInfo"]["greeting"], "hello sam", "{body}");
    let http = client::https(&late.ca.pem(), false);
    let (status, _, body) = support::refresh(&http, &late, &sam).await;
    assert_eq!(status, 200, "{body}");
    let refreshed = body["sessionToken"].as_str().unwrap();
    assert_eq!(token_payload(refreshed)["ref"], sam_ref.as_str());

    // A set changed in Redis is refused where it is read back, and counted.
    let tia = c.login(0, "tia").await;
    let tia_ref = token_payload(&tia)["ref"].as_str().unwrap().to_owned();
    let key = &keys(&mut conn, &format!("*claims:{tia_ref}")).await[0];
    let wider = br#"{"prm":{"r":true,"w":true},"cli":{"greeting":"hello tia"}}"#;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(&wider[..])
        .arg("KEEPTTL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let late2 = replica(&c.up, &c.hook, c.key_dir.path(), &redis.url(), "").await;
    assert_eventually!(
        cluster_up(&late2).await,
        "the late replica never reached Redis"
    );
    assert_eq!(
        userinfo(&late2, &tia).await.0,
        401,
        "a changed set was taken"
    );
    assert_eq!(bad_entries(&late2, "claim_set").await, 1.0);
    assert_eq!(c.userinfo(0, &tia).await, 200);
}

// --- Redis data is input, not truth ---

async fn redis_conn(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap()
}

async fn bad_entries(gw: &Gateway, kind: &str) -> f64 {
    metric(
        &gw.metrics().await,
        &format!("drawbridge_cluster_bad_entries_total{{kind=\"{kind}\"}}"),
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn bad_entries_of_every_kind_are_skipped_counted_and_the_link_stays_up() {
    use sha2::Digest;
    let redis = Redis::start().await;
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let mut gws = Vec::new();
    for _ in 0..2 {
        let gw = Gateway::builder(up.url())
            .demo_provider(&hook)
            .rate_limit_off()
            .extra("[ditto]\nenabled = true\nrequire_known_token = true")
            .extra(&shared_tables(key_dir.path(), &redis.url(), ""))
            .spawn()
            .await;
        assert_eventually!(cluster_up(&gw).await, "a replica never reached Redis");
        gws.push(gw);
    }
    let (a, b) = (&gws[0], &gws[1]);
    let mut conn = redis_conn(&redis).await;
    let kay = login(a, "app", "demo", "kay-token").await.session();

    // Decisions: a shared answer overwritten with garbage is a miss on the other replica.
    let calls = hook.calls();
    let decisions = keys(&mut conn, "drawbridge:dec:*").await;
    assert!(!decisions.is_empty(), "no shared decision was written");
    for key in &decisions {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(r#"{"d":"allow","user":"","exp":1}"#)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    login(b, "app", "demo", "kay-token").await.session();
    assert_eq!(hook.calls(), calls + 1, "the garbled decision was served");

    // Revocations: a fractional score, a score of infinity, a member of no known shape.
    let until = unix_now() + 3600;
    for (score, member) in [
        (format!("{until}.5"), "s 1 fractional-sid"),
        ("+inf".to_owned(), "s 1 infinite-sid"),
        (until.to_string(), "garbage"),
    ] {
        let _: () = redis::cmd("ZADD")
            .arg("drawbridge:rev")
            .arg(score)
            .arg(member)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Messages: a revocation with a fractional time, and noise.
    for payload in ["r o 1.5 2 s 1 x", "garbage"] {
        let _: () = redis::cmd("PUBLISH")
            .arg("drawbridge:events")
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A ticket that holds no session: refused, and the sync server never sees it.
    let _: () = redis::cmd("SET")
        .arg("drawbridge:ticket:planted-ticket")
        .arg("not json")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    let hits = up.hits();
    assert!(
        support::ws::client(b.addr, &b.ca.pem(), "/sync?ticket=planted-ticket", &[])
            .await
            .is_err(),
        "a planted ticket opened a tunnel"
    );
    // A learned token with no expiry number: not known.
    let id = hex::encode(sha2::Sha256::digest(b"planted-ditto-token"));
    let _: () = redis::cmd("SET")
        .arg(format!("drawbridge:ditto:{id}"))
        .arg("soon mallory")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        support::ws::client(
            b.addr,
            &b.ca.pem(),
            "/_ditto/ws",
            &[("x-ditto-auth", "planted-ditto-token")]
        )
        .await
        .is_err(),
        "a malformed learned token opened the Ditto websocket"
    );
    assert_eq!(
        up.hits(),
        hits,
        "a refused handshake reached the sync server"
    );
    // A user's decision index naming a key that is not a decision of this cluster.
    let _: () = redis::cmd("SET")
        .arg("other:keep")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("drawbridge:dec-user:kay")
        .arg("other:keep")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        admin_post(a, "/sessions/revoke", r#"{"userID":"kay"}"#).await,
        200
    );

    for gw in [a, b] {
        for kind in ["revocation", "message"] {
            assert_eventually!(
                bad_entries(gw, kind).await >= 1.0,
                "a bad {kind} entry was never counted"
            );
        }
    }
    for kind in ["decision", "ticket", "learned_token"] {
        assert!(bad_entries(b, kind).await >= 1.0, "{kind} not counted");
    }
    assert_eventually!(
        bad_entries(a, "decision_index").await >= 1.0,
        "the planted index member was never counted"
    );
    let kept: Option<String> = redis::cmd("GET")
        .arg("other:keep")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("1"),
        "a purge deleted a key it does not own"
    );

    // Two more resyncs read the three bad revocations again, and the link is still up after them;
    // revocations still travel both ways.
    for gw in [a, b] {
        let seen = bad_entries(gw, "revocation").await;
        assert_eventually!(
            bad_entries(gw, "revocation").await >= seen + 6.0,
            "no resync read the set again"
        );
        assert!(cluster_up(gw).await, "a bad entry took the link down");
    }
    let http = client::https(&b.ca.pem(), false);
    assert_eventually!(
        get_bearer(&http, &b.url("/auth/userinfo"), &kay).await.0 == 401,
        "the user revocation never reached the other replica"
    );
    let max = login(b, "app", "demo", "max-token").await.session();
    let http_b = client::https(&b.ca.pem(), false);
    assert_eq!(
        post_bearer(&http_b, &b.url("/auth/logout"), &max).await.0,
        200
    );
    let http_a = client::https(&a.ca.pem(), false);
    assert_eventually!(
        get_bearer(&http_a, &a.url("/auth/userinfo"), &max).await.0 == 401,
        "a logout no longer propagates"
    );
}

#[tokio::test]
async fn purge_with_a_glob_prefix_leaves_another_prefixes_keys() {
    let redis = Redis::start().await;
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let globby = replica(
        &up,
        &hook,
        key_dir.path(),
        &redis.url(),
        "key_prefix = \"t[12]:\"",
    )
    .await;
    let other = replica(
        &up,
        &hook,
        key_dir.path(),
        &redis.url(),
        "key_prefix = \"t2:\"",
    )
    .await;
    for gw in [&globby, &other] {
        assert_eventually!(cluster_up(gw).await, "a replica never reached Redis");
    }
    login(&globby, "app", "demo", "ann-token").await.session();
    login(&other, "app", "demo", "bob-token").await.session();
    let mut conn = redis_conn(&redis).await;
    let own = r"t\[12\]:dec*";
    assert!(!keys(&mut conn, own).await.is_empty());
    let theirs = keys(&mut conn, "t2:dec*").await;
    assert!(
        theirs.iter().any(|k| k.starts_with("t2:dec:")),
        "{theirs:?}"
    );

    assert_eq!(admin_post(&globby, "/cache/purge", "").await, 200);
    assert_eventually!(
        keys(&mut conn, own).await.is_empty(),
        "the purge left its own decisions"
    );
    assert_eq!(
        keys(&mut conn, "t2:dec*").await,
        theirs,
        "a purge under \"t[12]:\" deleted keys of the \"t2:\" deployment"
    );
}

// --- Redis that stalls or refuses is bounded and visible ---

async fn running_metric(gw: &Running, sample: &str) -> f64 {
    metric(
        &client::get_text(&format!("http://{}/metrics", gw.admin))
            .await
            .1,
        sample,
    )
}

/// The WARN lines the process logged about the cluster store, as `(reason, whole line)`.
fn cluster_warnings(gw: &Running) -> Vec<(String, String)> {
    gw.logs()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let message = v["message"].as_str()?;
            (v["level"] == "WARN" && message.starts_with("cluster store unreachable")).then(|| {
                (
                    v["reason"].as_str().unwrap_or_default().to_owned(),
                    l.to_owned(),
                )
            })
        })
        .collect()
}

fn clustered(up: &Upstream, hook: &Webhook, cluster: &str) -> support::GatewayBuilder {
    Gateway::builder(up.url())
        .demo_provider(hook)
        .rate_limit_off()
        .extra(&format!(
            "{}[cluster]\n{cluster}",
            support::shared_session_table()
        ))
}

#[tokio::test]
async fn stalled_redis_holds_a_login_no_longer_than_the_command_timeout() {
    let redis = Redis::start().await;
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let gw = Running::start_with(
        clustered(
            &up,
            &hook,
            &format!("redis_url = \"{}\"\ncommand_timeout_ms = 200", redis.url()),
        ),
        &[],
    );
    assert_eventually!(
        running_metric(&gw, "drawbridge_cluster_up").await == 1.0,
        "never reached Redis"
    );
    login(&gw, "app", "demo", "warm-token").await.session();

    redis.pause();
    for user in ["first", "second"] {
        let started = Instant::now();
        login(&gw, "app", "demo", &format!("{user}-token"))
            .await
            .session();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "the {user} login during the stall took {took:?}"
        );
    }
    assert_eventually!(
        running_metric(&gw, "drawbridge_cluster_up").await == 0.0,
        "the stall was never noticed"
    );
    assert_eventually!(
        cluster_warnings(&gw)
            .iter()
            .any(|(reason, _)| reason.contains("no answer")),
        "no warning names the stall: {}",
        gw.logs()
    );

    redis.resume();
    assert_eventually!(
        running_metric(&gw, "drawbridge_cluster_up").await == 1.0,
        "the link never came back after the stall"
    );
    assert!(
        gw.logs().contains("cluster store reachable"),
        "{}",
        gw.logs()
    );
}

#[tokio::test]
async fn silent_redis_from_the_start_is_warned_about_and_logins_do_not_wait() {
    // Accepts connections and never answers, as a black-holed or frozen Redis does.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let gw = Running::start_with(
        clustered(
            &up,
            &hook,
            &format!(
                "redis_url = \"redis://{addr}\"\nconnect_timeout_ms = 300\ncommand_timeout_ms = 200"
            ),
        ),
        &[],
    );
    let started = Instant::now();
    login(&gw, "app", "demo", "una-token").await.session();
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(running_metric(&gw, "drawbridge_cluster_up").await, 0.0);
    assert_eventually!(
        cluster_warnings(&gw)
            .iter()
            .any(|(reason, _)| reason.contains("no answer")),
        "a Redis silent from the start was never warned about: {}",
        gw.logs()
    );
}

#[tokio::test]
async fn refused_and_wrong_password_redis_are_warned_about_at_start_with_their_reason() {
    let hook = Webhook::users(3600).await;
    let up = Upstream::start().await;
    let refused = Running::start_with(
        clustered(
            &up,
            &hook,
            &format!("redis_url = \"{}\"", Redis::dead_url()),
        ),
        &[],
    );
    assert_eventually!(
        cluster_warnings(&refused)
            .iter()
            .any(|(reason, _)| reason == "connection refused"),
        "a refused connection was never warned about: {}",
        refused.logs()
    );

    let redis = Redis::start_with(&["--requirepass", "right-pw-7f3a"]).await;
    let wrong = Running::start_with(
        clustered(
            &up,
            &hook,
            &format!(
                "redis_url = \"{}\"\npassword = \"wrong-pw-91c2\"",
                redis.url()
            ),
        ),
        &[],
    );
    assert_eventually!(
        cluster_warnings(&wrong)
            .iter()
            .any(|(reason, _)| reason.starts_with("authentication failed")),
        "a wrong password was never warned about: {}",
        wrong.logs()
    );
    assert!(
        !wrong.logs().contains("wrong-pw-91c2"),
        "the password was logged"
    );
    // Warned once per reason, not once per attempt.
    assert_eq!(cluster_warnings(&wrong).len(), 1, "{}", wrong.logs());
    login(&wrong, "app", "demo", "vic-token").await.session();

    let right = Running::start_with(
        clustered(
            &up,
            &hook,
            &format!(
                "redis_url = \"{}\"\npassword = \"right-pw-7f3a\"",
                redis.url()
            ),
        ),
        &[],
    );
    assert_eventually!(
        running_metric(&right, "drawbridge_cluster_up").await == 1.0,
        "the right password never connected"
    );
    assert!(cluster_warnings(&right).is_empty(), "{}", right.logs());
}

#[test]
fn check_refuses_every_incomplete_redis_url_without_printing_it() {
    let run = |url: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drawbridge.toml");
        std::fs::write(
            &path,
            format!(
                "[upstream]\nurl = \"http://127.0.0.1:1\"\n[session]\nkey_file = \"/etc/drawbridge/session.pem\"\n\
                 [cluster]\nredis_url = \"{url}\"\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drawbridge"))
            .args(["check", "--skip-files", "--config"])
            .arg(&path)
            .env_remove("DRAWBRIDGE_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for url in [
        "redis://",
        "redis://:pw-d41d@",
        "redis://:pw-d41d@redis:port",
        "redis://:pw-d41d@redis:99999",
        "redis://:pw-d41d@redis:0",
        "redis://:pw-d41d@redis:6379/x",
        "redis://:pw-d41d@redis:6379/0/1",
        "redis://:pw-d41d@redis:6379/-1",
        "redis://:pw-d41d@redis:6379/1.5",
        "redis://:pw-d41d@redis:6379/?db=1",
        "rediss://:pw-d41d@redis:6380/#insecure",
        "redis://:pw-d41d@0.0.0.0:6379",
        "unix:///run/redis.sock",
        "http://:pw-d41d@redis:6379",
        "redis//redis:6379",
    ] {
        let (code, out) = run(url);
        assert_eq!(code, 64, "{url} was accepted: {out}");
        assert!(out.contains("cluster.redis_url"), "{url}: {out}");
        assert!(
            !out.contains("pw-d41d"),
            "{url}: the password was printed: {out}"
        );
    }
    for url in [
        "redis://redis",
        "redis://redis:6379",
        "redis://redis:6379/",
        "redis://redis:6379/15",
        "rediss://u:pw-d41d@redis.example:6380/0",
        "redis://[::1]:6379/2",
    ] {
        let (code, out) = run(url);
        assert_eq!(code, 0, "{url} was refused: {out}");
    }
}

// --- A provider whose settings changed stops getting shared answers ---

#[tokio::test]
async fn changed_provider_url_stops_its_old_shared_allows_on_the_reloaded_replica() {
    use nix::sys::signal::{Signal, kill};
    let redis = Redis::start().await;
    let old_hook = Webhook::users(3600).await;
    let new_hook =
        Webhook::start(|_| support::Reply::deny(serde_json::json!({"hint": "new"}))).await;
    let up = Upstream::start().await;
    let key_dir = tempfile::tempdir().unwrap();
    let a = replica(&up, &old_hook, key_dir.path(), &redis.url(), "").await;
    let b = Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&old_hook)
            .rate_limit_off()
            .extra(&shared_tables(key_dir.path(), &redis.url(), "")),
        &[],
    );
    assert_eventually!(cluster_up(&a).await, "A never reached Redis");
    assert_eventually!(
        running_metric(&b, "drawbridge_cluster_up").await == 1.0,
        "B never reached Redis"
    );
    login(&a, "app", "demo", "zed-token").await.session();
    login(&b, "app", "demo", "zed-token").await.session();
    assert_eq!(old_hook.calls(), 1, "B did not share A's answer");

    // B's provider moves to a new URL (say, the old endpoint was compromised).
    let reloaded = r#"drawbridge_config_reloads_total{result="success"}"#;
    let before = running_metric(&b, reloaded).await;
    let path = b.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&old_hook.url(), &new_hook.url());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    kill(
        nix::unistd::Pid::from_raw(i32::try_from(b.child.id()).unwrap()),
        Signal::SIGHUP,
    )
    .unwrap();
    assert_eventually!(
        running_metric(&b, reloaded).await > before,
        "B never reloaded: {}",
        b.logs()
    );

    let after = login(&b, "app", "demo", "zed-token").await;
    assert_ne!(
        after.status, 200,
        "B served an allow its old provider settings gave: {}",
        after.body
    );
    assert_eq!(new_hook.calls(), 1, "the new provider was not asked");
    assert_eq!(old_hook.calls(), 1);
    // A, not reloaded yet, keeps its answer.
    login(&a, "app", "demo", "zed-token").await.session();
}
