#![allow(dead_code, unused_imports, unreachable_pub)]
//! Shared test parts: certificates made at test time, a real gateway on 127.0.0.1:0, one stub
//! server under every stand-in (webhook, upstream, Ditto, JWKS), TLS clients, metrics reading,
//! and polling with a deadline.

pub mod certs;
pub mod client;
pub mod ditto;
pub mod haproxy;
pub mod nginx;
pub mod process;
pub mod redis;
pub mod server;
pub mod tokens;
pub mod upstream;
pub mod webhook;
pub mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drawbridge::{App, Config};
use tokio::sync::oneshot;

pub use certs::{Ca, Issued};
pub use client::status_of;
pub use server::{Served, serve};
pub use upstream::Upstream;
pub use webhook::{Answer, Reply, Switch, Webhook};

/// Polls `$cond` until it is true or the deadline passes.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if $cond { break; }
            if std::time::Instant::now() > deadline { panic!($($msg)+); }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }};
}

/// A real drawbridge, in process, on loopback.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub ca: Ca,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), drawbridge::AppError>>>,
}

/// Builder for a gateway config: the listener and admin ports are always `127.0.0.1:0`.
pub struct GatewayBuilder {
    listen_settings: String,
    upstream: String,
    upstream_settings: String,
    extra: String,
    plaintext: bool,
    client_ca: bool,
}

impl Gateway {
    /// A TLS gateway in front of `upstream` (e.g. `http://127.0.0.1:1234`).
    pub fn builder(upstream: impl Into<String>) -> GatewayBuilder {
        GatewayBuilder {
            listen_settings: String::new(),
            upstream: upstream.into(),
            upstream_settings: String::new(),
            extra: String::new(),
            plaintext: false,
            client_ca: false,
        }
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// A TLS connection to the gateway offering `alpn`.
    pub async fn tls(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        client::connect_tls(self.addr, &self.ca.pem(), None, &[alpn])
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        client::get_text(&format!("http://{}/metrics", self.admin_addr))
            .await
            .1
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("gateway task").expect("gateway run");
        }
    }

    /// Sends the shutdown signal without waiting.
    pub fn trigger_shutdown(
        &mut self,
    ) -> tokio::task::JoinHandle<Result<(), drawbridge::AppError>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl GatewayBuilder {
    /// Extra TOML appended to the generated config (its own tables only).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// A `key = value` line for the `[listen]` table.
    pub fn listen_setting(mut self, line: &str) -> Self {
        self.listen_settings.push_str(line);
        self.listen_settings.push('\n');
        self
    }

    /// A `key = value` line for the `[upstream]` table.
    pub fn upstream_setting(mut self, line: &str) -> Self {
        self.upstream_settings.push_str(line);
        self.upstream_settings.push('\n');
        self
    }

    /// A `[providers.<name>]` webhook provider calling `hook`. Settings added next with
    /// [`GatewayBuilder::extra`], before any other table, belong to this provider.
    pub fn webhook_provider(self, name: &str, hook: &Webhook) -> Self {
        self.extra(&format!(
            "[providers.{name}]\nkind = \"webhook\"\nurl = \"{}\"",
            hook.url()
        ))
    }

    /// The provider most tests log in with: the webhook provider `demo`, calling `hook`.
    pub fn demo_provider(self, hook: &Webhook) -> Self {
        self.webhook_provider("demo", hook)
    }

    /// `upstream.public_upgrade_paths`: upgrades under these paths open without a session.
    pub fn public_upgrade_paths(self, paths: &[&str]) -> Self {
        self.upstream_setting(&format!("public_upgrade_paths = {paths:?}"))
    }

    /// No login rate limit, for tests that log in faster than one client may.
    pub fn rate_limit_off(self) -> Self {
        self.extra("[rate_limit]\nenabled = false")
    }

    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Require client certificates signed by the gateway's test CA.
    pub fn require_client_certs(mut self) -> Self {
        self.client_ca = true;
        self
    }

    /// The config text this builder makes, with files written under `dir`.
    pub fn config_text(&self, dir: &Path, ca: &Ca) -> String {
        let server = ca.issue(&["localhost", "127.0.0.1"], 1001);
        server.write(dir);
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        let client_ca = if self.client_ca {
            format!("client_ca_file = {:?}\n", dir.join("ca.crt"))
        } else {
            String::new()
        };
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nplaintext = {}\n{}[tls]\ncert_file = {:?}\nkey_file = {:?}\n{client_ca}\
             [admin]\naddr = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n{}{}",
            self.plaintext,
            self.listen_settings,
            dir.join("tls.crt"),
            dir.join("tls.key"),
            self.upstream,
            self.upstream_settings,
            self.extra,
        )
    }

    pub async fn spawn(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        let text = self.config_text(dir.path(), &ca);
        let config =
            Config::from_toml(&text, &drawbridge::config::System).expect("test config is valid");
        let app = App::bind(config).await.expect("gateway binds");
        Gateway::run(app, ca, dir).await
    }

    /// A gateway whose config is the file [`Gateway::config_path`] in `dir` (written with its
    /// certificates there), reloaded when the file changes or on SIGHUP.
    pub async fn spawn_reloading_in(self, dir: tempfile::TempDir) -> Gateway {
        let ca = Ca::new();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, self.config_text(dir.path(), &ca)).unwrap();
        let config = Config::load(&path).expect("test config is valid");
        let app = App::bind(config)
            .await
            .expect("gateway binds")
            .reload_on_sighup(path);
        Gateway::run(app, ca, dir).await
    }
}

