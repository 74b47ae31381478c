//! The decision cache (moka): keyed by a SHA-256 of (app, provider, token), so no raw token is kept.
//! Allows live until their expiry (capped), denials briefly, errors never.
//!
//! In cluster mode a second level lives in Redis, holding only what the decision needs: a local
//! miss asks it before the provider, and concurrent misses on several replicas coalesce through a
//! short lock (`SET NX PX`), so N replicas make one provider call. Its key is a SHA-256 over the
//! provider's settings fingerprint and the local key, so a replica whose provider settings changed
//! (a new URL, secret or key) never reads what the old settings answered, while replicas not yet
//! reloaded keep theirs. What it reads back is parsed strictly; a malformed entry is a miss,
//! counted and logged. `stale_if_error` stays local: it serves what this replica saw.
//!
//! Every entry, here and shared, records when its answer was asked for, so a caller that must not
//! act on an old answer (the re-check of an open tunnel) can ask for one no older than it says:
//! an older entry is asked again, and concurrent callers still share that one call.
//!
//! An entry is kept small, since `cache.max_entries` of them must fit the process's memory: the
//! key is the 32-byte digest, the provider's name and the allow's permissions are shared by every
//! entry that has the same (most users of a provider get one of a few permission sets), and the
//! provider's JSON (`clientInfo`, `identityServiceMetadata`) is compact text, not a tree of maps.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use super::check::{Fingerprint, ProviderError};
use super::decision::{Allow, CompactJson, Decision, Deny, Reason};
use crate::clock::{unix_now, unix_now_ms};
use crate::cluster::{
    Cluster, DECISION_INDEX_KIND, DECISION_KIND, DECISION_LOCK_KIND, Entry as StoreEntry,
};
use crate::config::auth::CacheConfig;
use crate::metrics::AuthMetrics;

/// SHA-256 over length-prefixed (app, provider, token).
pub(crate) type Key = [u8; 32];

/// What a lookup asks besides its key: the provider, its settings fingerprint, and the oldest
/// cached answer it takes.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    provider: &'a str,
    scope: &'a Fingerprint,
    max_age: Option<Duration>,
}

/// The cache key; length prefixes keep ("a","bc") and ("ab","c") apart.
pub(crate) fn key(app: &str, provider: &str, token: &str) -> Key {
    let mut h = Sha256::new();
    for part in [app, provider, token] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheOutcome {
    /// Found fresh.
    Hit,
    /// This call asked the provider.
    Miss,
    /// Another call was already asking; this one shared its answer.
    Coalesced,
    /// The provider failed and a recently expired allow was served.
    Stale,
}

impl CacheOutcome {
    /// The bounded metric label, also the audit log's `cache` value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
        }
    }
}

#[derive(Clone)]
struct Entry {
    decision: Decision,
    ttl: Duration,
    /// The provider that answered, so a reload can drop the answers of a provider it changed.
    provider: Arc<str>,
    /// When the answer was asked for; `None` when not known here (a shared entry older than this
    /// process), which no age limit accepts.
    asked: Option<Instant>,
}

impl Entry {
    /// Whether the answer was asked for less than `max_age` ago (any answer without a limit).
    fn young(&self, max_age: Option<Duration>) -> bool {
        max_age.is_none_or(|max| self.asked.is_some_and(|at| at.elapsed() < max))
    }

    fn user(&self) -> Option<&str> {
        match &self.decision {
            Decision::Allow(a) => Some(&a.user_id),
            Decision::Deny(_) => None,
        }
    }
}

/// Each entry lives for its own TTL.
struct PerEntry;

