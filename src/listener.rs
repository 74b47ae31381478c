//! The main listener: accept, enforce the connection cap, TLS handshake under a deadline, serve HTTP/1 and HTTP/2.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::gateway::{GatewayService, Shared};
use crate::metrics::TlsMetrics;

/// Pause after an accept error (such as EMFILE) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Everything one accept loop needs.
pub(crate) struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) limits: Limits,
}

impl Listener {
    /// Accepts until `stop` is cancelled, then drops the socket so no new connection is taken.
    /// Each connection is watched by `graceful`, which the caller drains.
    pub(crate) async fn serve(self, stop: CancellationToken, graceful: &GracefulShutdown) {
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        // RFC 8441: websockets over HTTP/2.
        http.http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol();
        let http = Arc::new(http);
        let conn_metrics = self.shared.metrics.conn.clone();
        let tls_metrics = self.shared.metrics.tls.clone();
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
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                conn_metrics.refused.inc();
                tracing::debug!(peer = %addr, "connection refused: limits.max_connections reached");
                drop(stream);
                continue;
            };
            conn_metrics.accepted.inc();
            let conn = Conn {
                service: GatewayService::new(self.shared.clone(), addr, self.tls.is_some()),
                tls: self.tls.clone(),
                handshake_timeout: self.limits.tls_handshake_timeout,
                http: http.clone(),
                tls_metrics: tls_metrics.clone(),
            };
            let watcher = graceful.watcher();
            let open = conn_metrics.open.clone();
            tokio::spawn(async move {
                open.inc();
                conn.serve(stream, watcher).await;
                open.dec();
                drop(permit);
            });
        }
    }
}

/// One accepted connection.
struct Conn {
    service: GatewayService,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    http: Arc<auto::Builder<TokioExecutor>>,
    tls_metrics: TlsMetrics,
}

impl Conn {
    async fn serve(self, stream: TcpStream, watcher: Watcher) {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let Some(acceptor) = self.tls else {
            return serve_http(&self.http, TokioIo::new(stream), self.service, watcher).await;
        };
        let started = Instant::now();
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Err(_) => {
                self.tls_metrics
                    .handshake_failures
                    .with_label_values(&["timeout"])
                    .inc();
                tracing::debug!(?peer, "TLS handshake timed out");
            }
            Ok(Err(error)) => {
                self.tls_metrics
                    .handshake_failures
                    .with_label_values(&["error"])
                    .inc();
                tracing::debug!(?peer, %error, "TLS handshake failed");
            }
            Ok(Ok(stream)) => {
                self.tls_metrics
                    .handshake_duration
                    .observe(started.elapsed().as_secs_f64());
                serve_http(&self.http, TokioIo::new(stream), self.service, watcher).await;
            }
        }
    }
}

async fn serve_http<I>(
    http: &auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    service: GatewayService,
    watcher: Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    if let Err(error) = watcher.watch(conn).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
