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
use sha2::{Digest, Sha256};

use crate::config;
use crate::jsonlines::{Line, Sink, SinkError};

tokio::task_local! {
    static REQUEST: RequestNote;
}

/// What the gateway knows about the request a task serves, for events raised below it.
#[derive(Debug)]
pub(crate) struct RequestNote {
    client: IpAddr,
    /// Whether [`note_user`] keeps the user (only the access log wants it).
    keeps_user: bool,
    user: OnceLock<String>,
}

// === impl RequestNote ===

impl RequestNote {
    /// A note for a request from `client`; `keeps_user` when the access log wants to name the user.
    pub(crate) fn new(client: IpAddr, keeps_user: bool) -> Self {
        Self {
            client,
            keeps_user,
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
        if n.keeps_user {
            n.user.get_or_init(|| user.to_owned());
        }
    });
}

/// A session ID's stand-in in the log: the first 16 bytes of its SHA-256, in hex.
pub(crate) fn sid_hash(sid: &str) -> String {
    hex::encode(&Sha256::digest(sid.as_bytes())[..16])
}

/// One security event. Borrowed fields: building one costs no copy of the data it names. Its line
/// is `{"ts":…,"event":<snake_case name>,<fields in order; absent ones left out>,"trace_id":…}`.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A login decision by a door: `result` is `allow`, `deny` or `error`.
    Login {
        /// `allow`, `deny` or `error`.
        result: &'static str,
        /// The user the provider named (allows only).
        user: Option<&'a str>,
        /// The app the client named.
        app: &'a str,
        /// The provider the client named.
        provider: &'a str,
        /// `login`, `aggregator` or `ditto`.
        door: &'static str,
        /// The caller (for the aggregator: the sync server).
        client_ip: Option<IpAddr>,
        /// Why a login was refused or failed.
        reason: Option<&'static str>,
        /// How the decision cache answered: `hit`, `miss`, `coalesced`, `stale`.
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
        client_ip: Option<IpAddr>,
    },
    /// A client logged its session out.
    Logout {
        /// The session's user.
        user: &'a str,
        /// The session, hashed.
        sid_hash: String,
        /// Who asked.
        client_ip: Option<IpAddr>,
    },
    /// The admin port revoked a session or every session of a user.
    AdminRevoke {
        /// The revoked session, hashed (revocation by session).
        sid_hash: Option<String>,
        /// The revoked user (revocation by user).
        user: Option<&'a str>,
        /// Until when the revocation holds (Unix seconds).
        until: u64,
        /// The admin caller's address.
        admin_caller: SocketAddr,
    },
    /// A websocket tunnel opened.
    TunnelOpen {
        /// The session, hashed (absent on a public path).
        sid_hash: Option<&'a str>,
        /// The user (absent on a public path).
        user: Option<&'a str>,
        /// The canonical path, without the query.
        path: &'a str,
        /// The client.
        client_ip: IpAddr,
    },
    /// A websocket tunnel closed.
    TunnelClose {
        /// The session, hashed (absent on a public path).
        sid_hash: Option<&'a str>,
        /// The user (absent on a public path).
        user: Option<&'a str>,
        /// The canonical path, without the query.
        path: &'a str,
        /// The client.
        client_ip: IpAddr,
        /// Why it ended (the `drawbridge_tunnel_closes_total` reason).
        reason: &'static str,
        /// The close code drawbridge sent the client, when drawbridge closed it.
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
        problems: Option<usize>,
    },
    /// The serving certificate changed on disk: `result` is `success` or `failure`.
    CertificateReload {
        /// `success` or `failure`.
        result: &'static str,
        /// The certificate file.
        cert_file: &'a str,
        /// The new certificate's expiry (Unix seconds), on success.
        not_after: Option<i64>,
    },
}

