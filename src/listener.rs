//! The main listener: accept, enforce the connection cap, TLS handshake under a deadline, serve
//! HTTP/1 and HTTP/2, and close connections that say nothing.
//!
//! # Quiet connections
//!
//! Every connection has an [`activity::Activity`]: the service marks a request busy from its head
//! until hyper drops its response body, a 101 (or a 2xx to an RFC 8441 CONNECT) marks the
//! connection as carrying a tunnel, and the stream notes when the bytes of a head begin to
//! arrive. The connection's own task owns one timer and looks at that state only when the timer
//! fires, so a request costs a few atomic updates and no wake-up:
//!
//! - **Request heads.** A connection must deliver its first complete request head within
//!   `limits.header_read_timeout_ms` of the end of the TLS handshake (of the accept, in
//!   plaintext), HTTP/1 or HTTP/2 alike: an HTTP/2 client must send the preface, its SETTINGS and
//!   a whole HEADERS block in that time. A later HTTP/1 head must complete within the same time
//!   from its first byte. hyper's own HTTP/1 `header_read_timeout` is switched off: it starts only
//!   once hyper-util has read the first bytes to tell HTTP/1 from HTTP/2 (so a silent connection
//!   never met it), and it also runs while a keep-alive connection waits for its next head, closing
//!   it without a close_notify after the header timeout rather than the idle one.
//! - **Idle.** After a request, a connection with nothing in flight for `limits.idle_timeout_ms`
//!   is closed; hyper has no such knob for either protocol. HTTP/2 keep-alive pings
//!   (`limits.http2_keep_alive_*`) find dead peers, tunnels included.
//! - **Tunnels are never idle.** A connection carrying a websocket tunnel is busy for the rest of
//!   its life; the tunnel ends on its own terms (session expiry, revocation, either side closing).
//!   On HTTP/1 hyper hands the stream over after the 101 and the tunnel keeps the slot.
//!
//! Closing is done the way the protocol expects. On HTTP/2 (the peer sent the preface) the
//! connection gets `graceful_shutdown()`: a GOAWAY, then close once no stream is open. Otherwise
//! reads start returning end-of-stream ([`io::Guarded`]), which hyper answers as if the peer had
//! hung up: an idle HTTP/1 connection, or one that never sent a byte, closes with a TLS
//! close_notify. Whatever is still open [`REAP_GRACE`] later, with nothing in flight, is dropped.
//!
//! # The connection cap
//!
//! `limits.max_connections` counts every open client connection, tunnels included. When it is
//! reached, the accept loop does not simply refuse the newcomer: it evicts the connection idle
//! longest (a silent or half-handshaken one counts as idle since its accept) and serves the
//! newcomer in its place. A flood of idle sockets therefore cannot lock real clients out. Busy
//! connections (a request in flight, a tunnel) are never evicted; when all are busy, the
//! newcomer is closed at once and counted in `drawbridge_connections_refused_total`. Evicting
//! beats a separate, smaller budget for not-yet-requested connections: it needs no extra knob,
//! and a flood filling that budget would still lock out every new client.
//!
//! # Request heads
//!
//! `limits.max_request_head_bytes` caps an HTTP/1 request line plus headers (hyper answers 431
//! and closes, also for an unfinished head that grows past it, and reads no more than that into
//! its buffer) and the HTTP/2 header list (the h2 crate answers 431 on that stream).

mod activity;
mod io;
mod service;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Limits, MIN_REQUEST_HEAD_BYTES};
use crate::gateway::GatewayService;
use crate::metrics::{ConnMetrics, ReapReason, TlsMetrics};
use crate::state::Shared;
use crate::tls::Tls;
use activity::{Activity, Check, Conns, Deadlines};
use io::{Guarded, Slot};
use service::Tracked;

/// Pause after an accept error (such as EMFILE) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How long a reaped connection may take to close before it is dropped (unless a request that
/// raced the reap is still in flight).
const REAP_GRACE: Duration = Duration::from_secs(1);
/// How long a newcomer waits for the slot of the connection evicted for it.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// Everything one accept loop needs.
pub(crate) struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) tls: Option<Arc<Tls>>,
    pub(crate) shared: Arc<Shared>,
}

