//! The main listener: accept, read the PROXY header, enforce the connection caps, TLS handshake
//! under a deadline, serve HTTP/1 and HTTP/2, and close connections that say nothing.
//!
//! # The client's address
//!
//! A connection's address is its TCP peer, or, with `listen.proxy_protocol` on, the source its
//! PROXY protocol header (v1 or v2, [`proxy_header`]) names. That header must open every
//! connection and be whole within `limits.header_read_timeout_ms`; a connection without a valid
//! one is closed, counted in `drawbridge_connections_proxy_header_refused_total{reason}` and
//! logged (at warn once a minute, at debug otherwise, so a scan cannot flood the log). Per request
//! the gateway may then believe a trusted proxy's forwarding headers (`listen.trusted_proxies`);
//! the connection caps never do, since one proxied connection carries many clients.
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
//! # One client's share
//!
//! `limits.max_connections_per_client` caps the connections open from one address (trusted
//! proxies exempt), so one host cannot take every place, nor, by arriving at the cap, evict every
//! other client's idle connection. Without PROXY protocol the share is checked at accept, before
//! the newcomer takes a place or evicts anyone. With it the client is known only from its header:
//! a newcomer takes a free place at once (and, silent, is as evictable as any idle connection),
//! but when none is free it reads its header first and evicts only once that header names a
//! client within its share; at most [`MAX_DEFERRED`] such newcomers wait at once. A client over
//! its share is closed at once and counted in `drawbridge_connections_refused_per_client_total`.
//!
//! # Request heads
//!
//! `limits.max_request_head_bytes` caps an HTTP/1 request line plus headers (hyper answers 431
//! and closes, also for an unfinished head that grows past it, and reads no more than that into
//! its buffer) and the HTTP/2 header list (the h2 crate answers 431 on that stream).

mod activity;
mod clients;
mod io;
mod proxy_header;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Throttle;
use crate::config::{Limits, MIN_REQUEST_HEAD_BYTES, TrustedProxies};
use crate::gateway::GatewayService;
use crate::metrics::{ConnMetrics, ReapReason, TlsMetrics};
use crate::state::Shared;
use crate::tls::TlsStream;
use activity::{Activity, Check, Conns, Deadlines, Registration};
use clients::{ClientSlot, Clients};
use io::{Guarded, Slot};
use service::Tracked;

/// Pause after an accept error (such as EMFILE) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How long a reaped connection may take to close before it is dropped (unless a request that
/// raced the reap is still in flight).
const REAP_GRACE: Duration = Duration::from_secs(1);
/// How long a newcomer waits for the slot of the connection evicted for it.
const EVICTION_WAIT: Duration = Duration::from_secs(2);
/// Connections that may read their PROXY header without a place under `limits.max_connections`
/// (all were taken), to evict for once their client is known; more are closed at once.
const MAX_DEFERRED: usize = 1024;
/// Seconds between two warnings about refused connections of one kind; the rest go to debug.
const REFUSAL_WARNING_EVERY_SECS: u64 = 60;

/// Spaces out the warning about connections without a valid PROXY header.
static PROXY_HEADER_WARNING: Throttle = Throttle::new();
/// Spaces out the warning about clients over `limits.max_connections_per_client`.
static PER_CLIENT_WARNING: Throttle = Throttle::new();

/// Everything one accept loop needs.
pub(crate) struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) shared: Arc<Shared>,
}

/// How a new connection gets its place under `limits.max_connections`.
enum Seat {
    /// A free place, taken at accept.
    Free(OwnedSemaphorePermit),
    /// The connection idle longest was told to close; its place is awaited.
    Evicted,
    /// None was free, and the client is known only from its PROXY header: a connection is
    /// evicted for it only once that header names a client within its share.
    Deferred(Deferred),
}

/// One of the [`MAX_DEFERRED`] connections reading their PROXY header without a place.
struct Deferred(Arc<AtomicUsize>);

impl Deferred {
    fn try_new(count: &Arc<AtomicUsize>) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_DEFERRED).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The listener's tables every connection task shares.
#[derive(Clone)]
struct Tables {
    permits: Arc<Semaphore>,
    conns: Arc<Conns>,
    clients: Arc<Clients>,
}

