//! Canonical paths through real TLS, in front of a normalising nginx: every spelling of a path
//! needs a session for a websocket unless it is under a public prefix, the sync server receives
//! the canonical path, and spellings that stay ambiguous are refused with 400.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use support::nginx::Nginx;
use support::ws::{raw_handshake, read_exact};
use support::{Gateway, Upstream, Webhook, client, login, metric, status_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A sync server behind its own normalising nginx: `/sync` and `/public` (as nginx reads them:
/// slashes merged, dots resolved, escapes decoded) go to the websocket stand-in, the rest is 404.
async fn front(standin: &Upstream) -> Nginx {
    let proxy = format!(
        "proxy_pass http://{}; proxy_http_version 1.1; \
         proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";",
        standin.addr
    );
    Nginx::server(&format!(
        "    merge_slashes on;\n    location /sync {{ {proxy} }}\n    location /public {{ {proxy} }}\n    location / {{ return 404; }}\n"
    ))
    .await
}

async fn gateway(upstream: &str, hook: &Webhook, upstream_settings: &str) -> Gateway {
    Gateway::builder(upstream)
        .upstream_setting(upstream_settings)
        .demo_provider(hook)
        .spawn()
        .await
}

type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An RFC 8441 websocket CONNECT on `path`; its status.
async fn h2_websocket(send: &mut H2, gw: &Gateway, path: &str, bearer: Option<&str>) -> u16 {
    let req = support::ws::extended_connect(gw.addr.port(), path, "websocket", bearer);
    send.ready().await.unwrap();
    let resp = send
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    resp.status().as_u16()
}

/// One HTTP/1.1 request written as is (the target untouched by any client library) over TLS,
/// with `Connection: close`; the whole answer.
async fn raw_request(gw: &Gateway, method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut tls = gw.tls(b"http/1.1").await;
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "{method} {target}: the connection stayed open"
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// Spellings of gated paths, HTTP/1.1 request targets as sent.
const GATED_H1: &[&str] = &[
    "/sync",
    "//sync",
    "///sync",
    "/./sync",
    "/x/../sync",
    "/%2e%2e/sync",
    "/%2E%2e/sync",
    "/.%2e/sync",
    "/x/%2e%2e/%2e%2e/sync",
    "/%73ync",
    "/%73%79%6E%63",
    "/sync/",
    "/sync//room",
    "/sync/./room",
    "/sync/room/..",
    "/sync/.",
    "/../sync",
    "/..",
    "/SYNC",
    "/Sync",
    "/sync;jsessionid=x",
    "/sync%3F",
    "/sync?x",
    "/sync?ticket=",
    "/_ditto/ws",
    "/anything/else",
    "https://localhost//sync",
    "https://localhost/./sync",
    "http://localhost/x/../sync",
];

/// Spellings of gated paths as HTTP/2 `:path`.
const GATED_H2: &[&str] = &[
    "//sync",
    "/./sync",
    "/x/../sync",
    "/%2e%2e/sync",
    "/%73ync",
    "/sync//room",
    "/sync;x",
    "/SYNC",
];

#[tokio::test]
async fn every_spelling_of_a_path_without_a_session_gets_401_and_never_reaches_the_sync_server() {
    let standin = Upstream::start().await;
    let nginx = front(&standin).await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&nginx.url(), &hook, "").await;
    for target in GATED_H1 {
        let (_, status, head) = raw_handshake(gw.addr, &gw.ca.pem(), target, &[]).await;
        assert_eq!(status, 401, "{target}: {head}");
    }
    let mut send = client::h2(gw.addr, &gw.ca.pem()).await;
    for path in GATED_H2 {
        assert_eq!(
            h2_websocket(&mut send, &gw, path, None).await,
            401,
            "{path}"
        );
    }
    assert!(
        standin.seen().is_empty(),
        "the sync server saw an unauthenticated upgrade: {:?}",
        standin.seen()
    );
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_tunnels_total{result=\"rejected\"}"
        ),
        (GATED_H1.len() + GATED_H2.len()) as f64
    );

    // The front really normalises: straight to nginx, a dotted spelling reaches the stand-in.
    let mut tcp = tokio::net::TcpStream::connect(nginx.addr).await.unwrap();
    tcp.write_all(
        b"GET //x/../sync HTTP/1.1\r\nhost: sync\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_exact(&mut tcp, 12).await;
    assert_eq!(&head[9..12], b"101", "{}", nginx.error_log());
    assert_eq!(standin.seen()[0].uri, "//x/../sync");
}

#[tokio::test]
async fn every_legal_spelling_with_a_session_reaches_the_sync_server_as_the_canonical_path() {
    let standin = Upstream::start().await;
    let nginx = front(&standin).await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&nginx.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "alma-token").await.session();
    let bearer = format!("Bearer {token}");
    for (target, canonical) in [
        ("/sync", "/sync"),
        ("//sync", "/sync"),
        ("/./sync", "/sync"),
        ("/x/../sync", "/sync"),
        ("/%2e%2e/sync", "/sync"),
        ("/%73ync", "/sync"),
        ("/sync/", "/sync/"),
        ("/sync//room", "/sync/room"),
        ("/sync/./room/../lobby", "/sync/lobby"),
        ("/sync;jsessionid=x", "/sync;jsessionid=x"),
        ("/sync%3f", "/sync%3F"),
        ("/sync?x=..%2F&y", "/sync?x=..%2F&y"),
        ("/../sync", "/sync"),
        ("https://localhost//sync/a", "/sync/a"),
    ] {
        let (_, status, head) =
            raw_handshake(gw.addr, &gw.ca.pem(), target, &[("authorization", &bearer)]).await;
        assert_eq!(status, 101, "{target}: {head}");
        let seen = standin.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.uri, canonical, "{target}");
        assert_eq!(last.headers["x-drawbridge-user"], "alma", "{target}");
    }
    let mut send = client::h2(gw.addr, &gw.ca.pem()).await;
    for path in GATED_H2.iter().filter(|p| !p.contains("SYNC")) {
        assert_eq!(
            h2_websocket(&mut send, &gw, path, Some(&token)).await,
            200,
            "{path}"
        );
        let seen = standin.seen();
        let uri = &seen.last().unwrap().uri;
        assert!(uri.starts_with("/sync"), "{path} -> {uri}");
        assert!(
            !uri.contains("//") && !uri.contains("/.") && !uri.contains('%'),
            "{path} -> {uri}"
        );
    }
    // A different case is a different path: gated, and to nginx not /sync at all.
    assert_eq!(
        h2_websocket(&mut send, &gw, "/SYNC", Some(&token)).await,
        404
    );
}

