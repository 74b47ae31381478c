//! The audit log, through the real binary: every security event is written with its fields, the
//! file is reopened on SIGUSR1 (logrotate), and no token, cookie or session ID ever reaches it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::process::Running;
use support::ws::{bearer_client, close_of, echo_ok};
use support::{Gateway, Reply, Upstream, Webhook, client, login, post_bearer};
use tokio_tungstenite::tungstenite::Message;

const GOOD: &str = "provider-token-good-5e1d";
const GOOD_TOO: &str = "provider-token-other-8c2a";
const BAD: &str = "provider-token-bad-33f0";
const BROKEN: &str = "provider-token-broken-9a7b";

/// The lines of `event` whose fields include every pair of `want`.
fn find(path: &Path, event: &str, want: &[(&str, Value)]) -> Vec<Value> {
    support::json_lines(path)
        .into_iter()
        .filter(|l| l["event"] == event && want.iter().all(|(k, v)| &l[*k] == v))
        .collect()
}

/// The `sid` claim of a session token (the test reads its own token; the log must not).
fn sid_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

fn sid_hash(sid: &str) -> String {
    hex::encode(&Sha256::digest(sid.as_bytes())[..16])
}

async fn admin_post(admin: SocketAddr, path: &str, body: &str) -> u16 {
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("http://{admin}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    http.request(req).await.unwrap().status().as_u16()
}

fn signal(gw: &Running, sig: Signal) {
    kill(Pid::from_raw(gw.child.id() as i32), sig).unwrap();
}

fn hook_reply(req: &Value) -> Reply {
    match req["token"].as_str() {
        Some(GOOD) => Reply::allow("quinn", 600),
        Some(GOOD_TOO) => Reply::allow("rosa", 600),
        Some(BAD) => Reply::deny(serde_json::json!({"why": "no"})),
        _ => Reply::raw(500, "provider exploded"),
    }
}

#[tokio::test]
async fn audit_log_every_event_is_written_with_its_fields_and_no_secret() {
    let hook = Webhook::start(hook_reply).await;
    let up = Upstream::start().await;
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let builder = Gateway::builder(up.url())
        .demo_provider(&hook)
        .extra("circuit_failures = 0")
        .rate_limit_off()
        .extra(&format!("[audit]\npath = {:?}", audit.to_str().unwrap()));
    let gw = Running::start_with(builder, &[]);
    let http = client::https(&gw.ca.pem(), false);

    // Logins: allow (miss, then hit), deny, error.
    let session = login(&gw, "app", "demo", GOOD).await.session();
    login(&gw, "app", "demo", GOOD).await.session();
    assert_eq!(login(&gw, "app", "demo", BAD).await.status, 401);
    assert_eq!(login(&gw, "app", "demo", BROKEN).await.status, 502);
    assert_eventually!(
        find(&audit, "login", &[("result", "error".into())]).len() == 1,
        "no login error line:\n{:?}",
        support::json_lines(&audit)
    );
    let allows = find(&audit, "login", &[("result", "allow".into())]);
    assert_eq!(allows.len(), 2, "{allows:?}");
    for (line, cache) in allows.iter().zip(["miss", "hit"]) {
        assert_eq!(line["user"], "quinn");
        assert_eq!(line["app"], "app");
        assert_eq!(line["provider"], "demo");
        assert_eq!(line["door"], "login");
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["cache"], cache);
        assert!(line["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line.get("trace_id").is_none(), "tracing is off: {line}");
    }
    let deny = &find(&audit, "login", &[("result", "deny".into())])[0];
    assert_eq!(deny["reason"], "InvalidCredentials");
    assert_eq!(deny["cache"], "miss");
    assert!(deny.get("user").is_none(), "{deny}");
    let error = &find(&audit, "login", &[("result", "error".into())])[0];
    assert_eq!(error["reason"], "Internal");
    assert_eq!(error["client_ip"], "127.0.0.1");

    // A refresh.
    let sid = sid_of(&session);
    let hash = sid_hash(&sid);
    support::refresh(&http, &gw, &session).await;
    assert_eventually!(
        find(
            &audit,
            "session_refresh",
            &[("sid_hash", hash.clone().into())]
        )
        .len()
            == 1,
        "no refresh line:\n{:?}",
        support::json_lines(&audit)
    );
    let refresh = &find(&audit, "session_refresh", &[])[0];
    assert_eq!(refresh["user"], "quinn");
    assert_eq!(refresh["client_ip"], "127.0.0.1");
    assert!(refresh["expires_at"].as_u64().unwrap() > 0);

    // A tunnel the client closes, with bytes both ways.
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync/room?x=1", &session).await;
    echo_ok(&mut ws, "hello through the bridge").await;
    assert_eventually!(
        find(&audit, "tunnel_open", &[("sid_hash", hash.clone().into())]).len() == 1,
        "no tunnel_open line:\n{:?}",
        support::json_lines(&audit)
    );
    ws.send(Message::Close(None)).await.unwrap();
    let _ = close_of(&mut ws, Duration::from_secs(5)).await;
    assert_eventually!(
        find(&audit, "tunnel_close", &[("sid_hash", hash.clone().into())]).len() == 1,
        "no tunnel_close line:\n{:?}",
        support::json_lines(&audit)
    );
    let open = &find(&audit, "tunnel_open", &[])[0];
    assert_eq!(open["user"], "quinn");
    assert_eq!(open["path"], "/sync/room", "the query stays out");
    assert_eq!(open["client_ip"], "127.0.0.1");
    let close = &find(&audit, "tunnel_close", &[])[0];
    assert_eq!(close["user"], "quinn");
    assert_eq!(close["path"], "/sync/room");
    assert_eq!(close["reason"], "client");
    assert!(close.get("close_code").is_none(), "{close}");
    assert!(close["duration_ms"].as_u64().is_some(), "{close}");
    // The masked text frame and the close frame one way, the echo and the close the other.
    assert!(
        close["bytes_client_to_upstream"].as_u64().unwrap() >= 30,
        "{close}"
    );
    assert!(
        close["bytes_upstream_to_client"].as_u64().unwrap() >= 26,
        "{close}"
    );

    // A tunnel closed by logout: 4003 to the client, and the logout names who asked.
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &session).await;
    echo_ok(&mut ws, "still here").await;
    let (status, _, _) = post_bearer(&http, &gw.url("/auth/logout"), &session).await;
    assert_eq!(status, 200);
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4003));
    assert_eventually!(
        find(&audit, "tunnel_close", &[("reason", "revoked".into())]).len() == 1,
        "no tunnel_close line for the revoked session:\n{:?}",
        support::json_lines(&audit)
    );
    assert_eq!(
        find(&audit, "tunnel_close", &[("reason", "revoked".into())])[0]["close_code"],
        4003
    );
    let logout = &find(&audit, "logout", &[])[0];
    assert_eq!(logout["sid_hash"], hash.as_str());
    assert_eq!(logout["user"], "quinn");
    assert_eq!(logout["client_ip"], "127.0.0.1");

    // Admin revocations, by session and by user, name the admin caller.
    let other = login(&gw, "app", "demo", GOOD_TOO).await.session();
    let other_sid = sid_of(&other);
    assert_eq!(
        admin_post(
            gw.admin,
            "/sessions/revoke",
            &format!(r#"{{"sid": "{other_sid}"}}"#)
        )
        .await,
        200
    );
    assert_eq!(
        admin_post(gw.admin, "/sessions/revoke", r#"{"userID": "rosa"}"#).await,
        200
    );
    assert_eventually!(
        find(&audit, "admin_revoke", &[]).len() == 2,
        "no admin_revoke lines:\n{:?}",
        support::json_lines(&audit)
    );
    let by_sid = &find(
        &audit,
        "admin_revoke",
        &[("sid_hash", sid_hash(&other_sid).into())],
    )[0];
    assert!(
        by_sid["admin_caller"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{by_sid}"
    );
    assert!(by_sid["until"].as_u64().unwrap() > 0);
    let by_user = &find(&audit, "admin_revoke", &[("user", "rosa".into())])[0];
    assert!(
        by_user["admin_caller"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // Config reloads: the same file applies, a broken one is rejected.
    signal(&gw, Signal::SIGHUP);
    assert_eventually!(
        find(&audit, "config_reload", &[("result", "applied".into())]).len() == 1,
        "no config_reload line:\n{:?}",
        support::json_lines(&audit)
    );
    let config = gw.dir().join("drawbridge.toml");
    let good_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good_config}\n[bogus]\nkey = 1\n")).unwrap();
    signal(&gw, Signal::SIGHUP);
    assert_eventually!(
        find(&audit, "config_reload", &[("result", "rejected".into())]).len() == 1,
        "no rejected config_reload line:\n{:?}",
        support::json_lines(&audit)
    );
    assert_eq!(
        find(&audit, "config_reload", &[("result", "rejected".into())])[0]["problems"],
        1
    );
    std::fs::write(&config, good_config).unwrap();

    // A certificate reload.
    gw.ca
        .issue(&["localhost", "127.0.0.1"], 2002)
        .write(gw.dir());
    assert_eventually!(
        find(
            &audit,
            "certificate_reload",
            &[("result", "success".into())]
        )
        .len()
            == 1,
        "no certificate_reload line:\n{:?}",
        support::json_lines(&audit)
    );
    let cert = &find(&audit, "certificate_reload", &[])[0];
    assert!(cert["cert_file"].as_str().unwrap().ends_with("tls.crt"));
    assert!(cert["not_after"].as_i64().unwrap() > 0);

    // Nothing secret anywhere in the file.
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        GOOD, GOOD_TOO, BAD, BROKEN, &session, &other, &sid, &other_sid,
    ] {
        assert!(!text.contains(secret), "the audit log holds {secret:?}");
    }
    assert!(
        !text.contains("drawbridge_session"),
        "a cookie in the audit log"
    );
    assert!(!text.to_ascii_lowercase().contains("bearer"));
}

#[tokio::test]
async fn audit_log_sigusr1_reopens_the_file_after_rotation() {
    let hook = Webhook::start(hook_reply).await;
    let up = Upstream::start().await;
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let rotated = logs.path().join("audit.log.1");
    let builder = Gateway::builder(up.url())
        .demo_provider(&hook)
        .rate_limit_off()
        .extra(&format!("[audit]\npath = {:?}", audit.to_str().unwrap()));
    let gw = Running::start_with(builder, &[]);

    login(&gw, "app", "demo", GOOD).await.session();
    assert_eventually!(
        find(&audit, "login", &[]).len() == 1,
        "no login line before rotation"
    );
    std::fs::rename(&audit, &rotated).unwrap();
    signal(&gw, Signal::SIGUSR1);
    assert_eventually!(audit.exists(), "SIGUSR1 did not create a new file");
    login(&gw, "app", "demo", GOOD_TOO).await.session();
    assert_eventually!(
        find(&audit, "login", &[("user", "rosa".into())]).len() == 1,
        "the login after rotation did not reach the new file"
    );
    assert_eq!(find(&rotated, "login", &[]).len(), 1, "the old file grew");
    assert_eq!(find(&audit, "login", &[("user", "quinn".into())]).len(), 0);
}

#[tokio::test]
async fn audit_path_that_cannot_be_opened_fails_at_startup() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = support::Ca::new();
    let text = Gateway::builder(up.url())
        .extra("[audit]\npath = \"/nonexistent-dir/drawbridge/audit.log\"")
        .config_text(dir.path(), &ca);
    let path = dir.path().join("drawbridge.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent-dir/drawbridge/audit.log"),
        "{stderr}"
    );
}

