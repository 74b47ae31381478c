//! The end-to-end harness's load client, and the demo's provider webhook for it to log in with.
//!
//! `benches/e2e/run.sh` builds this and drives it; every run is bounded by a message count or a
//! deadline, and every target must be a loopback address (anything else is refused).
//!
//! ```text
//! e2e-load webhook        --addr 127.0.0.1:P
//! e2e-load ws-rtt         --url ws[s]://127.0.0.1:P/sync [--bearer T] [--size 1024] [--count 5000] [--warmup 500]
//! e2e-load ws-tput        --url ... [--bearer T] [--size 65536] [--conns 4] [--window 4] [--seconds 5] [--warmup 1]
//! e2e-load ws-idle        --url ... [--bearer T] [--count 10000] [--parallel 64] [--open-max 90] [--hold-max 120]
//! e2e-load tls-handshakes --addr 127.0.0.1:P [--seconds 5] [--parallel 16]
//! e2e-load login-many     --url http[s]://127.0.0.1:P/PATH --prefix P [--shape login|check|webhook]
//!                         [--count 5000] [--parallel 64] [--seconds-max 120] [--out FILE]
//! e2e-load ws-storm       --url ... [--tokens FILE | --bearer T] [--count 5000] [--parallel 5000]
//!                         [--seconds-max 60]
//! ```
//!
//! Results are one JSON object on stdout. The TLS client offers X25519 only (what OpenSSL 3.0's
//! clients, such as wrk, negotiate too), never resumes a session, and does not verify the
//! certificate: the benchmark measures the servers, not this client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use drawbridge::demo::provider::{Directory, serve};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn main() {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let args = Args::parse(argv);
    // One thread: the harness pins this process to the load generator's core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        match command.as_str() {
            "webhook" => webhook(&args).await,
            "ws-rtt" => ws_rtt(&args).await,
            "ws-tput" => ws_tput(&args).await,
            "ws-idle" => ws_idle(&args).await,
            "tls-handshakes" => tls_handshakes(&args).await,
            "login-many" => login_many(&args).await,
            "ws-storm" => ws_storm(&args).await,
            other => Err(format!(
                "unknown command {other:?}: webhook, ws-rtt, ws-tput, ws-idle, tls-handshakes, \
                 login-many, ws-storm"
            )),
        }
    });
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("e2e-load {command}: {e}");
            std::process::exit(1);
        }
    }
}

// === impl Args ===

struct Args(HashMap<String, String>);

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Self {
        let mut map = HashMap::new();
        while let Some(k) = it.next() {
            let key = k.trim_start_matches("--").to_owned();
            let value = it.next().unwrap_or_default();
            map.insert(key, value);
        }
        Self(map)
    }

    fn str(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or(format!("--{key} is required"))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn num<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{key}: not a number: {v}")),
        }
    }
}

/// Refuses any target that is not on this machine's loopback.
fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = addr.parse().map_err(|_| format!("{addr}: want ip:port"))?;
    if !a.ip().is_loopback() {
        return Err(format!("{addr}: only loopback targets are allowed"));
    }
    Ok(a)
}

// === the provider webhook ===

/// The demo's provider webhook with [`Directory::Anyone`]: any token is let in for an hour, except
/// tokens starting with `deny`, which get 401 `{"authenticated":false}` (a 401 is what nginx's
/// auth_request needs, and drawbridge reads a 401 as a denial too). `GET /stats` counts the calls,
/// so the harness can check that a cache-hit run never reached the webhook.
async fn webhook(args: &Args) -> Result<String, String> {
    let addr = loopback(args.str("addr")?)?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    eprintln!("webhook listening on http://{addr}/auth");
    match serve(tcp, Directory::Anyone).await {
        Ok(never) => match never {},
        Err(e) => Err(format!("accept on {addr}: {e}")),
    }
}

// === TLS and websocket clients ===

/// Accepts any certificate: the harness made it a minute ago, and verification is client work.
#[derive(Debug)]
struct AcceptAny(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

fn tls_config() -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(schemes)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A new TCP connection to `addr`, with a full TLS handshake on top when given a client config.
/// With `reset_on_drop`, dropping it resets the connection: thousands of clients closed at once
/// leave no TIME_WAIT behind to crowd the next round's ephemeral ports.
async fn dial(
    addr: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    reset_on_drop: bool,
) -> Result<Pin<Box<dyn Io>>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    if reset_on_drop {
        tcp.set_zero_linger().map_err(|e| e.to_string())?;
    }
    let Some(tls) = tls else {
        return Ok(Box::pin(tcp));
    };
    let name = ServerName::try_from("localhost").expect("literal name");
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS {addr}: {e}"))?;
    Ok(Box::pin(stream))
}

