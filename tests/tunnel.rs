//! The bridge: websocket tunnels through real TLS that open only with a session, relay bytes
//! untouched, and end with the right close code on expiry, logout and shutdown.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::ws::{
    RawUpstream, bearer_client, close_of, echo_ok, extended_connect, frame, raw_handshake,
    read_exact, upgraded_client,
};
use support::{Gateway, Upstream, Webhook, client, login, metric, post_bearer, tunnel_closes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn gateway(upstream: &str, hook: &Webhook, extra: &str) -> Gateway {
    Gateway::builder(upstream)
        .demo_provider(hook)
        .extra(extra)
        .spawn()
        .await
}

use support::ws::Ws;

/// A tungstenite client through the gateway's TLS, with extra handshake headers.
async fn connect(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    support::ws::client(gw.addr, &gw.ca.pem(), path, headers).await
}

#[tokio::test]
async fn upgrade_without_a_session_is_401_and_never_reaches_the_sync_server() {
    let mut up = RawUpstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer not-a-session")],
        vec![("sec-websocket-protocol", "drawbridge.bearer.nope")],
        vec![("cookie", "drawbridge_session=forged")],
    ] {
        let (mut tls, status, head) =
            raw_handshake(gw.addr, &gw.ca.pem(), "/sync/room", &headers).await;
        assert_eq!(status, 401, "{headers:?}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("location:"),
            "never a redirect"
        );
        let mut body = vec![0u8; 4096];
        let n = tls.read(&mut body).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(json["result"], "failure");
        assert_eq!(json["reason"], "InvalidToken");
    }
    let (_, status, _) = raw_handshake(gw.addr, &gw.ca.pem(), "/sync?ticket=made-up", &[]).await;
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!up.any(), "the sync server saw an unauthenticated upgrade");
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_tunnels_total{result=\"rejected\"}"
        ),
        5.0
    );
}

#[tokio::test]
async fn every_token_carrier_opens_a_tunnel_and_the_token_never_reaches_the_sync_server() {
    let mut up = RawUpstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "alice-token").await.session();
    let http = client::https(&gw.ca.pem(), false);
    let (_, _, t) = post_bearer(&http, &gw.url("/auth/ticket"), &token).await;
    let ticket = t["ticket"].as_str().unwrap().to_owned();
    // What the sync server needs to verify assertions: the published keys alone.
    let jwks = support::jwks(&http, &gw).await;

    let bearer = format!("Bearer {token}");
    let protocol = format!("chat.v2, drawbridge.bearer.{token}");
    let cookie = format!("theme=dark; drawbridge_session={token}");
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "authorization",
            "/sync/a".into(),
            vec![("authorization", bearer.as_str())],
        ),
        (
            "protocol",
            "/sync/b".into(),
            vec![("sec-websocket-protocol", protocol.as_str())],
        ),
        (
            "cookie",
            "/sync/c".into(),
            vec![("cookie", cookie.as_str())],
        ),
        (
            "ticket",
            format!("/sync/d?room=1&ticket={ticket}&x=2"),
            vec![],
        ),
    ];
    for (carrier, path, mut headers) in cases {
        headers.push(("x-drawbridge-user", "root"));
        headers.push(("x-drawbridge-permissions", "e30"));
        let (_tls, status, head) = raw_handshake(gw.addr, &gw.ca.pem(), &path, &headers).await;
        assert_eq!(status, 101, "{carrier}: {head}");
        let tunnel = up.next().await;
        let h = &tunnel.headers;
        assert_eq!(h["x-drawbridge-user"], "alice", "{carrier}");
        assert_eq!(h["x-drawbridge-app"], "app");
        assert_eq!(h["x-drawbridge-provider"], "demo");
        assert_eq!(
            h.get_all("x-drawbridge-user").iter().count(),
            1,
            "a spoofed identity header survived"
        );
        let perms = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            h["x-drawbridge-permissions"].as_bytes(),
        )
        .unwrap();
        let perms: serde_json::Value = serde_json::from_slice(&perms).unwrap();
        assert_eq!(perms["read"]["everything"], true, "{carrier}");
        let assertion = h["x-drawbridge-assertion"].to_str().unwrap();
        let kid = jsonwebtoken::decode_header(assertion).unwrap().kid.unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&[format!("http://{}", up.addr)]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            assertion,
            &jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).expect("published")).unwrap(),
            &v,
        )
        .expect("the assertion verifies with the JWKS")
        .claims;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], format!("http://{}", up.addr));
        assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 60);
        // The session token itself is nowhere in what the sync server saw.
        let seen = format!("{:?} {}", h, tunnel.uri);
        assert!(
            !seen.contains(&token),
            "{carrier}: the session token was forwarded: {seen}"
        );
        assert!(
            !seen.contains(&ticket),
            "{carrier}: the ticket was forwarded"
        );
        match carrier {
            "protocol" => assert_eq!(h["sec-websocket-protocol"], "chat.v2"),
            "cookie" => assert_eq!(h["cookie"], "theme=dark"),
            "ticket" => assert_eq!(tunnel.uri, "/sync/d?room=1&x=2"),
            _ => assert!(!h.contains_key("authorization")),
        }
    }
    // A ticket is single-use.
    let (_, status, _) = raw_handshake(
        gw.addr,
        &gw.ca.pem(),
        &format!("/sync/e?ticket={ticket}"),
        &[],
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn browser_offering_only_the_bearer_protocol_gets_a_valid_handshake() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "bob-token").await.session();
    // tungstenite, like a browser, fails a handshake whose offered protocols got no answer.
    let mut ws = connect(
        &gw,
        "/sync",
        &[(
            "sec-websocket-protocol",
            &format!("drawbridge, drawbridge.bearer.{token}"),
        )],
    )
    .await
    .expect("handshake completes for the client");
    echo_ok(&mut ws, "through the protocol carrier").await;
}

