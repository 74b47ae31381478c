//! `App`: builds every part from a validated `Config`, binds the ports, and runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::auth::AuthCore;
use crate::auth::revocation::Revocations;
use crate::auth::session::{SessionError, Sessions};
use crate::cluster::{Cluster, ClusterError, Replica};
use crate::config::Config;
use crate::forward::Forwarder;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shutdown::Readiness;
use crate::state::Shared;
use crate::tls::{Tls, TlsError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A port could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream client could not be built.
    #[error("cannot build the upstream client: {0}")]
    Client(#[source] std::io::Error),
    /// The session keys could not be loaded.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A metric family could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Cluster mode could not be set up.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A gateway with its ports bound, ready to [`run`](App::run).
pub struct App {
    shared: Arc<Shared>,
    tls: Option<Arc<Tls>>,
    listener: TcpListener,
    admin_listener: TcpListener,
    readiness: Readiness,
    reload_from: Option<PathBuf>,
}

impl App {
    /// Loads TLS, builds the upstream client and binds the main and admin ports.
    ///
    /// # Errors
    /// [`AppError`] when a file, a port or the client is unusable.
    pub async fn bind(config: Config) -> Result<Self, AppError> {
        let metrics = Metrics::new()?;
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(Tls::load(settings, metrics.tls.clone())?)),
            None => None,
        };
        let forwarder = Forwarder::new(&config.upstream).map_err(AppError::Client)?;
        let sessions = Sessions::from_config(&config.auth.session)?;
        if sessions.is_ephemeral() {
            tracing::warn!(
                "session.key_file is not set: signing with a key made at start; sessions end with this process \
                 and other replicas cannot verify them (run `drawbridge keygen` and set session.key_file)"
            );
        }
        crate::doors::aggregator::announce(&config.auth.aggregator);
        log_warnings(&config);
        let provider_client = crate::auth::provider::http_client().map_err(AppError::Client)?;
        let cluster = match &config.cluster {
            Some(settings) => Some(Cluster::new(settings, metrics.registry())?),
            None => None,
        };
        let mut auth = AuthCore::new(&config.auth, &provider_client, metrics.auth.clone());
        if let Some(cluster) = cluster.as_ref().filter(|c| c.shares_decisions()) {
            auth.share_decisions(cluster.clone());
        }
        let limiter = config.auth.rate_limit.map(|r| {
            governor::RateLimiter::keyed(
                governor::Quota::per_second(r.per_second).allow_burst(r.burst),
            )
        });
        let tickets = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(config.auth.session.ticket_ttl)
            .build();
        let revocations = Revocations::new(config.auth.session.max_ttl);
        let tunnels = Arc::new(Registry::new(metrics.tunnel.active.clone()));
        let listener = bind(config.listen.addr).await?;
        let admin_listener = bind(config.admin.addr).await?;
        let readiness = Readiness::default();
        Ok(Self {
            shared: Arc::new(Shared {
                config: ArcSwap::from_pointee(config),
                forwarder,
                metrics,
                auth,
                sessions,
                revocations,
                tickets,
                limiter,
                tunnels,
                ditto_tokens: crate::auth::known_tokens::KnownTokens::new(),
                cluster,
            }),
            tls,
            listener,
            admin_listener,
            readiness,
            reload_from: None,
        })
    }

    /// Re-reads the config from `path` on SIGHUP; a bad file keeps the running config.
    #[must_use]
    pub fn reload_on_sighup(mut self, path: PathBuf) -> Self {
        self.reload_from = Some(path);
        self
    }

    /// The bound main address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.shared.config.load().listen.addr)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or_else(|_| self.shared.config.load().admin.addr)
    }

    /// Serves until `shutdown` completes, then drains: readiness goes 503, the listener closes,
    /// in-flight requests get `shutdown.grace_seconds` to finish, and the admin port closes last.
    ///
    /// # Errors
    /// [`AppError::Tls`] when the certificate watcher cannot start.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let _watcher = match &self.tls {
            Some(tls) => Some(tls.watch()?),
            None => None,
        };
        let grace = self.shared.config.load().shutdown.grace;
        let limits = self.shared.config.load().limits.clone();
        let admin = Arc::new(Admin {
            shared: self.shared.clone(),
            readiness: self.readiness.clone(),
        });
        if self.shared.limiter.is_some() {
            tokio::spawn(forget_idle_clients(Arc::downgrade(&self.shared)));
        }
        let cluster_task = self.shared.cluster.clone().map(|cluster| {
            let replica: std::sync::Weak<dyn Replica> = Arc::downgrade(&self.shared) as _;
            tokio::spawn(cluster.run(replica))
        });
        if let Some(cluster) = &self.shared.cluster {
            cluster.first_sync().await;
        }
        let admin_addr = self.admin_addr();
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin.serve(self.admin_listener, admin_stop.clone()));
        if let Some(path) = self.reload_from.clone() {
            tokio::spawn(reload_loop(self.shared.clone(), path));
        }

        let listener = Listener {
            tcp: self.listener,
            tls: self
                .tls
                .as_ref()
                .map(|t| TlsAcceptor::from(t.server_config.clone())),
            shared: self.shared.clone(),
            limits,
        };
        let graceful = GracefulShutdown::new();
        let stop = CancellationToken::new();
        self.readiness.set_tls_loaded();
        tracing::info!(
            addr = %listener.tcp.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin_addr,
            tls = self.tls.is_some(),
            "drawbridge serving"
        );
        {
            let serve = listener.serve(stop.clone(), &graceful);
            tokio::pin!(serve);
            tokio::pin!(shutdown);
            tokio::select! {
                () = &mut serve => {}
                () = &mut shutdown => {}
            }
            self.readiness.set_draining();
            stop.cancel();
            serve.await;
        }
        tracing::info!(
            grace_seconds = grace.as_secs(),
            "listener closed; draining connections and tunnels"
        );
        let drain = async {
            tokio::join!(
                graceful.shutdown(),
                crate::tunnel::shut_down(&self.shared, grace)
            );
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(()) => tracing::info!("drained"),
            Err(_) => tracing::warn!("grace period over; closing the remaining connections"),
        }
        admin_stop.cancel();
        let _ = admin_task.await;
        if let Some(task) = cluster_task {
            task.abort();
        }
        Ok(())
    }
}

