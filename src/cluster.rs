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
//!   the short lock that coalesces misses across replicas, and a per-user index for purges;
//!   `dec:` is keyed by the provider's settings fingerprint as well as the request;
//! - `agg-seen:<sha256>`: signed aggregator calls already answered, until their age window closes.
//!
//! Redis is a helper, never a gate: while it is unreachable every operation answers "not shared"
//! at once (no per-request wait), callers keep local state, revocations wait in a local queue, and
//! the link task reconnects, pushes every revocation this replica knows, then reloads the set.
//! A request never waits on Redis longer than `command_timeout_ms` (connection setup included):
//! a command that runs past it, or finds the connection gone, marks the link down at once and
//! hands it to the link task to rebuild. `drawbridge_cluster_up` says which state the link is in;
//! the log says so, with the reason, at start and at every change.
//!
//! What Redis holds is input, not truth: every entry read back (revocations, tickets, decisions,
//! learned tokens, messages) is parsed strictly, and a malformed one is skipped, counted in
//! `drawbridge_cluster_bad_entries_total{kind}` and logged with its key; it never takes the link
//! down. `key_prefix` is a literal: it is glob-escaped in every `SCAN` pattern.

mod conn;
mod limit;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use redis::AsyncCommands;

use crate::clock::unix_now;
use crate::config::cluster::{Cluster as Settings, Topology};
use conn::{Conn, Message, Source, timed_out};
pub(crate) use wire::strict_u64;
use wire::{Event, unix_millis};
pub(crate) use wire::{Kind, Revocation};

/// Most entries written in one `ZADD` while pushing the local set.
const PUSH_CHUNK: usize = 500;
/// Longest wait between two link attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Key kind of shared decisions (the decision cache's second level).
pub(crate) const DECISION_KIND: &str = "dec";
/// Key kind of the short lock that coalesces decision misses across replicas.
pub(crate) const DECISION_LOCK_KIND: &str = "dec-lock";
/// Key kind of the per-user index of shared decisions, for purges.
pub(crate) const DECISION_INDEX_KIND: &str = "dec-user";
/// Shortest time between two warnings about malformed entries of one kind (each is counted).
const BAD_ENTRY_LOG_EVERY_SECS: u64 = 10;
/// Most characters of a malformed entry shown in the log.
const BAD_ENTRY_SHOWN: usize = 120;

/// What was read from Redis, the `kind` label of `drawbridge_cluster_bad_entries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A member or score of the revocation set.
    Revocation,
    /// A single-use ticket's session claims.
    Ticket,
    /// A shared decision.
    Decision,
    /// A member of a user's index of shared decisions.
    DecisionIndex,
    /// A learned Ditto access token.
    LearnedToken,
    /// A message on the events channel.
    Message,
    /// A session's sealed re-check material.
    Grant,
    /// A claim set session tokens name by reference.
    ClaimSet,
}

impl Entry {
    const ALL: [Self; 8] = [
        Self::Revocation,
        Self::Ticket,
        Self::Decision,
        Self::DecisionIndex,
        Self::LearnedToken,
        Self::Message,
        Self::Grant,
        Self::ClaimSet,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Revocation => "revocation",
            Self::Ticket => "ticket",
            Self::Decision => "decision",
            Self::DecisionIndex => "decision_index",
            Self::LearnedToken => "learned_token",
            Self::Message => "message",
            Self::Grant => "grant",
            Self::ClaimSet => "claim_set",
        }
    }
}

/// Why the link is down, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// Nothing listens there.
    Refused,
    /// Redis refused the username or password (or asked for one).
    Auth,
    /// Connected, but no answer within the deadline: a stalled Redis or a black hole.
    Stalled,
    /// The node answered as a replica (`READONLY`): a failover demoted it.
    ReadOnly,
    /// Redis Cluster said it cannot serve the slot now (`CLUSTERDOWN`, during a failover).
    Unserved,
    /// The connection was closed or reset.
    Closed,
    /// Anything else (DNS, TLS, protocol).
    Other,
}

