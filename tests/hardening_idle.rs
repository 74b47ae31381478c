//! Connections that say nothing are closed, idle floods do not lock real clients out, and request
//! heads are bounded: real TLS, a real gateway, raw HTTP/1 and hand-built HTTP/2 frames.

mod support;

use std::time::{Duration, Instant};

use support::{Gateway, Upstream, Webhook, client, login, metric, pace, ws};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a closed connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// TLS close_notify, or a plain FIN on a plaintext connection.
    Clean,
    /// The TCP connection ended without close_notify, or was reset.
    Abrupt,
}

/// Reads (and discards) until the peer closes; how it closed and when. Panics after `within`.
async fn closed<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> (End, Instant) {
    let mut buf = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return End::Clean,
                Ok(_) => {}
                Err(_) => return End::Abrupt,
            }
        }
    };
    let end = tokio::time::timeout(within, read_all)
        .await
        .unwrap_or_else(|_| panic!("connection still open after {within:?}"));
    (end, Instant::now())
}

/// A gateway in front of a fresh upstream with these `[limits]` lines.
async fn start(limit_lines: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra(&limits(limit_lines))
        .spawn()
        .await;
    (up, gw)
}

/// `drawbridge_connections_reaped_total` for `reason`.
async fn reaped(gw: &Gateway, reason: &str) -> f64 {
    metric(
        &gw.metrics().await,
        &format!("drawbridge_connections_reaped_total{{reason=\"{reason}\"}}"),
    )
}

/// `took` lies in `[at_least, under)`; `what` names the event in the message.
fn assert_took(took: Duration, at_least: Duration, under: Duration, what: &str) {
    assert!(took >= at_least, "{what} after only {took:?}");
    assert!(took < under, "{what} only after {took:?}");
}

/// Opens `n` connections one after the other with `open(i)`, then waits for the peer to close
/// every one of them (each within 10 s); how each ended and how long after it was opened.
async fn open_until_closed<S, F, Fut>(n: usize, mut open: F) -> Vec<(End, Duration)>
where
    S: AsyncRead + Unpin,
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let mut socks = Vec::new();
    for i in 0..n {
        let s = open(i).await;
        socks.push((s, Instant::now()));
    }
    futures_util::future::join_all(socks.into_iter().map(|(mut s, opened)| async move {
        let (end, at) = closed(&mut s, Duration::from_secs(10)).await;
        (end, at.duration_since(opened))
    }))
    .await
}

/// Writes `bytes` in `chunk`-sized pieces in the background, stopping quietly when the
/// gateway closes first; the task hands the write half back.
fn spawn_writer<W>(mut wr: W, bytes: Vec<u8>, chunk: usize) -> tokio::task::JoinHandle<W>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        for piece in bytes.chunks(chunk) {
            if wr.write_all(piece).await.is_err() {
                break;
            }
        }
        wr
    })
}

/// A body-less HTTP/2 GET for a hyper client connection.
fn h2_get(url: &str) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(url)
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// Reads one HTTP/1.1 response (head and content-length body); its status and head text.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> (u16, String) {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("no response")
            .expect("read failed");
        assert_eq!(
            n,
            1,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head[9..12].parse().unwrap(), head)
}

/// `GET <path>` on a kept-alive HTTP/1.1 connection; the status.
async fn get_h1<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(s).await.0
}

/// Hand-built HTTP/2 frames (RFC 9113) and an HPACK encoder that uses only literals (RFC 7541
/// §6.2.2), so a test can send what an honest client library would refuse to.
mod h2raw {
    use super::*;

    pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub(super) const DATA: u8 = 0x0;
    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const RST_STREAM: u8 = 0x3;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const PING: u8 = 0x6;
    pub(super) const GOAWAY: u8 = 0x7;
    pub(super) const CONTINUATION: u8 = 0x9;
    pub(super) const END_STREAM: u8 = 0x1;
    pub(super) const ACK: u8 = 0x1;
    pub(super) const END_HEADERS: u8 = 0x4;
    const MAX_FRAME: usize = 16_384;

    #[derive(Debug)]
    pub(super) struct Frame {
        pub(super) kind: u8,
        pub(super) flags: u8,
        pub(super) stream: u32,
        pub(super) payload: Vec<u8>,
    }

    pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&(stream & 0x7FFF_FFFF).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The preface and an empty SETTINGS frame.
    pub(super) fn hello() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out
    }

    fn int(out: &mut Vec<u8>, prefix_bits: u32, value: usize) {
        let max = (1usize << prefix_bits) - 1;
        if value < max {
            out.push(u8::try_from(value).unwrap());
            return;
        }
        out.push(u8::try_from(max).unwrap());
        let mut rest = value - max;
        while rest >= 128 {
            out.push(u8::try_from(rest % 128).unwrap() | 0x80);
            rest /= 128;
        }
        out.push(u8::try_from(rest).unwrap());
    }

    /// A header block of literal fields without indexing, no Huffman coding.
    pub(super) fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            int(&mut out, 7, name.len());
            out.extend_from_slice(name.as_bytes());
            int(&mut out, 7, value.len());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// A GET on `stream` with `extra` fields, split over HEADERS and CONTINUATION frames;
    /// `finish: false` leaves the block open (no END_HEADERS anywhere).
    pub(super) fn get(stream: u32, path: &str, extra: &[(&str, &str)], finish: bool) -> Vec<u8> {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path),
        ];
        fields.extend_from_slice(extra);
        let block = block(&fields);
        let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = finish && i + 1 == chunks.len();
            let mut flags = if last { END_HEADERS } else { 0 };
            let kind = if i == 0 {
                flags |= END_STREAM;
                HEADERS
            } else {
                CONTINUATION
            };
            out.extend(frame(kind, flags, stream, chunk));
        }
        out
    }

    /// The next frame, or `None` at end-of-stream (clean or not).
    pub(super) async fn read<S: AsyncRead + Unpin>(s: &mut S) -> Option<Frame> {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7FFF_FFFF,
            payload,
        })
    }

    /// Reads frames, acknowledging SETTINGS and PINGs like a live client, until `stop` says so
    /// or the connection ends; every frame seen, in order.
    pub(super) async fn read_until<S>(
        s: &mut S,
        within: Duration,
        stop: impl Fn(&Frame) -> bool,
    ) -> Vec<Frame>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut seen = Vec::new();
        let run = async {
            while let Some(f) = read(s).await {
                if f.kind == SETTINGS && f.flags & ACK == 0 {
                    let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                if f.kind == PING && f.flags & ACK == 0 {
                    let _ = s.write_all(&frame(PING, ACK, 0, &f.payload)).await;
                }
                let done = stop(&f);
                seen.push(f);
                if done {
                    break;
                }
            }
        };
        tokio::time::timeout(within, run)
            .await
            .unwrap_or_else(|_| panic!("no end within {within:?}; saw {seen:?}"));
        seen
    }

    /// Reads frames from a read half (no acknowledgements) until the connection ends.
    pub(super) async fn read_to_end<R: AsyncRead + Unpin>(
        r: &mut R,
        within: Duration,
    ) -> Vec<Frame> {
        let mut seen = Vec::new();
        let run = async {
            while let Some(f) = read(r).await {
                seen.push(f);
            }
        };
        tokio::time::timeout(within, run)
            .await
            .unwrap_or_else(|_| panic!("no end within {within:?}; saw {seen:?}"));
        seen
    }

    /// The stream's response ended (END_STREAM on its HEADERS or DATA, or a reset).
    pub(super) fn ends(stream: u32) -> impl Fn(&Frame) -> bool {
        move |f| {
            f.stream == stream
                && (f.kind == RST_STREAM
                    || (matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0))
        }
    }

    /// A response header block holding only `:status: 431`: a literal with the static table's
    /// `:status` name (index 8), its value plain or Huffman-coded (RFC 7541 Appendix B:
    /// '4' 011010, '3' 011001, '1' 00001, padded with ones: 69 90 ff).
    pub(super) fn is_431_headers(f: &Frame) -> bool {
        let Some((&first, value)) = f.payload.split_first() else {
            return false;
        };
        let status_name = matches!(first, 0x48 | 0x08 | 0x18);
        f.kind == HEADERS
            && status_name
            && matches!(value, [0x03, b'4', b'3', b'1'] | [0x83, 0x69, 0x90, 0xFF])
    }

    /// The first byte of a response header block is `:status: 200` from the static table.
    pub(super) fn is_ok_headers(f: &Frame) -> bool {
        f.kind == HEADERS && f.payload.first() == Some(&0x88)
    }
}

