//! Demo provider webhooks in the Ditto webhook contract: who may log in to the demo.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The users one demo webhook knows: `(token, userID, read-only)`.
pub type Users = &'static [(&'static str, &'static str, bool)];

/// The main demo provider: `alice-token` (full access) and `bob-token` (read-only).
pub const DEMO_USERS: Users = &[("alice-token", "alice", false), ("bob-token", "bob", true)];
/// A second provider for the demo group: `carol-token` (read-only).
pub const PARTNER_USERS: Users = &[("carol-token", "carol", true)];

/// A running demo webhook.
#[derive(Debug)]
pub struct DemoProvider {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DemoProvider {
    /// Binds `127.0.0.1:0` and answers for `users` until dropped.
    ///
    /// # Errors
    /// The bind error.
    pub async fn spawn(users: Users) -> std::io::Result<Self> {
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let addr = tcp.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, users));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }
}

impl Drop for DemoProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn access(everything: bool) -> serde_json::Value {
    serde_json::json!({"everything": everything, "queriesByCollection": {}})
}

async fn answer(req: Request<Incoming>, users: Users) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let reply = match users.iter().find(|(t, _, _)| *t == token) {
        Some((_, user, read_only)) => serde_json::json!({
            "authenticated": true,
            "expirationSeconds": 3600,
            "userID": user,
            "permissions": {"read": access(true), "write": access(!read_only)},
            "clientInfo": {"displayName": user, "readOnly": read_only},
        }),
        None => serde_json::json!({
            "authenticated": false,
            "clientInfo": {"message": "unknown token; try alice-token or bob-token"},
        }),
    };
    let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
