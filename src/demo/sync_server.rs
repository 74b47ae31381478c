//! A small stand-in sync server: websocket echo under `/sync` and `/_ditto/ws`, and a JSON API.

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A running demo sync server.
#[derive(Debug)]
pub struct SyncServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SyncServer {
    /// Binds `addr` (port 0 for any) and serves until dropped.
    ///
    /// # Errors
    /// The bind error.
    pub async fn spawn(addr: SocketAddr) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        let addr = tcp.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SyncServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type DemoBody = Full<Bytes>;

fn json(status: StatusCode, v: &serde_json::Value) -> Response<DemoBody> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<DemoBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(key) = websocket_key(&req)
        && (path.starts_with("/sync") || path.starts_with("/_ditto/ws"))
    {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo(ws).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
        if let Ok(accept) = http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        return Ok(resp);
    }
    let seen = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let forwarded = serde_json::json!({
        "x-forwarded-for": seen("x-forwarded-for"),
        "x-forwarded-proto": seen("x-forwarded-proto"),
        "x-forwarded-host": seen("x-forwarded-host"),
        "x-drawbridge-user": seen("x-drawbridge-user"),
    });
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::GET, "/api/health") => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (Method::GET, "/api/items") => json(
            StatusCode::OK,
            &serde_json::json!({
                "items": [
                    {"_id": "1", "title": "raise the drawbridge", "done": true},
                    {"_id": "2", "title": "check the tokens", "done": false}
                ],
                "seen": forwarded,
            }),
        ),
        (Method::POST, "/api/echo") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            json(
                StatusCode::OK,
                &serde_json::json!({"bytes": body.len(), "body": String::from_utf8_lossy(&body), "seen": forwarded}),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found", "path": path}),
        ),
    })
}

/// The key of a real websocket handshake (RFC 6455 §4.1): an HTTP/1.1 GET with `Connection: upgrade`,
/// `Upgrade: websocket` and a `Sec-WebSocket-Key`. A key alone is no handshake: a plain request that
/// carries one is answered as a plain request.
fn websocket_key<B>(req: &Request<B>) -> Option<http::HeaderValue> {
    let h = req.headers();
    let upgrade_to_websocket = h
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("websocket"));
    (req.method() == Method::GET
        && req.version() == http::Version::HTTP_11
        && crate::headers::connection_has(h, "upgrade")
        && upgrade_to_websocket)
        .then(|| h.get(header::SEC_WEBSOCKET_KEY).cloned())
        .flatten()
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, version: http::Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method(method)
            .version(version)
            .uri("/sync");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("valid request")
    }

    const KEY: (&str, &str) = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");

    #[test]
    fn websocket_key_real_handshake_is_found() {
        let req = request(
            Method::GET,
            http::Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket"),
                KEY,
            ],
        );
        assert_eq!(
            websocket_key(&req).as_ref().and_then(|k| k.to_str().ok()),
            Some(KEY.1)
        );
    }

    #[test]
    fn websocket_key_without_upgrade_headers_is_none() {
        let bare = request(Method::GET, http::Version::HTTP_11, &[KEY]);
        assert!(websocket_key(&bare).is_none(), "a bare key upgraded");
        let no_connection = request(
            Method::GET,
            http::Version::HTTP_11,
            &[("upgrade", "websocket"), KEY],
        );
        assert!(websocket_key(&no_connection).is_none());
        let other_protocol = request(
            Method::GET,
            http::Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "h2c"), KEY],
        );
        assert!(websocket_key(&other_protocol).is_none());
    }

    #[test]
    fn websocket_key_not_get_or_not_http11_is_none() {
        let upgrade = [("connection", "upgrade"), ("upgrade", "websocket"), KEY];
        assert!(websocket_key(&request(Method::POST, http::Version::HTTP_11, &upgrade)).is_none());
        assert!(websocket_key(&request(Method::GET, http::Version::HTTP_2, &upgrade)).is_none());
        assert!(websocket_key(&request(Method::GET, http::Version::HTTP_10, &upgrade)).is_none());
    }

    #[test]
    fn websocket_key_missing_key_is_none() {
        let req = request(
            Method::GET,
            http::Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        assert!(websocket_key(&req).is_none());
    }
}