fn limits(lines: &str) -> String {
    format!("[limits]\n{lines}")
}

// --- First request deadline ---------------------------------------------------------------

#[tokio::test]
async fn fifty_silent_tls_connections_are_closed_by_the_first_request_deadline() {
    let (up, gw) = start("header_read_timeout_ms = 400\nidle_timeout_ms = 60000").await;
    let ends = open_until_closed(50, |_| gw.tls(b"http/1.1")).await;
    for (i, (end, after)) in ends.iter().enumerate() {
        assert_eq!(
            *end,
            End::Clean,
            "connection {i} was not closed with close_notify"
        );
        assert!(
            *after < Duration::from_millis(400) + Duration::from_secs(3),
            "connection {i} closed only after {after:?}"
        );
    }
    assert_eventually!(
        reaped(&gw, "no_request").await == 50.0,
        "the silent connections were not counted"
    );
    assert_eventually!(
        metric(&gw.metrics().await, "drawbridge_connections_open") == 0.0,
        "connections still counted as open"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn fifty_http2_connections_without_a_request_are_closed_by_the_deadline() {
    let (up, gw) = start("header_read_timeout_ms = 400").await;
    // Nothing, part of the preface, the preface alone, preface and SETTINGS, and a HEADERS
    // block left open: none is a request.
    let mut open_block = h2raw::hello();
    open_block.extend(h2raw::get(1, "/", &[("x-a", "b")], false));
    let openings: [Vec<u8>; 5] = [
        Vec::new(),
        h2raw::PREFACE[..16].to_vec(),
        h2raw::PREFACE.to_vec(),
        h2raw::hello(),
        open_block,
    ];
    let (gw, openings) = (&gw, &openings);
    let ends = open_until_closed(50, |i| async move {
        let mut s = gw.tls(b"h2").await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        s.write_all(&openings[i % openings.len()]).await.unwrap();
        s
    })
    .await;
    for (i, (_, after)) in ends.into_iter().enumerate() {
        let kind = i % openings.len();
        assert!(
            after < Duration::from_millis(400) + Duration::from_secs(3),
            "opening {kind} was closed only after {after:?}"
        );
    }
    assert_eventually!(
        reaped(gw, "no_request").await == 50.0,
        "the connections were not counted as reaped"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn silent_http2_connection_after_settings_gets_goaway() {
    let (_up, gw) = start("header_read_timeout_ms = 400").await;
    let mut s = gw.tls(b"h2").await;
    s.write_all(&h2raw::hello()).await.unwrap();
    let frames = h2raw::read_until(&mut s, Duration::from_secs(5), |_| false).await;
    assert!(
        frames.iter().any(|f| f.kind == h2raw::GOAWAY),
        "closed without GOAWAY: {frames:?}"
    );
}

#[tokio::test]
async fn silent_plaintext_connections_are_closed_by_the_first_request_deadline() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .plaintext()
        .extra(&limits("header_read_timeout_ms = 400"))
        .spawn()
        .await;
    let addr = gw.addr;
    let ends = open_until_closed(20, |i| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            // h2c prior knowledge, cut short.
            s.write_all(&h2raw::PREFACE[..10]).await.unwrap();
        }
        s
    })
    .await;
    for (i, (end, after)) in ends.into_iter().enumerate() {
        assert!(
            after < Duration::from_secs(4),
            "plaintext connection {i} ({end:?}) closed only after {after:?}"
        );
    }
}

// --- Idle timeout ---------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_http1_connection_idle_past_idle_timeout_is_closed() {
    // The header timeout is far longer, so only the idle timeout can close it.
    let (_up, gw) = start("header_read_timeout_ms = 20000\nidle_timeout_ms = 500").await;
    let mut s = gw.tls(b"http/1.1").await;
    assert_eq!(get_h1(&mut s, "/one").await, 200);
    let served = Instant::now();
    let (end, at) = closed(&mut s, Duration::from_secs(10)).await;
    let idle_for = at.duration_since(served);
    assert_eq!(end, End::Clean, "no close_notify");
    assert_took(
        idle_for,
        Duration::from_millis(450),
        Duration::from_secs(4),
        "closed",
    );
    assert_eq!(reaped(&gw, "idle").await, 1.0);
}

