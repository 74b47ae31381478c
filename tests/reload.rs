//! Live reconfiguration through the real binary: with 200 tunnels relaying and logins running,
//! the config file is replaced (providers renamed, moved and grouped, the session key rotated, the
//! rate limit changed) and SIGHUP sent, and nothing a client holds breaks. A broken file changes
//! nothing. The client CA is swapped under a running in-process gateway.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::process::Running;
use support::ws::{Ws, bearer_client};
use support::{Gateway, Upstream, Webhook, client, get_bearer, login, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const TUNNELS: usize = 200;

/// The default `reload.settle_ms`: how long a changed file must stay unchanged before it applies.
const SETTLE: Duration = Duration::from_millis(500);

/// Replaces `path` the way a ConfigMap update does: the new file appears whole, never half written.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn key_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

async fn metrics(gw: &Running) -> String {
    client::get_text(&format!("http://{}/metrics", gw.admin))
        .await
        .1
}

/// Counts the reloads with `result`.
async fn reloads(gw: &Running, result: &str) -> f64 {
    metric(
        &metrics(gw).await,
        &format!("drawbridge_config_reloads_total{{result=\"{result}\"}}"),
    )
}

/// One tunnel echoing a message every 100 ms until `stop`; counts every echo that failed.
async fn keep_echoing(mut ws: Ws, stop: Arc<AtomicBool>, failures: Arc<AtomicUsize>) -> Ws {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let text = format!("m{n}");
        let ok = ws.send(Message::text(text.clone())).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(5), ws.next()).await,
                Ok(Some(Ok(m))) if m == Message::text(text)
            );
        if !ok {
            failures.fetch_add(1, Ordering::SeqCst);
            break;
        }
        support::pace(100).await;
    }
    ws
}

