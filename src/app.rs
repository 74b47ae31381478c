//! `App`: builds every part from a validated `Config`, binds the ports, and runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::audit::Audit;
use crate::auth::AuthCore;
use crate::auth::session::{ClaimSets, SessionError, Sessions};
use crate::auth::verified::{self, VerifiedSessions};
use crate::cluster::{Cluster, ClusterError, Replica};
use crate::config::Config;
use crate::forward::Forwarder;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::shutdown::Readiness;
use crate::state::{Live, Parts, Shared};
use crate::tls::{Tls, TlsError};

mod reload;

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
    /// The audit or access log file could not be opened.
    #[error(transparent)]
    Log(#[from] crate::config::SinkError),
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
    log_level: Option<reload::LogLevelHook>,
}

impl App {
    /// Loads TLS, builds the upstream client and binds the main and admin ports.
    ///
    /// # Errors
    /// [`AppError`] when a file, a port or the client is unusable.
    pub async fn bind(config: Config) -> Result<Self, AppError> {
        let metrics = Metrics::new()?;
        let audit = Audit::start(config.audit.as_ref(), metrics.registry())?;
        let access_log = crate::gateway::access::start(config.log.access.as_ref(), &metrics)?;
        let tls = match &config.tls {
            Some(settings) => {
                let (tls, first) = Tls::load(settings, metrics.tls.clone())?;
                Some((Arc::new(tls.with_audit(audit.clone())), first))
            }
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
        let provider_client = crate::auth::check::http_client().map_err(AppError::Client)?;
        let cluster = match &config.cluster {
            Some(settings) => Some(Cluster::new(settings, metrics.registry())?),
            None => None,
        };
        // In cluster mode the claim sets tokens name by reference are shared through Redis.
        let sessions = sessions.with_claim_sets(Arc::new(ClaimSets::new(cluster.is_some())));
        let mut auth = AuthCore::new(&config.auth, &provider_client, metrics.auth.clone())
            .with_audit(audit.clone());
        if let Some(cluster) = cluster.as_ref().filter(|c| c.shares_decisions()) {
            auth.share_decisions(cluster.clone());
        }
        let limiter = reload::limiter(&config);
        let listener = bind(config.listen.addr, config.listen.backlog)?;
        let admin_listener = bind(config.admin.addr, ADMIN_BACKLOG)?;
        let readiness = Readiness::default();
        let (tls, tls_generation) = match tls {
            Some((tls, generation)) => (Some(tls), Some(Arc::new(generation))),
            None => (None, None),
        };
        let first = Live {
            config,
            auth,
            sessions,
            forwarder: Arc::new(forwarder),
            limiter,
            tls: tls_generation,
            verified: VerifiedSessions::new(
                verified::MAX_ENTRIES,
                metrics.auth.forward_auth_cache.clone(),
            ),
        };
        let parts = Parts {
            metrics,
            audit,
            access_log,
            cluster,
        };
        Ok(Self {
            shared: Arc::new(Shared::new(first, parts)),
            tls,
            listener,
            admin_listener,
            readiness,
            reload_from: None,
            log_level: None,
        })
    }

    /// Re-reads the config from `path` on SIGHUP and when the file (or a `${file:..}` secret it
    /// reads) changes on disk; a bad file keeps the running config.
    #[must_use]
    pub fn reload_on_sighup(mut self, path: PathBuf) -> Self {
        self.reload_from = Some(path);
        self
    }

    /// Lets a reload change `log.level` live through `apply` (the binary's log filter); without it
    /// a changed level waits for a restart.
    #[must_use]
    pub fn log_level_follows(
        mut self,
        apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.log_level = Some(Arc::new(apply));
        self
    }

    /// The bound main address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.shared.live().config.listen.addr)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or_else(|_| self.shared.live().config.admin.addr)
    }