type Ws = WebSocketStream<Pin<Box<dyn Io>>>;

/// A `<tls_scheme>://` or `<plain_scheme>://` URL to this machine's loopback, parsed once: every
/// connection dials `addr` and names `uri`.
struct Target {
    tls: bool,
    addr: SocketAddr,
    uri: http::Uri,
}

impl Target {
    /// A `ws://` or `wss://` URL.
    fn ws(url: &str) -> Result<Self, String> {
        Self::parse(url, "wss", "ws")
    }

    /// An `http://` or `https://` URL.
    fn http(url: &str) -> Result<Self, String> {
        Self::parse(url, "https", "http")
    }

    fn parse(url: &str, tls_scheme: &str, plain_scheme: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some(s) if s == tls_scheme => true,
            Some(s) if s == plain_scheme => false,
            _ => return Err(format!("{url}: want {plain_scheme}:// or {tls_scheme}://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: want {plain_scheme}://ip:port"))?;
        Ok(Self {
            tls,
            addr: loopback(authority.as_str())?,
            uri,
        })
    }

    /// `ip:port`, for `Host`.
    fn authority(&self) -> &str {
        self.uri.authority().map_or("", |a| a.as_str())
    }

    /// The path and query, `/` when the URL has none.
    fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |pq| pq.as_str())
    }

    async fn connect(&self, bearer: Option<&str>, tls: &Arc<ClientConfig>) -> Result<Ws, String> {
        self.connect_with(bearer, tls, false).await
    }

    /// [`Target::connect`], resetting the connection when the websocket is dropped with
    /// `reset_on_drop` (see [`dial`]).
    async fn connect_with(
        &self,
        bearer: Option<&str>,
        tls: &Arc<ClientConfig>,
        reset_on_drop: bool,
    ) -> Result<Ws, String> {
        let io = dial(self.addr, self.tls.then_some(tls), reset_on_drop).await?;
        let mut req = self
            .uri
            .clone()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(t) = bearer {
            req.headers_mut().insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?,
            );
        }
        let (ws, _) = tokio_tungstenite::client_async(req, io)
            .await
            .map_err(|e| format!("websocket handshake with {}: {e}", self.uri))?;
        Ok(ws)
    }
}

/// Waits for the next data message, skipping control frames.
async fn next_data(ws: &mut Ws) -> Result<usize, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return Ok(b.len()),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.len()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("closed".into()),
            Err(_) => return Err("no echo within 10 s".into()),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// One websocket, one message in flight: the round trip of each echo.