/// Logins one after another until `stop`; counts every one that did not succeed.
async fn keep_logging_in(
    gw: Arc<Running>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
) {
    let http = client::https(&gw.ca.pem(), false);
    let url = gw.url("/auth/login");
    while !stop.load(Ordering::Relaxed) {
        let body = support::login_body("app", "demo", "load-token");
        let (status, _, _) = support::post_json(&http, &url, &body, None).await;
        if status != 200 {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_by_file_and_sighup_closes_no_tunnel_and_fails_no_login() {
    let up = Upstream::start().await;
    let hook_a = Webhook::users(3600).await;
    let hook_b = Webhook::users(3600).await;
    let keys = tempfile::tempdir().unwrap();
    let k1 = key_file(keys.path(), "k1.pem");
    let k2 = key_file(keys.path(), "k2.pem");
    let gw = Arc::new(Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&hook_a)
            .webhook_provider("legacy", &hook_a)
            .extra(&format!(
                "[session]\nkey_file = {k1:?}\n[rate_limit]\nenabled = true\nper_second = 5000\nburst = 5000"
            )),
        &[],
    ));
    let path = gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();

    // 200 tunnels of 20 sessions, each echoing, and one client logging in without a pause.
    let old_token = login(&*gw, "app", "demo", "ann-token").await.session();
    let mut sessions = vec![old_token.clone()];
    for i in 1..20 {
        sessions.push(
            login(&*gw, "app", "demo", &format!("user{i}-token"))
                .await
                .session(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let echo_failures = Arc::new(AtomicUsize::new(0));
    let mut tunnels = Vec::new();
    for i in 0..TUNNELS {
        let ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &sessions[i % 20]).await;
        tunnels.push(tokio::spawn(keep_echoing(
            ws,
            stop.clone(),
            echo_failures.clone(),
        )));
    }
    let (logins, login_failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loader = tokio::spawn(keep_logging_in(
        gw.clone(),
        stop.clone(),
        logins.clone(),
        login_failures.clone(),
    ));
    let hash_before = metrics(&gw).await;
    assert!(
        hash_before.contains("drawbridge_config_info{hash="),
        "{hash_before}"
    );

    // The file replaced: `demo` moves to another URL, `legacy` becomes `renamed`, a group joins,
    // the session key rotates and the rate limit changes.
    let next = original
        .replace(
            &format!(
                "[providers.demo]\nkind = \"webhook\"\nurl = \"{}\"",
                hook_a.url()
            ),
            &format!(
                "[providers.demo]\nkind = \"webhook\"\nurl = \"{}\"",
                hook_b.url()
            ),
        )
        .replace("[providers.legacy]", "[providers.renamed]")
        .replace(&k1, &k2)
        .replace("per_second = 5000", "per_second = 4000")
        + "[providers.both]\nkind = \"group\"\nmembers = [\"demo\", \"renamed\"]\nstrategy = \"first_success\"\n";
    assert_ne!(next, original);
    let b_calls = hook_b.calls();
    let written = Instant::now();
    replace(&path, &next);
    let mut renamed = 0;
    while written.elapsed() < SETTLE + Duration::from_secs(1) {
        renamed = login(&*gw, "app", "renamed", "bob-token").await.status;
        if renamed == 200 && hook_b.calls() > b_calls {
            break;
        }
        support::pace(20).await;
    }
    assert_eq!(
        renamed, 200,
        "the renamed provider did not answer within 1 s of the settle time"
    );
    // Applied: a token demo has never seen goes to demo's new URL (the load's own token may still
    // be on its way when the renamed provider first answers).
    if hook_b.calls() == b_calls {
        assert_eq!(login(&*gw, "app", "demo", "dana-token").await.status, 200);
    }
    assert!(
        hook_b.calls() > b_calls,
        "demo's new URL was not called once the reload applied"
    );
    assert_eq!(login(&*gw, "app", "legacy", "bob-token").await.status, 401);
    assert_eq!(login(&*gw, "app", "both", "bob-token").await.status, 200);
    assert!(reloads(&gw, "success").await >= 1.0);

    // Sessions signed before still verify; new ones carry the new key.
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, _) = get_bearer(&http, &gw.url("/auth/userinfo"), &old_token).await;
    assert_eq!(
        status, 200,
        "a session of the rotated key no longer verifies"
    );
    let fresh = login(&*gw, "app", "demo", "carol-token").await.session();
    assert_ne!(kid(&fresh), kid(&old_token));
    let (_, _, jwks) = get_bearer(&http, &gw.url("/.well-known/jwks.json"), &fresh).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");

    // SIGHUP reloads too (the same file: nothing changes, and nothing breaks).
    let before = reloads(&gw, "success").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert_eventually!(
        gw.logs().contains("\"trigger\":\"sighup\""),
        "no reload logged after SIGHUP"
    );
    assert!(reloads(&gw, "success").await > before);
    assert_eq!(
        kid(&login(&*gw, "app", "demo", "dan-token").await.session()),
        kid(&fresh)
    );

    // A broken file changes nothing, and the log names the key.
    let live_hash = metrics(&gw)
        .await
        .lines()
        .find(|l| l.starts_with("drawbridge_config_info{"))
        .unwrap()
        .to_owned();
    let failures = reloads(&gw, "failure").await;
    replace(
        &path,
        &next.replace("[session]\n", "[session]\nbogus_seconds = 1\n"),
    );
    assert_eventually!(
        reloads(&gw, "failure").await > failures,
        "the broken file was not rejected"
    );
    assert!(gw.logs().contains("session.bogus_seconds"), "{}", gw.logs());
    assert_eq!(login(&*gw, "app", "renamed", "bob-token").await.status, 200);
    assert_eq!(login(&*gw, "app", "legacy", "bob-token").await.status, 401);
    assert!(metrics(&gw).await.contains(&live_hash));

    stop.store(true, Ordering::SeqCst);
    loader.await.unwrap();
    let mut open = Vec::new();
    for t in tunnels {
        open.push(t.await.unwrap());
    }
    assert_eq!(echo_failures.load(Ordering::SeqCst), 0, "tunnels broke");
    assert_eq!(login_failures.load(Ordering::SeqCst), 0, "logins failed");
    assert!(
        logins.load(Ordering::SeqCst) > 10,
        "the login load never ran"
    );
    for ws in &mut open[..5] {
        support::ws::echo_ok(ws, "after").await;
    }
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "drawbridge_tunnels_active"),
        TUNNELS as f64,
        "{text}"
    );
}

/// Whether a client presenting `cert` gets an answer over TLS.
async fn answered(addr: std::net::SocketAddr, ca_pem: &str, cert: &support::Issued) -> bool {
    let attempt = async {
        let mut tls = client::connect_tls(addr, ca_pem, Some(cert), &[b"http/1.1"]).await?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    };
    matches!(attempt.await, Ok(n) if n > 0)
}

/// A real in-process gateway started from a config file it reloads when the file changes.
/// Counts the successful reloads of an in-process gateway.
async fn successful_reloads(gw: &Gateway) -> f64 {
    metric(
        &gw.metrics().await,
        "drawbridge_config_reloads_total{result=\"success\"}",
    )
}

#[tokio::test]
async fn reload_keeps_unchanged_providers_answers_and_drops_changed_ones() {
    let up = Upstream::start().await;
    let (hook_a, hook_b, hook_c) = (
        Webhook::users(3600).await,
        Webhook::users(3600).await,
        Webhook::users(3600).await,
    );
    let gw = Gateway::builder(up.url())
        .webhook_provider("kept", &hook_a)
        .webhook_provider("moved", &hook_b)
        .rate_limit_off()
        .spawn_reloading_in(tempfile::tempdir().unwrap())
        .await;
    assert_eq!(login(&gw, "app", "kept", "ann-token").await.status, 200);
    assert_eq!(login(&gw, "app", "moved", "ann-token").await.status, 200);
    assert_eq!((hook_a.calls(), hook_b.calls()), (1, 1));

    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    replace(
        &gw.config_path(),
        &text.replace(&hook_b.url(), &hook_c.url()),
    );
    assert_eventually!(
        successful_reloads(&gw).await >= 1.0,
        "the changed file was not reloaded"
    );
    assert_eq!(login(&gw, "app", "kept", "ann-token").await.status, 200);
    assert_eq!(login(&gw, "app", "moved", "ann-token").await.status, 200);
    assert_eq!(
        hook_a.calls(),
        1,
        "the unchanged provider's cached answer was dropped"
    );
    assert_eq!(hook_b.calls(), 1, "the old URL was called after the reload");
    assert_eq!(
        hook_c.calls(),
        1,
        "the changed provider answered from its old cache"
    );

    // The reload's own reads of the files are not changes: no reload follows without one.
    support::pace(600).await;
    let settled = successful_reloads(&gw).await;
    support::pace(1000).await;
    assert_eq!(
        successful_reloads(&gw).await,
        settled,
        "reloads keep coming with no change"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn logs_written_beside_the_config_start_no_reload() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let (audit, access) = (dir.path().join("audit.log"), dir.path().join("access.log"));
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .rate_limit_off()
        .extra(&format!(
            "[audit]\npath = {audit:?}\n[log]\naccess = true\naccess_path = {access:?}"
        ))
        .spawn_reloading_in(dir)
        .await;

    // A second and a half of logins: both logs are written many times, in the config's directory.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(login(&gw, "app", "demo", "ann-token").await.status, 200);
        support::pace(20).await;
    }
    support::pace(700).await;
    assert!(
        support::json_lines(&access).len() > 10,
        "the access log was not written beside the config"
    );
    assert_eq!(
        successful_reloads(&gw).await,
        0.0,
        "a log line beside the config reloaded it"
    );
    let reload_lines = || {
        support::json_lines(&audit)
            .into_iter()
            .filter(|l| l["event"] == "config_reload")
            .count()
    };
    assert_eq!(reload_lines(), 0);

    // An edit of the config itself still reloads it, once.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    replace(&gw.config_path(), &format!("{text}\n# edited\n"));
    assert_eventually!(
        successful_reloads(&gw).await >= 1.0,
        "the edit was not reloaded"
    );
    support::pace(1000).await;
    assert_eq!(
        successful_reloads(&gw).await,
        1.0,
        "the reload's own audit line started another"
    );
    assert_eventually!(reload_lines() == 1, "no config_reload line for the edit");
    gw.shutdown().await;
}

#[tokio::test]
async fn reload_client_ca_replaced_applies_to_new_handshakes_only() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .require_client_certs()
        .spawn_reloading_in(tempfile::tempdir().unwrap())
        .await;
    let (addr, ca) = (gw.addr, gw.ca.pem());
    let old_client = gw.ca.issue(&["old-client"], 7);
    assert!(
        answered(addr, &ca, &old_client).await,
        "the first CA's client was refused"
    );
    // A connection opened under the old CA stays usable after the swap.
    let mut held = client::h1_over(
        client::connect_tls(addr, &ca, Some(&old_client), &[b"http/1.1"])
            .await
            .unwrap(),
    )
    .await;

    let other = support::Ca::new();
    let new_client = other.issue(&["new-client"], 8);
    std::fs::write(gw.dir.path().join("ca.crt"), other.pem()).unwrap();
    assert_eventually!(
        answered(addr, &ca, &new_client).await,
        "the new CA's client was never accepted"
    );
    assert!(!answered(addr, &ca, &old_client).await);
    let resp = held
        .send_request(client::request("GET", "/held", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(successful_reloads(&gw).await >= 1.0);
    gw.shutdown().await;
}

#[test]
fn check_against_running_config_names_the_keys_that_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running.toml");
    let next = dir.path().join("next.toml");
    let base = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[listen]\nplaintext = true\n";
    std::fs::write(&running, base).unwrap();
    std::fs::write(
        &next,
        format!("{base}addr = \"127.0.0.1:9999\"\n[rate_limit]\nenabled = false\n"),
    )
    .unwrap();
    let run = |config: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drawbridge"))
            .args(["check", "--skip-files", "--config"])
            .arg(config)
            .arg("--against")
            .arg(&running)
            .env_remove("DRAWBRIDGE_CONFIG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let changed = run(&next);
    assert!(changed.contains("need a restart: listen.addr"), "{changed}");
    assert!(!changed.contains("rate_limit"), "{changed}");
    assert!(run(&running).contains("a reload applies every change"));
}

/// Ends a TLS handshake with garbage, which the gateway logs at debug level only.
async fn failed_handshake(gw: &Running) {
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"not a TLS hello\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
}

/// `log.level` follows the file without a restart: debug lines appear once it asks for them, and
/// stop again when it no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_log_level_applies_without_a_restart() {
    let up = Upstream::start().await;
    let gw = Running::start(&up.url(), "", &[]);
    let handshake_lines = || gw.logs().matches("TLS handshake failed").count();
    failed_handshake(&gw).await;
    assert_eq!(handshake_lines(), 0, "debug lines at the default level");

    let info = std::fs::read_to_string(gw.config_path()).unwrap();
    let debug = info.replace(
        "format = \"json\"\n",
        "format = \"json\"\nlevel = \"debug\"\n",
    );
    assert_ne!(
        debug, info,
        "the test config has a [log] format line to extend"
    );
    replace(&gw.config_path(), &debug);
    assert_eventually!(
        gw.logs().contains("log level changed"),
        "the new level was not applied"
    );
    failed_handshake(&gw).await;
    assert_eventually!(
        handshake_lines() == 1,
        "no debug line after the level changed"
    );

    replace(&gw.config_path(), &info);
    assert_eventually!(
        gw.logs().matches("log level changed").count() == 2,
        "the level was not set back"
    );
    failed_handshake(&gw).await;
    support::pace(300).await;
    assert_eq!(
        handshake_lines(),
        1,
        "debug lines after the level went back to info"
    );
    assert!(
        !gw.logs()
            .contains("keep their running values until a restart"),
        "log.level was named as needing a restart"
    );
}

/// Sends SIGHUP to the binary.
fn hangup(gw: &Running) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

/// The JSON log lines of `gw` whose message is `message`.
fn log_lines(gw: &Running, message: &str) -> Vec<serde_json::Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

/// Logins for the app `other`, which no `[apps]` table lists, until `stop`; counts each 200.
async fn keep_trying_an_unlisted_app(
    gw: Arc<Running>,
    stop: Arc<AtomicBool>,
    tries: Arc<AtomicUsize>,
    admitted: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        if login(&*gw, "other", "demo", "ann-token").await.status == 200 {
            admitted.fetch_add(1, Ordering::SeqCst);
        }
        tries.fetch_add(1, Ordering::SeqCst);
        support::pace(10).await;
    }
}

