//! The audit log: one JSON line per security event (logins, refreshes, logouts, revocations,
//! tunnels, reloads), written off the request path and never sampled.
//!
//! A line names its event, carries a timestamp and, when tracing is on, the trace ID. It never
//! carries a token, a cookie or a session ID: sessions appear as [`sid_hash`], which an operator
//! can compute from a session ID to find its lines. A disabled audit log costs one branch.
//!
//! The client's IP reaches events raised deep in the auth core through a task-local
//! [`RequestNote`] the gateway sets for each request, which also collects the user for the access log.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounter, Registry};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config;
use crate::jsonlines::{Sink, SinkError};

tokio::task_local! {
    static REQUEST: RequestNote;
}

/// What the gateway knows about the request a task serves, for events raised below it.
#[derive(Debug)]
pub(crate) struct RequestNote {
    client: IpAddr,
    user: OnceLock<String>,
}

// === impl RequestNote ===

impl RequestNote {
    /// A note for a request from `client`.
    pub(crate) fn new(client: IpAddr) -> Self {
        Self {
            client,
            user: OnceLock::new(),
        }
    }

    /// Runs `fut` with this note visible to [`client_ip`] and [`note_user`].
    pub(crate) async fn scope<F: Future>(self, fut: F) -> (F::Output, Option<String>) {
        REQUEST
            .scope(self, async move {
                let out = fut.await;
                let user = REQUEST.try_with(|n| n.user.get().cloned()).ok().flatten();
                (out, user)
            })
            .await
    }
}

/// The client IP of the request this task serves, if the gateway noted one.
pub(crate) fn client_ip() -> Option<IpAddr> {
    REQUEST.try_with(|n| n.client).ok()
}

/// Records who the request this task serves turned out to be (the first call wins).
pub(crate) fn note_user(user: &str) {
    if user.is_empty() {
        return;
    }
    let _ = REQUEST.try_with(|n| {
        n.user.get_or_init(|| user.to_owned());
    });
}

/// A session ID's stand-in in the log: the first 16 bytes of its SHA-256, in hex.
pub(crate) fn sid_hash(sid: &str) -> String {
    hex::encode(&Sha256::digest(sid.as_bytes())[..16])
}

/// One security event. Borrowed fields: building one costs no copy of the data it names.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event<'a> {
    /// A login decision by a door: `result` is `allow`, `deny` or `error`.
    Login {
        /// `allow`, `deny` or `error`.
        result: &'static str,
        /// The user the provider named (allows only).
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        /// The app the client named.
        app: &'a str,
        /// The provider the client named.
        provider: &'a str,
        /// `login`, `aggregator` or `ditto`.
        door: &'static str,
        /// The caller (for the aggregator: the sync server).
        #[serde(skip_serializing_if = "Option::is_none")]
        client_ip: Option<IpAddr>,
        /// Why a login was refused or failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        /// How the decision cache answered: `hit`, `miss`, `coalesced`, `stale`.
        #[serde(skip_serializing_if = "Option::is_none")]
        cache: Option<&'static str>,
    },
    /// A session token was refreshed.
    SessionRefresh {
        /// The session's user.
        user: &'a str,
        /// The session's app.
        app: &'a str,
        /// The session's provider.
        provider: &'a str,
        /// The session, hashed.
        sid_hash: String,
        /// The new expiry (Unix seconds).
        expires_at: u64,
        /// Who asked.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_ip: Option<IpAddr>,
    },
    /// A client logged its session out.
    Logout {
        /// The session's user.
        user: &'a str,
        /// The session, hashed.
        sid_hash: String,
        /// Who asked.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_ip: Option<IpAddr>,
    },
    /// The admin port revoked a session or every session of a user.
    AdminRevoke {
        /// The revoked session, hashed (revocation by session).
        #[serde(skip_serializing_if = "Option::is_none")]
        sid_hash: Option<String>,
        /// The revoked user (revocation by user).
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        /// Until when the revocation holds (Unix seconds).
        until: u64,
        /// The admin caller's address.
        admin_caller: SocketAddr,
    },
    /// A websocket tunnel opened.
    TunnelOpen {
        /// The session, hashed (absent on a public path).
        #[serde(skip_serializing_if = "Option::is_none")]
        sid_hash: Option<&'a str>,
        /// The user (absent on a public path).
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        /// The canonical path, without the query.
        path: &'a str,
        /// The client.
        client_ip: IpAddr,
    },
    /// A websocket tunnel closed.
    TunnelClose {
        /// The session, hashed (absent on a public path).
        #[serde(skip_serializing_if = "Option::is_none")]
        sid_hash: Option<&'a str>,
        /// The user (absent on a public path).
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        /// The canonical path, without the query.
        path: &'a str,
        /// The client.
        client_ip: IpAddr,
        /// Why it ended (the `drawbridge_tunnel_closes_total` reason).
        reason: &'static str,
        /// The close code drawbridge sent the client, when drawbridge closed it.
        #[serde(skip_serializing_if = "Option::is_none")]
        close_code: Option<u16>,
        /// How long it was open.
        duration_ms: u64,
        /// Bytes from the client to the sync server.
        bytes_client_to_upstream: u64,
        /// Bytes from the sync server to the client.
        bytes_upstream_to_client: u64,
    },
    /// SIGHUP re-read the config: `result` is `applied` or `rejected`.
    ConfigReload {
        /// `applied` or `rejected`.
        result: &'static str,
        /// How many problems a rejected file had.
        #[serde(skip_serializing_if = "Option::is_none")]
        problems: Option<usize>,
    },
    /// The serving certificate changed on disk: `result` is `success` or `failure`.
    CertificateReload {
        /// `success` or `failure`.
        result: &'static str,
        /// The certificate file.
        cert_file: &'a str,
        /// The new certificate's expiry (Unix seconds), on success.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_after: Option<i64>,
    },
}