impl Listener {
    /// Accepts until `stop` is cancelled, then drops the socket so no new connection is taken.
    /// Each connection is watched by `graceful`, which the caller drains after cancelling `stop`.
    pub(crate) async fn serve(self, stop: CancellationToken, graceful: &GracefulShutdown) {
        let mut limits = self.shared.live().config.limits.clone();
        let mut capacity = limits.max_connections;
        let tables = Tables {
            permits: Arc::new(Semaphore::new(capacity)),
            conns: Arc::new(Conns::default()),
            clients: Arc::new(Clients::default()),
        };
        let deferred = Arc::new(AtomicUsize::new(0));
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
            // The limits and TLS settings follow the live generation: each connection takes those
            // current at its accept.
            let generation = self.shared.live();
            let config = &generation.config;
            let current = config.limits.clone();
            if !same_http_settings(&current, &limits) {
                http = Arc::new(http_builder(&current));
            }
            if current.max_connections != capacity {
                capacity = resize(&tables.permits, capacity, current.max_connections);
            }
            limits = current;
            let proxy_protocol = config.listen.proxy_protocol;
            let addr = canonical(addr);
            // Without a PROXY header the client is known now: its share is checked before it
            // can take a place or evict anyone.
            let client = if proxy_protocol {
                None
            } else {
                match take_client_slot(
                    &tables.clients,
                    addr,
                    &limits,
                    &config.listen.trusted_proxies,
                ) {
                    Ok(slot) => slot,
                    Err(()) => {
                        refuse_per_client(&conn_metrics, addr, &limits);
                        continue;
                    }
                }
            };
            let seat = match tables.permits.clone().try_acquire_owned() {
                Ok(permit) => Seat::Free(permit),
                Err(_) if proxy_protocol => match Deferred::try_new(&deferred) {
                    Some(d) => Seat::Deferred(d),
                    None => {
                        conn_metrics.refused.inc();
                        tracing::debug!(peer = %addr, "connection refused: limits.max_connections busy and too many PROXY headers pending");
                        continue;
                    }
                },
                Err(_) if tables.conns.evict_idlest() => Seat::Evicted,
                Err(_) => {
                    conn_metrics.refused.inc();
                    tracing::debug!(peer = %addr, "connection refused: limits.max_connections busy");
                    drop(stream);
                    continue;
                }
            };
            let conn = Conn {
                shared: self.shared.clone(),
                tls: generation.tls.as_ref().map(|t| t.acceptor()),
                proxy_protocol,
                trusted_proxies: config.listen.trusted_proxies.clone(),
                limits: limits.clone(),
                http: http.clone(),
                metrics: conn_metrics.clone(),
                tls_metrics: self.shared.metrics.tls.clone(),
                stop: stop.clone(),
            };
            let watcher = graceful.watcher();
            let tables = tables.clone();
            tokio::spawn(conn.start(stream, addr, seat, client, tables, watcher));
        }
    }
}

/// `addr` with an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// One of `addr`'s places under `limits.max_connections_per_client`: `Ok(None)` for a trusted
/// proxy (exempt), `Err` when the client has its share open already.
fn take_client_slot(
    clients: &Arc<Clients>,
    addr: SocketAddr,
    limits: &Limits,
    trusted: &TrustedProxies,
) -> Result<Option<ClientSlot>, ()> {
    if trusted.contains(addr.ip()) {
        return Ok(None);
    }
    clients
        .try_take(addr.ip(), limits.max_connections_per_client)
        .map(Some)
        .ok_or(())
}

