//! Every tunnel ends with a close frame wherever one can be sent: when the sync server or the
//! client vanishes mid-session without one, and when drawbridge shuts down, whatever the
//! tunnel's gate and even while its handshake is still on the way.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::process::Running;
use support::ws::{RawUpstream, frame, raw_handshake, read_exact, read_frame, read_to_end};
use support::{Gateway, Webhook, client, login, metric, tunnel_closes, ws};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Upgrades under these paths open without a session; every other one needs a session.
const PUBLIC: &[&str] = &["/public", "/_ditto/ws"];

async fn gateway(upstream: &str, hook: &Webhook, extra: &str) -> Gateway {
    Gateway::builder(upstream)
        .public_upgrade_paths(PUBLIC)
        .demo_provider(hook)
        .extra(extra)
        .spawn()
        .await
}

/// A tungstenite client through the gateway's TLS over HTTP/1.1, with extra handshake headers.
async fn connect(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Ws {
    support::ws::client(addr, ca_pem, path, headers)
        .await
        .unwrap_or_else(|e| panic!("handshake on {path} failed: {e}"))
}

/// A raw sync server behind a gateway, and a session's token as a bearer credential for `user`
/// (the webhook provider must outlive the gateway).
async fn session_bed(user: &str) -> (RawUpstream, Webhook, Gateway, String) {
    let up = RawUpstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", &format!("{user}-token"))
        .await
        .session();
    (up, hook, gw, format!("Bearer {token}"))
}

/// A tunnel on `/sync` opened with `bearer`, and the sync server's TCP socket under it, after
/// `echoes` messages (`"<label> <n>"`) crossed it both ways.
async fn session_tunnel(
    gw: &Gateway,
    up: &mut RawUpstream,
    bearer: &str,
    echoes: usize,
    label: &str,
) -> (Ws, TcpStream) {
    let mut ws = connect(gw.addr, &gw.ca.pem(), "/sync", &[("authorization", bearer)]).await;
    let mut upstream = up.next().await.into_tcp();
    for n in 0..echoes {
        echo_once(&mut upstream, &mut ws, &format!("{label} {n}")).await;
    }
    (ws, upstream)
}

/// A tunnel one side of which the test will lose as `how` says: [`session_tunnel`] after three
/// echoes labelled by `how`, or none `before_any_frame`.
async fn tunnel_to_lose(
    gw: &Gateway,
    up: &mut RawUpstream,
    bearer: &str,
    how: impl std::fmt::Debug,
    before_any_frame: bool,
) -> (Ws, TcpStream) {
    let echoes = if before_any_frame { 0 } else { 3 };
    session_tunnel(gw, up, bearer, echoes, &format!("{how:?}")).await
}

/// Waits until `n` tunnels have been counted closed for `reason` and none is open any more.
async fn all_closed_for(gw: &Gateway, reason: &str, n: usize) {
    assert_eventually!(
        tunnel_closes(&gw.metrics().await, reason) == n as f64,
        "each lost side was not counted once as {reason}"
    );
    assert_eventually!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active") == 0.0,
        "tunnels stayed open"
    );
}

/// A raw HTTP/1.1 handshake on `/sync` with `bearer`, answered 101, and the sync server's TCP
/// socket under it.
async fn raw_session_tunnel(
    gw: &Gateway,
    up: &mut RawUpstream,
    bearer: &str,
) -> (tokio_rustls::client::TlsStream<TcpStream>, TcpStream) {
    let (client, status, head) =
        raw_handshake(gw.addr, &gw.ca.pem(), "/sync", &[("authorization", bearer)]).await;
    assert_eq!(status, 101, "{head}");
    (client, up.next().await.into_tcp())
}

/// A tungstenite client over an HTTP/2 extended CONNECT (RFC 8441) stream, with no credential.
async fn connect_h2(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    path: &str,
) -> WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
    let mut send = client::h2(addr, ca_pem).await;
    let req = ws::extended_connect(addr.port(), path, "websocket", None)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    send.ready().await.unwrap();
    let mut resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "extended CONNECT on {path}");
    ws::upgraded_client(&mut resp).await
}