impl Listener {
    /// Accepts until `stop` is cancelled, then drops the socket so no new connection is taken.
    /// Each connection is watched by `graceful`, which the caller drains after cancelling `stop`.
    pub(crate) async fn serve(self, stop: CancellationToken, graceful: &GracefulShutdown) {
        let mut limits = self.shared.config.load().limits.clone();
        let mut capacity = limits.max_connections;
        let permits = Arc::new(Semaphore::new(capacity));
        let conns = Arc::new(Conns::default());
        let mut http = Arc::new(http_builder(&limits));
        let conn_metrics = self.shared.metrics.conn.clone();
        loop {
            let (stream, addr) = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            // The limits follow the live config: each connection takes those current at its accept.
            let live = self.shared.config.load().limits.clone();
            if !same_http_settings(&live, &limits) {
                http = Arc::new(http_builder(&live));
            }
            if live.max_connections != capacity {
                capacity = resize(&permits, capacity, live.max_connections);
            }
            limits = live;
            let permit = match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) if conns.evict_idlest() => None,
                Err(_) => {
                    conn_metrics.refused.inc();
                    tracing::debug!(peer = %addr, "connection refused: limits.max_connections busy");
                    drop(stream);
                    continue;
                }
            };
            let conn = Conn {
                service: GatewayService::new(self.shared.clone(), addr, self.tls.is_some()),
                tls: self.tls.clone(),
                limits: limits.clone(),
                http: http.clone(),
                metrics: conn_metrics.clone(),
                tls_metrics: self.shared.metrics.tls.clone(),
                stop: stop.clone(),
            };
            let watcher = graceful.watcher();
            let (permits, conns) = (permits.clone(), conns.clone());
            tokio::spawn(async move {
                let permit = match permit {
                    Some(permit) => permit,
                    // The evicted connection frees its slot within REAP_GRACE.
                    None => {
                        match tokio::time::timeout(EVICTION_WAIT, permits.acquire_owned()).await {
                            Ok(Ok(permit)) => permit,
                            _ => {
                                conn.metrics.refused.inc();
                                tracing::debug!(peer = %addr, "connection refused: no slot freed");
                                return;
                            }
                        }
                    }
                };
                conn.metrics.accepted.inc();
                let slot = Slot::new(permit, conn.metrics.open.clone());
                let activity = Arc::new(Activity::new());
                let _registration = conns.register(activity.clone());
                conn.serve(stream, slot, activity, watcher).await;
            });
        }
    }
}

/// Whether two limits give the same [`http_builder`].
fn same_http_settings(a: &Limits, b: &Limits) -> bool {
    a.max_request_head_bytes == b.max_request_head_bytes
        && a.http2_keep_alive_interval == b.http2_keep_alive_interval
        && a.http2_keep_alive_timeout == b.http2_keep_alive_timeout
}

/// Moves the connection cap from `from` to `to` permits and returns the cap now in force. A smaller
/// cap takes only the permits free now (open connections are never closed for it); the rest of
/// the cut is tried again at the next accept.
fn resize(permits: &Semaphore, from: usize, to: usize) -> usize {
    if to > from {
        permits.add_permits(to - from);
        to
    } else {
        from - permits.forget_permits(from - to)
    }
}

/// The HTTP/1 and HTTP/2 settings every connection shares.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        // Timed here instead (see the module docs): hyper's timer would also close keep-alive
        // connections waiting for their next head, abruptly, after this same timeout.
        .header_read_timeout(None)
        // The read buffer holds the head until it is complete: one that fills it gets a 431.
        // (Validated config never goes below hyper's floor, under which this would panic.)
        .max_buf_size(limits.max_request_head_bytes.max(MIN_REQUEST_HEAD_BYTES))
        .keep_alive(true);
    http.http2()
        .timer(TokioTimer::new())
        // RFC 8441: websockets over HTTP/2.
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(limits.max_request_head_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    http
}

/// One accepted connection.
struct Conn {
    service: GatewayService,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    http: Arc<auto::Builder<TokioExecutor>>,
    metrics: ConnMetrics,
    tls_metrics: TlsMetrics,
    stop: CancellationToken,
}

/// Where a connection's close stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Reaped: dropped once nothing is in flight and [`REAP_GRACE`] has passed.
    Reaped,
    /// Draining for shutdown: the app's grace period bounds it.
    Draining,
}

