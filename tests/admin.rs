//! The admin port: liveness, readiness, and the metric families an operator alerts on.

mod support;

use support::{Gateway, Upstream, client, metric};

#[tokio::test]
async fn health_and_readiness_answer() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    assert_eq!(
        client::get_text(&format!("http://{}/healthz", gw.admin_addr)).await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        client::get_text(&format!("http://{}/readyz", gw.admin_addr))
            .await
            .0,
        200
    );
    let (status, body) = client::get_text(&format!("http://{}/nope", gw.admin_addr)).await;
    assert_eq!(status, 404);
    assert!(body.contains("\"status\":404"));
}

#[tokio::test]
async fn metrics_cover_requests_connections_and_the_certificate() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    let http = client::https(&gw.ca.pem(), false);
    for _ in 0..3 {
        let resp = http.get(gw.url("/counted").parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "drawbridge_http_requests_total{route=\"forward\",status_class=\"2xx\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "drawbridge_http_request_duration_seconds_count{route=\"forward\"}"
        ),
        3.0
    );
    assert!(metric(&m, "drawbridge_connections_accepted_total") >= 1.0);
    assert!(metric(&m, "drawbridge_tls_handshake_duration_seconds_count") >= 1.0);
    // rcgen's default validity ends in 4096; any sane notAfter is far past 2026.
    assert!(
        metric(&m, "drawbridge_tls_cert_not_after_timestamp_seconds") > 1_800_000_000.0,
        "{m}"
    );
    for family in [
        "drawbridge_connections_open",
        "drawbridge_connections_refused_total",
        "# TYPE drawbridge_tls_handshake_failures_total counter",
        "# TYPE drawbridge_tls_cert_reloads_total counter",
        "# TYPE drawbridge_upstream_errors_total counter",
    ] {
        assert!(m.contains(family), "missing {family} in\n{m}");
    }
    // Labels stay bounded: no path or client address ever becomes a label value.
    assert!(
        !m.contains("/counted") && !m.contains("127.0.0.1"),
        "unbounded label in\n{m}"
    );
}