    /// Serves until `shutdown` completes, then drains: readiness goes 503, the listener closes,
    /// in-flight requests get `shutdown.grace_seconds` to finish, and the admin port closes last.
    ///
    /// # Errors
    /// [`AppError::Tls`] when the certificate watcher cannot start.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let _watcher = match &self.tls {
            Some(tls) => {
                let shared = Arc::downgrade(&self.shared);
                let current = move || shared.upgrade().and_then(|s| s.live().tls.clone());
                tls.watch(current, settle_time(&self.shared))?
            }
            None => None,
        };
        let admin = Arc::new(Admin {
            shared: self.shared.clone(),
            readiness: self.readiness.clone(),
        });
        tokio::spawn(forget_idle_clients(Arc::downgrade(&self.shared)));
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
        let _config_watcher = match self.reload_from.clone() {
            Some(path) => {
                if let Some(hash) = reload::file_hash(&path) {
                    self.shared.metrics.config.set_live(&hash);
                }
                let reloader = Arc::new(reload::Reloader::new(
                    self.shared.clone(),
                    self.tls.clone(),
                    path,
                    self.log_level.clone(),
                ));
                tokio::spawn(reload_on_hangup(reloader.clone()));
                watch_config(reloader, settle_time(&self.shared))
            }
            None => None,
        };
        tokio::spawn(reopen_logs_loop(Arc::downgrade(&self.shared)));

        let listener = Listener {
            tcp: self.listener,
            shared: self.shared.clone(),
        };
        let graceful = GracefulShutdown::new();
        let stop = CancellationToken::new();
        self.readiness.set_tls_loaded();
        let runtime = tokio::runtime::Handle::current();
        tracing::info!(
            addr = %listener.tcp.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin_addr,
            tls = self.tls.is_some(),
            runtime = ?runtime.runtime_flavor(),
            workers = runtime.metrics().num_workers(),
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
        let grace = self.shared.live().config.shutdown.grace;
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
        self.shared.audit.flush(LOG_FLUSH_DEADLINE).await;
        if let Some(access) = &self.shared.access_log {
            access.flush(LOG_FLUSH_DEADLINE).await;
        }
        if let Some(task) = cluster_task {
            task.abort();
        }
        Ok(())
    }
}

/// How long the audit and access logs may take to write what is queued at exit.
const LOG_FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// On SIGUSR1 (logrotate's `postrotate`), reopens the audit and access log files.
async fn reopen_logs_loop(shared: std::sync::Weak<Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.audit.reopen();
            if let Some(access) = &shared.access_log {
                access.reopen();
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = shared;
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
        if let Some(limiter) = shared.live().limiter.as_ref() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The admin port's listen queue: probes and scrapes, never a storm.
const ADMIN_BACKLOG: u32 = 128;

/// Binds `addr` (with `SO_REUSEADDR`, as `TcpListener::bind` does) and listens with `backlog`.
fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, AppError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(backlog)
        })
        .map_err(|source| AppError::Bind { addr, source })
}

/// Logs what `drawbridge check` warns about, at start and after each reload.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!(key = %warning.path, "config: {warning}");
    }
}

/// Reloads on every SIGHUP.
async fn reload_on_hangup(reloader: Arc<reload::Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            reloader.reload("sighup");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
    }
}

/// The live `reload.settle_ms`, read at each change so a reload may change it.
fn settle_time(shared: &Arc<Shared>) -> impl Fn() -> std::time::Duration + Send + 'static {
    let shared = Arc::downgrade(shared);
    move || {
        shared.upgrade().map_or(
            std::time::Duration::from_millis(crate::config::raw::DEFAULT_RELOAD_SETTLE_MS),
            |s| s.live().config.reload.settle,
        )
    }
}

/// Reloads once a change to the config file (or a secret, key, CA or JWKS file it names) has
/// settled: a ConfigMap volume swaps a `..data` symlink, an editor may write in place. Without a
/// watcher (the platform refused one), SIGHUP still works and the log says so.
fn watch_config(
    reloader: Arc<reload::Reloader>,
    settle: impl Fn() -> std::time::Duration + Send + 'static,
) -> Option<crate::watch::Watching> {
    let lister = reloader.clone();
    let watcher = crate::watch::watch_following(
        move || lister.watched_files(),
        settle,
        move |settled| reloader.reload_settled(settled),
    );
    match watcher {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::warn!(%error, "cannot watch the config file; reload with SIGHUP");
            None
        }
    }
}
