//! Demo provider webhooks in the Ditto webhook contract: who may log in to the demo.
//!
//! The demo runs two with fixed users ([`DemoProvider`]); the end-to-end load client serves the
//! same webhook with [`Directory::Anyone`] through [`serve`], so that every benchmark token logs
//! in.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, Request, Response, StatusCode, header};
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

/// Who a demo webhook lets in.
#[derive(Debug, Clone, Copy)]
pub enum Directory {
    /// These users only. Any other token gets 200 `{"authenticated": false}` with a hint in
    /// `clientInfo`.
    Listed(Users),
    /// Every token except an empty one or one starting with `deny`, as `user-<token>` (its first
    /// 24 characters) with full access for an hour. Those get 401 `{"authenticated": false}`: a
    /// denial to drawbridge, and the only one nginx's `auth_request`, which reads nothing but the
    /// status, understands. For load tests, which need a fresh token per request.
    Anyone,
}

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
            let _ = serve(tcp, Directory::Listed(users)).await;
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

/// Serves the webhook for `directory` on `listener`, one task per connection, until accepting fails.
///
/// Every request is a webhook call, whatever its path, except `GET /stats`, which answers
/// `{"calls": n}`: the calls so far, so that a benchmark can tell that a cache hit never reached
/// the webhook.
///
/// # Errors
/// The error accepting a connection, which ends serving.
pub async fn serve(listener: TcpListener, directory: Directory) -> std::io::Result<Infallible> {
    let calls = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        // One small response per request: nothing to gain from Nagle's delay.
        let _ = stream.set_nodelay(true);
        let calls = calls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, directory, calls.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn access(everything: bool) -> serde_json::Value {
    serde_json::json!({"everything": everything, "queriesByCollection": {}})
}

async fn answer(
    req: Request<Incoming>,
    directory: Directory,
    calls: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let stats = serde_json::json!({"calls": calls.load(Ordering::Relaxed)});
        return Ok(json(StatusCode::OK, &stats));
    }
    calls.fetch_add(1, Ordering::Relaxed);
    let body = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let (status, reply) = match directory {
        Directory::Listed(users) => (StatusCode::OK, listed(users, &token)),
        Directory::Anyone => anyone(&token),
    };
    Ok(json(status, &reply))
}

/// The reply of a [`Directory::Listed`] webhook.
fn listed(users: Users, token: &str) -> serde_json::Value {
    match users.iter().find(|(t, _, _)| *t == token) {
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
    }
}

/// The status and reply of a [`Directory::Anyone`] webhook.
fn anyone(token: &str) -> (StatusCode, serde_json::Value) {
    if token.is_empty() || token.starts_with("deny") {
        return (
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"authenticated": false}),
        );
    }
    let user: String = token.chars().take(24).collect();
    (
        StatusCode::OK,
        serde_json::json!({
            "authenticated": true,
            "expirationSeconds": 3600,
            "userID": format!("user-{user}"),
            "permissions": {"read": access(true), "write": access(true)},
            "clientInfo": {},
        }),
    )
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `directory` on a fresh loopback port; the server task ends with the test's runtime.
    async fn start(directory: Directory) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("local addr");
        tokio::spawn(serve(tcp, directory));
        addr
    }

    /// One request on a new connection: the status and the JSON reply.
    async fn call(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&body).expect("json reply"))
    }

    async fn login(addr: SocketAddr, body: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::post("/auth")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        call(addr, req).await
    }

    fn token(t: &str) -> String {
        serde_json::json!({"appID": "bench-app", "provider": "bench", "token": t}).to_string()
    }

    async fn calls(addr: SocketAddr) -> u64 {
        let req = Request::get("/stats")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, stats) = call(addr, req).await;
        assert_eq!(status, StatusCode::OK);
        stats["calls"].as_u64().expect("calls is a number")
    }

    #[tokio::test]
    async fn anyone_directory_with_any_token_lets_it_in() {
        let addr = start(Directory::Anyone).await;
        for t in [
            "ws-token",
            "hit-token",
            "miss-warmnginx1-17",
            "a-token-longer-than-twenty-four-characters",
        ] {
            let (status, reply) = login(addr, &token(t)).await;
            assert_eq!(status, StatusCode::OK, "{t}");
            assert_eq!(reply["authenticated"], true, "{t}");
            assert_eq!(reply["expirationSeconds"], 3600, "{t}");
            let user: String = t.chars().take(24).collect();
            assert_eq!(reply["userID"], format!("user-{user}"), "{t}");
            assert_eq!(reply["permissions"]["write"]["everything"], true, "{t}");
        }
    }

    #[tokio::test]
    async fn anyone_directory_with_deny_or_no_token_gets_401() {
        let addr = start(Directory::Anyone).await;
        for body in [
            token("deny"),
            token("deny-me"),
            token(""),
            "{}".to_owned(),
            "not json".to_owned(),
        ] {
            let (status, reply) = login(addr, &body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(reply, serde_json::json!({"authenticated": false}), "{body}");
        }
    }

    #[tokio::test]
    async fn listed_directory_with_unknown_token_denies_with_200() {
        let addr = start(Directory::Listed(DEMO_USERS)).await;
        let (status, reply) = login(addr, &token("alice-token")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["userID"], "alice");
        assert_eq!(reply["permissions"]["write"]["everything"], true);
        let (status, reply) = login(addr, &token("bob-token")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reply["permissions"]["write"]["everything"], false);
        for t in ["mallory", "carol-token", "", "deny"] {
            let (status, reply) = login(addr, &token(t)).await;
            assert_eq!(status, StatusCode::OK, "{t}");
            assert_eq!(reply["authenticated"], false, "{t}");
        }
    }

    #[tokio::test]
    async fn stats_after_calls_counts_webhook_calls_only() {
        for directory in [Directory::Anyone, Directory::Listed(DEMO_USERS)] {
            let addr = start(directory).await;
            assert_eq!(calls(addr).await, 0, "{directory:?}");
            login(addr, &token("hit-token")).await;
            login(addr, &token("deny")).await;
            let get = Request::get("/auth")
                .body(Full::new(Bytes::new()))
                .expect("request");
            call(addr, get).await;
            assert_eq!(
                calls(addr).await,
                3,
                "{directory:?}: /stats itself is no call"
            );
        }
    }
}