/// The next message within 5 s.
async fn next_message<S>(ws: &mut S) -> Message
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("no message within 5 s")
        .expect("the stream ended")
        .expect("the stream failed")
}

/// The sync server echoes one message: it reads the client's (masked) frame and sends its
/// payload back unmasked.
async fn echo_once<U, S>(upstream: &mut U, ws: &mut S, text: &str)
where
    U: AsyncRead + AsyncWrite + Unpin,
    S: Stream<Item = Result<Message, WsError>> + futures_util::Sink<Message> + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
{
    ws.send(Message::text(text)).await.unwrap();
    let got = read_frame(upstream)
        .await
        .expect("the message reached the sync server");
    assert!(got.masked, "frames toward the sync server stay masked");
    upstream
        .write_all(&frame(true, got.opcode, &got.payload, None))
        .await
        .unwrap();
    assert_eq!(next_message(ws).await, Message::text(text));
}

/// Data messages until a close frame, and that frame's code and reason. A bare end of stream
/// or a reset fails the test.
async fn messages_then_close<S>(ws: &mut S) -> (Vec<Message>, u16, String)
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut before = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no close frame within 10 s")
        {
            Some(Ok(Message::Close(Some(f)))) => {
                return (before, u16::from(f.code), f.reason.as_str().to_owned());
            }
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(m)) => before.push(m),
            other => panic!("the stream ended without a close frame: {other:?}"),
        }
    }
}

/// After the close handshake, the stream ends cleanly.
async fn ends_cleanly<S>(ws: &mut S)
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the stream did not end after the close")
    {
        None | Some(Err(WsError::ConnectionClosed)) => {}
        other => panic!("after the close: {other:?}"),
    }
}

/// Closes `tcp` with a reset (RST) instead of a FIN.
fn reset(tcp: TcpStream) {
    tcp.set_zero_linger().unwrap();
    drop(tcp);
}

/// How the sync server goes away between two frames, without a close frame.
#[derive(Debug, Clone, Copy)]
enum UpstreamGoes {
    /// TCP reset after some echoes.
    Reset,
    /// TCP FIN after some echoes.
    Fin,
    /// One last frame and the FIN in one go.
    FinRightAfterAFrame,
    /// TCP reset before any frame crossed.
    ResetBeforeAnyFrame,
}

#[tokio::test]
async fn upstream_lost_between_frames_gets_the_client_a_1011_close() {
    let (mut up, _hook, gw, bearer) = session_bed("olga").await;
    let variants = [
        UpstreamGoes::Reset,
        UpstreamGoes::Fin,
        UpstreamGoes::FinRightAfterAFrame,
        UpstreamGoes::ResetBeforeAnyFrame,
    ];
    for how in variants {
        let before_any_frame = matches!(how, UpstreamGoes::ResetBeforeAnyFrame);
        let (mut ws, mut upstream) =
            tunnel_to_lose(&gw, &mut up, &bearer, how, before_any_frame).await;
        let mut kept = None;
        match how {
            UpstreamGoes::Reset | UpstreamGoes::ResetBeforeAnyFrame => reset(upstream),
            UpstreamGoes::Fin => drop(upstream),
            UpstreamGoes::FinRightAfterAFrame => {
                // The FIN right behind the frame: the relay reads both in one go where it can.
                upstream
                    .write_all(&frame(true, 0x1, b"last words", None))
                    .await
                    .unwrap();
                upstream.shutdown().await.unwrap();
                kept = Some(upstream);
            }
        }
        let (before, code, reason) = messages_then_close(&mut ws).await;
        assert_eq!(code, 1011, "{how:?}: not an unexpected-condition close");
        assert_eq!(reason, "upstream went away", "{how:?}");
        let expected: Vec<Message> = match how {
            UpstreamGoes::FinRightAfterAFrame => vec![Message::text("last words")],
            _ => vec![],
        };
        assert_eq!(before, expected, "{how:?}: what came before the close");
        ends_cleanly(&mut ws).await;
        drop(kept);
    }
    // The same over an HTTP/2 extended CONNECT stream, on a public path.
    let mut ws = connect_h2(gw.addr, &gw.ca.pem(), "/public/feed").await;
    let mut upstream = up.next().await.into_tcp();
    echo_once(&mut upstream, &mut ws, "over h2").await;
    reset(upstream);
    let (_, code, reason) = messages_then_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (1011, "upstream went away"),
        "HTTP/2"
    );
    ends_cleanly(&mut ws).await;

    all_closed_for(&gw, "upstream_lost", variants.len() + 1).await;
}

