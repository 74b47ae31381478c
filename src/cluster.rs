//! Cluster mode: the one place that speaks Redis, so replicas share one truth about sessions.
//!
//! What lives in Redis (every key under `cluster.key_prefix`):
//! - `rev`: the revocation set, a sorted set scored by the Unix second each entry can stop
//!   mattering (the session's real end), trimmed by score; every revocation is also published on
//!   `events`, and every replica reloads the whole set on connect, on reconnect and every
//!   `resync_interval_ms`, so a dropped message lives at most one interval;
//! - `ticket:<ticket>`: single-use tickets (`SET EX`, redeemed with `GETDEL`);
//! - `ditto:<sha256>`: learned Ditto access tokens, until their `accessExpiry`;
//! - `dec:<sha256>`, `dec-lock:<sha256>`, `dec-user:<user>`: the decision cache's second level,
//!   the short lock that coalesces misses across replicas, and a per-user index for purges.
//!
//! Redis is a helper, never a gate: while it is unreachable every operation answers "not shared"
//! at once (no per-request wait), callers keep local state, revocations wait in a local queue, and
//! the link task reconnects, pushes every revocation this replica knows, then reloads the set.
//! `drawbridge_cluster_up` says which state the link is in; the log says so once per change.

mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::clock::unix_now;
use crate::config::cluster::{Cluster as Settings, redacted_url};
use wire::{Event, unix_millis};
pub(crate) use wire::{Kind, Revocation};

/// Most entries written in one `ZADD` while pushing the local set.
const PUSH_CHUNK: usize = 500;
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL or credentials were refused by the client.
    #[error("cluster.redis_url is not usable: {0}")]
    Url(#[source] redis::RedisError),
    /// A metric family could not be registered.
    #[error("cluster metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What a replica does with what the cluster tells it.
pub(crate) trait Replica: Send + Sync {
    /// Applies a revocation learned from another replica (or the reloaded set); closes tunnels
    /// when it is news.
    fn apply_revocation(&self, revocation: &Revocation);
    /// Drops cached decisions (all, or `user`'s) on request of another replica.
    fn apply_purge(&self, user: Option<&str>);
    /// Every revocation this replica holds, to be written back after a reconnect.
    fn revocations(&self) -> Vec<Revocation>;
}

/// The cluster's metric families.
#[derive(Debug, Clone)]
pub(crate) struct ClusterMetrics {
    /// 1 while Redis is reachable.
    pub(crate) up: IntGauge,
    /// Time from a revocation's publication to its application on this replica.
    pub(crate) propagation: Histogram,
    /// Second-level decision cache lookups, by result (`hit`, `miss`).
    pub(crate) cache_requests: IntCounterVec,
}

impl ClusterMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let up = IntGauge::new(
            "drawbridge_cluster_up",
            "1 while the cluster store (Redis) is reachable, 0 while serving on local state",
        )?;
        let propagation = Histogram::with_opts(
            HistogramOpts::new(
                "drawbridge_cluster_revocation_propagation_seconds",
                "Time from a revocation on another replica to its application here",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "drawbridge_cluster_cache_requests_total",
                "Shared (second-level) decision cache lookups, by result",
            ),
            &["result"],
        )?;
        for result in ["hit", "miss"] {
            cache_requests.with_label_values(&[result]);
        }
        r.register(Box::new(up.clone()))?;
        r.register(Box::new(propagation.clone()))?;
        r.register(Box::new(cache_requests.clone()))?;
        Ok(Self {
            up,
            propagation,
            cache_requests,
        })
    }
}

/// The link to Redis, shared by every part that keeps cluster-wide state.
pub(crate) struct Cluster {
    settings: Settings,
    client: redis::Client,
    conn: ConnectionManager,
    up: AtomicBool,
    /// Revocations not yet written (Redis was away); written on reconnect, never dropped.
    pending: Mutex<Vec<Revocation>>,
    /// This process, so that it skips its own messages.
    origin: String,
    pub(crate) metrics: ClusterMetrics,
}

// === impl Cluster ===