#[tokio::test]
async fn keep_alive_http1_connection_may_wait_longer_than_header_read_timeout() {
    let (up, gw) = start("header_read_timeout_ms = 300\nidle_timeout_ms = 20000").await;
    let mut s = gw.tls(b"http/1.1").await;
    assert_eq!(get_h1(&mut s, "/one").await, 200);
    // Quiet for four header timeouts: waiting for a request is not sending one slowly.
    pace(1200).await;
    assert_eq!(get_h1(&mut s, "/two").await, 200);
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn slow_later_head_on_keep_alive_connection_is_cut_off() {
    let (up, gw) = start("header_read_timeout_ms = 500\nidle_timeout_ms = 20000").await;
    let mut s = gw.tls(b"http/1.1").await;
    assert_eq!(get_h1(&mut s, "/one").await, 200);
    pace(800).await;
    s.write_all(b"GET /two HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        if s.write_all(b"x-slow: 1\r\n").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => panic!(
                "answered a head never finished: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
    }
    assert!(cut, "a head dribbled for 4 s was not cut off");
    let after = started.elapsed();
    assert_took(
        after,
        Duration::from_millis(450),
        Duration::from_secs(3),
        "cut",
    );
    assert_eq!(up.hits(), 1);
    assert_eq!(reaped(&gw, "no_request").await, 1.0);
}

#[tokio::test]
async fn http2_connection_idle_past_idle_timeout_gets_goaway() {
    let (up, gw) = start("header_read_timeout_ms = 20000\nidle_timeout_ms = 500").await;
    let mut s = gw.tls(b"h2").await;
    s.write_all(&h2raw::hello()).await.unwrap();
    s.write_all(&h2raw::get(1, "/first", &[], true))
        .await
        .unwrap();
    let frames = h2raw::read_until(&mut s, Duration::from_secs(10), h2raw::ends(1)).await;
    assert!(frames.iter().any(h2raw::is_ok_headers), "{frames:?}");
    let served = Instant::now();
    let rest = h2raw::read_until(&mut s, Duration::from_secs(10), |_| false).await;
    let idle_for = served.elapsed();
    let goaway = rest
        .iter()
        .find(|f| f.kind == h2raw::GOAWAY)
        .unwrap_or_else(|| panic!("closed without GOAWAY: {rest:?}"));
    // GOAWAY: last stream id, then error code NO_ERROR.
    assert_eq!(&goaway.payload[4..8], &[0, 0, 0, 0], "{goaway:?}");
    assert_took(
        idle_for,
        Duration::from_millis(450),
        Duration::from_secs(4),
        "closed",
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn connection_that_keeps_sending_requests_is_not_closed() {
    let (_up, gw) = start("header_read_timeout_ms = 400\nidle_timeout_ms = 400").await;
    // HTTP/1.1: one connection, a request every 150 ms for three idle timeouts.
    let mut h1 = gw.tls(b"http/1.1").await;
    // HTTP/2: the same over one hyper client connection.
    let (mut h2, h2_conn) = client::h2_over(gw.tls(b"h2").await).await;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        assert_eq!(
            get_h1(&mut h1, &format!("/h1/{n}")).await,
            200,
            "h1 request {n}"
        );
        let req = h2_get(&format!("https://localhost/h2/{n}"));
        let resp = h2
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("h2 request {n}: {e}"));
        assert_eq!(resp.status(), 200, "h2 request {n}");
        n += 1;
        pace(150).await;
    }
    assert!(
        !h2_conn.is_finished(),
        "the busy HTTP/2 connection was closed"
    );
    // A single request that takes longer than the idle timeout is not cut either.
    let req = h2_get("https://localhost/slow?ms=1200");
    let (h1_status, h2_resp) = tokio::join!(get_h1(&mut h1, "/slow?ms=1200"), h2.send_request(req));
    assert_eq!(h1_status, 200);
    assert_eq!(h2_resp.unwrap().status(), 200);
    assert_eq!(reaped(&gw, "idle").await, 0.0);
}

// --- Tunnels are not idle -------------------------------------------------------------------

#[tokio::test]
async fn websocket_tunnels_idle_past_the_idle_timeout_stay_open() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = Gateway::builder(up.url())
        .demo_provider(&hook)
        .extra(&limits(
            "header_read_timeout_ms = 400\nidle_timeout_ms = 400",
        ))
        .spawn()
        .await;
    let token = login(&gw, "app", "demo", "olga-token").await.session();

    // HTTP/1.1 upgrade.
    let mut ws1 = ws::bearer_client(gw.addr, &gw.ca.pem(), "/sync/h1", &token).await;

    // RFC 8441 over HTTP/2, with a second stream on the same connection afterwards.
    let (mut h2, h2_conn) = client::h2_over(gw.tls(b"h2").await).await;
    let connect = ws::extended_connect(gw.addr.port(), "/sync/h2", "websocket", Some(&token))
        .body(http_body_util::Empty::new())
        .unwrap();
    let mut resp = h2.send_request(connect).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut ws2 = ws::upgraded_client(&mut resp).await;

    ws::echo_ok(&mut ws1, "before").await;
    // Quiet for five idle timeouts (and past the first-request deadline).
    pace(2000).await;
    ws::echo_ok(&mut ws1, "h1").await;
    ws::echo_ok(&mut ws2, "h2").await;
    assert!(
        !h2_conn.is_finished(),
        "the tunnel's HTTP/2 connection was closed"
    );
    let req = h2_get("https://localhost/after");
    assert_eq!(
        h2.send_request(req)
            .await
            .expect("the tunnel's connection got a GOAWAY")
            .status(),
        200
    );
    assert_eq!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active"),
        2.0
    );
}