/// A tunnel as the audit log names it, kept from its opening to its close.
#[derive(Debug)]
pub(crate) struct TunnelLog {
    sid_hash: Option<String>,
    user: Option<String>,
    path: String,
    client_ip: IpAddr,
}

// === impl TunnelLog ===

impl TunnelLog {
    /// A tunnel of session `sid` (empty: a public one) for `user`, on canonical `path`.
    pub(crate) fn new(sid: &str, user: &str, path: &str, client_ip: IpAddr) -> Self {
        Self {
            sid_hash: (!sid.is_empty()).then(|| sid_hash(sid)),
            user: (!user.is_empty()).then(|| user.to_owned()),
            path: path.to_owned(),
            client_ip,
        }
    }

    /// Writes `tunnel_open`.
    pub(crate) fn opened(&self, audit: &Audit) {
        audit.emit(&Event::TunnelOpen {
            sid_hash: self.sid_hash.as_deref(),
            user: self.user.as_deref(),
            path: &self.path,
            client_ip: self.client_ip,
        });
    }

    /// Writes `tunnel_close` with how it ended and what went through.
    pub(crate) fn closed(&self, audit: &Audit, closed: TunnelClosed) {
        audit.emit(&Event::TunnelClose {
            sid_hash: self.sid_hash.as_deref(),
            user: self.user.as_deref(),
            path: &self.path,
            client_ip: self.client_ip,
            reason: closed.reason,
            close_code: closed.close_code,
            duration_ms: u64::try_from(closed.duration.as_millis()).unwrap_or(u64::MAX),
            bytes_client_to_upstream: closed.bytes_client_to_upstream,
            bytes_upstream_to_client: closed.bytes_upstream_to_client,
        });
    }
}

/// How a tunnel ended, for [`TunnelLog::closed`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TunnelClosed {
    /// The `drawbridge_tunnel_closes_total` reason.
    pub(crate) reason: &'static str,
    /// The close code drawbridge sent the client, when drawbridge closed it.
    pub(crate) close_code: Option<u16>,
    /// How long it was open.
    pub(crate) duration: Duration,
    /// Bytes from the client to the sync server.
    pub(crate) bytes_client_to_upstream: u64,
    /// Bytes from the sync server to the client.
    pub(crate) bytes_upstream_to_client: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a Event<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

/// The audit log handle: off (`[audit]` absent) or a queue to its writer. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Audit {
    sink: Option<Sink>,
}

// === impl Audit ===