#[tokio::test]
async fn plain_requests_are_forwarded_with_the_canonical_path_and_the_query_as_sent() {
    let standin = Upstream::start().await;
    let nginx = front(&standin).await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&nginx.url(), &hook, "").await;
    for (target, canonical) in [
        (
            "/x/../sync/items?a=%2e%2e&b=/..",
            "/sync/items?a=%2e%2e&b=/..",
        ),
        ("//sync//items", "/sync/items"),
        ("/%73ync/%69tems%3b", "/sync/items%3B"),
        ("http://localhost/./sync/items", "/sync/items"),
    ] {
        let answer = raw_request(&gw, "GET", target, &[]).await;
        assert_eq!(status_of(&answer), 200, "{target}: {answer}");
        assert_eq!(standin.seen().last().unwrap().uri, canonical, "{target}");
    }
    let http = client::https(&gw.ca.pem(), true);
    let resp = http
        .get(gw.url("//sync/./h2?q=1").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(standin.seen().last().unwrap().uri, "/sync/h2?q=1");
}

#[tokio::test]
async fn ambiguous_paths_get_400_and_never_reach_the_sync_server() {
    let standin = Upstream::start().await;
    let nginx = front(&standin).await;
    let hook = Webhook::users(3600).await;
    let gw = gateway(&nginx.url(), &hook, "").await;
    let token = login(&gw, "app", "demo", "bo-token").await.session();
    let bearer = format!("Bearer {token}");
    let ambiguous = [
        "/sync%2Froom",
        "/sync%2froom",
        "/%2Fsync",
        "/x%2F..%2F..%2Fsync",
        "/sync%5Croom",
        "/%5c..%5csync",
        "/sync\\room",
        "/..\\sync",
        "/sync%00",
        "/%00/sync",
        "/sync%0A",
        "/sync%0d%0aX-Injected:%201",
        "/sync%",
        "/sync%zz",
        "/%252e%252e/sync",
        "/..;/sync",
        "/x/..;/sync",
        "/sync/.;x",
    ];
    let ws = [
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let mut refused = 0;
    for target in ambiguous {
        for (what, headers) in [
            ("plain", vec![]),
            (
                "plain with a session",
                vec![("authorization", bearer.as_str())],
            ),
        ] {
            let answer = raw_request(&gw, "GET", target, &headers).await;
            assert_eq!(status_of(&answer), 400, "{target} ({what}): {answer}");
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{target}: {answer}"
            );
            refused += 1;
        }
        let mut headers = ws.to_vec();
        headers.push(("authorization", &bearer));
        let (mut tls, status, head) = raw_handshake(gw.addr, &gw.ca.pem(), target, &headers).await;
        assert_eq!(status, 400, "{target} (websocket): {head}");
        let mut body = vec![0u8; 512];
        let n = tls.read(&mut body).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(json["status"], 400, "{target}");
        refused += 1;
    }
    let mut send = client::h2(gw.addr, &gw.ca.pem()).await;
    for path in ["/sync%2Froom", "/sync%00", "/..;/sync", "/%5Csync"] {
        assert_eq!(
            h2_websocket(&mut send, &gw, path, Some(&token)).await,
            400,
            "{path}"
        );
        refused += 1;
    }
    assert!(
        standin.seen().is_empty(),
        "the sync server saw an ambiguous path: {:?}",
        standin.seen()
    );
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_http_requests_total{route=\"refused\",status_class=\"4xx\"}"
        ),
        f64::from(refused)
    );
}