// --- Idle floods at the connection cap ------------------------------------------------------

#[tokio::test]
async fn twenty_idle_sockets_at_max_connections_do_not_lock_out_a_new_client() {
    let (_up, gw) =
        start("max_connections = 20\nheader_read_timeout_ms = 30000\nidle_timeout_ms = 30000")
            .await;
    // Ten handshaken and silent, five kept alive after a request, five HTTP/2 after SETTINGS.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(gw.tls(b"http/1.1").await);
    }
    let mut kept = Vec::new();
    for i in 0..5 {
        let mut s = gw.tls(b"http/1.1").await;
        assert_eq!(get_h1(&mut s, &format!("/kept/{i}")).await, 200);
        kept.push(s);
    }
    let mut h2s = Vec::new();
    for _ in 0..5 {
        let mut s = gw.tls(b"h2").await;
        s.write_all(&h2raw::hello()).await.unwrap();
        h2s.push(s);
    }
    assert_eventually!(
        metric(&gw.metrics().await, "drawbridge_connections_open") == 20.0,
        "twenty connections never showed as open"
    );

    // Three newcomers in a row, each on its own connection (kept open), each served.
    let mut newcomers = Vec::new();
    for i in 0..3 {
        let http = client::https(&gw.ca.pem(), false);
        newcomers.push(http.clone());
        let (status, _, _) = tokio::time::timeout(
            Duration::from_secs(10),
            support::send(
                &http,
                client::request("GET", &gw.url(&format!("/new/{i}")), ""),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("newcomer {i} was not served"));
        assert_eq!(status, 200, "newcomer {i}");
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_connections_reaped_total{reason=\"capacity\"}"
        ),
        3.0
    );
    assert_eq!(metric(&m, "drawbridge_connections_refused_total"), 0.0);
    assert!(metric(&m, "drawbridge_connections_open") <= 20.0);
    // The idlest went first: the three earliest silent sockets.
    for s in silent.iter_mut().take(3) {
        closed(s, Duration::from_secs(5)).await;
    }
}

// --- Request head size ----------------------------------------------------------------------

/// Sends `head` on a fresh HTTP/1.1 connection (writing in the background, since the gateway
/// may close before it has read it all); the response status and how the connection ended.
async fn send_head(gw: &Gateway, head: Vec<u8>) -> (u16, End) {
    let (mut rd, wr) = tokio::io::split(gw.tls(b"http/1.1").await);
    let writer = spawn_writer(wr, head, 4096);
    let (status, _) = read_response(&mut rd).await;
    let (end, _) = closed(&mut rd, Duration::from_secs(5)).await;
    drop(writer);
    (status, end)
}