impl Down {
    fn of(error: &redis::RedisError) -> Self {
        if error.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        {
            Self::Auth
        } else if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            || error.code() == Some("READONLY")
        {
            Self::ReadOnly
        } else if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
            || error.code() == Some("CLUSTERDOWN")
        {
            Self::Unserved
        } else if error.is_connection_refusal() {
            Self::Refused
        } else if error.is_timeout() {
            Self::Stalled
        } else if error.is_connection_dropped() {
            Self::Closed
        } else {
            Self::Other
        }
    }

    fn says(self) -> &'static str {
        match self {
            Self::Refused => "connection refused",
            Self::Auth => {
                "authentication failed: wrong or missing cluster.username/cluster.password"
            }
            Self::Stalled => "no answer within the timeout: Redis stalled or a silent peer",
            Self::ReadOnly => "the node is a replica now (failover): looking the master up again",
            Self::Unserved => "the Redis Cluster cannot serve now (failover in progress)",
            Self::Closed => "connection closed",
            Self::Other => "error",
        }
    }
}

/// Whether `error` says the connection cannot be used (rather than one command being refused).
fn is_link_error(error: &redis::RedisError) -> bool {
    error.is_timeout()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            Down::of(error),
            Down::Auth | Down::ReadOnly | Down::Unserved
        )
}

/// The link's state as last logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Not tried yet.
    Starting,
    Up,
    Down(Down),
}

/// `s` with Redis' glob characters escaped, so it matches only itself in a `SCAN MATCH` pattern.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A malformed entry as the log shows it: escaped and cut short.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(BAD_ENTRY_SHOWN).collect();
    format!("{cut:?}")
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An address or credential was refused by the client.
    #[error("the [cluster] Redis address is not usable: {0}")]
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
    /// Holds a claim set another replica shared, until `until`; false when `set` is not the
    /// claim set `reference` names.
    fn learn_claim_set(&self, reference: &str, set: &[u8], until: u64) -> bool;
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
    /// Entries read from Redis that were malformed and skipped, by kind.
    pub(crate) bad_entries: IntCounterVec,
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
        let bad_entries = IntCounterVec::new(
            Opts::new(
                "drawbridge_cluster_bad_entries_total",
                "Entries read from the cluster store that were malformed and skipped, by kind (each time one is read)",
            ),
            &["kind"],
        )?;
        for kind in Entry::ALL {
            bad_entries.with_label_values(&[kind.label()]);
        }
        r.register(Box::new(up.clone()))?;
        r.register(Box::new(propagation.clone()))?;
        r.register(Box::new(cache_requests.clone()))?;
        r.register(Box::new(bad_entries.clone()))?;
        Ok(Self {
            up,
            propagation,
            cache_requests,
            bad_entries,
        })
    }
}

/// The link to Redis, shared by every part that keeps cluster-wide state.
pub(crate) struct Cluster {
    settings: Settings,
    /// Where the data nodes are found.
    source: Source,
    /// The command connection of the current link period.
    conn: ArcSwap<Conn>,
    up: AtomicBool,
    /// What the log last said about the link.
    state: Mutex<LinkState>,
    /// Set by a request whose command failed on the connection: the link task rebuilds the link.
    relink: tokio::sync::Notify,
    /// The error that made a request give up on the link, for the link task's log.
    relink_error: Mutex<Option<redis::RedisError>>,
    /// Whether a request asked for the link to be rebuilt since the current one was made.
    relink_wanted: AtomicBool,
    /// Connected periods so far, so a reconnection after one starts with a short wait.
    periods: AtomicU64,
    /// Unix second of the last warning about a malformed entry, by kind.
    bad_logged: [AtomicU64; Entry::ALL.len()],
    /// Revocations not yet written (Redis was away); written on reconnect, never dropped.
    pending: Mutex<Vec<Revocation>>,
    /// This process, so that it skips its own messages.
    origin: String,
    /// Whether the log already said that login limits fell back to this replica's own.
    limit_fallback_logged: AtomicBool,
    pub(crate) metrics: ClusterMetrics,
}