#[tokio::test]
async fn public_path_opens_without_a_session_and_nothing_beside_it_does() {
    let standin = Upstream::start().await;
    let nginx = front(&standin).await;
    let hook = Webhook::users(3600).await;
    let mut gw = gateway(&nginx.url(), &hook, "public_upgrade_paths = [\"/public\"]").await;
    for (target, canonical) in [
        ("/public", "/public"),
        ("/public/room", "/public/room"),
        ("//public//room", "/public/room"),
        ("/%70ublic/room", "/public/room"),
        ("/x/../public/", "/public/"),
    ] {
        let (_, status, head) = raw_handshake(gw.addr, &gw.ca.pem(), target, &[]).await;
        assert_eq!(status, 101, "{target}: {head}");
        let seen = standin.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.uri, canonical, "{target}");
        assert!(!last.headers.contains_key("x-drawbridge-user"));
    }
    let opened = standin.hits();
    for target in [
        "/publicx",
        "/publicity/room",
        "/PUBLIC",
        "/Public/room",
        "/public/../sync",
        "/public/%2e%2e/sync",
        "/public%2e%2e/sync",
        "/sync",
    ] {
        let (_, status, head) = raw_handshake(gw.addr, &gw.ca.pem(), target, &[]).await;
        assert_eq!(status, 401, "{target}: {head}");
    }
    let (_, status, _) = raw_handshake(gw.addr, &gw.ca.pem(), "/public/..;/sync", &[]).await;
    assert_eq!(status, 400);
    let mut send = client::h2(gw.addr, &gw.ca.pem()).await;
    assert_eq!(h2_websocket(&mut send, &gw, "//public/h2", None).await, 200);
    assert_eq!(standin.seen().last().unwrap().uri, "/public/h2");
    assert_eq!(h2_websocket(&mut send, &gw, "/publicx", None).await, 401);
    assert_eq!(standin.hits(), opened + 1, "{:?}", standin.seen());
    drop(send);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_http_requests_total{route=\"public_upgrade\",status_class=\"1xx\"}"
        ),
        5.0
    );

    // A public tunnel is still a registered tunnel: shutdown ends it with 1001.
    let (mut tls, status, _) = raw_handshake(gw.addr, &gw.ca.pem(), "/public/last", &[]).await;
    assert_eq!(status, 101);
    assert_eventually!(
        metric(&gw.metrics().await, "drawbridge_tunnels_active") >= 1.0,
        "the public tunnel was not registered"
    );
    let stopped = gw.trigger_shutdown();
    let head = read_exact(&mut tls, 2).await;
    assert_eq!(head[0] & 0x0F, 0x8, "a close frame");
    let payload = read_exact(&mut tls, usize::from(head[1] & 0x7F)).await;
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    drop(tls);
    stopped.await.unwrap().unwrap();
}