impl Expiry<Key, Entry> for PerEntry {
    fn expire_after_create(&self, _: &Key, value: &Entry, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        value: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Cluster key kind of shared decisions.
const SHARED_KIND: &str = DECISION_KIND;
/// Cluster key kind of the miss lock.
const LOCK_KIND: &str = DECISION_LOCK_KIND;
/// Cluster key kind of the per-user index of shared decisions (for purges).
const USER_INDEX_KIND: &str = DECISION_INDEX_KIND;

/// The shared level's key: SHA-256 over the provider's settings fingerprint and the local key.
fn shared_id(scope: &Fingerprint, key: &Key) -> String {
    let mut h = Sha256::new();
    h.update(scope);
    h.update(key);
    hex::encode(h.finalize())
}
/// How long one replica may hold a key's miss lock: longer than a provider call with its retry.
const LOCK_TTL: Duration = Duration::from_secs(5);
/// How long an answer asked again stays where concurrent callers share it (it lives on in the
/// cache proper): shorter than any re-check interval.
const REFRESHING_TTL: Duration = Duration::from_millis(100);
/// How often a replica waiting on another's lock looks for the answer.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// A decision as the shared level stores it: only what the decision needs.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "d", deny_unknown_fields)]
enum Stored {
    #[serde(rename = "allow")]
    Allow {
        user: String,
        exp: u64,
        permissions: crate::permissions::Permissions,
        client_info: Option<CompactJson>,
        metadata: Option<CompactJson>,
        /// The user's profile, for `/auth/userinfo`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<crate::auth::session::Profile>,
        /// Unix milliseconds the provider was asked; 0 (unknown) is older than any age limit.
        #[serde(default)]
        asked_ms: u64,
    },
    #[serde(rename = "deny")]
    Deny {
        reason: String,
        description: String,
        client_info: Option<CompactJson>,
        /// Unix second the denial stops being cached.
        until: u64,
        /// Unix milliseconds the provider was asked; 0 (unknown) is older than any age limit.
        #[serde(default)]
        asked_ms: u64,
    },
}

impl Stored {
    fn from_decision(d: &Decision, negative_ttl: Duration, asked_ms: u64) -> Self {
        match d {
            Decision::Allow(a) => Self::Allow {
                user: a.user_id.clone(),
                exp: a.expires_at,
                permissions: (*a.permissions).clone(),
                client_info: a.client_info.clone(),
                metadata: a.metadata.clone(),
                profile: a.profile.as_deref().cloned(),
                asked_ms,
            },
            Decision::Deny(d) => Self::Deny {
                reason: d.reason.as_str().to_owned(),
                description: d.description.clone(),
                client_info: d.client_info.clone(),
                until: unix_now() + negative_ttl.as_secs(),
                asked_ms,
            },
        }
    }

    /// When the provider was asked (Unix milliseconds; 0 when not recorded).
    fn asked_ms(&self) -> u64 {
        match self {
            Self::Allow { asked_ms, .. } | Self::Deny { asked_ms, .. } => *asked_ms,
        }
    }

    /// The decision and how long it stays fresh; `Ok(None)` for an entry past its end, `Err`
    /// saying why for a malformed one (an empty user, an unknown reason).
    fn into_decision(
        self,
        cache: &DecisionCache,
    ) -> Result<Option<(Decision, Duration)>, &'static str> {
        let now = unix_now();
        match self {
            Self::Allow {
                user,
                exp,
                permissions,
                client_info,
                metadata,
                profile,
                asked_ms: _,
            } => {
                if user.is_empty() {
                    return Err("an allow without a user");
                }
                let d = Decision::Allow(Arc::new(Allow {
                    user_id: user,
                    expires_at: exp,
                    permissions: Arc::new(permissions),
                    client_info,
                    metadata,
                    profile: profile.map(Box::new),
                }));
                let ttl = cache.ttl(&d);
                Ok((exp > now).then_some((d, ttl)))
            }
            Self::Deny {
                reason,
                description,
                client_info,
                until,
                asked_ms: _,
            } => {
                let reason = [
                    Reason::InvalidCredentials,
                    Reason::MalformedRequest,
                    Reason::InvalidApp,
                    Reason::InvalidToken,
                    Reason::Internal,
                    Reason::Timeout,
                    Reason::RateLimited,
                ]
                .into_iter()
                .find(|r| r.as_str() == reason)
                .ok_or("a denial with an unknown reason")?;
                let d = Decision::Deny(Arc::new(Deny {
                    reason,
                    description,
                    client_info,
                }));
                let ttl =
                    Duration::from_secs(until.saturating_sub(now)).min(cache.config.negative_ttl);
                Ok((until > now).then_some((d, ttl)))
            }
        }
    }
}

/// The decision cache: moka here, and a Redis level shared by the replicas in cluster mode.
pub(crate) struct DecisionCache {
    fresh: Cache<Key, Entry>,
    /// Allows kept past their TTL for `stale_if_error`; `None` when that is 0.
    stale: Option<Cache<Key, Entry>>,
    /// Answers being asked again for callers with an age limit, so concurrent ones share one
    /// call; each stays only briefly, since the answer itself goes to `fresh`.
    refreshing: Cache<Key, Entry>,
    config: CacheConfig,
    metrics: AuthMetrics,
    /// The second level shared with the other replicas.
    shared: Option<Arc<Cluster>>,
    /// Permission sets by their hash, so allows that grant the same share one allocation.
    permissions: moka::sync::Cache<u64, Arc<crate::permissions::Permissions>>,
    /// Provider names, one allocation per name for all of its entries (only configured providers
    /// reach the cache, so this holds as many names as the configs have had).
    names: Mutex<HashSet<Arc<str>>>,
}

/// Distinct permission sets kept for sharing; an allow whose set is not among them keeps its own.
const SHARED_PERMISSION_SETS: u64 = 4096;

// === impl DecisionCache ===

impl DecisionCache {
    /// An empty cache shaped by `config`.
    pub(crate) fn new(config: &CacheConfig, metrics: AuthMetrics) -> Self {
        let build = || {
            Cache::builder()
                .max_capacity(config.max_entries)
                .expire_after(PerEntry)
                .support_invalidation_closures()
                .build()
        };
        Self {
            fresh: build(),
            stale: (!config.stale_if_error.is_zero()).then(build),
            refreshing: Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(REFRESHING_TTL)
                .build(),
            config: config.clone(),
            metrics,
            shared: None,
            permissions: moka::sync::Cache::new(SHARED_PERMISSION_SETS),
            names: Mutex::default(),
        }
    }