/// Where inside a frame toward the client the sync server dies, and how.
#[derive(Debug, Clone, Copy)]
enum UpstreamCut {
    /// FIN inside the payload of a frame with a 64-bit length.
    FinInA64BitFrame,
    /// Reset inside the payload of a frame with a 16-bit length.
    ResetInA16BitFrame,
    /// FIN inside a frame header (its extended length half sent).
    FinInAHeader,
    /// Reset after the first byte of a header.
    ResetAfterOneHeaderByte,
}

#[tokio::test]
async fn upstream_lost_mid_frame_gets_the_client_the_cut_stream_and_a_clean_end() {
    let (mut up, _hook, gw, bearer) = session_bed("pete").await;
    // Payloads of 0x88 bytes read like Close headers to anything that parses payloads.
    let whole = frame(true, 0x1, b"a whole frame first", None);
    let large = frame(true, 0x2, &vec![0x88; 200_000], None);
    let medium = frame(true, 0x2, &vec![0x88; 60_000], None);
    let variants = [
        UpstreamCut::FinInA64BitFrame,
        UpstreamCut::ResetInA16BitFrame,
        UpstreamCut::FinInAHeader,
        UpstreamCut::ResetAfterOneHeaderByte,
    ];
    for how in variants {
        let (mut client, mut upstream) = raw_session_tunnel(&gw, &mut up, &bearer).await;
        let cut: &[u8] = match how {
            UpstreamCut::FinInA64BitFrame => &large[..100_000],
            UpstreamCut::ResetInA16BitFrame => &medium[..30_000],
            // 2 bytes, then 3 of the 8-byte length.
            UpstreamCut::FinInAHeader => &large[..5],
            UpstreamCut::ResetAfterOneHeaderByte => &medium[..1],
        };
        let sent = [whole.as_slice(), cut].concat();
        upstream.write_all(&sent).await.unwrap();
        // The client gets every byte the sync server sent, so the relay has read them all...
        assert_eq!(read_exact(&mut client, sent.len()).await, sent, "{how:?}");
        // ... and then the sync server dies inside a frame.
        match how {
            UpstreamCut::FinInA64BitFrame | UpstreamCut::FinInAHeader => drop(upstream),
            UpstreamCut::ResetInA16BitFrame | UpstreamCut::ResetAfterOneHeaderByte => {
                reset(upstream)
            }
        }
        // No close frame can follow a cut frame (it would read as payload), and nothing is made
        // up to finish it: the client's stream just ends, cleanly (TLS close_notify, FIN).
        let rest = read_to_end(&mut client)
            .await
            .unwrap_or_else(|e| panic!("{how:?}: the stream reset instead of ending: {e}"));
        assert!(
            rest.is_empty(),
            "{how:?}: {} bytes after the cut: {:02x?}",
            rest.len(),
            &rest[..rest.len().min(16)]
        );
    }

    // A websocket client reads this as an abnormal closure: its peer went without a close.
    let (mut ws, mut upstream) = session_tunnel(&gw, &mut up, &bearer, 1, "before the cut").await;
    upstream.write_all(&large[..100_000]).await.unwrap();
    drop(upstream);
    match tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the client never learnt of the cut")
    {
        Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {}
        other => panic!("after a cut frame: {other:?}"),
    }

    assert_eventually!(
        tunnel_closes(&gw.metrics().await, "upstream_lost") == (variants.len() + 1) as f64,
        "each lost sync server was not counted once"
    );
}