const APPS: &str = "[apps.app]\nproviders = [\"demo\"]\n";

/// A config written in place in two pieces, the first a valid file without `[apps]` and the
/// second after a pause shorter than the settle time: the half file never applies (a login for an
/// unlisted app is refused throughout), and the whole one applies once it has settled, in one
/// reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_written_in_place_in_two_pieces_applies_only_whole_once_settled() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = Arc::new(Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .rate_limit_off()
            .extra(APPS),
        &[],
    ));
    assert_eq!(login(&*gw, "app", "demo", "ann-token").await.status, 200);
    assert_ne!(login(&*gw, "other", "demo", "ann-token").await.status, 200);
    let path = gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let first = original.replace(APPS, "");
    assert_ne!(first, original, "the config has an [apps] table to move");
    let second = format!("{APPS}[apps.late]\nproviders = [\"demo\"]\n");
    assert_ne!(login(&*gw, "late", "demo", "ann-token").await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (tries, admitted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = tokio::spawn(keep_trying_an_unlisted_app(
        gw.clone(),
        stop.clone(),
        tries.clone(),
        admitted.clone(),
    ));
    // In place: truncate, the first piece, a pause of 60 % of the settle time, the second piece.
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(first.as_bytes()).unwrap();
    support::pace(SETTLE.as_millis() as u64 * 6 / 10).await;
    file.write_all(second.as_bytes()).unwrap();
    drop(file);
    let whole = Instant::now();
    assert_eventually!(
        login(&*gw, "late", "demo", "ann-token").await.status == 200,
        "the whole file was never applied"
    );
    let applied_after = whole.elapsed();
    // A little longer: a late second reload of the half file would show here.
    support::pace(300).await;
    stop.store(true, Ordering::SeqCst);
    prober.await.unwrap();

    assert!(tries.load(Ordering::SeqCst) > 10, "the prober barely ran");
    assert_eq!(
        admitted.load(Ordering::SeqCst),
        0,
        "a login for an unlisted app got 200: the half-written file was applied"
    );
    assert!(
        applied_after + Duration::from_millis(50) >= SETTLE,
        "applied {applied_after:?} after the last write, before the file had settled"
    );
    assert_ne!(login(&*gw, "other", "demo", "ann-token").await.status, 200);
    assert_eq!(reloads(&gw, "success").await, 1.0, "{}", gw.logs());
    assert_eq!(reloads(&gw, "failure").await, 0.0, "{}", gw.logs());
}

/// SIGHUP applies the file as it is, without the settle time: with `reload.settle_ms = 5000` a
/// file written in place waits, and SIGHUP applies it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_written_file_at_once_without_the_settle_time() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let settle = Duration::from_secs(5);
    let gw = Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .rate_limit_off()
            .extra(&format!(
                "[reload]\nsettle_ms = {}\n{APPS}",
                settle.as_millis()
            )),
        &[],
    );
    let path = gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{original}[apps.late]\nproviders = [\"demo\"]\n"),
    )
    .unwrap();
    let written = Instant::now();
    // Well within the settle time, the file waits.
    while written.elapsed() < settle / 5 {
        assert_ne!(
            login(&gw, "late", "demo", "ann-token").await.status,
            200,
            "the file applied before the settle time"
        );
        support::pace(50).await;
    }
    hangup(&gw);
    assert_eventually!(
        login(&gw, "late", "demo", "ann-token").await.status == 200,
        "SIGHUP did not apply the file"
    );
    assert!(
        written.elapsed() < settle,
        "SIGHUP waited for the settle time ({:?})",
        written.elapsed()
    );
    let applied = log_lines(&gw, "config reloaded");
    assert_eq!(applied.len(), 1, "{}", gw.logs());
    assert_eq!(applied[0]["trigger"], "sighup");
}