    /// `d` as the cache keeps it: an allow's permissions replaced by the equal set already shared,
    /// if there is one (otherwise its set becomes the shared one).
    fn compact(&self, d: Decision) -> Decision {
        let Decision::Allow(mut allow) = d else {
            return d;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        allow.permissions.hash(&mut hasher);
        let shared = self
            .permissions
            .get_with(hasher.finish(), || allow.permissions.clone());
        // An equal hash of a different set is left alone: it keeps its own allocation.
        if !Arc::ptr_eq(&shared, &allow.permissions) && shared == allow.permissions {
            Arc::make_mut(&mut allow).permissions = shared;
        }
        Decision::Allow(allow)
    }

    /// The one shared allocation of the provider name `name`.
    fn name(&self, name: &str) -> Arc<str> {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = names.get(name) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(name);
        names.insert(new.clone());
        new
    }

    /// Adds the second level shared with the other replicas.
    pub(crate) fn share(&mut self, cluster: Arc<Cluster>) {
        self.shared = Some(cluster);
    }

    /// The second level, if any, so a rebuilt cache keeps it.
    pub(crate) fn shared_level(&self) -> Option<Arc<Cluster>> {
        self.shared.clone()
    }

    /// The settings this cache was built with.
    pub(crate) fn settings(&self) -> &CacheConfig {
        &self.config
    }

    /// A local miss: the shared level, else the provider, with misses on several replicas
    /// coalesced by the shared lock. Without a reachable shared level, the provider. A shared
    /// answer asked for `max_age` or longer ago counts as absent. Returns the decision and when
    /// its provider call began (`None` when that is not known).
    async fn through_shared<F, Fut>(
        &self,
        key: &Key,
        scope: &Fingerprint,
        max_age: Option<Duration>,
        check: F,
    ) -> Result<(Decision, Option<Instant>), ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision, ProviderError>>,
    {
        let Some(l2) = self.shared.as_ref().filter(|c| c.is_up()) else {
            let asked = Instant::now();
            return check().await.map(|d| (d, Some(asked)));
        };
        let id = shared_id(scope, key);
        let requests = &l2.metrics.cache_requests;
        if let Some(found) = self.load_shared(l2, &id, max_age).await {
            requests.with_label_values(&["hit"]).inc();
            return Ok(found);
        }
        let mut locked = l2.lock(LOCK_KIND, &id, LOCK_TTL).await;
        if !locked {
            // Another replica is asking: wait for its answer, or for its lock to go.
            let deadline = Instant::now() + LOCK_TTL;
            while !locked && l2.is_up() && Instant::now() < deadline {
                tokio::time::sleep(LOCK_POLL).await;
                if let Some(found) = self.load_shared(l2, &id, max_age).await {
                    requests.with_label_values(&["hit"]).inc();
                    return Ok(found);
                }
                locked = l2.lock(LOCK_KIND, &id, LOCK_TTL).await;
            }
        }
        if locked {
            // The previous holder may have stored its answer just before this lock was taken.
            if let Some(found) = self.load_shared(l2, &id, max_age).await {
                l2.remove(LOCK_KIND, &id).await;
                requests.with_label_values(&["hit"]).inc();
                return Ok(found);
            }
        }
        requests.with_label_values(&["miss"]).inc();
        let (asked, asked_ms) = (Instant::now(), unix_now_ms());
        let result = check().await;
        if let Ok(d) = &result {
            let ttl = self.ttl(d);
            if let Ok(bytes) = serde_json::to_vec(&Stored::from_decision(
                d,
                self.config.negative_ttl,
                asked_ms,
            )) && l2.put(SHARED_KIND, &id, &bytes, ttl).await
                && let Decision::Allow(a) = d
            {
                l2.index(
                    USER_INDEX_KIND,
                    &a.user_id,
                    SHARED_KIND,
                    &id,
                    self.config.max_ttl,
                )
                .await;
            }
        }
        if locked {
            l2.remove(LOCK_KIND, &id).await;
        }
        result.map(|d| (d, Some(asked)))
    }

    /// The shared answer under `id`, when it was asked for less than `max_age` ago, with the
    /// local instant of that asking. A malformed one is counted, logged and read as a miss (the
    /// answer the provider gives next overwrites it).
    async fn load_shared(
        &self,
        l2: &Cluster,
        id: &str,
        max_age: Option<Duration>,
    ) -> Option<(Decision, Option<Instant>)> {
        let bytes = l2.get(SHARED_KIND, id).await?;
        let read = serde_json::from_slice::<Stored>(&bytes)
            .map_err(|_| "not a stored decision")
            .and_then(|stored| {
                let asked = asked_instant(stored.asked_ms());
                Ok(stored.into_decision(self)?.map(|(d, _)| (d, asked)))
            });
        let (decision, asked) = match read {
            Ok(found) => found?,
            Err(why) => {
                l2.bad_entry(StoreEntry::Decision, &l2.key(SHARED_KIND, id), &bytes, why);
                return None;
            }
        };
        if let Some(max) = max_age {
            // Unknown, or too old for this caller: as if absent, so it is asked again.
            asked.filter(|at| at.elapsed() < max)?;
        }
        Some((decision, asked))
    }

    fn ttl(&self, d: &Decision) -> Duration {
        match d {
            Decision::Allow(a) => Duration::from_secs(a.expires_at.saturating_sub(unix_now()))
                .min(self.config.max_ttl),
            Decision::Deny(_) => self.config.negative_ttl,
        }
    }

    /// The cached decision, or `check`'s. Concurrent misses on one key run `check` once and share
    /// its result, error included; errors are not stored. `scope` is the provider's settings
    /// fingerprint: the shared level keeps the answers of different settings apart. With
    /// `max_age`, a cached answer serves only if it was asked for less than that ago; an older one
    /// is asked again (once, however many callers want it at the same time) and replaced.
    pub(crate) async fn get_or_check<F, Fut>(
        &self,
        key: Key,
        provider: &str,
        scope: &Fingerprint,
        max_age: Option<Duration>,
        check: F,
    ) -> Result<(Decision, CacheOutcome), ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision, ProviderError>>,
    {
        let lookup = Lookup {
            provider,
            scope,
            max_age,
        };
        if let Some(e) = self.fresh.get(&key).await {
            if e.young(max_age) {
                return Ok(self.record(e.decision, CacheOutcome::Hit));
            }
            return self.refresh(key, lookup, check).await;
        }
        let (loaded, outcome) = self.load(&self.fresh, key, lookup, check).await;
        match loaded {
            Ok(entry) => {
                if outcome == CacheOutcome::Miss {
                    if let (Some(stale), Decision::Allow(allow)) = (&self.stale, &entry.decision) {
                        // Served only while the provider fails, and good until the stale window closes.
                        let extended = Allow {
                            expires_at: allow.expires_at + self.config.stale_if_error.as_secs(),
                            ..(**allow).clone()
                        };
                        let keep = Entry {
                            ttl: entry.ttl + self.config.stale_if_error,
                            decision: Decision::Allow(Arc::new(extended)),
                            provider: entry.provider.clone(),
                            asked: entry.asked,
                        };
                        stale.insert(key, keep).await;
                    }
                    self.metrics
                        .cache_entries
                        .set(i64::try_from(self.fresh.entry_count()).unwrap_or(i64::MAX));
                }
                Ok(self.record(entry.decision, outcome))
            }
            Err(error) => {
                if let Some(stale) = &self.stale
                    && let Some(e) = stale.get(&key).await
                {
                    return Ok(self.record(e.decision, CacheOutcome::Stale));
                }
                Err(self.failed(error, outcome))
            }
        }
    }

    /// Loads `key` into `cache` through [`Self::ask`], one call for every concurrent caller;
    /// `Miss` when this caller's call ran, `Coalesced` when it shared another's.
    async fn load<F, Fut>(
        &self,
        cache: &Cache<Key, Entry>,
        key: Key,
        lookup: Lookup<'_>,
        check: F,
    ) -> (Result<Entry, Arc<ProviderError>>, CacheOutcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision, ProviderError>>,
    {
        let ran = AtomicBool::new(false);
        let loaded = cache
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                self.ask(&key, lookup, check).await
            })
            .await;
        let outcome = if ran.load(Ordering::Relaxed) {
            CacheOutcome::Miss
        } else {
            CacheOutcome::Coalesced
        };
        (loaded, outcome)
    }

