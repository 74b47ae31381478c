//! Live reconfiguration: the config file read again on SIGHUP or once a change to it has settled,
//! validated whole, and every part swapped in at once, or nothing when anything is wrong.
//!
//! Each part that can fail is built first (session keys, upstream client, TLS config); the swaps
//! that follow cannot fail. Open tunnels are never touched, logins in flight hold the auth core
//! they started with, and a provider whose settings did not change is kept as it runs, with its
//! cached answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::audit;
use crate::auth::session::SessionError;
use crate::auth::verified::{self, VerifiedSessions};
use crate::config::{Config, ConfigError, Recording, Sources, System, secret_text};
use crate::forward::Forwarder;
use crate::state::{Limiter, Live, Shared};
use crate::tls::{Tls, TlsError};
use crate::watch::Settled;

/// Why a valid config file could not be applied. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// A session key file is unusable.
    #[error("session.key_file: {0}")]
    Session(#[from] SessionError),
    /// A TLS file is unusable.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The upstream client could not be built.
    #[error("upstream: cannot build the client: {0}")]
    Upstream(#[source] std::io::Error),
}

/// Reloads the config of one running gateway; SIGHUP and the file watch both call it.
pub(crate) struct Reloader {
    shared: Arc<Shared>,
    tls: Option<Arc<Tls>>,
    path: PathBuf,
    /// Applies a new `log.level` to the diagnostic log; without it the level needs a restart.
    log_level: Option<LogLevelHook>,
    /// One reload at a time: a SIGHUP and a file event at once apply in turn.
    busy: Mutex<()>,
}

/// Sets the diagnostic log's level from a `log.level` directive (already validated).
pub(crate) type LogLevelHook = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The first 16 hex digits of the SHA-256 of the file, for `drawbridge_config_info{hash}`.
pub(crate) fn file_hash(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(bytes_hash(&bytes))
}

fn bytes_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// `${file:..}` secrets as they settled, with the real environment; a secret the watcher does
/// not hold (one the new file names for the first time) is read from disk.
struct SettledSources<'a>(&'a Settled);

impl Sources for SettledSources<'_> {
    fn env(&self, name: &str) -> Option<String> {
        System.env(name)
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        match self.0.get(path) {
            Some(bytes) => secret_text(bytes.to_vec()),
            None => System.file(path),
        }
    }
}

/// The per-IP limiter `[rate_limit]` asks for.
pub(crate) fn limiter(config: &Config) -> Option<Arc<Limiter>> {
    config.auth.rate_limit.map(|r| {
        Arc::new(governor::RateLimiter::keyed(
            governor::Quota::per_second(r.per_second).allow_burst(r.burst),
        ))
    })
}

// === impl Reloader ===