/// A reload that lifts restrictions says so at warn level, naming each key; one that puts them
/// back does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_lifting_restrictions_warns_naming_each_key() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = Running::start_with(
        Gateway::builder(up.url())
            .require_client_certs()
            .demo_provider(&hook)
            .extra(&format!("signing_secret = \"c2VjcmV0\"\n{APPS}")),
        &[],
    );
    let path = gw.config_path();
    let strict = std::fs::read_to_string(&path).unwrap();
    let ca_line = strict
        .lines()
        .find(|l| l.starts_with("client_ca_file = "))
        .unwrap()
        .to_owned();
    let loose = strict
        .replace(&format!("{ca_line}\n"), "")
        .replace("signing_secret = \"c2VjcmV0\"\n", "")
        .replace(APPS, "")
        .replace(
            "[upstream]\n",
            "[upstream]\npublic_upgrade_paths = [\"/public\"]\n",
        )
        .replace("[log]\n", "[rate_limit]\nenabled = false\n[log]\n");
    replace(&path, &loose);
    assert_eventually!(
        log_lines(&gw, "config reloaded").len() == 1,
        "the loosened file was not reloaded"
    );
    let warned = log_lines(
        &gw,
        "config reloaded without restrictions the running config had",
    );
    assert_eq!(warned.len(), 1, "{}", gw.logs());
    assert_eq!(warned[0]["level"], "WARN");
    assert_eq!(
        warned[0]["keys"],
        "apps, tls.client_ca_file, providers.demo.signing_secret, \
         upstream.public_upgrade_paths, rate_limit.enabled"
    );

    replace(&path, &strict);
    assert_eventually!(
        log_lines(&gw, "config reloaded").len() == 2,
        "the strict file was not reloaded"
    );
    assert_eq!(
        log_lines(
            &gw,
            "config reloaded without restrictions the running config had"
        )
        .len(),
        1,
        "putting restrictions back warned of lifting them"
    );
}