    /// The entry to cache for `key`: the shared level's answer, or the provider's (`check`).
    async fn ask<F, Fut>(
        &self,
        key: &Key,
        lookup: Lookup<'_>,
        check: F,
    ) -> Result<Entry, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision, ProviderError>>,
    {
        let (decision, asked) = self
            .through_shared(key, lookup.scope, lookup.max_age, check)
            .await?;
        let decision = self.compact(decision);
        let ttl = self.ttl(&decision);
        Ok(Entry {
            decision,
            ttl,
            provider: self.name(lookup.provider),
            asked,
        })
    }

    /// Asks again for an answer cached here but too old for `max_age`. Concurrent callers share
    /// one call; its answer replaces the cached one. A failure leaves the cached answer in place
    /// for callers without an age limit (a login is still served while the provider is down), and
    /// is this caller's error.
    async fn refresh<F, Fut>(
        &self,
        key: Key,
        lookup: Lookup<'_>,
        check: F,
    ) -> Result<(Decision, CacheOutcome), ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision, ProviderError>>,
    {
        let (loaded, outcome) = self.load(&self.refreshing, key, lookup, check).await;
        match loaded {
            Ok(entry) => {
                if outcome == CacheOutcome::Miss {
                    self.fresh.insert(key, entry.clone()).await;
                }
                Ok(self.record(entry.decision, outcome))
            }
            Err(error) => Err(self.failed(error, outcome)),
        }
    }