/// The config file's name in a reloading gateway's directory.
const CONFIG_FILE: &str = "drawbridge.toml";

impl Gateway {
    /// Runs `app` until shutdown and waits until it is ready.
    async fn run(app: App, ca: Ca, dir: tempfile::TempDir) -> Self {
        let (addr, admin_addr) = (app.local_addr(), app.admin_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let gw = Gateway {
            addr,
            admin_addr,
            ca,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        };
        let ready = format!("http://{}/readyz", gw.admin_addr);
        assert_eventually!(
            client::get_text(&ready).await.0 == 200,
            "gateway never became ready"
        );
        gw
    }

    /// The config file of a gateway started by [`GatewayBuilder::spawn_reloading_in`].
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }
}

/// Where a client reaches drawbridge: an in-process [`Gateway`] or a [`process::Running`] binary.
pub trait Front {
    /// The PEM of the CA that issued the gateway's certificate.
    fn ca_pem(&self) -> String;
    /// `https://127.0.0.1:<port><path>`.
    fn https_url(&self, path: &str) -> String;
}

impl Front for Gateway {
    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn https_url(&self, path: &str) -> String {
        self.url(path)
    }
}

impl Front for process::Running {
    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn https_url(&self, path: &str) -> String {
        self.url(path)
    }
}

/// What the native login door answered.
pub struct Login {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

impl Login {
    /// The session token; panics with the answer unless the login succeeded.
    pub fn session(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body["sessionToken"].as_str().unwrap().to_owned()
    }
}

/// `POST /auth/login` with `token` for `provider` in `app`, over a new HTTPS client.
pub async fn login(front: &impl Front, app: &str, provider: &str, token: &str) -> Login {
    let http = client::https(&front.ca_pem(), false);
    let (status, headers, body) = post_json(
        &http,
        &front.https_url("/auth/login"),
        &login_body(app, provider, token),
        None,
    )
    .await;
    Login {
        status,
        headers,
        body,
    }
}

/// The value of one sample line, e.g. `drawbridge_upstream_errors_total{kind="refused"}`; 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The `drawbridge_session_revalidations_total` sample of `result` in `text`.
pub fn revalidations(text: &str, result: &str) -> f64 {
    metric(
        text,
        &format!("drawbridge_session_revalidations_total{{result=\"{result}\"}}"),
    )
}

/// The `drawbridge_tunnel_closes_total` sample of `reason` in `text`.
pub fn tunnel_closes(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("drawbridge_tunnel_closes_total{{reason=\"{reason}\"}}"),
    )
}

/// `POST <url>` with a JSON body over an HTTPS client; `(status, headers, JSON body)`.
pub async fn post_json(
    http: &client::HttpsClient,
    url: &str,
    body: &serde_json::Value,
    bearer: Option<&str>,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let mut req = client::request("POST", url, body.to_string());
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    send(http, req).await
}

/// `POST <url>` with the empty JSON object and a bearer token, as `/auth/ticket` and
/// `/auth/logout` take it; `(status, headers, JSON body)`.
pub async fn post_bearer(
    http: &client::HttpsClient,
    url: &str,
    bearer: &str,
) -> (u16, http::HeaderMap, serde_json::Value) {
    post_json(http, url, &serde_json::json!({}), Some(bearer)).await
}

/// `POST /auth/token` refreshing the session `token` at `front`; `(status, headers, JSON body)`.
pub async fn refresh(
    http: &client::HttpsClient,
    front: &impl Front,
    token: &str,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let body = serde_json::json!({ "refresh": token });
    post_json(http, &front.https_url("/auth/token"), &body, None).await
}

/// Sends a request; `(status, headers, JSON body or null)`.
pub async fn send(
    http: &client::HttpsClient,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, http::HeaderMap, serde_json::Value) {
    use http_body_util::BodyExt;
    let resp = http.request(req).await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// The gateway's published keys (`GET /.well-known/jwks.json`, which must answer 200).
pub async fn jwks(http: &client::HttpsClient, front: &impl Front) -> jsonwebtoken::jwk::JwkSet {
    let url = front.https_url("/.well-known/jwks.json");
    let (status, _, body) = send(http, client::request("GET", &url, "")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("a JWKS document")
}

/// `GET <url>` with a bearer token.
pub async fn get_bearer(
    http: &client::HttpsClient,
    url: &str,
    bearer: &str,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let mut req = client::request("GET", url, "");
    req.headers_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    send(http, req).await
}

/// A login body.
/// The JSON lines written to `path` so far (none while it does not exist yet); a line that is not
/// JSON fails the test.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn login_body(app: &str, provider: &str, token: &str) -> serde_json::Value {
    serde_json::json!({"appID": app, "provider": provider, "token": token})
}

/// A short pause used only to space out bytes a slow client sends, never to wait for readiness.
pub async fn pace(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A `[session]` table naming one EdDSA key file, the same for every gateway of this test
/// process: what `[cluster]` needs, since replicas must share the key that signs sessions.
pub fn shared_session_table() -> String {
    static KEY_DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = KEY_DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pem = drawbridge::auth::session::keygen(jsonwebtoken::Algorithm::EdDSA).unwrap();
        std::fs::write(dir.path().join("session.pem"), pem).unwrap();
        dir
    });
    format!(
        "[session]\nalgorithm = \"EdDSA\"\nkey_file = {:?}\n",
        dir.path().join("session.pem")
    )
}

/// A loopback address with a port that was free a moment ago, for a real server a test starts
/// (nginx, HAProxy, redis-server) that must be given its port.
pub fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    addr
}
pub mod fleet;
