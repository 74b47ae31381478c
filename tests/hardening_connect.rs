//! No tunnel but a websocket one, through real TLS: plain CONNECT (HTTP/1.1 and HTTP/2) gets 405,
//! an extended CONNECT for any `:protocol` but `websocket` gets 400, a websocket upgrade that is
//! not an HTTP/1.1 GET gets 400, and an `Upgrade` to anything else (h2c, ...) is forwarded as a
//! plain request that cannot switch protocols. The sync server never sees a CONNECT.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use support::{Gateway, Upstream, Webhook, client, login, metric, status_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway(up: &Upstream, hook: &Webhook) -> Gateway {
    Gateway::builder(up.url())
        .public_upgrade_paths(&["/public"])
        .demo_provider(hook)
        .spawn()
        .await
}

/// Writes `raw` over a fresh HTTP/1.1 TLS connection and reads until the gateway closes it.
async fn exchange(gw: &Gateway, raw: &[u8]) -> String {
    let mut tls = gw.tls(b"http/1.1").await;
    tls.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the gateway kept the connection open after: {}",
        String::from_utf8_lossy(raw)
    );
    String::from_utf8_lossy(&got).into_owned()
}

type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_send(
    send: &mut H2,
    req: http::Request<Empty<Bytes>>,
) -> http::Response<hyper::body::Incoming> {
    send.ready().await.unwrap();
    send.send_request(req).await.unwrap()
}

#[tokio::test]
async fn http1_connect_gets_405_and_the_connection_closes_before_any_tunnel_byte() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up, &hook).await;
    let token = login(&gw, "app", "demo", "cy-token").await.session();
    let upstream_authority = up.addr.to_string();
    for target in [
        "localhost:443",
        upstream_authority.as_str(),
        "127.0.0.1:9090",
        "[::1]:443",
        "example.com:80",
    ] {
        for auth in ["", &format!("authorization: Bearer {token}\r\n")] {
            // The client sends its tunnel bytes at once, as an optimistic CONNECT client does:
            // they must never be read as a request.
            let raw = format!(
                "CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n{auth}\r\n\
                 GET /smuggled HTTP/1.1\r\nhost: localhost\r\n\r\n"
            );
            let answer = exchange(&gw, raw.as_bytes()).await;
            assert_eq!(status_of(&answer), 405, "{target}: {answer}");
            let lower = answer.to_ascii_lowercase();
            assert!(lower.contains("\r\nallow: "), "{answer}");
            assert!(!lower.contains("allow: connect"), "{answer}");
            assert!(lower.contains("\r\nconnection: close"), "{answer}");
            assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        }
    }
    // Origin-form CONNECT is malformed; it is refused all the same.
    let answer = exchange(&gw, b"CONNECT /sync HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert!(matches!(status_of(&answer), 400 | 405), "{answer}");
    assert_eq!(up.hits(), 0, "the upstream saw: {:?}", up.seen());
    assert!(
        metric(
            &gw.metrics().await,
            "drawbridge_http_requests_total{route=\"refused\",status_class=\"4xx\"}"
        ) >= 10.0
    );
}

#[tokio::test]
async fn http2_plain_connect_gets_405() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up, &hook).await;
    let token = login(&gw, "app", "demo", "di-token").await.session();
    let mut send = client::h2(gw.addr, &gw.ca.pem()).await;
    for authority in [
        "localhost:443".to_owned(),
        up.addr.to_string(),
        "example.com:80".to_owned(),
    ] {
        for bearer in [None, Some(&token)] {
            let mut req = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(authority.as_str());
            if let Some(b) = bearer {
                req = req.header("authorization", format!("Bearer {b}"));
            }
            let resp = h2_send(&mut send, req.body(Empty::new()).unwrap()).await;
            assert_eq!(resp.status(), 405, "{authority}");
            assert!(resp.headers().contains_key("allow"));
            assert_eq!(resp.headers()["content-type"], "application/json");
        }
    }
    assert_eq!(up.hits(), 0, "the upstream saw: {:?}", up.seen());
}

#[tokio::test]
async fn http2_extended_connect_for_any_protocol_but_websocket_gets_400() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up, &hook).await;
    let token = login(&gw, "app", "demo", "ed-token").await.session();
    let mut send = client::h2(gw.addr, &gw.ca.pem()).await;
    let connect = |protocol: &'static str, path: &str, bearer: Option<&str>| {
        support::ws::extended_connect(gw.addr.port(), path, protocol, bearer)
            .body(Empty::new())
            .unwrap()
    };
    for protocol in [
        "h2c",
        "WebSocket",
        "WEBSOCKET",
        "connect-udp",
        "connect-ip",
        "webtransport",
        "websocket2",
        "websocket/13",
    ] {
        for path in ["/sync", "/public/room", "/"] {
            for bearer in [None, Some(token.as_str())] {
                let resp = h2_send(&mut send, connect(protocol, path, bearer)).await;
                assert_eq!(resp.status(), 400, "{protocol} {path} {bearer:?}");
                assert_eq!(resp.headers()["content-type"], "application/json");
            }
        }
    }
    assert_eq!(up.hits(), 0, "the upstream saw: {:?}", up.seen());
    // The same request with `websocket` is the one tunnel drawbridge relays.
    let resp = h2_send(&mut send, connect("websocket", "/sync", Some(&token))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen()[0].headers["upgrade"], "websocket");
}