#[tokio::test]
async fn relay_is_byte_for_byte_in_both_directions() {
    let mut up = RawUpstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "carol-token").await.session();
    let (mut client, status, _) = raw_handshake(
        gw.addr,
        &gw.ca.pem(),
        "/sync",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 101);
    let mut upstream = up.next().await.io;

    let key = [0x37, 0xfa, 0x21, 0x3d];
    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut from_client = Vec::new();
    from_client.extend(frame(true, 0x1, "hello, sync".as_bytes(), Some(key)));
    from_client.extend(frame(true, 0x2, &[0, 1, 2, 254, 255], Some(key)));
    from_client.extend(frame(false, 0x1, b"frag-", Some(key)));
    from_client.extend(frame(
        true,
        0x9,
        b"ping inside a fragmented message",
        Some(key),
    ));
    from_client.extend(frame(false, 0x0, b"men-", Some(key)));
    from_client.extend(frame(true, 0x0, b"ted", Some(key)));
    from_client.extend(frame(true, 0xA, b"", Some(key)));
    from_client.extend(frame(true, 0x2, &big, Some(key)));
    let writer = tokio::spawn({
        let bytes = from_client.clone();
        async move {
            client.write_all(&bytes).await.unwrap();
            client
        }
    });
    let got = read_exact(&mut upstream, from_client.len()).await;
    assert!(
        got == from_client,
        "client-to-upstream bytes changed in flight"
    );
    let mut client = writer.await.unwrap();

    let mut from_upstream = Vec::new();
    from_upstream.extend(frame(true, 0x1, "welcome".as_bytes(), None));
    from_upstream.extend(frame(true, 0x9, b"are you there", None));
    from_upstream.extend(frame(false, 0x2, &[9; 70_000], None));
    from_upstream.extend(frame(true, 0x0, &[8; 3], None));
    upstream.write_all(&from_upstream).await.unwrap();
    assert_eq!(
        read_exact(&mut client, from_upstream.len()).await,
        from_upstream
    );

    // The client closes: its close frame reaches the sync server untouched, and the answer comes back.
    let close = frame(true, 0x8, &[0x03, 0xe8, b'b', b'y', b'e'], Some(key));
    client.write_all(&close).await.unwrap();
    assert_eq!(read_exact(&mut upstream, close.len()).await, close);
    let answer = frame(true, 0x8, &[0x03, 0xe8], None);
    upstream.write_all(&answer).await.unwrap();
    assert_eq!(read_exact(&mut client, answer.len()).await, answer);
    drop(upstream);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
    assert_eventually!(
        tunnel_closes(&gw.metrics().await, "client") == 1.0,
        "the client's close was not counted"
    );
    let m = gw.metrics().await;
    assert!(
        metric(
            &m,
            "drawbridge_tunnel_bytes_total{direction=\"client_to_upstream\"}"
        ) >= from_client.len() as f64
    );
    assert_eq!(metric(&m, "drawbridge_tunnels_active"), 0.0);
}