async fn ws_rtt(args: &Args) -> Result<String, String> {
    let target = Target::ws(args.str("url")?)?;
    let size: usize = args.num("size", 1024)?;
    let count: usize = args.num("count", 5000)?;
    let warmup: usize = args.num("warmup", 500)?;
    let deadline = Instant::now() + Duration::from_secs(args.num("seconds-max", 60)?);
    let mut ws = tokio::time::timeout(
        Duration::from_secs(15),
        target.connect(args.opt("bearer"), &tls_config()),
    )
    .await
    .map_err(|_| "no handshake within 15 s".to_owned())??;
    let payload = Bytes::from(vec![0x5a_u8; size]);
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        if Instant::now() > deadline {
            break;
        }
        let t = Instant::now();
        ws.send(Message::Binary(payload.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let n = next_data(&mut ws).await?;
        let ns = t.elapsed().as_nanos() as u64;
        if n != size {
            return Err(format!("echo of {n} bytes, sent {size}"));
        }
        if i >= warmup {
            samples.push(ns);
        }
    }
    let _ = ws.close(None).await;
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    Ok(serde_json::json!({
        "n": samples.len(),
        "size": size,
        "p50_us": percentile(&samples, 50.0) / 1e3,
        "p99_us": percentile(&samples, 99.0) / 1e3,
        "mean_us": mean / 1e3,
    })
    .to_string())
}

/// `conns` websockets, each keeping `window` messages in flight; echoed payload bytes per second
/// after `warmup` seconds.
async fn ws_tput(args: &Args) -> Result<String, String> {
    let target = Arc::new(Target::ws(args.str("url")?)?);
    let size: usize = args.num("size", 64 * 1024)?;
    let conns: usize = args.num("conns", 4)?;
    let window: usize = args.num("window", 4)?;
    let seconds: f64 = args.num("seconds", 5.0)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let tls = tls_config();
    let mut sockets = Vec::new();
    for _ in 0..conns {
        sockets.push(
            tokio::time::timeout(
                Duration::from_secs(15),
                target.connect(args.opt("bearer"), &tls),
            )
            .await
            .map_err(|_| "no handshake within 15 s".to_owned())??,
        );
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let deadline = measure_from + Duration::from_secs_f64(seconds);
    let echoed = Arc::new(AtomicU64::new(0));
    let payload = Bytes::from(vec![0xa5_u8; size]);
    let mut tasks = Vec::new();
    for ws in sockets {
        let (mut tx, mut rx) = ws.split();
        let permits = Arc::new(tokio::sync::Semaphore::new(window));
        let writer_permits = permits.clone();
        let payload = payload.clone();
        let writer = tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(p) = writer_permits.acquire().await else {
                    break;
                };
                p.forget();
                if tx.send(Message::Binary(payload.clone())).await.is_err() {
                    break;
                }
            }
            tx
        });
        let echoed = echoed.clone();
        let reader = tokio::spawn(async move {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Ok(());
                }
                match tokio::time::timeout(left + Duration::from_secs(5), rx.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) => {
                        if Instant::now() >= measure_from && Instant::now() < deadline {
                            echoed.fetch_add(b.len() as u64, Ordering::Relaxed);
                        }
                        permits.add_permits(1);
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => break Err(e.to_string()),
                    Ok(None) => break Err("closed early".to_owned()),
                    Err(_) => break Err("stalled".to_owned()),
                }
            }
        });
        tasks.push((writer, reader));
    }
    for (writer, reader) in tasks {
        reader.await.map_err(|e| e.to_string())??;
        // The writer may wait on a permit that will never come; the socket is dropped either way.
        writer.abort();
    }
    let bytes = echoed.load(Ordering::Relaxed) as f64;
    Ok(serde_json::json!({
        "size": size,
        "conns": conns,
        "window": window,
        "seconds": seconds,
        "mib_per_s": bytes / seconds / (1024.0 * 1024.0),
        "messages_per_s": bytes / seconds / size as f64,
    })
    .to_string())
}

/// Opens `count` websockets and holds them, idle, until a line (or EOF) on stdin or `hold-max`.
/// Prints `{"open": n, "failed": f}` to stderr as soon as they are open, for the harness to read RSS.
async fn ws_idle(args: &Args) -> Result<String, String> {
    let target = Arc::new(Target::ws(args.str("url")?)?);
    let count: usize = args.num("count", 10_000)?;
    let parallel: usize = args.num("parallel", 64)?;
    let hold_max = Duration::from_secs(args.num("hold-max", 120)?);
    // Past this, no new connection starts and those under way are given up.
    let open_by = tokio::time::Instant::now() + Duration::from_secs(args.num("open-max", 90)?);
    let bearer = args.opt("bearer").map(str::to_owned);
    let tls = tls_config();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(Ok(permit)) = tokio::time::timeout_at(open_by, gate.clone().acquire_owned()).await
        else {
            break;
        };
        let (target, tls, bearer) = (target.clone(), tls.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            // A proxy out of descriptors may accept a connection and never answer it.
            let deadline = open_by.min(tokio::time::Instant::now() + Duration::from_secs(15));
            let ws = tokio::time::timeout_at(deadline, target.connect(bearer.as_deref(), &tls))
                .await
                .unwrap_or_else(|_| Err("no handshake in time".to_owned()));
            drop(permit);
            ws
        }));
    }
    let mut open = Vec::with_capacity(count);
    let mut failed = count - tasks.len();
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(ws) => open.push(ws),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{}",
        serde_json::json!({"open": open.len(), "failed": failed, "first_error": first_error})
    );
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let _ = tokio::time::timeout(
        hold_max,
        tokio::io::AsyncBufReadExt::read_line(&mut stdin, &mut line),
    )
    .await;
    let n = open.len();
    drop(open);
    Ok(serde_json::json!({
        "open": n,
        "failed": failed,
        "first_error": first_error,
        "open_seconds": open_seconds,
    })
    .to_string())
}