/// Drops rate-limiter state for clients not seen lately, so the keyed store stays bounded.
async fn forget_idle_clients(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Some(limiter) = &shared.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// On SIGHUP, loads the file again and swaps it in if valid. Listener, TLS and admin
/// settings are bound at start and need a restart; the log says so.
/// Logs what `drawbridge check` warns about, at start and after each reload.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!(key = %warning.path, "config: {warning}");
    }
}

async fn reload_loop(shared: Arc<Shared>, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match Config::load(&path) {
                Ok(new) => {
                    let old = shared.config.load();
                    if new.listen.addr != old.listen.addr
                        || new.admin.addr != old.admin.addr
                        || new.tls.is_some() != old.tls.is_some()
                        || new.limits.max_connections != old.limits.max_connections
                        || new.limits.header_read_timeout != old.limits.header_read_timeout
                        || new.limits.tls_handshake_timeout != old.limits.tls_handshake_timeout
                        || new.limits.idle_timeout != old.limits.idle_timeout
                        || new.limits.max_request_head_bytes != old.limits.max_request_head_bytes
                        || new.limits.http2_keep_alive_interval
                            != old.limits.http2_keep_alive_interval
                        || new.limits.http2_keep_alive_timeout
                            != old.limits.http2_keep_alive_timeout
                        || new.upstream.connect_timeout != old.upstream.connect_timeout
                    {
                        tracing::warn!(
                            "config reloaded; changes to listen, admin, TLS mode, upstream.connect_timeout_ms and \
                             limits other than max_request_body_bytes take effect after a restart"
                        );
                    } else {
                        tracing::info!("config reloaded");
                    }
                    log_warnings(&new);
                    shared.config.store(Arc::new(new));
                }
                Err(error) => {
                    for line in error.lines() {
                        tracing::error!(problem = %line, "config reload rejected; keeping the running config");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (shared, path);
    }
}