#[tokio::test]
async fn upstream_close_is_relayed_faithfully() {
    let mut up = RawUpstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "dan-token").await.session();
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    let mut upstream = up.next().await.io;
    upstream
        .write_all(&frame(true, 0x8, &[0x0f, 0xa0, b'b', b'y', b'e'], None))
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4000));
    drop(upstream);
    assert_eventually!(
        tunnel_closes(&gw.metrics().await, "upstream") == 1.0,
        "the sync server's close was not counted"
    );
}

#[tokio::test]
async fn expiry_closes_with_4001_mid_stream_while_the_client_keeps_sending() {
    let up = Upstream::start().await;
    let hook = Webhook::users(2).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "erin-token").await.session();
    let ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        while tx.send(Message::binary(vec![7u8; 4096])).await.is_ok() {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent
    });
    let started = Instant::now();
    let mut echoed = 0u64;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .expect("no close within 10 s")
        {
            Some(Ok(Message::Binary(_))) => echoed += 1,
            Some(Ok(Message::Close(f))) => break f.map(|f| f.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Library(4001)));
    assert!(echoed > 10, "the stream was not busy ({echoed} echoes)");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        started.elapsed()
    );
    sender.abort();
    assert_eventually!(
        tunnel_closes(&gw.metrics().await, "expired") == 1.0,
        "the expiry was not counted"
    );
}

/// The `exp` claim of a session token (read, not verified).
fn exp_of(token: &str) -> u64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&json).unwrap()["exp"]
        .as_u64()
        .unwrap()
}

/// Sleeps until `millis` past the Unix second `secs`.
async fn sleep_until_unix(secs: u64, millis: u64) {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
    if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn refresh_moves_the_tunnel_deadline() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    // Claims count whole seconds and a session is refused from the second its exp names, so
    // the deadlines are read from the tokens rather than assumed from the wall clock.
    let gw = gateway(&up.url(), &hook, "[session]\nmax_ttl_seconds = 3\n").await;
    let token = login(&gw, "app", "demo", "fred-token").await.session();
    let first_exp = exp_of(&token);
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    // A second later at least, so the refreshed token's exp moves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let http = client::https(&gw.ca.pem(), false);
    let (status, _, body) = support::refresh(&http, &gw, &token).await;
    assert_eq!(status, 200, "{body}");
    let refreshed = body["sessionToken"].as_str().expect("a refreshed token");
    let new_exp = exp_of(refreshed);
    assert!(new_exp > first_exp, "{new_exp} <= {first_exp}");
    // Past the first deadline, the tunnel still works.
    sleep_until_unix(first_exp, 200).await;
    echo_ok(&mut ws, "still here after the old deadline").await;
    assert_eq!(close_of(&mut ws, Duration::from_secs(5)).await, Some(4001));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now >= new_exp,
        "closed before the new deadline ({now} < {new_exp})"
    );
}