/// A new certificate and key written in place one after the other, the certificate in two pieces
/// a pause apart: the watcher applies the pair once it settled, and never tries a half pair.
#[tokio::test]
async fn certificate_and_key_written_in_pieces_apply_whole_without_a_failed_reload() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    let next = gw.ca.issue(&["localhost", "127.0.0.1"], 2002);
    let (head, tail) = next.cert_pem.split_at(next.cert_pem.len() / 2);
    std::fs::write(gw.key_file(), &next.key_pem).unwrap();
    let mut cert = std::fs::File::create(gw.cert_file()).unwrap();
    cert.write_all(head.as_bytes()).unwrap();
    support::pace(SETTLE.as_millis() as u64 * 6 / 10).await;
    cert.write_all(tail.as_bytes()).unwrap();
    drop(cert);
    assert_eventually!(
        client::peer_serial(&gw.tls(b"http/1.1").await) == 2002,
        "the new certificate was never served"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "drawbridge_tls_cert_reloads_total{result=\"failure\"}"),
        0.0,
        "a half-written pair was tried"
    );
    assert_eq!(
        metric(&m, "drawbridge_tls_cert_reloads_total{result=\"success\"}"),
        1.0
    );
    gw.shutdown().await;
}

/// The byte size of `path` (0 while it does not exist).
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// At `log.level = "trace"`, with the diagnostic, audit and access logs all in the config's
/// directory, the gateway's own writing starts neither more logging nor a reload: the logs stop
/// growing once it is idle, and an edit of the config still reloads it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_beside_the_config_stay_bounded_while_idle_and_start_no_reload() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let (audit, access) = (dir.path().join("audit.log"), dir.path().join("access.log"));
    let gw = Running::start_logging_beside_config(
        dir,
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .rate_limit_off()
            .extra(&format!("[audit]\npath = {audit:?}")),
        &format!("level = \"trace\"\naccess = true\naccess_path = {access:?}\n"),
        "drawbridge.log",
    );
    let log = gw.log_file().unwrap().to_owned();
    let logs = [log.as_path(), audit.as_path(), access.as_path()];
    let total = || logs.iter().map(|p| size(p)).sum::<u64>();

    // Some traffic first, so that every log has been written beside the config.
    for _ in 0..5 {
        assert_eq!(login(&gw, "app", "demo", "ann-token").await.status, 200);
    }
    assert_eventually!(
        size(&audit) > 0 && size(&access) > 0,
        "the audit and access logs were not written beside the config"
    );
    // Idle: the logs come to rest (the last lines of the traffic land), and then stay there.
    let mut last = total();
    assert_eventually!(
        {
            support::pace(300).await;
            let now = total();
            std::mem::replace(&mut last, now) == now
        },
        "the logs kept growing while idle: {} bytes",
        total()
    );
    let rest = total();
    support::pace(2000).await;
    let grown = total() - rest;
    assert!(
        grown < 1024,
        "the idle gateway wrote {grown} bytes of log in 2 s"
    );
    assert_eq!(reloads(&gw, "success").await, 0.0);
    assert_eq!(reloads(&gw, "failure").await, 0.0);
    assert!(log_lines(&gw, "config reloaded").is_empty());

    // An edit of the config still reloads it, once, and the logs come to rest again.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    replace(&gw.config_path(), &format!("{text}\n# edited\n"));
    assert_eventually!(
        reloads(&gw, "success").await == 1.0,
        "the edit was not reloaded"
    );
    let mut last = total();
    assert_eventually!(
        {
            support::pace(300).await;
            let now = total();
            std::mem::replace(&mut last, now) == now
        },
        "the logs kept growing after the reload: {} bytes",
        total()
    );
    assert_eq!(
        reloads(&gw, "success").await,
        1.0,
        "a reload followed the reload"
    );
    assert_eq!(log_lines(&gw, "config reloaded").len(), 1);
}