impl Cluster {
    /// A link to the Redis `settings` name, not yet connected: [`run`](Self::run) connects.
    ///
    /// # Errors
    /// [`ClusterError`] when the URL cannot be used or the metrics cannot be registered.
    pub(crate) fn new(settings: &Settings, registry: &Registry) -> Result<Arc<Self>, ClusterError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(settings.redis_url.as_str())
            .map_err(ClusterError::Url)?;
        if let Some(password) = &settings.password {
            let mut redis = info.redis_settings().clone().set_password(password);
            if let Some(user) = &settings.username {
                redis = redis.set_username(user);
            }
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(ClusterError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(MAX_BACKOFF);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(ClusterError::Url)?;
        let metrics = ClusterMetrics::register(registry)?;
        let origin: [u8; 8] = rand::random();
        Ok(Arc::new(Self {
            settings: settings.clone(),
            client,
            conn,
            up: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            origin: hex::encode(origin),
            metrics,
        }))
    }

    /// Whether Redis answered lately; while not, every operation falls back at once.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Waits until the first reload of the shared set is done, at most one connect and one
    /// command timeout: a replica that can reach Redis does not serve on an empty local view.
    pub(crate) async fn first_sync(&self) {
        let deadline = tokio::time::Instant::now()
            + self.settings.connect_timeout
            + self.settings.command_timeout;
        while !self.is_up() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether `/readyz` must wait for Redis.
    pub(crate) fn required(&self) -> bool {
        self.settings.required
    }

    /// Whether decisions get a shared second level.
    pub(crate) fn shares_decisions(&self) -> bool {
        self.settings.shared_decisions
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.settings.key_prefix)
    }

    fn rev_key(&self) -> String {
        format!("{}rev", self.settings.key_prefix)
    }

    fn channel(&self) -> String {
        format!("{}events", self.settings.key_prefix)
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.metrics.up.set(i64::from(up));
            if up {
                tracing::info!(
                    redis = %redacted_url(&self.settings.redis_url),
                    "cluster store reachable; sharing state with the other replicas"
                );
            } else {
                tracing::warn!(
                    redis = %redacted_url(&self.settings.redis_url),
                    "cluster store unreachable; serving on local state (revocations are queued)"
                );
            }
        }
    }

