//! How the relay cuts a tunnel's bytes: a large message toward a TLS client goes out in full
//! 16 KiB TLS records, read off the wire by the client's own socket.

mod support;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use support::ws::{RawUpstream, frame, raw_handshake_over, read_exact};
use support::{Gateway, Webhook, client, login};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest TLS plaintext fragment (RFC 8446 §5.1, RFC 5246 §6.2.1).
const MAX_FRAGMENT: usize = 16 * 1024;
/// The AEAD tag every record carries past its plaintext (AES-GCM and ChaCha20-Poly1305).
const TAG_BYTES: usize = 16;
/// The TLS record type of application data (TLS 1.3 wraps everything encrypted in it).
const APPLICATION_DATA: u8 = 23;

/// A TCP stream that keeps a copy of every byte it reads.
struct Recording {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.seen
            .lock()
            .unwrap()
            .extend_from_slice(&buf.filled()[before..]);
        polled
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The (type, length) of every whole TLS record in `wire` (RFC 8446 §5.1: type, version, length).
fn records(wire: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= wire.len() {
        let len = usize::from(u16::from_be_bytes([wire[at + 3], wire[at + 4]]));
        if at + 5 + len > wire.len() {
            break;
        }
        out.push((wire[at], len));
        at += 5 + len;
    }
    out
}

#[tokio::test]
async fn large_message_reaches_the_client_in_full_tls_records() {
    let mut up = RawUpstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .spawn()
        .await;
    let token = login(&gw, "app", "demo", "carol-token").await.session();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tcp = Recording {
        inner: TcpStream::connect(gw.addr).await.unwrap(),
        seen: seen.clone(),
    };
    let tls = TlsConnector::from(client::tls_config(&gw.ca.pem(), None, &[b"http/1.1"]))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut client, status, _) = raw_handshake_over(
        tls,
        "/sync",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 101);
    let mut upstream = up.next().await.io;
    let handshake_bytes = seen.lock().unwrap().len();

    let message = frame(true, 0x2, &vec![7u8; 1024 * 1024], None);
    let writer = tokio::spawn(async move {
        upstream.write_all(&message).await.unwrap();
        upstream
    });
    let got = read_exact(&mut client, 1024 * 1024 + 10).await;
    assert_eq!(&got[..2], &[0x82, 127], "the frame header arrived first");
    assert!(got[10..].iter().all(|&b| b == 7), "the payload changed");
    let _upstream = writer.await.unwrap();

    let wire = seen.lock().unwrap().clone();
    let data: Vec<usize> = records(&wire[handshake_bytes..])
        .into_iter()
        .filter(|&(kind, _)| kind == APPLICATION_DATA)
        .map(|(_, len)| len)
        .collect();
    // A record that carries a whole fragment is longer than it by at least the AEAD tag.
    let full = data
        .iter()
        .filter(|&&len| len >= MAX_FRAGMENT + TAG_BYTES)
        .count();
    assert!(
        full * MAX_FRAGMENT >= 1024 * 1024 / 2,
        "under half of the message came in full 16 KiB records: {full} full of {} records, \
         the largest {:?} bytes",
        data.len(),
        data.iter().max()
    );
}