/// The fields `tunnel_open` and `tunnel_close` share.
fn tunnel_fields(
    l: &mut Line<'_>,
    sid_hash: Option<&str>,
    user: Option<&str>,
    path: &str,
    client_ip: IpAddr,
) {
    l.opt_str("sid_hash", sid_hash);
    l.opt_str("user", user);
    l.str("path", path);
    l.ip("client_ip", client_ip);
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

// === impl Event ===

impl Event<'_> {
    /// The `event` field.
    fn name(&self) -> &'static str {
        match self {
            Self::Login { .. } => "login",
            Self::SessionRefresh { .. } => "session_refresh",
            Self::Logout { .. } => "logout",
            Self::AdminRevoke { .. } => "admin_revoke",
            Self::TunnelOpen { .. } => "tunnel_open",
            Self::TunnelClose { .. } => "tunnel_close",
            Self::ConfigReload { .. } => "config_reload",
            Self::CertificateReload { .. } => "certificate_reload",
        }
    }

    /// Writes the fields, in the order they are declared.
    fn fields(&self, l: &mut Line<'_>) {
        match *self {
            Self::Login {
                result,
                user,
                app,
                provider,
                door,
                client_ip,
                reason,
                cache,
            } => {
                l.word("result", result);
                l.opt_str("user", user);
                l.str("app", app);
                l.str("provider", provider);
                l.word("door", door);
                l.opt_ip("client_ip", client_ip);
                l.opt_word("reason", reason);
                l.opt_word("cache", cache);
            }
            Self::SessionRefresh {
                user,
                app,
                provider,
                ref sid_hash,
                expires_at,
                client_ip,
            } => {
                l.str("user", user);
                l.str("app", app);
                l.str("provider", provider);
                l.str("sid_hash", sid_hash);
                l.num("expires_at", expires_at);
                l.opt_ip("client_ip", client_ip);
            }
            Self::Logout {
                user,
                ref sid_hash,
                client_ip,
            } => {
                l.str("user", user);
                l.str("sid_hash", sid_hash);
                l.opt_ip("client_ip", client_ip);
            }
            Self::AdminRevoke {
                ref sid_hash,
                user,
                until,
                admin_caller,
            } => {
                l.opt_str("sid_hash", sid_hash.as_deref());
                l.opt_str("user", user);
                l.num("until", until);
                l.shown("admin_caller", admin_caller);
            }
            Self::TunnelOpen {
                sid_hash,
                user,
                path,
                client_ip,
            } => tunnel_fields(l, sid_hash, user, path, client_ip),
            Self::TunnelClose {
                sid_hash,
                user,
                path,
                client_ip,
                reason,
                close_code,
                duration_ms,
                bytes_client_to_upstream,
                bytes_upstream_to_client,
            } => {
                tunnel_fields(l, sid_hash, user, path, client_ip);
                l.word("reason", reason);
                l.opt_num("close_code", close_code);
                l.num("duration_ms", duration_ms);
                l.num("bytes_client_to_upstream", bytes_client_to_upstream);
                l.num("bytes_upstream_to_client", bytes_upstream_to_client);
            }
            Self::ConfigReload { result, problems } => {
                l.word("result", result);
                l.opt_num("problems", problems);
            }
            Self::CertificateReload {
                result,
                cert_file,
                not_after,
            } => {
                l.word("result", result);
                l.str("cert_file", cert_file);
                l.opt_num("not_after", not_after);
            }
        }
    }
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
        let trace_id = crate::telemetry::current_trace_id();
        sink.write(event.name(), trace_id.as_deref(), |l| event.fields(l));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_hash_is_stable_and_hides_the_sid() {
        let h = sid_hash("session-1234");
        assert_eq!(h, sid_hash("session-1234"));
        assert_eq!(h.len(), 32);
        assert!(!h.contains("session"));
        assert_ne!(h, sid_hash("session-1235"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_event_is_one_json_line_with_its_name_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let config = config::Audit {
            target: crate::jsonlines::Target::File(path.clone()),
            queue_lines: 64,
        };
        let audit = Audit::start(Some(&config), &Registry::new()).unwrap();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let events = [
            Event::Login {
                result: "deny",
                user: None,
                app: "app \"quoted\"",
                provider: "demo",
                door: "login",
                client_ip: Some(ip),
                reason: Some("InvalidCredentials"),
                cache: Some("miss"),
            },
            Event::SessionRefresh {
                user: "ann",
                app: "app",
                provider: "demo",
                sid_hash: sid_hash("s"),
                expires_at: 1_900_000_000,
                client_ip: None,
            },
            Event::Logout {
                user: "ann",
                sid_hash: sid_hash("s"),
                client_ip: Some(ip),
            },
            Event::AdminRevoke {
                sid_hash: None,
                user: Some("ann"),
                until: 1_900_000_000,
                admin_caller: SocketAddr::from(([127, 0, 0, 1], 9000)),
            },
            Event::TunnelOpen {
                sid_hash: None,
                user: None,
                path: "/sync",
                client_ip: ip,
            },
            Event::TunnelClose {
                sid_hash: Some("ab"),
                user: Some("ann"),
                path: "/sync",
                client_ip: ip,
                reason: "session_expired",
                close_code: Some(4001),
                duration_ms: 1500,
                bytes_client_to_upstream: 10,
                bytes_upstream_to_client: 20,
            },
            Event::ConfigReload {
                result: "rejected",
                problems: Some(2),
            },
            Event::CertificateReload {
                result: "success",
                cert_file: "/etc/tls/tls.crt",
                not_after: Some(1_900_000_000),
            },
        ];
        for event in &events {
            audit.emit(event);
        }
        audit.flush(Duration::from_secs(5)).await;
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let names: Vec<_> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "login",
                "session_refresh",
                "logout",
                "admin_revoke",
                "tunnel_open",
                "tunnel_close",
                "config_reload",
                "certificate_reload"
            ]
        );
        let keys = |l: &serde_json::Value| -> Vec<String> {
            l.as_object().unwrap().keys().cloned().collect()
        };
        let (login, refresh, revoke, close) = (&lines[0], &lines[1], &lines[3], &lines[5]);
        assert_eq!(login["app"], "app \"quoted\"");
        assert_eq!(login["client_ip"], "10.0.0.1");
        assert_eq!(login["reason"], "InvalidCredentials");
        assert!(login.get("user").is_none() && login.get("trace_id").is_none());
        assert!(login["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(refresh["expires_at"], 1_900_000_000);
        assert!(refresh.get("client_ip").is_none());
        assert_eq!(revoke["admin_caller"], "127.0.0.1:9000");
        assert_eq!(
            keys(close),
            [
                "bytes_client_to_upstream",
                "bytes_upstream_to_client",
                "client_ip",
                "close_code",
                "duration_ms",
                "event",
                "path",
                "reason",
                "sid_hash",
                "ts",
                "user"
            ]
        );
        assert_eq!(close["close_code"], 4001);
        assert_eq!(lines[6]["problems"], 2);
        assert_eq!(lines[7]["not_after"], 1_900_000_000);
    }
}
