//! A reload publishes one whole generation: under logins, forward-auth checks and tunnels, 1,000
//! SIGHUP reloads alternate two configs, and every answer is consistent with exactly one of them.
//!
//! The two configs differ in everything a request reads from more than one part: the `[apps]`
//! list and its provider (the auth core), the session signing key (the sessions), and the sync
//! server (the config and the forwarder). A request that mixed two generations gives an answer
//! that shows it: a session for app A signed with B's key, or an identity assertion for A's sync
//! server signed with B's key. Old keys keep verifying after a rotation, so verification cannot
//! tell generations apart; the signing `kid` and the audience can.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use support::process::Running;
use support::upstream::Upstream;
use support::webhook::Webhook;
use support::ws::{Ws, client};
use support::{Gateway, client as http_client, login, metric};
use tokio_tungstenite::tungstenite::Message;

/// How many reloads the load runs under.
const RELOADS: usize = 1_000;

/// One of the two configs: its app and provider, its sync server and its session key.
struct Generation {
    app: &'static str,
    provider: &'static str,
    upstream: Upstream,
    hook: Webhook,
    key_file: String,
}

impl Generation {
    async fn start(app: &'static str, provider: &'static str, dir: &std::path::Path) -> Self {
        let key_file = dir.join(format!("{app}.pem"));
        let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
        std::fs::write(&key_file, pem).unwrap();
        Self {
            app,
            provider,
            upstream: Upstream::start().await,
            hook: Webhook::users(3600).await,
            key_file: key_file.display().to_string(),
        }
    }

    /// The tables of this generation; `[upstream]` comes from the builder.
    fn tables(&self) -> String {
        format!(
            "[providers.{p}]\nkind = \"webhook\"\nurl = \"{}\"\n[apps.{a}]\nproviders = [\"{p}\"]\n\
             [session]\nalgorithm = \"EdDSA\"\nkey_file = {:?}\n[forward_auth]\nassertion = true\n",
            self.hook.url(),
            self.key_file,
            p = self.provider,
            a = self.app,
        )
    }
}

/// The session key behind a compact JWT: its header's `kid`, without the `.hmac` suffix of a
/// session token's MAC key derived from it (the assertion is signed by the key itself).
fn kid(jwt: &str) -> String {
    let kid = jsonwebtoken::decode_header(jwt)
        .unwrap()
        .kid
        .expect("a kid");
    kid.trim_end_matches(".hmac").to_owned()
}

/// The `aud` claim of a compact JWT, read without verifying it.
fn audience(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    claims["aud"].as_str().unwrap().to_owned()
}

/// What the load saw: answers counted by kind, and each answer no single generation gives.
#[derive(Default)]
struct Seen {
    logins: AtomicUsize,
    checks: AtomicUsize,
    tunnels: AtomicUsize,
    mixed: std::sync::Mutex<Vec<String>>,
}

impl Seen {
    fn mixed(&self, what: String) {
        self.mixed.lock().unwrap().push(what);
    }
}

/// Every `kid` the two generations sign with, and the audience each one's sync server is.
struct Expect {
    kid_a: String,
    kid_b: String,
    aud_a: String,
    aud_b: String,
    refused_app: u16,
}

impl Expect {
    /// Whether `kid` and `aud` come from one generation.
    fn one_generation(&self, kid: &str, aud: &str) -> bool {
        (kid == self.kid_a && aud == self.aud_a) || (kid == self.kid_b && aud == self.aud_b)
    }
}

/// Logs in to each generation's app in turn until `stop`: a session for an app must carry that
/// generation's key, and a refusal must be the unknown-app one.
async fn keep_logging_in(
    gw: Arc<Running>,
    gens: [(&'static str, &'static str, String); 2],
    expect: Arc<Expect>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (app, provider, kid_of_app) = &gens[turn % 2];
        turn += 1;
        let answer = login(&*gw, app, provider, "ann-token").await;
        seen.logins.fetch_add(1, Ordering::Relaxed);
        match answer.status {
            200 => {
                let got = kid(&answer.session());
                if &got != kid_of_app {
                    seen.mixed(format!(
                        "a session for {app} signed with another generation's key"
                    ));
                }
            }
            status if status == expect.refused_app => {}
            status => seen.mixed(format!("login to {app} answered {status}: {}", answer.body)),
        }
    }
}

/// Asks the forward-auth door with `session` until `stop`: each identity assertion's key and
/// audience must come from one generation.
async fn keep_checking(
    gw: Arc<Running>,
    session: String,
    expect: Arc<Expect>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let http = http_client::https(&gw.ca.pem(), false);
    while !stop.load(Ordering::Relaxed) {
        let mut req = http_client::request("GET", &gw.url("/auth/check/notes"), "");
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {session}").parse().unwrap(),
        );
        let resp = http.request(req).await.expect("the check is answered");
        let status = resp.status().as_u16();
        let assertion = resp
            .headers()
            .get("x-drawbridge-assertion")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = resp.into_body().collect().await;
        seen.checks.fetch_add(1, Ordering::Relaxed);
        match (status, assertion) {
            (200, Some(jwt)) if expect.one_generation(&kid(&jwt), &audience(&jwt)) => {}
            (status, jwt) => seen.mixed(format!(
                "check answered {status} with assertion {:?}",
                jwt.map(|j| (kid(&j), audience(&j)))
            )),
        }
    }
}