impl Reloader {
    /// A reloader for the gateway sharing `shared`, reading `path`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        tls: Option<Arc<Tls>>,
        path: PathBuf,
        log_level: Option<LogLevelHook>,
    ) -> Self {
        Self {
            shared,
            tls,
            path,
            log_level,
            busy: Mutex::new(()),
        }
    }

    /// The config file and every file it names that a reload reads again: `${file:..}` secrets,
    /// and [`Config::named_files`] (the client CA bundle, the session keys, JWKS files). Asked again
    /// after each change the watcher applies, so the list follows the config; a file that does not
    /// validate names only itself and its secrets, and its next version names the rest again.
    pub(crate) fn watched_files(&self) -> Vec<PathBuf> {
        let sources = Recording::default();
        let loaded = Config::load_with(&self.path, &sources);
        let mut files = vec![self.path.clone()];
        files.extend(sources.files());
        if let Ok(config) = loaded {
            files.extend(config.named_files());
        }
        files
    }

    /// Reads, validates and applies the file as it is on disk now (SIGHUP: the operator says it
    /// is complete); on any problem logs it by key, counts a failure and changes nothing.
    pub(crate) fn reload(&self, trigger: &'static str) {
        let read = std::fs::read(&self.path);
        self.reload_text(trigger, read, &System);
    }

    /// Validates and applies the config file and its `${file:..}` secrets exactly as they settled,
    /// so a write that starts after they settled cannot slip a half file in. The key, CA and JWKS
    /// files the new config names are read by the parts that use them, right after they settled;
    /// a write that starts in between is seen by the watcher, and applied once it settles too.
    pub(crate) fn reload_settled(&self, settled: &Settled) {
        let read = settled
            .get(&self.path)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the file is gone"));
        self.reload_text("file", read, &SettledSources(settled));
    }

    /// Validates and applies `read` (the config file's bytes, or why they could not be read).
    /// `trigger` names what asked (`sighup`, `file`), for the log.
    fn reload_text(
        &self,
        trigger: &'static str,
        read: std::io::Result<Vec<u8>>,
        sources: &dyn Sources,
    ) {
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let metrics = &self.shared.metrics.config;
        let hash = read.as_deref().ok().map(bytes_hash);
        let loaded = read
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .map_err(|source| ConfigError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|text| Config::from_toml(&text, sources));
        let result = match loaded {
            Ok(next) => self.apply(next, trigger).map_err(|error| {
                tracing::error!(trigger, problem = %error, "config reload rejected; nothing changed");
                1
            }),
            Err(error) => {
                let lines = error.lines();
                for line in &lines {
                    tracing::error!(trigger, problem = %line, "config reload rejected; nothing changed");
                }
                Err(lines.len())
            }
        };
        match result {
            Ok(()) => {
                metrics.reloads.with_label_values(&["success"]).inc();
                if let Some(hash) = &hash {
                    metrics.set_live(hash);
                }
                self.shared.audit.emit(&audit::Event::ConfigReload {
                    result: "applied",
                    problems: None,
                });
            }
            Err(problems) => {
                metrics.reloads.with_label_values(&["failure"]).inc();
                self.shared.audit.emit(&audit::Event::ConfigReload {
                    result: "rejected",
                    problems: Some(problems),
                });
            }
        }
    }

    /// Builds every part of the next generation from `next` (the fallible ones first), then
    /// publishes it with one store.
    fn apply(&self, next: Config, trigger: &'static str) -> Result<(), ApplyError> {
        let shared = &self.shared;
        let started = std::time::Instant::now();
        let running = shared.live();
        let sessions = running.sessions.reconfigure(&next.auth.session)?;
        let forwarder = if next.upstream.connect_timeout == running.config.upstream.connect_timeout
        {
            running.forwarder.clone()
        } else {
            Arc::new(Forwarder::new(&next.upstream).map_err(ApplyError::Upstream)?)
        };
        let tls = match (&self.tls, &next.tls) {
            // The last fallible step: once it succeeded, the generation is whole.
            (Some(tls), Some(settings)) => {
                Some(Arc::new(tls.generation(settings, running.tls.as_deref())?))
            }
            _ => running.tls.clone(),
        };
        let (auth, changes) = running.auth.reconfigure(&next.auth);
        let rotated = sessions.signing_kid() != running.sessions.signing_kid();
        let limiter = if running.config.auth.rate_limit == next.auth.rate_limit {
            running.limiter.clone()
        } else {
            limiter(&next)
        };
        let removed = running.config.removed_restrictions(&next);
        if !removed.is_empty() {
            tracing::warn!(
                trigger,
                keys = %removed.join(", "),
                "config reloaded without restrictions the running config had"
            );
        }
        let mut restart = running.config.restart_changes(&next);
        if running.config.log.level != next.log.level {
            match &self.log_level {
                Some(apply) => match apply(&next.log.level) {
                    Ok(()) => tracing::info!(level = %next.log.level, "log level changed"),
                    Err(error) => {
                        tracing::warn!(%error, "log.level not applied; the running level stays");
                    }
                },
                None => restart.push("log.level"),
            }
        }
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "config reloaded; these keys keep their running values until a restart"
            );
        }
        crate::doors::aggregator::announce(&next.auth.aggregator);
        super::log_warnings(&next);
        if let (Some(certs), Some(generation)) = (&self.tls, &tls) {
            certs.published(generation);
        }
        shared.publish(Live {
            config: next,
            auth,
            sessions,
            forwarder,
            limiter,
            tls,
            // Verified under the last generation's keys: every token is verified again.
            verified: VerifiedSessions::new(
                verified::MAX_ENTRIES,
                shared.metrics.auth.forward_auth_cache.clone(),
            ),
        });
        tracing::info!(
            trigger,
            added = %changes.added.join(","),
            removed = %changes.removed.join(","),
            changed = %changes.changed.join(","),
            cache_rebuilt = changes.cache_rebuilt,
            session_key_rotated = rotated,
            took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "config reloaded"
        );
        Ok(())
    }
}
