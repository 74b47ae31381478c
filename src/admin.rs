//! The admin port, plain HTTP, for operators and the orchestrator:
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when ready; 503 before TLS is loaded and while draining.
//! - `GET /metrics`: Prometheus text exposition.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gateway::respond::{self, Body};
use crate::metrics::Metrics;
use crate::shutdown::Readiness;

/// Admin state shared by every admin connection.
pub(crate) struct Admin {
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
}

impl Admin {
    /// Serves the admin port until `stop` is cancelled.
    pub(crate) async fn serve(self: Arc<Self>, tcp: TcpListener, stop: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = tcp.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        continue;
                    }
                },
            };
            let this = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(&req)) }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10));
                let conn = http.serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return respond::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
            "/readyz" => match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => {
                let mut resp = text(StatusCode::OK, self.metrics.encode());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => respond::error(StatusCode::NOT_FOUND, "not found"),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(respond::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
