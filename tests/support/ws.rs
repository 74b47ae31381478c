//! Websocket parts: a raw sync-server stand-in that hands each upgraded connection to the test
//! (which may then misbehave on it: reset it, half-send a frame, hold the handshake), raw client
//! handshakes over TLS, and hand-built and parsed RFC 6455 frames.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::server::{Body, Served, serve};

/// One upgraded connection at the sync server, with the handshake headers it arrived with.
pub struct Tunnel {
    pub io: TokioIo<hyper::upgrade::Upgraded>,
    pub headers: HeaderMap,
    pub uri: String,
}

impl Tunnel {
    /// The sync server's TCP socket under the tunnel, e.g. to reset it.
    pub fn into_tcp(self) -> TcpStream {
        let parts = self
            .io
            .into_inner()
            .downcast::<TokioIo<TcpStream>>()
            .unwrap_or_else(|_| panic!("the upgraded connection is not a TCP stream"));
        assert!(
            parts.read_buf.is_empty(),
            "bytes arrived with the handshake"
        );
        parts.io.into_inner()
    }
}

/// A sync server that accepts every websocket handshake and gives the raw connection to the test.
pub struct RawUpstream {
    pub addr: SocketAddr,
    server: Served,
    tunnels: mpsc::UnboundedReceiver<Tunnel>,
    answers: Option<Arc<Semaphore>>,
}

impl RawUpstream {
    pub async fn start() -> Self {
        Self::with_answers(None).await
    }

    /// A sync server that holds every handshake (after counting it in [`RawUpstream::arrived`])
    /// until [`RawUpstream::answer`] lets it be answered.
    pub async fn holding() -> Self {
        Self::with_answers(Some(Arc::new(Semaphore::new(0)))).await
    }

    async fn with_answers(answers: Option<Arc<Semaphore>>) -> Self {
        let (tx, tunnels) = mpsc::unbounded_channel();
        let held = answers.clone();
        let server = serve(move |mut req| {
            let (tx, held) = (tx.clone(), held.clone());
            async move {
                if let Some(held) = held {
                    held.acquire().await.unwrap().forget();
                }
                let headers = req.headers().clone();
                let uri = req.uri().to_string();
                upgrade(&mut req, move |io| async move {
                    let _ = tx.send(Tunnel { io, headers, uri });
                })
                .expect("a websocket handshake")
            }
        })
        .await;
        Self {
            addr: server.addr,
            server,
            tunnels,
            answers,
        }
    }

    /// Handshakes that reached the sync server, answered or held.
    pub fn arrived(&self) -> usize {
        self.server.requests()
    }

    /// Lets `n` held handshakes be answered.
    pub fn answer(&self, n: usize) {
        self.answers
            .as_ref()
            .expect("a holding sync server")
            .add_permits(n);
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The next tunnel that reached the sync server.
    pub async fn next(&mut self) -> Tunnel {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.tunnels.recv())
            .await
            .expect("no tunnel reached the sync server")
            .unwrap()
    }

    /// Whether any tunnel reached the sync server (without waiting).
    pub fn any(&mut self) -> bool {
        !self.tunnels.is_empty()
    }
}

/// A tungstenite client over TLS to `addr`.
pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// A tungstenite client through the gateway's TLS over HTTP/1.1, with extra handshake headers.
pub async fn client(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let tls = super::client::connect_tls(addr, ca_pem, None, &[b"http/1.1"])
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::client_async(req, tls)
        .await
        .map(|(ws, _)| ws)
}