/// The kids `/.well-known/jwks.json` of `gw` serves.
async fn jwks_kids(gw: &Running) -> Vec<String> {
    let http = client::https(&gw.ca.pem(), false);
    let (_, _, jwks) = get_bearer(&http, &gw.url("/.well-known/jwks.json"), "").await;
    jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the JWKS of `gw` for 10 s until its kids satisfy `want`: them, or the last ones seen.
async fn kids_once(
    gw: &Running,
    want: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kids = jwks_kids(gw).await;
        if want(&kids) {
            return Ok(kids);
        }
        if Instant::now() > deadline {
            return Err(kids);
        }
        support::pace(25).await;
    }
}

/// The watched files follow the config: a session key the config moves to a directory that was
/// not watched at start is watched from the reload on, so a new key written there applies
/// without SIGHUP, and the JWKS serves its kid (beside the earlier ones, which keep verifying).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_key_moved_to_a_new_directory_applies_its_rewrite_without_sighup() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key_a = key_file(dir_a.path(), "session.pem");
    let gw = Running::start_with(
        Gateway::builder(up.url())
            .demo_provider(&hook)
            .extra(&format!("[session]\nkey_file = {key_a:?}\n")),
        &[],
    );
    let at_start = jwks_kids(&gw).await;
    assert_eq!(at_start.len(), 1, "{at_start:?}");

    // The config now names a key in dir B (a new key: the reload shows that it applied).
    let key_b = key_file(dir_b.path(), "session.pem");
    let path = gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    replace(&path, &original.replace(&key_a, &key_b));
    let moved = kids_once(&gw, |kids| kids.iter().any(|k| !at_start.contains(k)))
        .await
        .unwrap_or_else(|kids| {
            panic!(
                "the config naming the key in dir B was not applied (JWKS {kids:?}): {}",
                gw.logs()
            )
        });
    let applied = reloads(&gw, "success").await;

    // A new signing key written to dir B, no SIGHUP: the watcher sees it.
    let rotated = dir_b.path().join("session.pem.tmp");
    std::fs::write(
        &rotated,
        drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    std::fs::rename(&rotated, &key_b).unwrap();
    kids_once(&gw, |kids| kids.iter().any(|k| !moved.contains(k)))
        .await
        .unwrap_or_else(|kids| {
            panic!(
                "the key rewritten in dir B was not applied without SIGHUP (JWKS {kids:?}): {}",
                gw.logs()
            )
        });
    assert_eq!(reloads(&gw, "success").await, applied + 1.0);
    assert_eq!(reloads(&gw, "failure").await, 0.0, "{}", gw.logs());
}
