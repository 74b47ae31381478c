//! Forwarding through real TLS to a real upstream: HTTP/1.1 and HTTP/2, headers, streaming, errors.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use support::{Gateway, Upstream, client, metric, upstream};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn http1_request_is_forwarded_with_forwarded_headers() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    let http = client::https(&gw.ca.pem(), false);
    let req = http::Request::builder()
        .uri(gw.url("/items?x=1"))
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("x-drawbridge-user", "spoofed-admin")
        .header("x-forwarded-for", "203.0.113.7")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_11);
    let body = client::json(resp).await;
    assert_eq!(body["path"], "/items");

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(seen[0].uri, "/items?x=1");
    // The client is no trusted proxy: its own X-Forwarded-For is replaced, not appended to.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(
        h["x-forwarded-host"],
        format!("127.0.0.1:{}", gw.addr.port())
    );
    assert_eq!(h["host"], format!("127.0.0.1:{}", gw.addr.port()));
    assert!(
        !h.contains_key("x-hop"),
        "a header named by Connection crossed: {h:?}"
    );
    assert!(!h.contains_key("keep-alive"));
    assert!(
        !h.contains_key("x-drawbridge-user"),
        "a spoofed identity header crossed"
    );
}

#[tokio::test]
async fn http2_request_is_forwarded_to_an_http1_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    let http = client::https(&gw.ca.pem(), true);
    let resp = http
        .request(client::request(
            "POST",
            &gw.url("/upload"),
            vec![7u8; 100_000],
        ))
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2, "ALPN should pick h2");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(client::json(resp).await["bytes"], 100_000);
    let seen = up.seen();
    assert_eq!(
        seen[0].headers["host"],
        format!("127.0.0.1:{}", gw.addr.port())
    );
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    let http = client::https(&gw.ca.pem(), false);
    let size = 8 * 1024 * 1024;
    let resp = http
        .request(client::request("POST", &gw.url("/upload"), vec![1u8; size]))
        .await
        .unwrap();
    assert_eq!(client::json(resp).await["bytes"], size);

    let resp = http
        .get(
            gw.url(&format!("/bytes?n={}", 32 * 1024 * 1024))
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, Bytes::len);
    }
    assert_eq!(total, 32 * 1024 * 1024);
}

#[tokio::test]
async fn oversized_body_gets_413_and_never_reaches_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra("[limits]\nmax_request_body_bytes = 1024")
        .spawn()
        .await;
    let http = client::https(&gw.ca.pem(), false);
    let resp = http
        .request(client::request("POST", &gw.url("/upload"), vec![0u8; 4096]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(client::json(resp).await["status"], 413);
    assert_eq!(up.hits(), 0, "the upstream saw an oversized request");

    let at_limit = http
        .request(client::request("POST", &gw.url("/upload"), vec![0u8; 1024]))
        .await
        .unwrap();
    assert_eq!(at_limit.status(), StatusCode::OK);
    assert!(
        metric(
            &gw.metrics().await,
            "drawbridge_upstream_errors_total{kind=\"body_too_large\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn oversized_chunked_body_gets_413() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra("[limits]\nmax_request_body_bytes = 1024")
        .spawn()
        .await;
    // HTTP/2 carries no content-length when the body is a stream, so the limit has to apply mid-stream.
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, http_body_util::StreamBody<_>>(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(std::sync::Arc::unwrap_or_clone(client::tls_config(
                    &gw.ca.pem(),
                    None,
                    &[],
                )))
                .https_only()
                .enable_http2()
                .build(),
        );
    let chunks = futures_util::stream::iter((0..8).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![0u8; 512])))
    }));
    let req = http::Request::post(gw.url("/upload"))
        .body(http_body_util::StreamBody::new(chunks))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn upstream_down_gets_502_json() {
    let gw = Gateway::builder(upstream::dead_url().await).spawn().await;
    let http = client::https(&gw.ca.pem(), false);
    let resp = http
        .get(gw.url("/anything").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        client::json(resp).await,
        serde_json::json!({"error": "upstream unavailable", "status": 502})
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "drawbridge_upstream_errors_total{kind=\"refused\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "drawbridge_http_requests_total{route=\"forward\",status_class=\"5xx\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn slow_upstream_gets_504_json() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .upstream_setting("request_timeout_ms = 300")
        .spawn()
        .await;
    let http = client::https(&gw.ca.pem(), false);
    let started = std::time::Instant::now();
    let resp = http
        .get(gw.url("/slow?ms=5000").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "504 came only after the upstream answered"
    );
    assert_eq!(
        client::json(resp).await,
        serde_json::json!({"error": "upstream timed out", "status": 504})
    );
    assert_eq!(
        metric(
            &gw.metrics().await,
            "drawbridge_upstream_errors_total{kind=\"timeout\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn websocket_upgrade_on_a_public_path_is_relayed() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .upstream_setting("public_upgrade_paths = [\"/other\"]")
        .spawn()
        .await;
    let tls = gw.tls(b"http/1.1").await;
    let url = format!("wss://127.0.0.1:{}/other/ws", gw.addr.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("over the bridge")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("over the bridge"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn plaintext_mode_serves_http_and_says_so_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).plaintext().spawn().await;
    let (status, body) = client::get_text(&format!("http://{}/plain", gw.addr)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.seen()[0].headers["x-forwarded-proto"], "http");
    // No TLS is offered at all.
    assert!(
        client::connect_tls(gw.addr, &gw.ca.pem(), None, &[])
            .await
            .is_err()
    );
}