#[tokio::test]
async fn logout_closes_the_tunnel_with_4003_within_a_second() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "gail-token").await.session();
    let mut ws = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    echo_ok(&mut ws, "before logout").await;
    let http = client::https(&gw.ca.pem(), false);
    let started = Instant::now();
    let (status, _, _) = post_bearer(&http, &gw.url("/auth/logout"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(close_of(&mut ws, Duration::from_secs(1)).await, Some(4003));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn shutdown_closes_every_tunnel_with_1001() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let mut gw = gateway(&up.url(), &hook, "[shutdown]\ngrace_seconds = 5\n").await;
    let token = login(&gw, "app", "demo", "hank-token").await.session();
    let mut a = bearer_client(gw.addr, &gw.ca.pem(), "/sync", &token).await;
    let mut b = bearer_client(gw.addr, &gw.ca.pem(), "/sync/other", &token).await;
    echo_ok(&mut a, "a").await;
    echo_ok(&mut b, "b").await;
    let run = gw.trigger_shutdown();
    assert_eq!(close_of(&mut a, Duration::from_secs(5)).await, Some(1001));
    assert_eq!(close_of(&mut b, Duration::from_secs(5)).await, Some(1001));
    tokio::time::timeout(Duration::from_secs(6), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn refused_upgrade_is_relayed_and_a_dead_upstream_is_502() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "ivan-token").await.session();
    let bearer = format!("Bearer {token}");
    let (mut tls, status, head) = raw_handshake(
        gw.addr,
        &gw.ca.pem(),
        "/sync/refuse",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 403, "{head}");
    let mut body = vec![0u8; 1024];
    let n = tls.read(&mut body).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body[..n]).unwrap()["refused"],
        "by the sync server"
    );

    let dead = gateway(&support::upstream::dead_url().await, &hook, "").await;
    let token = login(&dead, "app", "demo", "ivan-token").await.session();
    let (_, status, _) = raw_handshake(
        dead.addr,
        &dead.ca.pem(),
        "/sync",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn thousand_concurrent_tunnels_stay_open_and_echo() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    // One test host stands for a thousand clients: its per-client share is lifted.
    let gw = gateway(
        &up.url(),
        &hook,
        "[limits]\nmax_connections = 5000\nmax_connections_per_client = 5000\n",
    )
    .await;
    let token = login(&gw, "app", "demo", "judy-token").await.session();
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    let mut open = Vec::new();
    for chunk in 0..10 {
        let batch = (0..100).map(|_| connect(&gw, "/sync", &headers));
        for ws in futures_util::future::join_all(batch).await {
            open.push(ws.unwrap_or_else(|e| panic!("tunnel in batch {chunk} failed: {e}")));
        }
    }
    assert_eq!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active"),
        1000.0
    );
    let echoes = open
        .iter_mut()
        .enumerate()
        .map(|(i, ws)| async move { echo_ok(ws, &format!("tunnel {i}")).await });
    futures_util::future::join_all(echoes).await;
    drop(open);
    assert_eventually!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active") == 0.0,
        "tunnels were not cleaned up"
    );
}

#[tokio::test]
async fn http2_extended_connect_websocket_is_gated_and_relayed() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "kim-token").await.session();
    let tls = gw.tls(b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, _) = client::h2_over(tls).await;
    let connect = |bearer: Option<&str>| {
        extended_connect(gw.addr.port(), "/sync/h2", "websocket", bearer)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    send.ready().await.unwrap();
    let refused = send.send_request(connect(None)).await.unwrap();
    assert_eq!(refused.status(), 401);
    send.ready().await.unwrap();
    let mut resp = send.send_request(connect(Some(&token))).await.unwrap();
    assert_eq!(resp.status(), 200, "RFC 8441 answers 200");
    let mut ws = upgraded_client(&mut resp).await;
    echo_ok(&mut ws, "over h2").await;
    let seen = up.seen();
    let h = &seen.last().unwrap().headers;
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["x-drawbridge-user"], "kim");
    assert!(h.contains_key("sec-websocket-key"));
}