// === impl Cluster ===

impl Cluster {
    /// A link to the Redis `settings` name, not yet connected: [`run`](Self::run) connects.
    ///
    /// # Errors
    /// [`ClusterError`] when the URL cannot be used or the metrics cannot be registered.
    pub(crate) fn new(settings: &Settings, registry: &Registry) -> Result<Arc<Self>, ClusterError> {
        let source = Source::new(settings).map_err(ClusterError::Url)?;
        let conn = ArcSwap::from_pointee(source.initial());
        let metrics = ClusterMetrics::register(registry)?;
        let origin: [u8; 8] = rand::random();
        Ok(Arc::new(Self {
            settings: settings.clone(),
            source,
            conn,
            up: AtomicBool::new(false),
            state: Mutex::new(LinkState::Starting),
            relink: tokio::sync::Notify::new(),
            relink_error: Mutex::new(None),
            relink_wanted: AtomicBool::new(false),
            periods: AtomicU64::new(0),
            bad_logged: Default::default(),
            pending: Mutex::new(Vec::new()),
            origin: hex::encode(origin),
            limit_fallback_logged: AtomicBool::new(false),
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

    /// The key `kind:id` under the prefix; for the log, with an ID that is a secret redacted first.
    pub(crate) fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.settings.key_prefix)
    }

    /// The command connection of the current link period.
    fn conn(&self) -> Conn {
        Conn::clone(&self.conn.load())
    }

    fn rev_key(&self) -> String {
        format!("{}rev", self.settings.key_prefix)
    }

    fn channel(&self) -> String {
        format!("{}events", self.settings.key_prefix)
    }

    /// The link works: logged when that is news.
    fn mark_up(&self) {
        self.up.store(true, Ordering::Relaxed);
        self.metrics.up.set(1);
        self.limit_fallback_logged.store(false, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state != LinkState::Up {
            *state = LinkState::Up;
            tracing::info!(
                redis = %self.settings.topology.shown(),
                "cluster store reachable; sharing state with the other replicas"
            );
        }
    }

    /// The link does not work because of `error`: logged at start, when it was up, and when the
    /// reason changes.
    fn mark_down(&self, error: &redis::RedisError) {
        self.up.store(false, Ordering::Relaxed);
        self.metrics.up.set(0);
        let why = Down::of(error);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state != LinkState::Down(why) {
            let was_up = *state == LinkState::Up;
            *state = LinkState::Down(why);
            tracing::warn!(
                redis = %self.settings.topology.shown(),
                reason = why.says(),
                %error,
                was_up,
                "cluster store unreachable; serving on local state (revocations are queued)"
            );
        }
    }

    /// A request's command failed with `error`: when the connection is at fault, serve on local
    /// state from now on and let the link task rebuild the link.
    fn suspect(&self, error: &redis::RedisError) {
        if !is_link_error(error) {
            tracing::debug!(%error, "cluster command refused");
            return;
        }
        if self.is_up() {
            self.mark_down(error);
            *self
                .relink_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
            self.relink_wanted.store(true, Ordering::Relaxed);
            self.relink.notify_one();
        }
    }

    /// Runs one request's command for at most `command_timeout_ms`, connection setup included;
    /// `None` when Redis is away, slow or refused it.
    async fn bounded<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        self.bounded_result(what, op).await.ok()
    }

    /// [`Self::bounded`], with why Redis could not answer: the link is down, the command timed
    /// out, or Redis refused it.
    async fn bounded_result<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        if !self.is_up() {
            return Err(conn::not_connected());
        }
        match tokio::time::timeout(self.settings.command_timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::debug!(%error, what, "cluster command failed");
                self.suspect(&error);
                Err(error)
            }
            Err(_) => {
                tracing::debug!(what, "cluster command timed out");
                let error = timed_out();
                self.suspect(&error);
                Err(error)
            }
        }
    }