#[tokio::test]
async fn upgrade_to_anything_but_websocket_is_forwarded_as_a_plain_request() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up, &hook).await;
    for upgrade in [
        "h2c",
        "H2C",
        "h2c, websocket",
        "websocket, h2c",
        "TLS/1.2",
        "websocket/2",
        "HTTP/2.0",
    ] {
        for path in ["/sync", "/public"] {
            // h2c smuggling: with the Upgrade honoured, the client would speak HTTP/2 straight
            // to the sync server past every check.
            let raw = format!(
                "GET {path} HTTP/1.1\r\nhost: localhost\r\n\
                 connection: Upgrade, HTTP2-Settings, close\r\nupgrade: {upgrade}\r\n\
                 http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            );
            let answer = exchange(&gw, raw.as_bytes()).await;
            assert_eq!(status_of(&answer), 200, "{upgrade} {path}: {answer}");
            assert!(
                !answer.to_ascii_lowercase().contains("upgrade:"),
                "{answer}"
            );
            let seen = up.seen();
            let last = seen.last().unwrap();
            assert_eq!(last.uri, path);
            for hop in ["upgrade", "http2-settings"] {
                assert!(
                    !last.headers.contains_key(hop),
                    "{upgrade}: {hop} reached the upstream: {:?}",
                    last.headers
                );
            }
            assert!(
                !last.headers.get_all("connection").iter().any(|v| v
                    .to_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .contains("upgrade")),
                "{upgrade}: {:?}",
                last.headers
            );
        }
    }
    // Two Upgrade fields are no websocket handshake either.
    let answer = exchange(
        &gw,
        b"GET /public HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, close\r\n\
          upgrade: websocket\r\nupgrade: h2c\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(!up.seen().last().unwrap().headers.contains_key("upgrade"));
    // And should the upstream switch protocols on a plain request anyway, the client gets 502,
    // never a 101. (A plain request loses its websocket key on the way, so this upstream
    // switches on every request.)
    let (switcher, asked) = always_switching_upstream().await;
    let gw = Gateway::builder(switcher)
        .public_upgrade_paths(&["/public"])
        .demo_provider(&hook)
        .spawn()
        .await;
    let answer = exchange(
        &gw,
        b"GET /public HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(asked.await.is_ok(), "the upstream was not asked");
    assert_eq!(status_of(&answer), 502, "{answer}");
}

/// A raw HTTP/1.1 upstream that answers its first request, whatever it is, with 101 Switching
/// Protocols; the receiver fires once it has read that request's head.
async fn always_switching_upstream() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    let (asked, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = tcp.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let _ = asked.send(());
        let _ = conn
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            )
            .await;
        // Held open: the gateway, not the upstream, must end the exchange.
        let _ = conn.read(&mut buf).await;
    });
    (url, rx)
}

#[tokio::test]
async fn websocket_upgrade_on_anything_but_an_http11_get_gets_400() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up, &hook).await;
    let ws = "connection: Upgrade, close\r\nupgrade: websocket\r\n\
              sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (method, version) in [
        ("POST", "HTTP/1.1"),
        ("PUT", "HTTP/1.1"),
        ("DELETE", "HTTP/1.1"),
        ("OPTIONS", "HTTP/1.1"),
        ("PATCH", "HTTP/1.1"),
        ("GET", "HTTP/1.0"),
    ] {
        for path in ["/sync", "/public"] {
            let raw = format!(
                "{method} {path} {version}\r\nhost: localhost\r\n{ws}content-length: 0\r\n\r\n"
            );
            let answer = exchange(&gw, raw.as_bytes()).await;
            assert_eq!(
                status_of(&answer),
                400,
                "{method} {path} {version}: {answer}"
            );
        }
    }
    let answer = exchange(
        &gw,
        format!("HEAD /public HTTP/1.1\r\nhost: localhost\r\n{ws}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(up.hits(), 0, "the upstream saw: {:?}", up.seen());
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_gateway() {
    let up = Upstream::start().await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&up, &hook).await;
    let answer = exchange(
        &gw,
        b"OPTIONS * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 204, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nallow: get"),
        "{answer}"
    );
    for method in ["GET", "POST", "DELETE"] {
        let raw = format!(
            "{method} * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        );
        let answer = exchange(&gw, raw.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{method} *: {answer}");
    }
    assert_eq!(up.hits(), 0, "the upstream saw: {:?}", up.seen());
}