/// How the client goes away between two frames, without a close frame.
#[derive(Debug, Clone, Copy)]
enum ClientGoes {
    /// TCP reset.
    Reset,
    /// TCP FIN with no TLS close_notify.
    Fin,
    /// TLS close_notify and FIN, but no websocket close.
    TlsClose,
    /// TCP reset before any frame crossed.
    ResetBeforeAnyFrame,
}

#[tokio::test]
async fn client_lost_between_frames_gets_the_upstream_a_masked_1001_close() {
    let (mut up, _hook, gw, bearer) = session_bed("quin").await;
    let variants = [
        ClientGoes::Reset,
        ClientGoes::Fin,
        ClientGoes::TlsClose,
        ClientGoes::ResetBeforeAnyFrame,
    ];
    for how in variants {
        let before_any_frame = matches!(how, ClientGoes::ResetBeforeAnyFrame);
        let (mut ws, mut upstream) =
            tunnel_to_lose(&gw, &mut up, &bearer, how, before_any_frame).await;
        match how {
            ClientGoes::Reset | ClientGoes::ResetBeforeAnyFrame => {
                ws.get_ref().get_ref().0.set_zero_linger().unwrap();
                drop(ws);
            }
            ClientGoes::Fin => drop(ws),
            ClientGoes::TlsClose => {
                ws.get_mut().shutdown().await.unwrap();
                drop(ws);
            }
        }
        let close = read_frame(&mut upstream)
            .await
            .unwrap_or_else(|| panic!("{how:?}: a bare end of stream instead of a close"));
        assert_eq!(close.opcode, 0x8, "{how:?}: {close:?}");
        assert!(close.fin);
        assert!(
            close.masked,
            "{how:?}: frames toward a server must be masked"
        );
        assert_eq!(close.close_code(), Some(1001), "{how:?}");
        assert_eq!(close.close_reason(), "client went away");
        // The sync server answers the close; drawbridge has already ended its side of the stream.
        upstream
            .write_all(&frame(true, 0x8, &1001u16.to_be_bytes(), None))
            .await
            .unwrap();
        let rest = read_to_end(&mut upstream).await.unwrap();
        assert!(rest.is_empty(), "{how:?}: {rest:02x?} after the close");
    }
    all_closed_for(&gw, "client_lost", variants.len()).await;
}

#[tokio::test]
async fn client_lost_mid_frame_gets_the_upstream_the_cut_stream_and_a_clean_end() {
    let (mut up, _hook, gw, bearer) = session_bed("rosa").await;
    let key = [0x11, 0x22, 0x33, 0x44];
    let whole = frame(true, 0x1, b"whole", Some(key));
    let large = frame(true, 0x2, &vec![0x88; 70_000], Some(key));
    for reset_it in [false, true] {
        let (mut client, mut upstream) = raw_session_tunnel(&gw, &mut up, &bearer).await;
        let sent = [whole.as_slice(), &large[..20_000]].concat();
        client.write_all(&sent).await.unwrap();
        assert_eq!(read_exact(&mut upstream, sent.len()).await, sent);
        if reset_it {
            client.get_ref().0.set_zero_linger().unwrap();
        }
        drop(client);
        let rest = read_to_end(&mut upstream).await.unwrap();
        assert!(
            rest.is_empty(),
            "reset {reset_it}: {} bytes after the cut",
            rest.len()
        );
    }
    assert_eventually!(
        tunnel_closes(&gw.metrics().await, "client_lost") == 2.0,
        "each lost client was not counted once"
    );
}

#[tokio::test]
async fn a_side_that_closed_first_keeps_its_close_and_is_not_counted_lost() {
    let (mut up, _hook, gw, bearer) = session_bed("sam").await;
    // The sync server closes with 4000, then drops the connection before the answer.
    let (mut ws, mut upstream) = session_tunnel(&gw, &mut up, &bearer, 1, "one").await;
    upstream
        .write_all(&frame(true, 0x8, &[0x0f, 0xa0, b'b', b'y', b'e'], None))
        .await
        .unwrap();
    upstream.shutdown().await.unwrap();
    let (_, code, reason) = messages_then_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (4000, "bye"),
        "the sync server's own close"
    );
    ends_cleanly(&mut ws).await;
    drop((ws, upstream));
    assert_eventually!(
        tunnel_closes(&gw.metrics().await, "upstream") == 1.0,
        "the sync server's close was not counted"
    );
    assert_eq!(tunnel_closes(&gw.metrics().await, "upstream_lost"), 0.0);
}