impl Conn {
    async fn serve(self, stream: TcpStream, slot: Slot, activity: Arc<Activity>, watcher: Watcher) {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let Some(acceptor) = self.tls.as_ref().map(|t| t.acceptor()) else {
            return self
                .serve_http(
                    Guarded::new(stream, activity.clone(), slot),
                    activity,
                    watcher,
                )
                .await;
        };
        let started = Instant::now();
        let span = crate::telemetry::root_span(
            None,
            || tracing::trace_span!(target: crate::telemetry::TARGET, "tls_handshake", otel.kind = "server", tls.outcome = tracing::field::Empty, tls.protocol.version = tracing::field::Empty, tls.alpn = tracing::field::Empty),
        );
        let accept = tracing::Instrument::instrument(acceptor.accept(stream), span.clone());
        let handshake = tokio::select! {
            result = tokio::time::timeout(self.limits.tls_handshake_timeout, accept) => result,
            () = activity.evicted() => {
                self.metrics.reap(ReapReason::Capacity);
                tracing::debug!(?peer, "connection evicted during its TLS handshake");
                return;
            }
        };
        match handshake {
            Err(_) => {
                self.tls_metrics
                    .handshake_failures
                    .with_label_values(&["timeout"])
                    .inc();
                span.record("tls.outcome", "timeout");
                tracing::debug!(?peer, "TLS handshake timed out");
            }
            Ok(Err(error)) => {
                self.tls_metrics
                    .handshake_failures
                    .with_label_values(&["error"])
                    .inc();
                span.record("tls.outcome", "error");
                tracing::debug!(?peer, %error, "TLS handshake failed");
            }
            Ok(Ok(stream)) => {
                self.tls_metrics
                    .handshake_duration
                    .observe(started.elapsed().as_secs_f64());
                if !span.is_disabled() {
                    let session = stream.get_ref().1;
                    span.record("tls.outcome", "ok");
                    if let Some(v) = session.protocol_version().and_then(|v| v.as_str()) {
                        span.record("tls.protocol.version", v);
                    }
                    if let Some(alpn) = session.alpn_protocol() {
                        span.record("tls.alpn", String::from_utf8_lossy(alpn).as_ref());
                    }
                }
                drop(span);
                let io = Guarded::new(stream, activity.clone(), slot);
                self.serve_http(io, activity, watcher).await;
            }
        }
    }

    /// Serves HTTP until the peer leaves, the connection is reaped, or shutdown drains it.
    /// `watcher` is held to the end so the app's drain waits for this connection.
    async fn serve_http<I>(self, io: Guarded<I>, activity: Arc<Activity>, _watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = Tracked::new(self.service, activity.clone());
        let conn = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let deadlines = Deadlines {
            first_request_by: Instant::now() + self.limits.header_read_timeout,
            header_read: self.limits.header_read_timeout,
            idle: self.limits.idle_timeout,
        };
        // Each firing works out the next from what the connection did meanwhile.
        let first_look = deadlines
            .first_request_by
            .min(Instant::now() + deadlines.idle);
        let timer = tokio::time::sleep_until(first_look);
        tokio::pin!(timer);
        let mut closing = Closing::No;
        loop {
            let mut reap = None;
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = self.stop.cancelled(), if closing != Closing::Draining => {
                    closing = Closing::Draining;
                    conn.as_mut().graceful_shutdown();
                }
                () = activity.evicted(), if closing == Closing::No => reap = Some(ReapReason::Capacity),
                () = timer.as_mut(), if closing != Closing::Draining => {
                    let now = Instant::now();
                    if closing == Closing::Reaped {
                        if !activity.is_busy() {
                            tracing::debug!("a reaped connection did not close in time; dropping it");
                            return;
                        }
                        timer.as_mut().reset(now + REAP_GRACE);
                    } else {
                        match activity.check(now, &deadlines) {
                            Check::Until(at) => timer.as_mut().reset(at),
                            Check::NoRequest => reap = Some(ReapReason::NoRequest),
                            Check::Idle => reap = Some(ReapReason::Idle),
                        }
                    }
                }
            }
            if let Some(reason) = reap {
                closing = Closing::Reaped;
                self.metrics.reap(reason);
                tracing::debug!(reason = reason.label(), "closing a quiet connection");
                if activity.is_http2() {
                    conn.as_mut().graceful_shutdown();
                } else {
                    activity.end_reads();
                }
                timer.as_mut().reset(Instant::now() + REAP_GRACE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_grows_at_once_and_shrinks_only_by_free_permits() {
        let permits = Semaphore::new(4);
        assert_eq!(resize(&permits, 4, 6), 6);
        assert_eq!(permits.available_permits(), 6);
        let held = permits.try_acquire_many(5).unwrap();
        // One permit is free: the cap drops by one now, the rest at a later accept.
        assert_eq!(resize(&permits, 6, 2), 5);
        drop(held);
        assert_eq!(resize(&permits, 5, 2), 2);
        assert_eq!(permits.available_permits(), 2);
    }
}
