//! A real provider webhook on loopback that counts its calls, records what it was sent, and
//! answers as a test script says: allow, deny, garbage, slow, huge.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    pub fn allow(user: &str, seconds: u32) -> Self {
        Self::json(
            200,
            serde_json::json!({
                "authenticated": true,
                "expirationSeconds": seconds,
                "userID": user,
                "permissions": {
                    "read": {"everything": true, "queriesByCollection": {}},
                    "write": {"everything": false, "queriesByCollection": {"tasks": [format!("_id.owner == '{user}'")]}}
                },
                "clientInfo": {"greeting": format!("hello {user}")},
                "identityServiceMetadata": {"source": "test"}
            }),
        )
    }

    pub fn deny(client_info: serde_json::Value) -> Self {
        Self::json(
            200,
            serde_json::json!({"authenticated": false, "clientInfo": client_info}),
        )
    }

    pub fn json(status: u16, v: serde_json::Value) -> Self {
        Self::raw(status, v.to_string())
    }

    pub fn raw(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }
}

/// The script: request JSON in, reply out.
pub type Script = Arc<dyn Fn(&serde_json::Value) -> Reply + Send + Sync>;

#[derive(Clone)]
pub struct Call {
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Webhook {
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Counts a call as cancelled when its handler is dropped before it answers.
struct Guard {
    done: bool,
    cancelled: Arc<AtomicUsize>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Webhook {
    pub async fn start(
        script: impl Fn(&serde_json::Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let script: Script = Arc::new(script);
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, f, x, l) = (
            calls.clone(),
            finished.clone(),
            cancelled.clone(),
            log.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let (script, c, f, x, l) =
                    (script.clone(), c.clone(), f.clone(), x.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (script, c, f, x, l) =
                            (script.clone(), c.clone(), f.clone(), x.clone(), l.clone());
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            let mut guard = Guard {
                                done: false,
                                cancelled: x,
                            };
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            l.lock().unwrap().push(Call {
                                headers,
                                body: body.clone(),
                            });
                            let json: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let reply = script(&json);
                            tokio::time::sleep(reply.delay).await;
                            guard.done = true;
                            f.fetch_add(1, Ordering::SeqCst);
                            let mut resp = Response::new(Full::new(reply.body));
                            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                            resp.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            calls,
            finished,
            cancelled,
            log,
            task,
        }
    }

    /// A webhook that allows `<name>-token` as user `<name>` for `seconds`, and denies anything else.
    pub async fn users(seconds: u32) -> Self {
        Self::start(move |req| {
            let token = req["token"].as_str().unwrap_or_default();
            match token.strip_suffix("-token") {
                Some(user) if !user.is_empty() => Reply::allow(user, seconds),
                _ => Reply::deny(serde_json::json!({"hint": "unknown token"})),
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