    fn queue(&self, revocation: Revocation) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(revocation);
    }

    // --- revocations and admin actions ---

    /// Writes `revocation` to the shared set (kept until its `until`) and publishes it; while
    /// Redis is away it waits in the local queue for the reconnect.
    pub(crate) async fn revoke(&self, revocation: Revocation) {
        if !self.is_up() {
            self.queue(revocation);
            return;
        }
        let event = Event::Revoked {
            revocation: revocation.clone(),
            sent_ms: unix_millis(),
            origin: self.origin.clone(),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.rev_key())
            .arg("GT")
            .arg(revocation.until)
            .arg(revocation.member())
            .ignore()
            .publish(self.channel(), event.encode())
            .ignore();
        let mut conn = self.conn.clone();
        if let Err(error) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(%error, "revocation not written yet; queued for the reconnect");
            self.queue(revocation);
        }
    }

    /// Asks every other replica to drop cached decisions (all, or `user`'s), and drops them from
    /// the shared level.
    pub(crate) async fn purge(&self, user: Option<&str>) {
        if !self.is_up() {
            return;
        }
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<()> = async {
            match user {
                Some(user) => {
                    let index = self.key("dec-user", user);
                    let keys: Vec<String> = conn.smembers(&index).await?;
                    let mut pipe = redis::pipe();
                    for k in keys {
                        pipe.del(k).ignore();
                    }
                    pipe.del(index).ignore();
                    pipe.query_async::<()>(&mut conn).await?;
                }
                None => {
                    let pattern = format!("{}dec*", self.settings.key_prefix);
                    let keys: Vec<String> = {
                        let mut iter = conn.scan_match::<_, String>(pattern).await?;
                        let mut keys = Vec::new();
                        while let Some(k) = iter.next_item().await {
                            keys.push(k?);
                        }
                        keys
                    };
                    let mut conn = self.conn.clone();
                    for chunk in keys.chunks(PUSH_CHUNK) {
                        conn.del::<_, ()>(chunk).await?;
                    }
                }
            }
            let event = Event::Purged {
                user: user.map(str::to_owned),
                origin: self.origin.clone(),
            };
            conn.publish::<_, _, ()>(self.channel(), event.encode())
                .await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "cluster-wide purge incomplete; other replicas keep their caches");
        }
    }

    // --- plain keys (tickets, learned tokens, decisions) ---

    /// Stores `value` under `kind:id` for `ttl`; false when Redis is away or refused it (the
    /// caller keeps it locally).
    pub(crate) async fn put(&self, kind: &str, id: &str, value: &[u8], ttl: Duration) -> bool {
        if !self.is_up() || ttl.is_zero() {
            return false;
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        conn.pset_ex::<_, _, ()>(self.key(kind, id), value, millis)
            .await
            .inspect_err(|error| tracing::debug!(%error, kind, "cluster write failed"))
            .is_ok()
    }

    /// The value under `kind:id`; `None` when absent or Redis is away.
    pub(crate) async fn get(&self, kind: &str, id: &str) -> Option<Vec<u8>> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.conn.clone();
        conn.get::<_, Option<Vec<u8>>>(self.key(kind, id))
            .await
            .inspect_err(|error| tracing::debug!(%error, kind, "cluster read failed"))
            .ok()
            .flatten()
    }

    /// Takes the value under `kind:id` atomically (`GETDEL`): one caller anywhere gets it.
    pub(crate) async fn take(&self, kind: &str, id: &str) -> Option<Vec<u8>> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.conn.clone();
        conn.get_del::<_, Option<Vec<u8>>>(self.key(kind, id))
            .await
            .inspect_err(|error| tracing::debug!(%error, kind, "cluster take failed"))
            .ok()
            .flatten()
    }

    /// Takes the short lock `kind:id` for `ttl` (`SET NX PX`); false when another holds it or
    /// Redis is away.
    pub(crate) async fn lock(&self, kind: &str, id: &str, ttl: Duration) -> bool {
        if !self.is_up() {
            return false;
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(kind, id))
            .arg(&self.origin)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async::<Option<String>>(&mut conn)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// Drops `kind:id`.
    pub(crate) async fn remove(&self, kind: &str, id: &str) {
        if self.is_up() {
            let mut conn = self.conn.clone();
            let _ = conn.del::<_, ()>(self.key(kind, id)).await;
        }
    }

    /// Adds `member` to the set `kind:id`, kept at least `ttl`.
    pub(crate) async fn index(&self, kind: &str, id: &str, member: &str, ttl: Duration) {
        if self.is_up() {
            let key = self.key(kind, id);
            let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
            let mut conn = self.conn.clone();
            let _ = redis::pipe()
                .sadd(&key, self.key("dec", member))
                .ignore()
                .expire(&key, secs)
                .ignore()
                .query_async::<()>(&mut conn)
                .await;
        }
    }

    // --- the link ---

    /// Keeps the link up until `replica` is gone: connects, subscribes, pushes what this replica
    /// knows, reloads the shared set, applies messages as they come and reloads every
    /// `resync_interval_ms`; after a failure, marks the link down and tries again.
    pub(crate) async fn run(self: Arc<Self>, replica: Weak<dyn Replica>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if replica.strong_count() == 0 {
                return;
            }
            match self.link(&replica).await {
                Ok(()) => return,
                Err(error) => {
                    if self.is_up() {
                        tracing::debug!(%error, "cluster link lost");
                    }
                    self.set_up(false);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connected period; `Ok` only when the replica is gone.
    async fn link(&self, replica: &Weak<dyn Replica>) -> redis::RedisResult<()> {
        let timeout = self.settings.connect_timeout;
        let mut pubsub = tokio::time::timeout(timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())??;
        tokio::time::timeout(timeout, pubsub.subscribe(self.channel()))
            .await
            .map_err(|_| timed_out())??;
        let Some(r) = replica.upgrade() else {
            return Ok(());
        };
        let pushed = self.resync(&*r, true).await?;
        drop(r);
        self.set_up(true);
        if pushed {
            // Others learn what was revoked here while Redis was away without waiting a period.
            let mut conn = self.conn.clone();
            let nudge = Event::Resync {
                origin: self.origin.clone(),
            };
            conn.publish::<_, _, ()>(self.channel(), nudge.encode())
                .await?;
        }
        let mut messages = pubsub.into_on_message();
        let mut tick = tokio::time::interval(self.settings.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(lost());
                    };
                    let Some(r) = replica.upgrade() else {
                        return Ok(());
                    };
                    self.on_message(&*r, msg.get_payload_bytes()).await?;
                }
                _ = tick.tick() => {
                    let Some(r) = replica.upgrade() else {
                        return Ok(());
                    };
                    self.resync(&*r, false).await?;
                }
            }
        }
    }

    async fn on_message(&self, replica: &dyn Replica, payload: &[u8]) -> redis::RedisResult<()> {
        match Event::decode(payload) {
            Some(Event::Revoked {
                revocation,
                sent_ms,
                origin,
            }) if origin != self.origin => {
                replica.apply_revocation(&revocation);
                let lag = unix_millis().saturating_sub(sent_ms);
                #[allow(clippy::cast_precision_loss)]
                self.metrics.propagation.observe(lag as f64 / 1000.0);
            }
            Some(Event::Purged { user, origin }) if origin != self.origin => {
                replica.apply_purge(user.as_deref());
            }
            Some(Event::Resync { origin }) if origin != self.origin => {
                self.resync(replica, false).await?;
            }
            Some(_) => {}
            None => tracing::debug!("unreadable cluster message ignored"),
        }
        Ok(())
    }

    /// Writes the queued revocations (and, after a reconnect, every one this replica holds),
    /// trims what can no longer matter and applies the whole shared set locally. Returns whether
    /// anything was written.
    async fn resync(&self, replica: &dyn Replica, push_all: bool) -> redis::RedisResult<bool> {
        let mut push: Vec<Revocation> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if push_all {
            push.extend(replica.revocations());
        }
        let key = self.rev_key();
        let mut conn = self.conn.clone();
        let written = async {
            for chunk in push.chunks(PUSH_CHUNK) {
                let mut cmd = redis::cmd("ZADD");
                cmd.arg(&key).arg("GT");
                for r in chunk {
                    cmd.arg(r.until).arg(r.member());
                }
                cmd.query_async::<()>(&mut conn).await?;
            }
            Ok::<_, redis::RedisError>(())
        }
        .await;
        if let Err(error) = written {
            // Nothing is forgotten: back in the queue for the next attempt.
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.extend(push);
            return Err(error);
        }
        let now = unix_now();
        let (_, entries): ((), Vec<(String, u64)>) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({now}"))
            .zrangebyscore_withscores(&key, now, "+inf")
            .query_async(&mut conn)
            .await?;
        for (member, until) in entries {
            if let Some(r) = Revocation::from_member(&member, until) {
                replica.apply_revocation(&r);
            }
        }
        Ok(!push.is_empty())
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "cluster connect timed out",
    ))
}