    /// Counts one answered request by its outcome.
    fn record(&self, d: Decision, outcome: CacheOutcome) -> (Decision, CacheOutcome) {
        self.count(outcome);
        (d, outcome)
    }

    /// Counts one failed request by its outcome: the error is the caller's.
    fn failed(&self, error: Arc<ProviderError>, outcome: CacheOutcome) -> ProviderError {
        self.count(outcome);
        Arc::unwrap_or_clone(error)
    }

    fn count(&self, outcome: CacheOutcome) {
        self.metrics
            .cache_requests
            .with_label_values(&[outcome.label()])
            .inc();
    }

    /// Drops every entry, or only `user`'s allows.
    pub(crate) fn purge(&self, user: Option<&str>) {
        let caches = std::iter::once(&self.fresh).chain(self.stale.as_ref());
        for cache in caches {
            match user {
                None => cache.invalidate_all(),
                Some(user) => {
                    let user = user.to_owned();
                    // Only fails when closures are not enabled, which `new` does.
                    let _ =
                        cache.invalidate_entries_if(move |_, e| e.user() == Some(user.as_str()));
                }
            }
        }
        self.metrics
            .cache_entries
            .set(i64::try_from(self.fresh.entry_count()).unwrap_or(i64::MAX));
    }

    /// Whether a cache built from `config` would behave as this one does (a reload keeps it then).
    pub(crate) fn same_settings(&self, config: &CacheConfig) -> bool {
        let (a, b) = (&self.config, config);
        a.max_entries == b.max_entries
            && a.max_ttl == b.max_ttl
            && a.negative_ttl == b.negative_ttl
            && a.stale_if_error == b.stale_if_error
    }

