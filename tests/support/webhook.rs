//! A real provider webhook on loopback that counts its calls, records what it was sent, and
//! answers as a test script says: allow, deny, garbage, slow, huge.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::server::{Body, Served, json, read_body, serve};

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

/// What a [`Webhook::switchable`] provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Answer {
    /// `ann`, for an hour, reading everything.
    Allow,
    /// A denial.
    Deny,
    /// `ann`, for an hour, reading nothing.
    Narrow,
    /// 503: the provider is down.
    Down,
}

/// Switches what a [`Webhook::switchable`] provider answers from its next call on.
#[derive(Clone)]
pub struct Switch(Arc<AtomicU8>);

impl Switch {
    pub fn set(&self, answer: Answer) {
        self.0.store(answer as u8, Ordering::SeqCst);
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
    finished: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Call>>>,
    server: Served,
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
        let finished = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (f, x, l) = (finished.clone(), cancelled.clone(), log.clone());
        let server =
            serve(move |req| answer(req, script.clone(), f.clone(), x.clone(), l.clone())).await;
        Self {
            addr: server.addr,
            finished,
            cancelled,
            log,
            server,
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

    /// A webhook answering every token as [`Switch::set`] last said, [`Answer::Allow`] at first:
    /// `ann` for an hour, with full or (narrowed) no read permissions.
    pub async fn switchable() -> (Self, Switch) {
        let switch = Switch(Arc::new(AtomicU8::new(Answer::Allow as u8)));
        let mode = switch.0.clone();
        let hook = Self::start(move |_| match mode.load(Ordering::SeqCst) {
            m if m == Answer::Allow as u8 => Reply::allow("ann", 3600),
            m if m == Answer::Deny as u8 => {
                Reply::deny(serde_json::json!({"hint": "revoked at the provider"}))
            }
            m if m == Answer::Narrow as u8 => Reply::json(
                200,
                serde_json::json!({
                    "authenticated": true,
                    "expirationSeconds": 3600,
                    "userID": "ann",
                    "permissions": {"read": {"everything": false, "queriesByCollection": {}}}
                }),
            ),
            _ => Reply::raw(503, "down"),
        })
        .await;
        (hook, switch)
    }

    pub fn url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.server.requests()
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

/// Records the call, asks the script, and answers after the script's delay.
async fn answer(
    req: Request<Incoming>,
    script: Script,
    finished: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Call>>>,
) -> Response<Body> {
    let mut guard = Guard {
        done: false,
        cancelled,
    };
    let headers = req.headers().clone();
    let body = read_body(req).await;
    log.lock().unwrap().push(Call {
        headers,
        body: body.clone(),
    });
    let json_body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let reply = script(&json_body);
    tokio::time::sleep(reply.delay).await;
    guard.done = true;
    finished.fetch_add(1, Ordering::SeqCst);
    json(reply.status, reply.body)
}