    /// Counts and logs (at most once per kind every few seconds) an entry read from Redis that
    /// is malformed and was skipped. `key` names where it was; `entry` is what was there.
    pub(crate) fn bad_entry(&self, kind: Entry, key: &str, entry: &[u8], why: &str) {
        self.metrics
            .bad_entries
            .with_label_values(&[kind.label()])
            .inc();
        let now = unix_now();
        let last = &self.bad_logged[kind as usize];
        let before = last.load(Ordering::Relaxed);
        if now.saturating_sub(before) >= BAD_ENTRY_LOG_EVERY_SECS
            && last
                .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                kind = kind.label(),
                key,
                entry = %shown(entry),
                why,
                "malformed entry in the cluster store skipped (counted in drawbridge_cluster_bad_entries_total)"
            );
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
        let mut write = redis::pipe();
        write
            .cmd("ZADD")
            .arg(self.rev_key())
            .arg("GT")
            .arg(revocation.until)
            .arg(revocation.member())
            .ignore();
        // Once the set holds it, a message lost on Redis Cluster is repaired by the next resync.
        let written = self.write_then_publish("revoke", write, &event).await;
        if !written {
            tracing::debug!("revocation not written yet; queued for the reconnect");
            self.queue(revocation);
        }
    }

    /// Runs `write`, then publishes `event` on the events channel: in one round trip, or on Redis
    /// Cluster, where the keys and the channel hash to different slots, in two, publishing only
    /// once the write is in. False when the write failed.
    async fn write_then_publish(
        &self,
        what: &'static str,
        mut write: redis::Pipeline,
        event: &Event,
    ) -> bool {
        let publish = redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(event.encode())
            .to_owned();
        let mut conn = self.conn();
        if let Conn::Cluster(_) = conn {
            let written = self
                .bounded(what, write.query_async::<()>(&mut conn))
                .await
                .is_some();
            if written {
                let _ = self
                    .bounded(what, publish.query_async::<()>(&mut conn))
                    .await;
            }
            return written;
        }
        write.add_command(publish).ignore();
        self.bounded(what, write.query_async::<()>(&mut conn))
            .await
            .is_some()
    }

    /// Asks every other replica to drop cached decisions (all, or `user`'s), and drops them from
    /// the shared level. The caller waits at most `command_timeout_ms`; a long purge goes on.
    pub(crate) async fn purge(self: &Arc<Self>, user: Option<&str>) {
        if !self.is_up() {
            return;
        }
        let this = self.clone();
        let user = user.map(str::to_owned);
        let task = tokio::spawn(async move { this.purge_now(user.as_deref()).await });
        if tokio::time::timeout(self.settings.command_timeout, task)
            .await
            .is_err()
        {
            tracing::info!("cluster-wide purge still running; it finishes in the background");
        }
    }

    async fn purge_now(&self, user: Option<&str>) {
        let mut conn = self.conn();
        let prefix = &self.settings.key_prefix;
        let result: redis::RedisResult<()> = async {
            match user {
                Some(user) => {
                    let index = self.key(DECISION_INDEX_KIND, user);
                    let members: Vec<Vec<u8>> = conn.smembers(&index).await?;
                    let own = format!("{prefix}{DECISION_KIND}:");
                    // One DEL per key: on Redis Cluster each may live on another node.
                    let mut doomed = Vec::new();
                    for member in members {
                        // Only this cluster's decision keys: a planted member names nothing else.
                        match std::str::from_utf8(&member)
                            .ok()
                            .filter(|k| is_decision_key(k, &own))
                        {
                            Some(k) => doomed.push(k.to_owned()),
                            None => self.bad_entry(
                                Entry::DecisionIndex,
                                &index,
                                &member,
                                "not a shared decision key of this cluster",
                            ),
                        }
                    }
                    doomed.push(index);
                    for key in doomed {
                        conn.del::<_, ()>(key).await?;
                    }
                }
                None => {
                    // The prefix is a literal: escaped, `t[12]:` matches only `t[12]:`.
                    let escaped = glob_escape(prefix);
                    for kind in [DECISION_KIND, DECISION_LOCK_KIND, DECISION_INDEX_KIND] {
                        let pattern = format!("{escaped}{kind}:*");
                        let keys = self.scan(&pattern).await?;
                        let mut conn = self.conn();
                        for key in keys {
                            conn.del::<_, ()>(key).await?;
                        }
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
            self.suspect(&error);
            tracing::warn!(%error, "cluster-wide purge incomplete; other replicas keep their caches");
        }
    }

    /// Every key matching `pattern`, from every master on Redis Cluster (each holds part).
    async fn scan(&self, pattern: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        match self.conn() {
            Conn::Cluster(mut cluster) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                for (host, port) in conn::cluster_masters(&mut cluster).await? {
                    let mut cursor = 0u64;
                    loop {
                        let mut cmd = redis::cmd("SCAN");
                        cmd.arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(PUSH_CHUNK);
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let reply = cluster.route_command(cmd, route).await?;
                        let (next, page): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)?;
                        keys.extend(page);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
            mut conn => {
                let mut iter = conn.scan_match::<_, Vec<u8>>(pattern).await?;
                while let Some(k) = iter.next_item().await {
                    keys.push(k?);
                }
            }
        }
        Ok(keys)
    }

    // --- plain keys (tickets, learned tokens, decisions) ---

    /// Stores `value` under `kind:id` for `ttl`; false when Redis is away or refused it (the
    /// caller keeps it locally).
    pub(crate) async fn put(&self, kind: &str, id: &str, value: &[u8], ttl: Duration) -> bool {
        if ttl.is_zero() {
            return false;
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn();
        self.bounded(
            "put",
            conn.pset_ex::<_, _, ()>(self.key(kind, id), value, millis),
        )
        .await
        .is_some()
    }

    /// The value under `kind:id`; `None` when absent or Redis is away.
    pub(crate) async fn get(&self, kind: &str, id: &str) -> Option<Vec<u8>> {
        let mut conn = self.conn();
        self.bounded("get", conn.get::<_, Option<Vec<u8>>>(self.key(kind, id)))
            .await
            .flatten()
    }

    /// Takes the value under `kind:id` atomically (`GETDEL`): one caller anywhere gets it.
    ///
    /// Through Sentinel or on Redis Cluster, where a failover promotes a replica that may not
    /// have seen the `GETDEL` yet, a take counts only once every replica connected to the node
    /// acknowledged it (`WAIT`, within half of `command_timeout_ms`); otherwise nothing is
    /// handed out, since a promoted replica still holding the value could hand it out again.
    /// A node without replicas has nobody to fail over to, and answers at once.
    pub(crate) async fn take(&self, kind: &str, id: &str) -> Option<Vec<u8>> {
        let key = self.key(kind, id);
        let mut conn = self.conn();
        if matches!(self.settings.topology, Topology::Standalone { .. }) {
            return self
                .bounded("take", conn.get_del::<_, Option<Vec<u8>>>(&key))
                .await
                .flatten();
        }
        // ROLE in the same pipeline goes to the node that owns the key.
        let mut pipe = redis::pipe();
        pipe.get_del(&key).cmd("ROLE");
        let (value, role) = self
            .bounded(
                "take",
                pipe.query_async::<(Option<Vec<u8>>, Vec<redis::Value>)>(&mut conn),
            )
            .await?;
        let value = value?;
        let replicas = match role.get(2) {
            Some(redis::Value::Array(replicas)) => replicas.len(),
            _ => 0,
        };
        if replicas == 0 {
            return Some(value);
        }
        let wait_ms = u64::try_from(self.settings.command_timeout.as_millis() / 2)
            .unwrap_or(u64::MAX)
            .max(1);
        let mut pipe = redis::pipe();
        pipe.exists(&key).cmd("WAIT").arg(replicas).arg(wait_ms);
        let acked = self
            .bounded("take", pipe.query_async::<(u64, u64)>(&mut conn))
            .await
            .map_or(0, |(_, acked)| acked);
        if acked < u64::try_from(replicas).unwrap_or(u64::MAX) {
            tracing::warn!(
                kind,
                replicas,
                acked,
                "single-use value refused: not every replica acknowledged its removal, so a \
                 failover could hand it out again"
            );
            return None;
        }
        Some(value)
    }

    /// Claims `kind:id` for `ttl` unless someone already has (`SET NX PX`): `Some(true)` when
    /// this call claimed it, `Some(false)` when it was taken, `None` when Redis is away.
    pub(crate) async fn claim(&self, kind: &str, id: &str, ttl: Duration) -> Option<bool> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(kind, id))
            .arg(&self.origin)
            .arg("NX")
            .arg("PX")
            .arg(millis);
        self.bounded("claim", cmd.query_async::<Option<String>>(&mut conn))
            .await
            .map(|set| set.is_some())
    }

    /// Takes the short lock `kind:id` for `ttl` (`SET NX PX`); false when another holds it or
    /// Redis is away.
    pub(crate) async fn lock(&self, kind: &str, id: &str, ttl: Duration) -> bool {
        self.claim(kind, id, ttl).await == Some(true)
    }

    /// Drops `kind:id`.
    pub(crate) async fn remove(&self, kind: &str, id: &str) {
        let mut conn = self.conn();
        let _ = self
            .bounded("remove", conn.del::<_, ()>(self.key(kind, id)))
            .await;
    }

    /// Adds the key `member_kind:member` to the set `kind:id`, kept at least `ttl`.
    pub(crate) async fn index(
        &self,
        kind: &str,
        id: &str,
        member_kind: &str,
        member: &str,
        ttl: Duration,
    ) {
        let key = self.key(kind, id);
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.sadd(&key, self.key(member_kind, member))
            .ignore()
            .expire(&key, secs)
            .ignore();
        let _ = self
            .bounded("index", pipe.query_async::<()>(&mut conn))
            .await;
    }

    // --- the link ---

    /// Keeps the link up until `replica` is gone: connects, subscribes, pushes what this replica
    /// knows, reloads the shared set, applies messages as they come and reloads every
    /// `resync_interval_ms`; after a failure, marks the link down (saying why) and tries again.
    pub(crate) async fn run(self: Arc<Self>, replica: Weak<dyn Replica>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if replica.strong_count() == 0 {
                return;
            }
            let periods = self.periods.load(Ordering::Relaxed);
            match self.link(&replica).await {
                Ok(()) => return,
                Err(error) => {
                    if self.periods.load(Ordering::Relaxed) != periods {
                        backoff = Duration::from_millis(100);
                    }
                    self.mark_down(&error);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connected period; `Ok` only when the replica is gone.
    async fn link(&self, replica: &Weak<dyn Replica>) -> redis::RedisResult<()> {
        self.relink_wanted.store(false, Ordering::Relaxed);
        // Through Sentinel the master is looked up again here, so a failover is followed.
        let (conn, mut messages) = self.source.open(&self.settings, &self.channel()).await?;
        self.conn.store(Arc::new(conn));
        let Some(r) = replica.upgrade() else {
            return Ok(());
        };
        let pushed = self.resync(&*r, true).await?;
        drop(r);
        self.mark_up();
        self.periods.fetch_add(1, Ordering::Relaxed);
        if pushed {
            // Others learn what was revoked here while Redis was away without waiting a period.
            let mut conn = self.conn();
            let nudge = Event::Resync {
                origin: self.origin.clone(),
            };
            conn.publish::<_, _, ()>(self.channel(), nudge.encode())
                .await?;
        }
        let mut tick = tokio::time::interval(self.settings.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(Message::Payload(payload)) = msg else {
                        return Err(lost());
                    };
                    let Some(r) = replica.upgrade() else {
                        return Ok(());
                    };
                    self.on_message(&*r, &payload).await?;
                }
                _ = tick.tick() => {
                    let Some(r) = replica.upgrade() else {
                        return Ok(());
                    };
                    if self.source.follows_sentinel() {
                        self.still_master().await?;
                    }
                    self.resync(&*r, false).await?;
                }
                () = self.relink.notified() => {
                    // A permit left from an earlier period is no reason to rebuild this one.
                    if self.relink_wanted.swap(false, Ordering::Relaxed) {
                        let error = self
                            .relink_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take();
                        return Err(error.unwrap_or_else(timed_out));
                    }
                }
            }
        }
    }

    /// Through Sentinel: an error when the node this link writes to is no longer the master (a
    /// failover demoted it while it stayed reachable), so the link looks the master up again.
    async fn still_master(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        let role: Vec<redis::Value> = tokio::time::timeout(
            self.settings.command_timeout,
            redis::cmd("ROLE").query_async(&mut conn),
        )
        .await
        .map_err(|_| timed_out())??;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(()),
            Some(redis::Value::SimpleString(r)) if r == "master" => Ok(()),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the node is no longer the master",
            ))),
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
            Some(Event::ClaimSet {
                reference,
                until,
                set,
                origin,
            }) if origin != self.origin => {
                if !replica.learn_claim_set(&reference, set.as_bytes(), until) {
                    self.bad_entry(
                        Entry::ClaimSet,
                        &self.channel(),
                        set.as_bytes(),
                        "not the claim set its reference names",
                    );
                }
            }
            Some(_) => {}
            None => self.bad_entry(
                Entry::Message,
                &self.channel(),
                payload,
                "not a drawbridge event",
            ),
        }
        Ok(())
    }

    /// Writes the queued revocations (and, after a reconnect, every one this replica holds),
    /// trims what can no longer matter and applies the whole shared set locally. Returns whether
    /// anything was written. Only a failing connection is an error: a set Redis will not take or
    /// give back (a key of another type) is a bad entry, and malformed members are skipped.
    async fn resync(&self, replica: &dyn Replica, push_all: bool) -> redis::RedisResult<bool> {
        let mut push: Vec<Revocation> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if push_all {
            push.extend(replica.revocations());
        }
        let key = self.rev_key();
        let mut conn = self.conn();
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
            if is_link_error(&error) {
                return Err(error);
            }
            self.bad_entry(
                Entry::Revocation,
                &key,
                error.to_string().as_bytes(),
                "the revocation set refused a write",
            );
            return Ok(false);
        }
        let now = unix_now();
        // Members and scores as bytes: one odd entry must not fail the whole reply.
        let read: redis::RedisResult<((), Vec<RawMember>)> = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({now}"))
            .zrangebyscore_withscores(&key, now, "+inf")
            .query_async(&mut conn)
            .await;
        let entries = match read {
            Ok((_, entries)) => entries,
            Err(error) if is_link_error(&error) => return Err(error),
            Err(error) => {
                self.bad_entry(
                    Entry::Revocation,
                    &key,
                    error.to_string().as_bytes(),
                    "the revocation set cannot be read",
                );
                return Ok(!push.is_empty());
            }
        };
        for (member, score) in entries {
            match Revocation::parse(&member, &score) {
                Some(r) => replica.apply_revocation(&r),
                None => {
                    let mut shown = member;
                    shown.extend_from_slice(b" score=");
                    shown.extend_from_slice(&score);
                    self.bad_entry(
                        Entry::Revocation,
                        &key,
                        &shown,
                        "not `<s|u> <unix seconds> <id>` with a whole-second score",
                    );
                }
            }
        }
        Ok(!push.is_empty())
    }
}