    /// Drops every answer of the named providers (removed or changed by a reload); the answers of
    /// every other provider stay.
    pub(crate) fn forget_providers(&self, names: &std::collections::BTreeSet<String>) {
        if names.is_empty() {
            return;
        }
        let caches = std::iter::once(&self.fresh).chain(self.stale.as_ref());
        for cache in caches {
            let names = names.clone();
            // Only fails when closures are not enabled, which `new` does.
            let _ = cache.invalidate_entries_if(move |_, e| names.contains(&*e.provider));
        }
    }
}

/// The local instant `asked_ms` (Unix milliseconds) stands for; `None` when unknown (0) or before
/// this machine's monotonic clock began.
fn asked_instant(asked_ms: u64) -> Option<Instant> {
    if asked_ms == 0 {
        return None;
    }
    let age = Duration::from_millis(unix_now_ms().saturating_sub(asked_ms));
    Instant::now().checked_sub(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> DecisionCache {
        let config = CacheConfig {
            max_entries: 10,
            max_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
            stale_if_error: Duration::ZERO,
        };
        DecisionCache::new(&config, crate::metrics::Metrics::new().unwrap().auth)
    }

    /// A provider settings fingerprint for the tests.
    const SCOPE: Fingerprint = [7; 32];

    fn through_json(d: &Decision, c: &DecisionCache) -> Option<(Decision, Duration)> {
        let json = serde_json::to_vec(&Stored::from_decision(
            d,
            c.config.negative_ttl,
            unix_now_ms(),
        ))
        .unwrap();
        serde_json::from_slice::<Stored>(&json)
            .unwrap()
            .into_decision(c)
            .unwrap()
    }

    #[test]
    fn shared_decisions_round_trip_with_their_ttl() {
        let c = cache();
        let allow = Decision::Allow(Arc::new(Allow {
            user_id: "u".into(),
            expires_at: unix_now() + 60,
            permissions: crate::permissions::Permissions::default().into(),
            client_info: Some(serde_json::json!({"a": 1}).into()),
            metadata: None,
            profile: Some(Box::new(crate::auth::session::Profile {
                email: Some("u@example.com".into()),
                displayname: None,
                image: None,
            })),
        }));
        let (back, ttl) = through_json(&allow, &c).unwrap();
        assert_eq!(back, allow);
        assert!(ttl <= Duration::from_secs(60) && ttl >= Duration::from_secs(58));
        let deny = Decision::deny(Reason::InvalidApp, "no", None);
        let (back, ttl) = through_json(&deny, &c).unwrap();
        assert_eq!(back, deny);
        assert!(
            ttl <= Duration::from_secs(5),
            "the negative TTL holds: {ttl:?}"
        );
        // An allow already past its expiry, or an unknown reason, is not served.
        let old = Stored::Allow {
            user: "u".into(),
            exp: unix_now() - 1,
            permissions: crate::permissions::Permissions::default(),
            client_info: None,
            metadata: None,
            profile: None,
            asked_ms: 0,
        };
        assert_eq!(old.into_decision(&c).map(|d| d.is_none()), Ok(true));
        let odd = Stored::Deny {
            reason: "Whatever".into(),
            description: String::new(),
            client_info: None,
            until: unix_now() + 5,
            asked_ms: 0,
        };
        assert!(odd.into_decision(&c).is_err());
    }

    #[tokio::test]
    async fn answer_older_than_the_age_limit_is_asked_again_once_for_all_callers() {
        use std::sync::atomic::AtomicUsize;
        let c = cache();
        let k = key("app", "p", "t");
        let calls = AtomicUsize::new(0);
        let allow = Decision::Allow(Arc::new(Allow {
            user_id: "u".into(),
            expires_at: unix_now() + 3600,
            permissions: crate::permissions::Permissions::default().into(),
            client_info: None,
            metadata: None,
            profile: None,
        }));
        let ask = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(allow.clone())
        };
        let (young, old) = (Some(Duration::from_secs(60)), Some(Duration::ZERO));
        assert_eq!(
            c.get_or_check(k, "p", &SCOPE, None, ask).await.unwrap().1,
            CacheOutcome::Miss
        );
        // No limit, or one the answer is younger than: served from the cache.
        assert_eq!(
            c.get_or_check(k, "p", &SCOPE, None, ask).await.unwrap().1,
            CacheOutcome::Hit
        );
        assert_eq!(
            c.get_or_check(k, "p", &SCOPE, young, ask).await.unwrap().1,
            CacheOutcome::Hit
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Older than the limit: eight callers at once make one call, and share its answer.
        let all = futures_util::future::join_all(
            (0..8).map(|_| c.get_or_check(k, "p", &SCOPE, old, ask)),
        );
        let outcomes: Vec<_> = all.await.into_iter().map(|r| r.unwrap().1).collect();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == CacheOutcome::Miss)
                .count(),
            1
        );
        // The new answer is what the cache holds now.
        assert_eq!(
            c.get_or_check(k, "p", &SCOPE, young, ask).await.unwrap().1,
            CacheOutcome::Hit
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A provider failing on a re-ask is that caller's error; the cached allow stays for
        // callers without a limit.
        let k2 = key("app", "p", "t2");
        c.get_or_check(k2, "p", &SCOPE, None, ask).await.unwrap();
        let failing = || async { Err(ProviderError::Timeout) };
        assert!(c.get_or_check(k2, "p", &SCOPE, old, failing).await.is_err());
        let (d, o) = c
            .get_or_check(k2, "p", &SCOPE, None, failing)
            .await
            .unwrap();
        assert_eq!((d, o), (allow.clone(), CacheOutcome::Hit));
    }

    #[tokio::test]
    async fn cached_allows_with_equal_permissions_share_one_set() {
        let c = cache();
        let perms = |coll: &str| {
            let mut p = crate::permissions::Permissions::default();
            p.read
                .queries_by_collection
                .insert(coll.to_owned(), vec!["true".to_owned()]);
            p
        };
        // Each answer comes with its own allocation, as a provider's parsed reply does.
        let answer = |user: &str, p: crate::permissions::Permissions| {
            let d = Decision::Allow(Arc::new(Allow {
                user_id: user.into(),
                expires_at: unix_now() + 60,
                permissions: Arc::new(p),
                client_info: None,
                metadata: None,
                profile: None,
            }));
            move || async move { Ok(d) }
        };
        let mut got = Vec::new();
        for (token, user, coll) in [
            ("t1", "u1", "cars"),
            ("t2", "u2", "cars"),
            ("t3", "u3", "boats"),
        ] {
            let (d, _) = c
                .get_or_check(
                    key("app", "p", token),
                    "p",
                    &SCOPE,
                    None,
                    answer(user, perms(coll)),
                )
                .await
                .unwrap();
            let Decision::Allow(a) = d else { panic!() };
            got.push(a);
        }
        assert!(Arc::ptr_eq(&got[0].permissions, &got[1].permissions));
        assert!(!Arc::ptr_eq(&got[0].permissions, &got[2].permissions));
        assert_eq!(*got[2].permissions, perms("boats"));
        assert_eq!(
            (got[0].user_id.as_str(), got[1].user_id.as_str()),
            ("u1", "u2")
        );
        // What the cache serves later is the shared set too.
        let (d, outcome) = c
            .get_or_check(
                key("app", "p", "t2"),
                "p",
                &SCOPE,
                None,
                answer("x", perms("x")),
            )
            .await
            .unwrap();
        let Decision::Allow(a) = d else { panic!() };
        assert_eq!(outcome, CacheOutcome::Hit);
        assert!(Arc::ptr_eq(&a.permissions, &got[0].permissions));
    }

    #[test]
    fn key_separates_fields() {
        assert_ne!(key("a", "bc", "t"), key("ab", "c", "t"));
        assert_eq!(key("a", "b", "t"), key("a", "b", "t"));
    }

    #[test]
    fn malformed_shared_decisions_are_refused() {
        let c = cache();
        let exp = unix_now() + 60;
        let perms = r#"{"read":{"everything":true,"queriesByCollection":{}},"write":{"everything":false,"queriesByCollection":{}}}"#;
        let good = format!(
            r#"{{"d":"allow","user":"u","exp":{exp},"permissions":{perms},"client_info":null,"metadata":null}}"#
        );
        let parse = |text: &str| {
            serde_json::from_str::<Stored>(text)
                .map_err(|_| "json")
                .and_then(|s| s.into_decision(&c))
        };
        assert!(matches!(parse(&good), Ok(Some(_))), "{good}");
        for bad in [
            good.replace(r#""user":"u""#, r#""user":"""#),
            good.replace(&format!("{exp}"), &format!("{exp}.5")),
            good.replace(&format!("{exp}"), "-1"),
            good.replace(r#""d":"allow""#, r#""d":"maybe""#),
            good.replace(r#""metadata":null"#, r#""metadata":null,"admin":true"#),
            good.replace(r#""user":"u""#, r#""user":7"#),
            "not json".to_owned(),
            String::new(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_ids_differ_by_provider_settings() {
        let k = key("app", "p", "t");
        assert_ne!(shared_id(&[1; 32], &k), shared_id(&[2; 32], &k));
        assert_eq!(shared_id(&[1; 32], &k), shared_id(&[1; 32], &k));
        assert_eq!(shared_id(&[1; 32], &k).len(), 64);
    }
}
