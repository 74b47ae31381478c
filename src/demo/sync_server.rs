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
    if let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned()
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