#[tokio::test]
async fn audit_and_access_logs_with_terminal_controls_in_a_user_id_escape_them() {
    // A user ID as a provider may send it: an 8-bit CSI (clear screen), DEL, other C1 controls,
    // a 7-bit ESC sequence and a newline that would forge a line.
    const USER: &str = "mallory\u{9b}2J\u{7f}\u{85}\u{1b}[31m\n{\"event\":\"forged\"}";
    let hook = Webhook::start(|req: &Value| match req["token"].as_str() {
        Some(GOOD) => Reply::allow(USER, 600),
        _ => Reply::deny(serde_json::json!({})),
    })
    .await;
    let up = Upstream::start().await;
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let access = logs.path().join("access.log");
    let builder = Gateway::builder(up.url())
        .demo_provider(&hook)
        .rate_limit_off()
        .extra(&format!(
            "[log]\naccess = true\naccess_path = {:?}\n[audit]\npath = {:?}",
            access.to_str().unwrap(),
            audit.to_str().unwrap()
        ));
    // In-process (the same writers as the binary's): `Running` sets a `[log]` table of its own.
    let gw = builder.spawn().await;
    let http = client::https(&gw.ca.pem(), false);
    let session = login(&gw, "app", "demo", GOOD).await.session();
    // Also under the revoking admin's user key.
    support::get_bearer(&http, &gw.url("/auth/userinfo"), &session).await;
    let revoke = serde_json::json!({"userID": USER}).to_string();
    assert_eq!(
        admin_post(gw.admin_addr, "/sessions/revoke", &revoke).await,
        200
    );
    assert_eventually!(
        find(&audit, "login", &[("user", USER.into())]).len() == 1
            && support::json_lines(&access)
                .iter()
                .any(|l| l["user"] == USER),
        "the user's lines never came: {:?} {:?}",
        support::json_lines(&audit),
        support::json_lines(&access)
    );
    for path in [&audit, &access] {
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines() {
            let raw: Vec<char> = line.chars().filter(|c| c.is_control()).collect();
            assert!(raw.is_empty(), "{}: raw {raw:?} in {line}", path.display());
        }
        assert!(
            text.contains(r"mallory\u009b2J\u007f\u0085\u001b[31m\n"),
            "{text}"
        );
        assert!(
            support::json_lines(path)
                .iter()
                .all(|l| l["event"] != "forged"),
            "a forged line"
        );
    }
}
