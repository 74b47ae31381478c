//! Slow handshakes: a TLS connection that sends part of the HTTP/2 connection preface
//! (`PRI * HTTP/2.0\r\n` and no more) is reaped at `limits.header_read_timeout_ms` like a silent
//! one, whatever ALPN it negotiated, whether the bytes come at once or one at a time, and behind
//! a PROXY protocol header too. Real TLS against a real gateway.

mod support;

use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use support::{Gateway, Upstream, client, metric};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The first line of the HTTP/2 preface (RFC 9113 §3.4): no request, and not yet HTTP/2.
const PARTIAL_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// `limits.header_read_timeout_ms` in these tests.
const HEADER_READ: Duration = Duration::from_millis(400);
/// Room for a loaded machine past the deadline; the reap itself takes no time.
const SLACK: Duration = Duration::from_secs(2);

/// Writes `PARTIAL_PREFACE` to `s`, at once or a byte every 20 ms, and waits for the gateway to
/// close; how long after `opened` it did. Panics if it stays open 5 s.
async fn send_and_time_close<S>(s: S, trickle: bool, opened: Instant) -> Duration
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let chunk = if trickle { 1 } else { PARTIAL_PREFACE.len() };
        for piece in PARTIAL_PREFACE.chunks(chunk) {
            if wr.write_all(piece).await.is_err() {
                break;
            }
            if trickle {
                support::pace(20).await;
            }
        }
        wr
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a connection with a partial HTTP/2 preface is still open after 5 s");
    drop(writer);
    closed.duration_since(opened)
}

fn assert_reaped_on_time(took: Duration, what: &str) {
    assert!(took >= HEADER_READ, "{what}: closed after only {took:?}");
    assert!(
        took < HEADER_READ + SLACK,
        "{what}: still open {took:?} after the handshake (header_read_timeout_ms is {HEADER_READ:?})"
    );
}

async fn reaped_no_request(gw: &Gateway) -> f64 {
    metric(
        &gw.metrics().await,
        "drawbridge_connections_reaped_total{reason=\"no_request\"}",
    )
}

#[tokio::test]
async fn partial_http2_preface_over_tls_is_reaped_at_the_header_deadline() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra("[limits]\nheader_read_timeout_ms = 400\nidle_timeout_ms = 60000")
        .spawn()
        .await;
    let ca = gw.ca.pem();
    let mut n = 0.0;
    for alpn in [&b"h2"[..], b"http/1.1", b""] {
        for trickle in [false, true] {
            let protocols: Vec<&[u8]> = if alpn.is_empty() { vec![] } else { vec![alpn] };
            let tls = client::connect_tls(gw.addr, &ca, None, &protocols)
                .await
                .unwrap();
            let took = send_and_time_close(tls, trickle, Instant::now()).await;
            let what = format!(
                "ALPN {:?}, trickled {trickle}",
                String::from_utf8_lossy(alpn)
            );
            assert_reaped_on_time(took, &what);
            n += 1.0;
        }
    }
    assert_eventually!(
        reaped_no_request(&gw).await == n,
        "not every connection was reaped as no_request: {}",
        gw.metrics().await
    );
    assert_eventually!(
        metric(&gw.metrics().await, "drawbridge_connections_open") == 0.0,
        "connections still counted as open"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn partial_http2_preface_behind_a_proxy_header_is_reaped_at_the_header_deadline() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .listen_setting("proxy_protocol = true")
        .extra("[limits]\nheader_read_timeout_ms = 400\nidle_timeout_ms = 60000")
        .spawn()
        .await;
    let connector = TlsConnector::from(client::tls_config(&gw.ca.pem(), None, &[b"h2"]));
    for trickle in [false, true] {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 4711 443\r\n")
            .await
            .unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS after a valid PROXY header");
        let took = send_and_time_close(tls, trickle, Instant::now()).await;
        assert_reaped_on_time(took, &format!("behind PROXY, trickled {trickle}"));
    }
    assert_eventually!(
        reaped_no_request(&gw).await == 2.0,
        "not reaped as no_request: {}",
        gw.metrics().await
    );
}
