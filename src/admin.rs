//! The admin port, plain HTTP, for operators and the orchestrator:
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when ready; 503 before TLS and every JWT provider's keys are loaded, while
//!   draining, and while Redis is unreachable if `cluster.required`.
//! - `GET /metrics`: Prometheus text exposition.
//! - `POST /cache/purge`, `POST /cache/purge?user=<userID>`: drop cached decisions (all, or one
//!   user's); in cluster mode on every replica and in the shared level.
//! - `POST /sessions/revoke` with `{"sid": ".."}` or `{"userID": ".."}`: revoke sessions; the
//!   answer says until when (`until`, Unix seconds) the revocation is kept; in cluster mode every
//!   replica applies it.
//!
//! The two mutating endpoints answer only clients on the loopback interface (IPv4 `127.0.0.0/8`,
//! `::1`, and IPv4 loopback mapped into IPv6 on a dual-stack listener).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit;
use crate::body::Body;
use crate::respond;
use crate::shutdown::Readiness;
use crate::state::Shared;

/// Admin state shared by every admin connection.
pub(crate) struct Admin {
    pub(crate) shared: Arc<Shared>,
    pub(crate) readiness: Readiness,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    sid: Option<String>,
    #[serde(rename = "userID")]
    user_id: Option<String>,
}

impl Admin {
    /// Serves the admin port until `stop` is cancelled.
    pub(crate) async fn serve(self: Arc<Self>, tcp: TcpListener, stop: CancellationToken) {
        loop {
            let (stream, peer) = tokio::select! {
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
                    async move { Ok::<_, Infallible>(this.handle(req, peer).await) }
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

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if req.method() == Method::POST {
            if !is_loopback(peer.ip()) {
                return respond::error(
                    StatusCode::FORBIDDEN,
                    "admin changes are accepted from localhost only",
                );
            }
            return match req.uri().path() {
                "/cache/purge" => self.purge(&req).await,
                "/sessions/revoke" => self.revoke(req, peer).await,
                _ => respond::error(StatusCode::NOT_FOUND, "not found"),
            };
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return respond::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
            "/readyz" => match self.readiness.check() {
                Ok(()) if !self.shared.live().auth.ready() => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: provider keys not loaded\n".to_owned(),
                ),
                Ok(()) if self.shared.cluster_missing() => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: cluster store unreachable (cluster.required)\n".to_owned(),
                ),
                Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => {
                let mut resp = text(StatusCode::OK, self.shared.metrics.encode());
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

impl Admin {
    async fn purge(&self, req: &Request<Incoming>) -> Response<Body> {
        let user = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.into_owned());
        self.shared.purge_decisions(user.as_deref()).await;
        tracing::info!(user = user.is_some(), "decision cache purged");
        respond::json(
            StatusCode::OK,
            &serde_json::json!({"purged": user.map_or("all", |_| "user")}),
        )
    }

    async fn revoke(&self, req: Request<Incoming>, caller: SocketAddr) -> Response<Body> {
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond::error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        };
        let r: Revoke = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => {
                return respond::error(
                    StatusCode::BAD_REQUEST,
                    "expected {\"sid\": ..} or {\"userID\": ..}",
                );
            }
        };
        match (r.sid, r.user_id) {
            (Some(sid), None) => {
                let until = self.shared.revoke_sid(&sid);
                self.shared.audit.emit(&audit::Event::AdminRevoke {
                    sid_hash: Some(audit::sid_hash(&sid)),
                    user: None,
                    until,
                    admin_caller: caller,
                });
                respond::json(
                    StatusCode::OK,
                    &serde_json::json!({"revoked": "sid", "until": until}),
                )
            }
            (None, Some(user)) => {
                let until = self.shared.revoke_user(&user);
                self.shared.audit.emit(&audit::Event::AdminRevoke {
                    sid_hash: None,
                    user: Some(&user),
                    until,
                    admin_caller: caller,
                });
                respond::json(
                    StatusCode::OK,
                    &serde_json::json!({"revoked": "user", "until": until}),
                )
            }
            _ => respond::error(
                StatusCode::BAD_REQUEST,
                "expected {\"sid\": ..} or {\"userID\": ..}",
            ),
        }
    }
}

/// Whether `ip` is on the loopback interface. On a dual-stack `[::]` listener an IPv4 caller
/// arrives as an IPv4-mapped address (`::ffff:127.0.0.1`), which `is_loopback` alone refuses.
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(crate::body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_includes_ipv4_mapped_and_nothing_else() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.255.0.9",
        ] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "192.0.2.2",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:192.0.2.2",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fe80::1",
            "fd00::2",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
