//! Per-connection limits: slow request heads and the connection cap when every connection is busy.

mod support;

use std::time::{Duration, Instant};

use support::{Gateway, Upstream, client, metric, pace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn client_sending_headers_too_slowly_is_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra("[limits]\nheader_read_timeout_ms = 500")
        .spawn()
        .await;
    let mut tls = gw.tls(b"http/1.1").await;
    tls.write_all(b"GET /slowloris HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Keep trickling a header byte every 100 ms: never finishing the head.
    let mut closed = false;
    for _ in 0..50 {
        if tls.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        pace(100).await;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(1), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                // hyper may answer 408 before closing; either way the request head is refused.
                assert!(
                    String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
                    "unexpected answer"
                );
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "a client dribbling headers for 5 s was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off only after {:?}",
        started.elapsed()
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_when_all_are_busy() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url())
        .extra("[limits]\nmax_connections = 2")
        .spawn()
        .await;
    // Two connections, each with a request in flight: neither may be evicted.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut tls = gw.tls(b"http/1.1").await;
        tls.write_all(b"GET /slow?ms=3000 HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        busy.push(tls);
    }
    assert_eventually!(
        up.hits() == 2,
        "the slow requests never reached the upstream"
    );
    assert_eq!(
        metric(&gw.metrics().await, "drawbridge_connections_open"),
        2.0
    );
    let third = client::connect_tls(gw.addr, &gw.ca.pem(), None, &[b"http/1.1"]).await;
    assert!(
        third.is_err(),
        "a third connection got a TLS session past max_connections = 2, both busy"
    );
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "drawbridge_connections_refused_total"), 1.0);
    assert_eq!(
        metric(
            &m,
            "drawbridge_connections_reaped_total{reason=\"capacity\"}"
        ),
        0.0
    );

    // The busy ones finish their requests.
    for tls in &mut busy {
        let mut buf = [0u8; 12];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    // Closing one frees its slot.
    drop(busy.pop());
    assert_eventually!(
        client::connect_tls(gw.addr, &gw.ca.pem(), None, &[b"http/1.1"])
            .await
            .is_ok(),
        "the freed slot was never reused"
    );
}