#[tokio::test]
async fn tunnels_still_opening_at_shutdown_are_closed_with_1001_before_run_returns() {
    let mut up = RawUpstream::holding().await;
    let hook = Webhook::users(3600).await;
    let mut gw = gateway(&up.url(), &hook, "[shutdown]\ngrace_seconds = 8\n").await;
    let token = login(&gw, "app", "demo", "tess-token").await.session();
    let bearer = format!("Bearer {token}");
    let (addr, ca) = (gw.addr, gw.ca.pem());
    // One handshake over HTTP/1.1 with a session, one public over HTTP/2.
    let h1 = tokio::spawn({
        let ca = ca.clone();
        async move { raw_handshake(addr, &ca, "/sync", &[("authorization", bearer.as_str())]).await }
    });
    assert_eventually!(
        up.arrived() == 1,
        "the handshake never reached the sync server"
    );
    let h2 = tokio::spawn({
        let ca = ca.clone();
        async move { connect_h2(addr, &ca, "/public/feed").await }
    });
    assert_eventually!(
        up.arrived() == 2,
        "the HTTP/2 handshake never reached the sync server"
    );

    let run = gw.trigger_shutdown();
    assert_eventually!(
        TcpStream::connect(addr).await.is_err(),
        "the listener still accepted connections while draining"
    );
    // Draining has begun with both handshakes held at the sync server; now they are answered.
    up.answer(2);
    let (mut h1, status, head) = tokio::time::timeout(Duration::from_secs(5), h1)
        .await
        .expect("the HTTP/1.1 handshake was not answered")
        .unwrap();
    assert_eq!(status, 101, "{head}");
    let mut h2 = tokio::time::timeout(Duration::from_secs(5), h2)
        .await
        .expect("the HTTP/2 handshake was not answered")
        .unwrap();
    let close = read_frame(&mut h1)
        .await
        .expect("a bare end of stream instead of a close");
    assert_eq!(
        (close.close_code(), close.close_reason()),
        (Some(1001), "going away")
    );
    assert!(!close.masked, "frames toward a client are not masked");
    let (_, code, _) = messages_then_close(&mut h2).await;
    assert_eq!(code, 1001, "the HTTP/2 tunnel");
    for _ in 0..2 {
        let mut upstream = up.next().await.io;
        let close = read_frame(&mut upstream)
            .await
            .expect("the sync server got no close");
        assert_eq!(close.close_code(), Some(1001));
        assert!(close.masked);
    }
    tokio::time::timeout(Duration::from_secs(8), run)
        .await
        .expect("run did not return")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_public_tunnels_with_1001_at_a_frame_boundary_while_they_stream() {
    let sync = support::ditto::DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    // The Ditto websocket without `require_known_token`, listed as public, and a public path
    // reached over HTTP/2.
    let mut gw = gateway(
        &sync.url(),
        &hook,
        "[ditto]\nenabled = true\n[shutdown]\ngrace_seconds = 8\n",
    )
    .await;
    let ditto = connect(gw.addr, &gw.ca.pem(), "/_ditto/ws", &[]).await;
    let h2 = connect_h2(gw.addr, &gw.ca.pem(), "/public/feed").await;
    let (ditto_tx, mut ditto_rx) = ditto.split();
    let (h2_tx, mut h2_rx) = h2.split();
    let senders = [stream_until_closed(ditto_tx), stream_until_closed(h2_tx)];
    // Both are busy: echoes are flowing before the shutdown.
    for _ in 0..5 {
        assert!(next_message(&mut ditto_rx).await.is_binary());
        assert!(next_message(&mut h2_rx).await.is_binary());
    }
    assert_eq!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active"),
        2.0
    );

    let run = gw.trigger_shutdown();
    // Each client parses every frame up to the close: the close came at a frame boundary.
    let (_, code, reason) = messages_then_close(&mut ditto_rx).await;
    assert_eq!(
        (code, reason.as_str()),
        (1001, "going away"),
        "the Ditto tunnel"
    );
    let (_, code, reason) = messages_then_close(&mut h2_rx).await;
    assert_eq!(
        (code, reason.as_str()),
        (1001, "going away"),
        "the HTTP/2 tunnel"
    );
    tokio::time::timeout(Duration::from_secs(8), run)
        .await
        .expect("run did not return")
        .unwrap()
        .unwrap();
    for sender in senders {
        sender.abort();
    }
}