/// Opens a tunnel with `session`, echoes one message and closes it, until `stop`.
async fn keep_tunnelling(
    gw: Arc<Running>,
    session: String,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let bearer = format!("Bearer {session}");
    while !stop.load(Ordering::Relaxed) {
        let opened: Result<Ws, _> = client(
            gw.addr,
            &gw.ca.pem(),
            "/sync",
            &[("authorization", &bearer)],
        )
        .await;
        let Ok(mut ws) = opened else {
            seen.mixed(format!("a tunnel of a valid session failed: {opened:?}"));
            continue;
        };
        ws.send(Message::text("ping")).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        if !matches!(echoed, Ok(Some(Ok(Message::Text(ref t)))) if t.as_str() == "ping") {
            seen.mixed(format!("a tunnel did not echo: {echoed:?}"));
        }
        let _ = ws.close(None).await;
        seen.tunnels.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_under_a_thousand_reloads_each_come_from_one_generation() {
    let keys = tempfile::tempdir().unwrap();
    let a = Generation::start("appa", "pa", keys.path()).await;
    let b = Generation::start("appb", "pb", keys.path()).await;
    // The file watcher stays out of it: every reload here is a SIGHUP.
    let common = "[rate_limit]\nenabled = false\n[reload]\nsettle_ms = 60000\n";
    let gw = Arc::new(Running::start_with(
        Gateway::builder(a.upstream.url()).extra(&(a.tables() + common)),
        &[],
    ));
    let path = gw.config_path();
    let text_a = std::fs::read_to_string(&path).unwrap();
    let text_b = text_a
        .replace(&a.tables(), &b.tables())
        .replace(&a.upstream.url(), &b.upstream.url());
    assert_ne!(text_a, text_b);
    let write = |text: &str| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    let hangup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(gw.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    };
    let admin = format!("http://{}/metrics", gw.admin);
    let reloads = || async {
        metric(
            &http_client::get_text(&admin).await.1,
            "drawbridge_config_reloads_total{result=\"success\"}",
        )
    };

    // Each generation seen whole before the load: its key, its sync server, its refusal.
    let session = login(&*gw, "appa", "pa", "ann-token").await.session();
    let refused_app = login(&*gw, "appb", "pb", "ann-token").await.status;
    assert_ne!(refused_app, 200, "app B logged in under config A");
    write(&text_b);
    hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads().await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the first SIGHUP applied nothing"
        );
        support::pace(10).await;
    }
    let under_b = login(&*gw, "appb", "pb", "ann-token").await.session();
    let expect = Arc::new(Expect {
        kid_a: kid(&session),
        kid_b: kid(&under_b),
        aud_a: a.upstream.url(),
        aud_b: b.upstream.url(),
        refused_app,
    });
    assert_ne!(expect.kid_a, expect.kid_b);
    assert_eq!(
        login(&*gw, "appa", "pa", "ann-token").await.status,
        refused_app,
        "app A still logs in under config B"
    );

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let gens = [
        ("appa", "pa", expect.kid_a.clone()),
        ("appb", "pb", expect.kid_b.clone()),
    ];
    let load = vec![
        tokio::spawn(keep_logging_in(
            gw.clone(),
            gens,
            expect.clone(),
            seen.clone(),
            stop.clone(),
        )),
        tokio::spawn(keep_checking(
            gw.clone(),
            session.clone(),
            expect.clone(),
            seen.clone(),
            stop.clone(),
        )),
        tokio::spawn(keep_tunnelling(
            gw.clone(),
            session.clone(),
            seen.clone(),
            stop.clone(),
        )),
    ];

    // 1,000 more reloads, alternating A and B, each applied before the next is written.
    for i in 0..RELOADS {
        write(if i % 2 == 0 { &text_a } else { &text_b });
        hangup();
        let want = (i + 2) as f64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while reloads().await < want {
            assert!(
                Instant::now() < deadline,
                "reload {} was not applied",
                i + 2
            );
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let mixed = std::mem::take(&mut *seen.mixed.lock().unwrap());
    let (logins, checks, tunnels) = (
        seen.logins.load(Ordering::Relaxed),
        seen.checks.load(Ordering::Relaxed),
        seen.tunnels.load(Ordering::Relaxed),
    );
    assert!(
        mixed.is_empty(),
        "{} answers (of {logins} logins, {checks} checks and {tunnels} tunnels) mixed two generations; first: {:?}",
        mixed.len(),
        &mixed[..mixed.len().min(5)]
    );
    // The load ran all through the reloads, on every door.
    assert!(
        logins >= 100 && checks >= 100 && tunnels >= 50,
        "{logins} logins, {checks} checks, {tunnels} tunnels"
    );
    // Each sync server saw only its own generation's assertions.
    for (up, want_kid, want_aud) in [
        (&a.upstream, &expect.kid_a, &expect.aud_a),
        (&b.upstream, &expect.kid_b, &expect.aud_b),
    ] {
        let handshakes: Vec<_> = up
            .seen()
            .into_iter()
            .filter_map(|s| {
                s.headers
                    .get("x-drawbridge-assertion")
                    .map(|v| v.to_str().unwrap().to_owned())
            })
            .collect();
        assert!(!handshakes.is_empty(), "{want_aud} saw no tunnel");
        for jwt in handshakes {
            assert_eq!(
                (&kid(&jwt), &audience(&jwt)),
                (want_kid, want_aud),
                "a sync server got an assertion of another generation"
            );
        }
    }
    assert_eq!(
        metric(
            &http_client::get_text(&admin).await.1,
            "drawbridge_config_reloads_total{result=\"failure\"}",
        ),
        0.0
    );
}