/// A revocation set member and its score, as Redis sends them.
type RawMember = (Vec<u8>, Vec<u8>);

/// Whether `key` is `<own>` followed by a SHA-256 in lowercase hex.
fn is_decision_key(key: &str, own: &str) -> bool {
    key.strip_prefix(own).is_some_and(|id| {
        id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
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
        let mut conn = self.conn();
        self.bounded_result(
            "get_grant",
            conn.get::<_, Option<Vec<u8>>>(self.key(GRANT_KIND, sid)),
        )
        .await
    }

    /// The cluster key of session `sid`'s re-check material, for the log.
    pub(crate) fn grant_key(&self, sid: &str) -> String {
        self.key(GRANT_KIND, sid)
    }

    /// Drops the re-check material of session `sid` (the session is revoked or its token forgotten).
    pub(crate) async fn forget_grant(&self, sid: &str) {
        self.remove(GRANT_KIND, sid).await;
    }
}

// === impl Cluster: claim sets named by reference ===

/// Cluster key kind of the claim sets session tokens name by reference, by reference.
const CLAIM_SET_KIND: &str = "claims";

impl Cluster {
    /// Keeps the claim set `set` under `reference` until `until` (Unix seconds): written when
    /// absent (`SET NX`), its expiry only ever moved later (`PEXPIRE GT`, Redis 7), so a replica
    /// naming it for a shorter time never cuts short what another wrote; and published, so every
    /// replica up now holds it even while Redis is away later. False when Redis is away or
    /// refused the write.
    pub(crate) async fn put_claim_set(&self, reference: &str, set: &str, until: u64) -> bool {
        let millis = until.saturating_sub(unix_now()).saturating_mul(1000).max(1);
        let key = self.key(CLAIM_SET_KIND, reference);
        let mut write = redis::pipe();
        write
            .cmd("SET")
            .arg(&key)
            .arg(set)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(millis)
            .arg("GT")
            .ignore();
        let event = Event::ClaimSet {
            reference: reference.to_owned(),
            until,
            set: set.to_owned(),
            origin: self.origin.clone(),
        };
        self.write_then_publish("put_claim_set", write, &event)
            .await
    }

    /// The claim set under `reference`; `None` when absent or Redis is away.
    pub(crate) async fn get_claim_set(&self, reference: &str) -> Option<Vec<u8>> {
        self.get(CLAIM_SET_KIND, reference).await
    }

    /// The cluster key of the claim set under `reference`, for the log.
    pub(crate) fn claim_set_key(&self, reference: &str) -> String {
        self.key(CLAIM_SET_KIND, reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_escape_makes_a_prefix_match_only_itself() {
        assert_eq!(glob_escape("drawbridge:"), "drawbridge:");
        assert_eq!(glob_escape("t[12]:"), "t\\[12\\]:");
        assert_eq!(glob_escape("a*b?c\\"), "a\\*b\\?c\\\\");
    }

    #[test]
    fn only_this_clusters_decision_keys_are_purged_by_index() {
        let own = "p:dec:";
        assert!(is_decision_key(&format!("p:dec:{}", "ab".repeat(32)), own));
        for other in [
            "p:rev".to_owned(),
            "q:dec:".to_owned() + &"ab".repeat(32),
            format!("p:dec:{}", "AB".repeat(32)),
            format!("p:dec:{}", "ab".repeat(31)),
            format!("p:dec:{}x", "ab".repeat(32)),
        ] {
            assert!(!is_decision_key(&other, own), "{other}");
        }
    }
}
