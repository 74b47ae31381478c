//! The jwt provider: verifies a token locally against its issuer's keys and maps the claims
//! to a user ID and templated permissions.
//!
//! Keys come from a JWKS (see [`keys`]), loaded by a background task at start and every
//! `refresh`; a token naming an unknown `kid` triggers one extra load at most every
//! [`UNKNOWN_KID_REFETCH_MIN_INTERVAL`]. The hot path reads the current key set lock-free.
//! Every failure to verify is a denial with a generic description; only "no keys were ever
//! loaded" is an error. Tokens are never logged.

mod keys;
mod template;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::check::{Check, HttpClient, ProviderError};
use super::decision::{Allow, Decision, Profile, Reason};
use crate::clock::unix_now;
use crate::config::auth::{JwksSource, JwtConfig, ProfileClaims};
use crate::permissions::Permissions;
use keys::{KeySet, Pick};

/// Least time between two key loads caused by tokens naming an unknown `kid`, so a stream of
/// made-up `kid`s cannot turn into a stream of requests to the issuer.
pub(crate) const UNKNOWN_KID_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// First retry delay while the keys have never loaded; doubled up to the refresh interval.
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(1);
/// The description of every verification failure: the client learns nothing about why.
const INVALID: &str = "invalid token";

/// A `kind = "jwt"` provider.
pub(crate) struct JwtProvider {
    inner: Arc<Inner>,
    /// The background key loader, stopped when the provider goes.
    loader: AbortHandle,
}

struct Inner {
    name: String,
    source: JwksSource,
    client: HttpClient,
    refresh: Duration,
    issuer: String,
    user_claim: String,
    profile_claims: ProfileClaims,
    permissions: Permissions,
    /// One validation per accepted algorithm; jsonwebtoken wants a single family per call.
    validations: Vec<(Algorithm, Validation)>,
    /// `None` until the first successful load.
    keys: ArcSwapOption<KeySet>,
    /// Held for the whole of every load, so loads never overlap or land out of order; holds
    /// when the last unknown-`kid` load started.
    loading: Mutex<Option<Instant>>,
}

/// Why a token is refused; logged at debug level, never shown to the client.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Malformed,
    Algorithm,
    UnknownKid,
    NoKey,
    Verification,
    Issuer,
}

// === impl JwtProvider ===

impl JwtProvider {
    /// Builds the provider and spawns its key loader; must run inside a tokio runtime.
    pub(crate) fn new(name: &str, config: &JwtConfig, client: HttpClient) -> Self {
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| (alg, validation(alg, config)))
            .collect();
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            source: config.keys.clone(),
            client,
            refresh: config.refresh,
            issuer: config.issuer.clone(),
            user_claim: config.user_claim.clone(),
            profile_claims: config.profile_claims.clone(),
            permissions: config.permissions.clone(),
            validations,
            keys: ArcSwapOption::empty(),
            loading: Mutex::new(None),
        });
        let loader = tokio::spawn(Inner::load_forever(inner.clone())).abort_handle();
        Self { inner, loader }
    }

    /// Whether keys have loaded at least once.
    pub(crate) fn ready(&self) -> bool {
        self.inner.keys.load().is_some()
    }

    /// Verifies the token and maps its claims.
    ///
    /// # Errors
    /// [`ProviderError::Keys`] when no keys have ever loaded. A bad token is `Ok(Deny)`.
    pub(crate) async fn check(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        let claims = match self.inner.verify(check.token).await? {
            Ok(claims) => claims,
            Err(refusal) => {
                tracing::debug!(provider = %self.inner.name, ?refusal, "token refused");
                return Ok(Decision::deny(Reason::InvalidCredentials, INVALID, None));
            }
        };
        Ok(self.inner.allow(&claims))
    }
}

impl Drop for JwtProvider {
    fn drop(&mut self) {
        self.loader.abort();
    }
}

/// The checks jsonwebtoken makes for tokens signed with `alg`: `exp` (required), `nbf`, `iss`
/// and `aud` (both required), with the configured leeway.
fn validation(alg: Algorithm, config: &JwtConfig) -> Validation {
    let mut v = Validation::new(alg);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.set_issuer(&[&config.issuer]);
    v.set_audience(&config.audiences);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.leeway = config.leeway.as_secs();
    v
}

// === impl Inner ===