impl Audit {
    /// Starts the writer when `config` is set, and registers `drawbridge_audit_dropped_total` in
    /// `registry` either way.
    ///
    /// # Errors
    /// [`SinkError`] when the file cannot be opened.
    pub(crate) fn start(
        config: Option<&config::Audit>,
        registry: &Registry,
    ) -> Result<Self, SinkError> {
        let dropped = IntCounter::new(
            "drawbridge_audit_dropped_total",
            "Audit lines dropped because the writer fell behind",
        )
        .expect("a valid metric name");
        // One audit handle per registry; registering twice would only fail, not break anything.
        let _ = registry.register(Box::new(dropped.clone()));
        let sink = match config {
            Some(c) => Some(Sink::start(
                "audit",
                c.target.clone(),
                c.queue_lines,
                dropped,
            )?),
            None => None,
        };
        Ok(Self { sink })
    }

    /// Whether events are written at all.
    pub(crate) fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Writes `event` with a timestamp (and the trace ID when tracing is on); never waits.
    pub(crate) fn emit(&self, event: &Event<'_>) {
        let Some(sink) = &self.sink else {
            return;
        };
        let line = Line {
            ts: now_rfc3339(),
            event,
            trace_id: crate::telemetry::current_trace_id(),
        };
        match serde_json::to_vec(&line) {
            Ok(bytes) => sink.send(bytes),
            Err(error) => tracing::error!(%error, "cannot encode an audit line"),
        }
    }

    /// Reopens the file (SIGUSR1, after logrotate).
    pub(crate) fn reopen(&self) {
        if let Some(sink) = &self.sink {
            sink.reopen();
        }
    }

    /// Waits, at most `within`, for every queued line to reach the file.
    pub(crate) async fn flush(&self, within: Duration) {
        if let Some(sink) = &self.sink {
            sink.flush(within).await;
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds. Formatted once per millisecond and thread: a busy
/// gateway writes many lines within one, and formatting a date costs more than the rest of a line.
pub(crate) fn now_rfc3339() -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i128, String)> = const { std::cell::RefCell::new((-1, String::new())) };
    }
    let now = time::OffsetDateTime::now_utc();
    let ms_since_epoch = now.unix_timestamp_nanos() / 1_000_000;
    LAST.with_borrow_mut(|(at, text)| {
        if *at != ms_since_epoch {
            let ms = now.millisecond();
            let now = now
                .replace_nanosecond(u32::from(ms) * 1_000_000)
                .unwrap_or(now);
            *text = now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            *at = ms_since_epoch;
        }
        text.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_and_move_on() {
        use time::format_description::well_known::Rfc3339;
        let first = now_rfc3339();
        assert!(first.ends_with('Z'), "{first}");
        let a = time::OffsetDateTime::parse(&first, &Rfc3339).unwrap();
        assert_eq!(a.nanosecond() % 1_000_000, 0, "milliseconds: {first}");
        std::thread::sleep(std::time::Duration::from_millis(3));
        let later = now_rfc3339();
        let b = time::OffsetDateTime::parse(&later, &Rfc3339).unwrap();
        assert!(b > a, "{first} then {later}");
    }

    #[test]
    fn sid_hash_is_stable_and_hides_the_sid() {
        let h = sid_hash("session-1234");
        assert_eq!(h, sid_hash("session-1234"));
        assert_eq!(h.len(), 32);
        assert!(!h.contains("session"));
        assert_ne!(h, sid_hash("session-1235"));
    }

    #[test]
    fn event_line_names_its_event_and_skips_absent_fields() {
        let event = Event::Login {
            result: "deny",
            user: None,
            app: "app",
            provider: "demo",
            door: "login",
            client_ip: Some(IpAddr::from([10, 0, 0, 1])),
            reason: Some("InvalidCredentials"),
            cache: Some("miss"),
        };
        let line = Line {
            ts: now_rfc3339(),
            event: &event,
            trace_id: None,
        };
        let v: serde_json::Value = serde_json::to_value(&line).unwrap();
        assert_eq!(v["event"], "login");
        assert_eq!(v["result"], "deny");
        assert_eq!(v["client_ip"], "10.0.0.1");
        assert!(v.get("user").is_none());
        assert!(v.get("trace_id").is_none());
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
}