fn lost() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "cluster subscription closed",
    ))
}

// === impl Cluster: re-check material of sessions ===

/// Cluster key kind of the sealed re-check material of sessions, by session ID.
const GRANT_KIND: &str = "grant";

impl Cluster {
    /// Stores the sealed re-check material of session `sid` for `ttl` (the session's last
    /// possible expiry); false when Redis is away or refused it.
    pub(crate) async fn put_grant(&self, sid: &str, sealed: &[u8], ttl: Duration) -> bool {
        self.put(GRANT_KIND, sid, sealed, ttl).await
    }

    /// The sealed re-check material of session `sid`: `Ok(None)` when Redis holds none, an error
    /// when Redis could not be asked (then the caller tries again later).
    ///
    /// # Errors
    /// The Redis error, or a "not connected" one while the link is down.
    pub(crate) async fn get_grant(&self, sid: &str) -> Result<Option<Vec<u8>>, redis::RedisError> {
        if !self.is_up() {
            return Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "cluster link down",
            )));
        }
        let mut conn = self.conn.clone();
        conn.get::<_, Option<Vec<u8>>>(self.key(GRANT_KIND, sid))
            .await
    }

    /// Drops the re-check material of session `sid` (the session is revoked or its token forgotten).
    pub(crate) async fn forget_grant(&self, sid: &str) {
        self.remove(GRANT_KIND, sid).await;
    }
}