/// A tungstenite client through the gateway's TLS over HTTP/1.1 carrying `token` as a bearer
/// token; panics when the handshake fails.
pub async fn bearer_client(addr: SocketAddr, ca_pem: &str, path: &str, token: &str) -> Ws {
    client(
        addr,
        ca_pem,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap_or_else(|e| panic!("handshake on {path} failed: {e}"))
}

/// Sends `text` and asserts that the same message comes back within 5 s.
pub async fn echo_ok<S>(ws: &mut S, text: &str)
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + futures_util::Sink<Message> + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
{
    ws.send(Message::text(text)).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap_or_else(|_| panic!("no echo of {text:?} within 5 s"))
        .expect("the stream ended")
        .expect("the stream failed");
    assert_eq!(got, Message::text(text));
}

/// Reads until a Close frame arrives within `within`; its code, or `None` when the stream
/// ends (or fails) first.
pub async fn close_of(ws: &mut Ws, within: std::time::Duration) -> Option<u16> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("no close frame within {within:?}"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Asserts that a close frame with `code` reaches `ws` less than `within` after `since`.
pub async fn closes_within(
    ws: &mut Ws,
    code: u16,
    since: std::time::Instant,
    within: std::time::Duration,
) {
    let left = within.saturating_sub(since.elapsed());
    assert_eq!(close_of(ws, left).await, Some(code));
    assert!(
        since.elapsed() < within,
        "closed only after {:?}",
        since.elapsed()
    );
}

/// An RFC 8441 extended CONNECT for `protocol` on `path`, with `bearer` as a bearer token when
/// given; more headers may follow before the (empty) body.
pub fn extended_connect(
    port: u16,
    path: &str,
    protocol: &'static str,
    bearer: Option<&str>,
) -> http::request::Builder {
    let req = Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{port}{path}"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static(protocol));
    match bearer {
        Some(b) => req.header("authorization", format!("Bearer {b}")),
        None => req,
    }
}

/// The websocket client on the stream an extended CONNECT answered with 200.
pub async fn upgraded_client(resp: &mut Response<Incoming>) -> WebSocketStream<TokioIo<Upgraded>> {
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// A raw HTTP/1.1 websocket handshake over TLS; returns the stream positioned after the response
/// head, the status, and the response head text.
pub async fn raw_handshake(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (TlsStream<TcpStream>, u16, String) {
    let tls = super::client::connect_tls(addr, ca_pem, None, &[b"http/1.1"])
        .await
        .unwrap();
    raw_handshake_over(tls, path, extra_headers).await
}

/// [`raw_handshake`] over a stream the test opened itself (e.g. TLS over a recording socket).
pub async fn raw_handshake_over<S>(
    mut tls: S,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (S, u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).await.unwrap();
        assert!(n == 1, "connection closed during the handshake");
        got.push(byte[0]);
    }
    let text = String::from_utf8(got).unwrap();
    let status = text[9..12].parse().unwrap();
    (tls, status, text)
}

/// One RFC 6455 frame, built by hand. `mask` for client-to-server frames.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads exactly `n` bytes.
pub async fn read_exact<S: tokio::io::AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(std::time::Duration::from_secs(60), s.read_exact(&mut buf))
        .await
        .expect("timed out reading")
        .expect("read failed");
    buf
}

/// One frame as it crossed the wire, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a Close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// The reason of a Close frame.
    pub fn close_reason(&self) -> &str {
        std::str::from_utf8(self.payload.get(2..).unwrap_or_default()).unwrap()
    }
}

/// Reads one whole frame within 10 s; `None` when the stream ends (or resets) before its first byte.
pub async fn read_frame<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Frame> {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut head = [0u8; 2];
        match s.read(&mut head[..1]).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        s.read_exact(&mut head[1..]).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let masked = head[1] & 0x80 != 0;
        let mut key = [0u8; 4];
        if masked {
            s.read_exact(&mut key).await.unwrap();
        }
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        s.read_exact(&mut payload).await.unwrap();
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        Some(Frame {
            fin: head[0] & 0x80 != 0,
            opcode: head[0] & 0x0f,
            masked,
            payload,
        })
    })
    .await
    .expect("timed out reading a frame")
}

/// Everything until the end of the stream, within 10 s; `Err` if the stream reset instead.
pub async fn read_to_end<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the stream did not end")?;
    Ok(rest)
}

/// The close code in an unmasked Close frame at the start of `bytes`.
pub fn close_code(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 4 && bytes[0] & 0x0F == 0x8).then(|| u16::from_be_bytes([bytes[2], bytes[3]]))
}

/// Answers the websocket handshake in `req` with 101 and hands the upgraded connection to
/// `then`; `None` when `req` carries no `Sec-WebSocket-Key`.
pub fn upgrade<T, F>(req: &mut Request<Incoming>, then: T) -> Option<Response<Body>>
where
    T: FnOnce(TokioIo<Upgraded>) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?.clone();
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            then(TokioIo::new(up)).await;
        }
    });
    Some(switching_protocols(&key))
}

/// Answers the websocket handshake in `req` and echoes every text and binary message back;
/// `None` when `req` is no handshake.
pub fn echo(req: &mut Request<Incoming>) -> Option<Response<Body>> {
    upgrade(req, |io| async move {
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}

/// The 101 answer to a websocket handshake with `key`.
pub fn switching_protocols(key: &http::HeaderValue) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, "upgrade".parse().unwrap());
    r.headers_mut()
        .insert(header::UPGRADE, "websocket".parse().unwrap());
    r.headers_mut().insert(
        header::SEC_WEBSOCKET_ACCEPT,
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    r
}

/// [`close_of`], but `None` (rather than a panic) when no close frame came within `within`.
pub async fn close_of_or_none(ws: &mut Ws, within: std::time::Duration) -> Option<u16> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    }
}