/// Counts and logs a connection refused for its client's share.
fn refuse_per_client(metrics: &ConnMetrics, addr: SocketAddr, limits: &Limits) {
    metrics.refused_per_client.inc();
    if PER_CLIENT_WARNING.ready(REFUSAL_WARNING_EVERY_SECS) {
        tracing::warn!(client = %addr.ip(), max = limits.max_connections_per_client, "connection refused: the client has limits.max_connections_per_client open (more at debug for a minute; see drawbridge_connections_refused_per_client_total)");
    } else {
        tracing::debug!(client = %addr.ip(), "connection refused: limits.max_connections_per_client");
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
    shared: Arc<Shared>,
    /// The server config of the generation live at accept, for the handshake; `None` for plain HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
    proxy_protocol: bool,
    trusted_proxies: TrustedProxies,
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

/// A connection's place under `limits.max_connections`, its activity, and its entry in the
/// table eviction picks from.
struct Placed {
    slot: Slot,
    activity: Arc<Activity>,
    _registration: Registration,
}

impl Conn {
    /// Runs a connection from its accept to its end: its PROXY header when one is due, its
    /// client's share, its place under the cap, then TLS and HTTP.
    async fn start(
        self,
        mut stream: TcpStream,
        mut addr: SocketAddr,
        seat: Seat,
        mut client: Option<ClientSlot>,
        tables: Tables,
        watcher: Watcher,
    ) {
        // A connection with a place is in the eviction table from its accept, so one that never
        // sends its PROXY header counts as idle like any silent connection.
        let (placed, deferred) = match seat {
            Seat::Free(permit) => (Some(self.place(permit, &tables)), None),
            Seat::Evicted => (None, None),
            Seat::Deferred(d) => (None, Some(d)),
        };
        if self.proxy_protocol {
            let evicted = async {
                match &placed {
                    Some(p) => p.activity.evicted().await,
                    None => std::future::pending().await,
                }
            };
            let header = tokio::select! {
                read = tokio::time::timeout(self.limits.header_read_timeout, proxy_header::read(&mut stream)) => read,
                () = evicted => {
                    self.metrics.reap(ReapReason::Capacity);
                    tracing::debug!(peer = %addr, "connection evicted before its PROXY header");
                    return;
                }
                () = self.stop.cancelled() => return,
            };
            match header {
                Ok(Ok(source)) => addr = source.map_or(addr, canonical),
                Ok(Err(error)) => return self.refuse_proxy_header(addr, error.label(), &error),
                Err(_) => {
                    return self.refuse_proxy_header(
                        addr,
                        "timeout",
                        &"no PROXY protocol header within limits.header_read_timeout_ms",
                    );
                }
            }
            match take_client_slot(&tables.clients, addr, &self.limits, &self.trusted_proxies) {
                Ok(slot) => client = slot,
                Err(()) => return refuse_per_client(&self.metrics, addr, &self.limits),
            }
        }
        let placed = match placed {
            Some(placed) => placed,
            None => match self.seat_later(deferred, &tables, addr).await {
                Some(placed) => placed,
                None => return,
            },
        };
        let Placed {
            mut slot,
            activity,
            _registration,
        } = placed;
        slot.hold(client);
        self.serve(stream, addr, slot, activity, watcher).await;
    }

    /// A place for a connection that had none at its accept: one come free meanwhile, else (when
    /// `deferred`, its client now known and within its share) one made by evicting the connection
    /// idle longest, else the one already evicted for it. `None` (counted) when none comes.
    async fn seat_later(
        &self,
        deferred: Option<Deferred>,
        tables: &Tables,
        addr: SocketAddr,
    ) -> Option<Placed> {
        if let Ok(permit) = tables.permits.clone().try_acquire_owned() {
            return Some(self.place(permit, tables));
        }
        if deferred.is_some() && !tables.conns.evict_idlest() {
            self.metrics.refused.inc();
            tracing::debug!(peer = %addr, "connection refused: limits.max_connections busy");
            return None;
        }
        drop(deferred);
        // The evicted connection frees its place within REAP_GRACE.
        match tokio::time::timeout(EVICTION_WAIT, tables.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(self.place(permit, tables)),
            _ => {
                self.metrics.refused.inc();
                tracing::debug!(peer = %addr, "connection refused: no slot freed");
                None
            }
        }
    }

    /// Takes the place `permit` grants and enters the eviction table.
    fn place(&self, permit: OwnedSemaphorePermit, tables: &Tables) -> Placed {
        self.metrics.accepted.inc();
        let activity = Arc::new(Activity::new());
        Placed {
            slot: Slot::new(permit, self.metrics.open.clone()),
            _registration: tables.conns.register(activity.clone()),
            activity,
        }
    }

    /// Counts and logs a connection closed for its PROXY header.
    fn refuse_proxy_header(
        &self,
        peer: SocketAddr,
        reason: &'static str,
        why: &dyn std::fmt::Display,
    ) {
        self.metrics
            .proxy_header_refused
            .with_label_values(&[reason])
            .inc();
        if PROXY_HEADER_WARNING.ready(REFUSAL_WARNING_EVERY_SECS) {
            tracing::warn!(%peer, reason, "connection refused: {why}; listen.proxy_protocol is on, so every connection must open with a PROXY header (more at debug for a minute; see drawbridge_connections_proxy_header_refused_total)");
        } else {
            tracing::debug!(%peer, reason, "connection refused: {why}");
        }
    }

    async fn serve(
        self,
        stream: TcpStream,
        addr: SocketAddr,
        slot: Slot,
        activity: Arc<Activity>,
        watcher: Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let service = GatewayService::new(self.shared.clone(), addr, self.tls.is_some());
        let Some(acceptor) = self.tls.clone() else {
            return self
                .serve_http(
                    Guarded::new(stream, activity.clone(), slot),
                    service,
                    activity,
                    watcher,
                )
                .await;
        };
        let started = Instant::now();
        let span = crate::telemetry::root_span(
            None,
            || tracing::trace_span!(target: crate::telemetry::TARGET, "tls_handshake", otel.kind = "server", client.address = %addr.ip(), tls.outcome = tracing::field::Empty, tls.protocol.version = tracing::field::Empty, tls.alpn = tracing::field::Empty),
        );
        let accept =
            tracing::Instrument::instrument(TlsStream::accept(stream, acceptor), span.clone());
        let handshake = tokio::select! {
            result = tokio::time::timeout(self.limits.tls_handshake_timeout, accept) => result,
            () = activity.evicted() => {
                self.metrics.reap(ReapReason::Capacity);
                tracing::debug!(peer = %addr, "connection evicted during its TLS handshake");
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
                tracing::debug!(peer = %addr, "TLS handshake timed out");
            }
            Ok(Err(error)) => {
                self.tls_metrics
                    .handshake_failures
                    .with_label_values(&["error"])
                    .inc();
                span.record("tls.outcome", "error");
                tracing::debug!(peer = %addr, %error, "TLS handshake failed");
            }
            Ok(Ok(stream)) => {
                self.tls_metrics
                    .handshake_duration
                    .observe(started.elapsed().as_secs_f64());
                if !span.is_disabled() {
                    let session = stream.session();
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
                self.serve_http(io, service, activity, watcher).await;
            }
        }
    }

    /// Serves HTTP until the peer leaves, the connection is reaped, or shutdown drains it.
    /// `watcher` is held to the end so the app's drain waits for this connection.
    async fn serve_http<I>(
        self,
        io: Guarded<I>,
        service: GatewayService,
        activity: Arc<Activity>,
        _watcher: Watcher,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = Tracked::new(service, activity.clone());
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