/// Sends 4 KiB binary messages every few milliseconds until the stream refuses.
fn stream_until_closed<S>(mut tx: S) -> tokio::task::JoinHandle<()>
where
    S: futures_util::Sink<Message> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while tx.send(Message::binary(vec![7u8; 4096])).await.is_ok() {
            support::pace(5).await;
        }
    })
}

/// The SDK's login form, as the Ditto Node SDK sends it.
fn ditto_login_form(token: &str) -> String {
    format!(
        "appId=app-1&token={token}&provider=demo&siteId=1&chToken=ch-0b1c2d3e4f&chSigB64=c2ln&\
         peerKeyB64=cGVlcg%3D%3D&jwtVersion=1&includeX509=true"
    )
}

#[tokio::test]
async fn sigterm_sends_1001_to_session_ditto_token_and_public_tunnels_and_drains_them() {
    let sync = support::ditto::DittoServer::start().await;
    let hook = Webhook::users(3600).await;
    let mut gw = Running::start_with(
        Gateway::builder(sync.url())
            .public_upgrade_paths(PUBLIC)
            .demo_provider(&hook)
            .extra("[ditto]\nenabled = true\nrequire_known_token = true\n[shutdown]\ngrace_seconds = 8"),
        &[],
    );
    let ca = gw.ca.pem();
    // A session tunnel on a sync path.
    let token = login(&gw, "app", "demo", "uma-token").await.session();
    let session = ws::bearer_client(gw.addr, &ca, "/sync", &token).await;
    // A Ditto tunnel, gated on the access token drawbridge saw the sync server issue.
    let http = client::https(&ca, false);
    let mut req = client::request(
        "POST",
        &gw.url("/_ditto/auth/login"),
        ditto_login_form("vic-token"),
    );
    req.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let (status, _, body) = support::send(&http, req).await;
    assert_eq!(status, 200, "{body}");
    let ditto = connect(
        gw.addr,
        &ca,
        "/_ditto/ws",
        &[("x-ditto-auth", "access-for-vic-token")],
    )
    .await;
    // A public tunnel: a path under `public_upgrade_paths`, no credential.
    let public = connect_h2(gw.addr, &ca, "/public/feed").await;

    let (session_tx, mut session_rx) = session.split();
    let (ditto_tx, mut ditto_rx) = ditto.split();
    let (public_tx, mut public_rx) = public.split();
    let senders = [
        stream_until_closed(session_tx),
        stream_until_closed(ditto_tx),
        stream_until_closed(public_tx),
    ];
    for _ in 0..3 {
        assert!(next_message(&mut session_rx).await.is_binary());
        assert!(next_message(&mut ditto_rx).await.is_binary());
        assert!(next_message(&mut public_rx).await.is_binary());
    }

    kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
    for (name, code) in [
        ("session", messages_then_close(&mut session_rx).await.1),
        ("ditto token", messages_then_close(&mut ditto_rx).await.1),
        ("public", messages_then_close(&mut public_rx).await.1),
    ] {
        assert_eq!(code, 1001, "the {name} tunnel");
    }
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), 0);
    let logs = gw.logs();
    assert!(
        logs.contains("\"closing tunnels: going away\"") && logs.contains("\"tunnels\":3"),
        "{logs}"
    );
    assert!(
        logs.contains("\"drained\"") && !logs.contains("grace period over"),
        "the tunnels were not drained within the grace period: {logs}"
    );
    for sender in senders {
        sender.abort();
    }
}