#[tokio::test]
async fn oversized_http1_heads_get_431_and_are_never_forwarded() {
    let (up, gw) = start("max_request_head_bytes = 32768").await;
    let big = "a".repeat(100 * 1024);
    let many: String = (0..40)
        .map(|i| format!("x-h{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    let heads = [
        (
            "one 100 KiB header",
            format!("GET / HTTP/1.1\r\nhost: localhost\r\nx-big: {big}\r\n\r\n"),
        ),
        (
            "forty 1 KiB headers",
            format!("GET / HTTP/1.1\r\nhost: localhost\r\n{many}\r\n"),
        ),
        (
            "a 40 KiB target",
            format!(
                "GET /{} HTTP/1.1\r\nhost: localhost\r\n\r\n",
                "c".repeat(40 * 1024)
            ),
        ),
        (
            "just over",
            format!(
                "GET / HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
                "d".repeat(32 * 1024)
            ),
        ),
    ];
    for (what, head) in heads {
        // `send_head` also waits for the connection to close after the 431.
        let (status, _) = send_head(&gw, head.into_bytes()).await;
        assert_eq!(status, 431, "{what}");
    }
    assert_eq!(up.hits(), 0, "an oversized head was forwarded");

    // Under the limit still passes.
    let mut s = gw.tls(b"http/1.1").await;
    let head = format!(
        "GET /fits HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "e".repeat(30 * 1024)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    assert_eq!(up.hits(), 1);
    assert_eq!(up.seen()[0].headers["x-big"].len(), 30 * 1024);
}

#[tokio::test]
async fn unfinished_http1_head_is_cut_off_at_the_size_limit() {
    let (up, gw) = start("max_request_head_bytes = 32768\nheader_read_timeout_ms = 20000").await;
    // 390 KiB of one header value, never finished: answered as soon as it passes 32 KiB, long
    // before the header timeout.
    let mut head = b"GET / HTTP/1.1\r\nhost: localhost\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 390 * 1024));
    let started = Instant::now();
    let (status, _) = send_head(&gw, head).await;
    assert_eq!(status, 431);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Under the limit, an unfinished head is not cut for its size.
    let mut s = gw.tls(b"http/1.1").await;
    s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nx-big: ")
        .await
        .unwrap();
    s.write_all(&vec![b'a'; 20 * 1024]).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a 20 KiB unfinished head was answered: {early:?}"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn oversized_http2_header_lists_are_refused_and_never_forwarded() {
    let (up, gw) = start("max_request_head_bytes = 32768").await;

    // An honest client (hyper) sending a 100 KiB header.
    let (mut h2, _) = client::h2_over(gw.tls(b"h2").await).await;
    let req = http::Request::get("https://localhost/big")
        .header("x-big", "a".repeat(100 * 1024))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = h2
        .send_request(req)
        .await
        .expect("refused on the stream, not the connection");
    assert_eq!(resp.status(), 431);

    // A raw client ignoring SETTINGS_MAX_HEADER_LIST_SIZE: 40 KiB in one block is refused on
    // its stream, and the connection goes on serving.
    let mut s = gw.tls(b"h2").await;
    s.write_all(&h2raw::hello()).await.unwrap();
    let big = "b".repeat(40 * 1024);
    s.write_all(&h2raw::get(1, "/big", &[("x-big", &big)], true))
        .await
        .unwrap();
    let frames = h2raw::read_until(&mut s, Duration::from_secs(5), h2raw::ends(1)).await;
    assert!(
        frames
            .iter()
            .any(|f| f.stream == 1 && h2raw::is_431_headers(f)),
        "{frames:?}"
    );
    s.write_all(&h2raw::get(3, "/after", &[], true))
        .await
        .unwrap();
    let frames = h2raw::read_until(&mut s, Duration::from_secs(5), h2raw::ends(3)).await;
    assert!(frames.iter().any(h2raw::is_ok_headers), "{frames:?}");
    assert_eq!(
        up.hits(),
        1,
        "only the small request reaches the sync server"
    );

    // 390 KiB in a block that never ends: the connection is closed long before it is all read.
    let mut s = gw.tls(b"h2").await;
    s.write_all(&h2raw::hello()).await.unwrap();
    let huge = "c".repeat(390 * 1024);
    let blob = h2raw::get(1, "/huge", &[("x-huge", &huge)], false);
    let (mut rd, wr) = tokio::io::split(s);
    let writer = spawn_writer(wr, blob, 16 * 1024);
    let frames = h2raw::read_to_end(&mut rd, Duration::from_secs(10)).await;
    assert!(
        frames.iter().any(|f| f.kind == h2raw::GOAWAY),
        "no GOAWAY: {frames:?}"
    );
    drop(writer);
    assert_eq!(up.hits(), 1);
}