/// Full TLS handshakes (no resumption), `parallel` at a time, for `seconds`.
async fn tls_handshakes(args: &Args) -> Result<String, String> {
    let addr = loopback(args.str("addr")?)?;
    let seconds: f64 = args.num("seconds", 5.0)?;
    let parallel: usize = args.num("parallel", 16)?;
    let tls = tls_config();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (tls, done, failed) = (tls.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match handshake_once(addr, &tls).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(serde_json::json!({
        "handshakes_per_s": done.load(Ordering::Relaxed) as f64 / seconds,
        "failed": failed.load(Ordering::Relaxed),
    })
    .to_string())
}

/// Connects, completes a full handshake, sends close_notify and waits for the server to close,
/// so the server has done all its handshake work; then resets, leaving no TIME_WAIT behind.
async fn handshake_once(addr: SocketAddr, tls: &Arc<ClientConfig>) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("literal name");
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    stream.shutdown().await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let (tcp, _) = stream.into_inner();
    let _ = tcp.set_zero_linger();
    Ok(())
}

// === storms: many clients at once, each on its own fresh connection ===

/// What a login request looks like: drawbridge's `POST /auth/login` (a session comes back), nginx's
/// `GET /auth/check` with the token as bearer, or the webhook's own `POST /auth`.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Login,
    Check,
    Webhook,
}

impl Shape {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "login" => Ok(Self::Login),
            "check" => Ok(Self::Check),
            "webhook" => Ok(Self::Webhook),
            other => Err(format!("--shape {other:?}: want login, check or webhook")),
        }
    }
}

impl Target {
    /// One request on a new connection (a full TLS handshake when https, never resumed), closed
    /// after the answer. Returns the session token for [`Shape::Login`], else `None`.
    async fn once(
        &self,
        shape: Shape,
        token: &str,
        tls: &Arc<ClientConfig>,
    ) -> Result<Option<String>, String> {
        let io = dial(self.addr, self.tls.then_some(tls), false).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let builder = http::Request::builder()
            .uri(self.path())
            .header(http::header::HOST, self.authority())
            .header(http::header::CONNECTION, "close");
        let req = match shape {
            Shape::Check => builder
                .method(http::Method::GET)
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::new(Bytes::new())),
            Shape::Login | Shape::Webhook => builder
                .method(http::Method::POST)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(
                    serde_json::json!({"appID": "bench-app", "provider": "bench", "token": token})
                        .to_string(),
                ))),
        }
        .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        drop(sender);
        let _ = conn.await;
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        if shape != Shape::Login {
            return Ok(None);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("login answer: {e}"))?;
        match v.get("sessionToken").and_then(|t| t.as_str()) {
            Some(t) => Ok(Some(t.to_owned())),
            None => Err("login answer without a sessionToken".to_owned()),
        }
    }
}

/// Logs in `count` distinct tokens, `<prefix>-<i>`, each on its own fresh connection, `parallel`
/// at a time, within `seconds-max`. With `--out`, writes what a websocket client then presents,
/// one per line in token order: the session for `login`, the provider token otherwise (a line is
/// empty where that login failed). Reports logins per second over the whole batch, and checks that
/// every session is distinct (`distinct_sessions`).
async fn login_many(args: &Args) -> Result<String, String> {
    let target = Arc::new(Target::http(args.str("url")?)?);
    let shape = Shape::parse(args.opt("shape").unwrap_or("login"))?;
    let prefix = args.str("prefix")?.to_owned();
    let count: usize = args.num("count", 5000)?;
    let parallel: usize = args.num("parallel", 64)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.num("seconds-max", 120)?);
    let tls = tls_config();
    let started = Instant::now();
    let run = run_gated(count, parallel, deadline, "no answer in time", |i| {
        let (target, tls, token) = (target.clone(), tls.clone(), format!("{prefix}-{i}"));
        async move {
            let session = target.once(shape, &token, &tls).await?;
            Ok((token, session))
        }
    })
    .await?;
    let mut sessions = std::collections::HashSet::new();
    let lines: Vec<String> = run
        .results
        .into_iter()
        .map(|r| match r {
            Some((token, session)) => {
                if let Some(s) = &session {
                    sessions.insert(s.clone());
                }
                session.unwrap_or(token)
            }
            None => String::new(),
        })
        .collect();
    let Gated {
        mut samples,
        failed,
        first_error,
        ..
    } = run;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = args.opt("out") {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    samples.sort_unstable();
    Ok(serde_json::json!({
        "ok": samples.len(),
        "failed": failed,
        "first_error": first_error,
        "distinct_sessions": sessions.len(),
        "seconds": seconds,
        "logins_per_s": samples.len() as f64 / seconds,
        "p50_ms": percentile(&samples, 50.0) / 1e6,
        "p99_ms": percentile(&samples, 99.0) / 1e6,
    })
    .to_string())
}

/// What [`run_gated`] came to.
struct Gated<T> {
    /// Each started task's result in start order; `None` where it failed.
    results: Vec<Option<T>>,
    /// The run times of the tasks that succeeded, in nanoseconds.
    samples: Vec<u64>,
    /// Tasks that failed or never started.
    failed: usize,
    first_error: Option<String>,
}