impl Inner {
    /// The verified claims, `Err(refusal)` for a token to deny, or a provider error when there
    /// are no keys at all.
    async fn verify(
        &self,
        token: &str,
    ) -> Result<Result<Map<String, Value>, Refusal>, ProviderError> {
        // The header is read unverified, only to choose a key; `alg: none` and unknown
        // algorithms do not even parse.
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Err(Refusal::Malformed));
        };
        // We understand no critical extensions (RFC 7515 §4.1.11), and encrypted tokens are
        // not ours to read.
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            return Ok(Err(Refusal::Malformed));
        }
        // Only configured algorithms; checked before any key is looked at.
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Ok(Err(Refusal::Algorithm));
        };
        let mut set = self.keys.load_full().ok_or(ProviderError::Keys)?;
        let mut pick = set.pick(header.kid.as_deref(), header.alg);
        if matches!(pick, Pick::UnknownKid) {
            self.load_for_unknown_kid(&set).await;
            set = self.keys.load_full().ok_or(ProviderError::Keys)?;
            pick = set.pick(header.kid.as_deref(), header.alg);
        }
        let key = match pick {
            Pick::Key(key) => key,
            Pick::UnknownKid => return Ok(Err(Refusal::UnknownKid)),
            Pick::Unusable => return Ok(Err(Refusal::NoKey)),
        };
        let data = match jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &key.decoding,
            validation,
        ) {
            Ok(data) => data,
            Err(e) => {
                tracing::debug!(provider = %self.name, kind = ?e.kind(), "token failed verification");
                return Ok(Err(Refusal::Verification));
            }
        };
        // jsonwebtoken accepts an `iss` array sharing one value with ours; an issuer is one string.
        if data.claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Ok(Err(Refusal::Issuer));
        }
        Ok(Ok(data.claims))
    }

    /// The decision for verified claims: the user claim, `exp`, and the filled template.
    fn allow(&self, claims: &Map<String, Value>) -> Decision {
        let user_id = match claims.get(&self.user_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                tracing::debug!(provider = %self.name, claim = %self.user_claim, "token lacks the user claim");
                return Decision::deny(
                    Reason::InvalidCredentials,
                    "token lacks the user claim",
                    None,
                );
            }
        };
        // Verification required `exp` and checked it parses as a number.
        let expires_at = match claims.get("exp") {
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().map(|f| f as u64))
                .unwrap_or(0),
            _ => 0,
        };
        // jsonwebtoken still accepts a token in the second its `exp` (plus leeway) names; RFC 7519
        // §4.1.4 says it must not be accepted on or after that time.
        let leeway = self.validations.first().map_or(0, |(_, v)| v.leeway);
        if expires_at == 0 || expires_at.saturating_add(leeway) <= unix_now() {
            return Decision::deny(Reason::InvalidCredentials, INVALID, None);
        }
        let permissions = match template::fill_permissions(&self.permissions, claims) {
            Ok(p) => p,
            Err(error) => {
                tracing::debug!(provider = %self.name, %error, "permissions template not filled");
                return Decision::deny(
                    Reason::InvalidCredentials,
                    "token lacks a claim the permissions need",
                    None,
                );
            }
        };
        Decision::Allow(Arc::new(Allow {
            user_id,
            expires_at,
            permissions: Arc::new(permissions),
            client_info: None,
            metadata: None,
            profile: self.profile(claims).map(Box::new),
        }))
    }

    /// The profile the mapped claims give (string claims only; an empty mapping reads nothing).
    fn profile(&self, claims: &Map<String, Value>) -> Option<Profile> {
        let read = |claim: &str| {
            (!claim.is_empty())
                .then(|| claims.get(claim).and_then(Value::as_str))
                .flatten()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let c = &self.profile_claims;
        Profile {
            email: read(&c.email),
            displayname: read(&c.displayname),
            image: read(&c.image),
        }
        .non_empty()
    }

    /// Loads the keys at start (retrying with backoff until the first success), then every
    /// `refresh`.
    async fn load_forever(self: Arc<Self>) {
        let mut retry = FIRST_LOAD_RETRY.min(self.refresh);
        loop {
            let loaded = {
                let _loading = self.loading.lock().await;
                self.load("scheduled").await
            };
            let wait = if loaded || self.keys.load().is_some() {
                self.refresh
            } else {
                let wait = retry;
                retry = (retry * 2).min(self.refresh);
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Loads the keys once more for a token whose `kid` is not in `seen`, unless another load
    /// already replaced `seen` (concurrent unknown-`kid` tokens share one load) or the last
    /// such load was less than [`UNKNOWN_KID_REFETCH_MIN_INTERVAL`] ago.
    async fn load_for_unknown_kid(&self, seen: &Arc<KeySet>) {
        let mut last = self.loading.lock().await;
        let current = self.keys.load();
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, seen)) {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_MIN_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.load("unknown key id").await;
    }

    /// One load; the caller holds `loading`. A failure keeps the previous keys.
    async fn load(&self, why: &'static str) -> bool {
        match keys::load(&self.source, &self.client).await {
            Ok(set) => {
                tracing::info!(provider = %self.name, why, keys = set.keys.len(), "JWT keys loaded");
                self.keys.store(Some(Arc::new(set)));
                true
            }
            Err(error) => {
                let kept = self.keys.load().is_some();
                tracing::warn!(
                    provider = %self.name,
                    why,
                    %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    kept_previous_keys = kept,
                    "JWT key load failed"
                );
                false
            }
        }
    }
}
