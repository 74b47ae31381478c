//! Websocket parts: a raw sync-server stand-in that hands each upgraded connection to the test
//! (which may then misbehave on it: reset it, half-send a frame, hold the handshake), raw client
//! handshakes over TLS, and hand-built and parsed RFC 6455 frames.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

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
    tunnels: mpsc::UnboundedReceiver<Tunnel>,
    task: tokio::task::JoinHandle<()>,
    arrived: Arc<AtomicUsize>,
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
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (tx, tunnels) = mpsc::unbounded_channel();
        let arrived = Arc::new(AtomicUsize::new(0));
        let (count, held) = (arrived.clone(), answers.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let tx = tx.clone();
                let (count, held) = (count.clone(), held.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        let tx = tx.clone();
                        let (count, held) = (count.clone(), held.clone());
                        async move {
                            count.fetch_add(1, Ordering::SeqCst);
                            if let Some(held) = held {
                                held.acquire().await.unwrap().forget();
                            }
                            let key = req
                                .headers()
                                .get(header::SEC_WEBSOCKET_KEY)
                                .cloned()
                                .unwrap();
                            let headers = req.headers().clone();
                            let uri = req.uri().to_string();
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(up) = on.await {
                                    let _ = tx.send(Tunnel {
                                        io: TokioIo::new(up),
                                        headers,
                                        uri,
                                    });
                                }
                            });
                            Ok::<_, Infallible>(switching_protocols(&key))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            tunnels,
            task,
            arrived,
            answers,
        }
    }

    /// Handshakes that reached the sync server, answered or held.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Lets `n` held handshakes be answered.
    pub fn answer(&self, n: usize) {
        self.answers
            .as_ref()
            .expect("a holding sync server")
            .add_permits(n);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw HTTP/1.1 websocket handshake over TLS; returns the stream positioned after the response
/// head, the status, and the response head text.
pub async fn raw_handshake(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (TlsStream<TcpStream>, u16, String) {
    let mut tls = super::client::connect_tls(addr, ca_pem, None, &[b"http/1.1"])
        .await
        .unwrap();
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

/// The 101 answer to a websocket handshake with `key`.
pub fn switching_protocols(key: &http::HeaderValue) -> Response<Full<Bytes>> {
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