/// Runs `count` tasks (`task(i)`), at most `parallel` at a time, and starts none once `deadline`
/// has passed; a task still running at `deadline` fails with `late`.
async fn run_gated<T, F, Fut>(
    count: usize,
    parallel: usize,
    deadline: tokio::time::Instant,
    late: &'static str,
    task: F,
) -> Result<Gated<T>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, gate.clone().acquire_owned()).await
        else {
            break;
        };
        let run = task(i);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout_at(deadline, run)
                .await
                .unwrap_or_else(|_| Err(late.to_owned()));
            drop(permit);
            (r, t.elapsed().as_nanos() as u64)
        }));
    }
    let mut gated = Gated {
        results: Vec::with_capacity(tasks.len()),
        samples: Vec::with_capacity(tasks.len()),
        failed: count - tasks.len(),
        first_error: None,
    };
    for t in tasks {
        let (r, ns) = t.await.map_err(|e| e.to_string())?;
        match r {
            Ok(value) => {
                gated.samples.push(ns);
                gated.results.push(Some(value));
            }
            Err(e) => {
                gated.failed += 1;
                gated.first_error.get_or_insert(e);
                gated.results.push(None);
            }
        }
    }
    Ok(gated)
}

/// A reconnect storm: `count` websocket clients start at once (`parallel` at a time), each with a
/// fresh TCP connection, a full TLS handshake (no resumption) and the upgrade, presenting its own
/// line of `--tokens` (or the one `--bearer`). All are held until the last has opened or failed,
/// then reset. Reports how long until all were open and each client's connect-start-to-101 time.
async fn ws_storm(args: &Args) -> Result<String, String> {
    let target = Arc::new(Target::ws(args.str("url")?)?);
    let tokens: Vec<Option<String>> = match args.opt("tokens") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("{path}: {e}"))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| Some(l.to_owned()))
            .collect(),
        None => vec![args.opt("bearer").map(str::to_owned)],
    };
    let from_file = args.opt("tokens").is_some();
    let count: usize = args.num("count", if from_file { tokens.len() } else { 5000 })?;
    if tokens.is_empty() || (from_file && tokens.len() < count) {
        return Err(format!(
            "--count {count}: the tokens file has {} lines",
            tokens.len()
        ));
    }
    let parallel: usize = args.num("parallel", count)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.num("seconds-max", 60)?);
    let tls = tls_config();
    let started = Instant::now();
    let run = run_gated(count, parallel, deadline, "no 101 in time", |i| {
        let bearer = tokens[i % tokens.len()].clone();
        let (target, tls) = (target.clone(), tls.clone());
        async move {
            let ws = target.connect_with(bearer.as_deref(), &tls, true).await?;
            Ok((ws, started.elapsed()))
        }
    })
    .await?;
    let Gated {
        results,
        mut samples,
        failed,
        first_error,
    } = run;
    // Every client is held until the last has opened or failed.
    let open: Vec<_> = results.into_iter().flatten().collect();
    let last_open = open.iter().map(|(_, at)| *at).max().unwrap_or_default();
    let opened = open.len();
    drop(open);
    samples.sort_unstable();
    let all_open = (failed == 0).then_some(last_open.as_secs_f64());
    Ok(serde_json::json!({
        "opened": opened,
        "failed": failed,
        "first_error": first_error,
        "seconds_to_all_open": all_open,
        "seconds_to_last_open": last_open.as_secs_f64(),
        "p50_us": percentile(&samples, 50.0) / 1e3,
        "p99_us": percentile(&samples, 99.0) / 1e3,
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_by_scheme_authority_and_path() {
        let wss = Target::ws("wss://127.0.0.1:9/sync").expect("wss");
        assert!(wss.tls);
        assert_eq!((wss.authority(), wss.path()), ("127.0.0.1:9", "/sync"));
        let ws = Target::ws("ws://127.0.0.1:9").expect("ws");
        assert!(!ws.tls);
        assert_eq!((ws.authority(), ws.path()), ("127.0.0.1:9", "/"));
        let http = Target::http("http://127.0.0.1:9/auth/login?x=1").expect("http");
        assert!(!http.tls);
        assert_eq!(http.path(), "/auth/login?x=1");
        assert!(Target::ws("https://127.0.0.1:9/").is_err());
        assert!(Target::http("httpsx://127.0.0.1:9/").is_err());
        assert!(Target::http("http://192.0.2.1:9/").is_err());
    }
}
