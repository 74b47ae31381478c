//! The validated auth sections: providers, apps, the decision cache, sessions, and the auth doors' limits.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::problem::Problem;
use super::raw;
use crate::permissions::{Access, Permissions};

/// Every auth setting.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Providers by the name clients send.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Apps and the providers each accepts; `None` when no `[apps]` is configured (any app).
    pub apps: Option<BTreeMap<String, Vec<String>>>,
    /// The decision cache.
    pub cache: CacheConfig,
    /// Session tokens.
    pub session: SessionConfig,
    /// The webhook aggregator door.
    pub aggregator: AggregatorConfig,
    /// Per-client-IP limit on the auth routes; `None` when disabled.
    pub rate_limit: Option<RateLimitConfig>,
    /// Origins allowed to call the auth routes from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// The forward-auth door, `/auth/check`.
    pub forward_auth: ForwardAuthConfig,
    /// The provider and app `POST /auth/token {"code"}` logs in through; `None`: no code exchange.
    pub code_exchange: Option<AppProvider>,
}

impl Auth {
    /// `name (kind)` for each provider, for `drawbridge check`.
    pub fn providers_summary(&self) -> String {
        if self.providers.is_empty() {
            return "none (the auth routes deny every login)".to_owned();
        }
        self.providers
            .iter()
            .map(|(name, p)| match p {
                ProviderConfig::Webhook(_) => format!("{name} (webhook)"),
                ProviderConfig::Jwt(_) => format!("{name} (jwt)"),
                ProviderConfig::Group(g) => format!(
                    "{name} (group of {}, {})",
                    g.members.join("/"),
                    match g.strategy {
                        Strategy::FirstSuccess => "first_success",
                        Strategy::All => "all",
                        Strategy::Ordered => "ordered",
                    }
                ),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One named provider.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    /// A Ditto-contract webhook.
    Webhook(WebhookConfig),
    /// A locally verified JWT.
    Jwt(JwtConfig),
    /// Several providers behind one name.
    Group(GroupConfig),
}

/// Webhook request body shape.
pub use raw::RawRequestFormat as RequestFormat;
/// Group strategy.
pub use raw::RawStrategy as Strategy;

/// `kind = "webhook"`
#[derive(Clone)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: Uri,
    /// Deadline for the whole call, retries included.
    pub timeout: Duration,
    /// Body shape.
    pub request_format: RequestFormat,
    /// HMAC key for `ditto-signature`, decoded.
    pub signing_secret: Option<Vec<u8>>,
    /// Extra static headers.
    pub headers: HeaderMap,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Retries on connect errors.
    pub retries: u32,
    /// Consecutive failures that open the circuit (0: never).
    pub circuit_failures: u32,
    /// How long an open circuit fails fast.
    pub circuit_cooldown: Duration,
}

/// Where a JWT provider's keys come from.
#[derive(Clone)]
pub enum JwksSource {
    /// Fetched over HTTP(S) and refreshed.
    Url(Uri),
    /// A local JWKS JSON file.
    File(PathBuf),
}

/// `kind = "jwt"`
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Key source.
    pub keys: JwksSource,
    /// Background refresh interval.
    pub refresh: Duration,
    /// Accepted algorithms (asymmetric only).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Claim that becomes the user ID.
    pub user_claim: String,
    /// Clock skew allowed.
    pub leeway: Duration,
    /// Claims read into the user's profile.
    pub profile_claims: ProfileClaims,
    /// Permissions template; `{claim}` placeholders are filled from the token.
    pub permissions: Permissions,
}

/// `kind = "group"`
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Member names, in order.
    pub members: Vec<String>,
    /// How members combine.
    pub strategy: Strategy,
    /// `ordered`: fall through on errors too.
    pub fallthrough_on_error: bool,
}

/// `[cache]`
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entries kept at most.
    pub max_entries: u64,
    /// Cap on an allow's lifetime.
    pub max_ttl: Duration,
    /// Lifetime of a denial.
    pub negative_ttl: Duration,
    /// Window in which an expired allow may be served while its provider fails.
    pub stale_if_error: Duration,
}

/// `[session]`
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Signing algorithm; `None` = from the key file (EdDSA for an ephemeral key).
    pub algorithm: Option<jsonwebtoken::Algorithm>,
    /// Private key (PEM), or the HS256 secret.
    pub key_file: Option<PathBuf>,
    /// Keys that still verify.
    pub previous_key_files: Vec<PathBuf>,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Cap on a token's lifetime.
    pub max_ttl: Duration,
    /// Extra time a tunnel stays open past expiry.
    pub close_grace: Duration,
    /// Upgrade ticket lifetime.
    pub ticket_ttl: Duration,
    /// How often an open tunnel's decision is asked again; zero: never.
    pub revalidate: Duration,
    /// What signs session tokens (identity assertions are always signed with the session key).
    pub token_signing: TokenSigning,
}

/// `session.token_signing`: what signs the session tokens drawbridge hands to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSigning {
    /// HS256 under a key derived from the session key: only drawbridge (every replica with the
    /// same key) verifies sessions; an HMAC costs about a microsecond.
    Hmac,
    /// The session key itself: sessions verify with the published JWKS too, at the cost of a
    /// public-key signature per login and refresh.
    Key,
}

/// `[aggregator]`
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Who may call the door.
    pub access: AggregatorAccess,
    /// Oldest accepted signature.
    pub max_signature_age: Duration,
}

/// Who may call `POST /auth/webhook`: it tells its caller which user and permissions a token has.
#[derive(Clone, PartialEq, Eq)]
pub enum AggregatorAccess {
    /// Neither a secret nor the opt-in: every call is refused.
    Disabled,
    /// Callers must sign with `ditto-signature` under this decoded HMAC key.
    Signed(Vec<u8>),
    /// `allow_unsigned = true`: anyone who reaches the door may ask.
    Unsigned,
}

// === impl WebhookConfig ===

impl std::fmt::Debug for WebhookConfig {
    /// Never prints the signing secret, the extra headers' values (marked sensitive), or the
    /// URL's user info and query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &raw::shown_url(&self.url.to_string()))
            .field("timeout", &self.timeout)
            .field("request_format", &self.request_format)
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &self.headers)
            .field("max_concurrency", &self.max_concurrency)
            .field("retries", &self.retries)
            .field("circuit_failures", &self.circuit_failures)
            .field("circuit_cooldown", &self.circuit_cooldown)
            .finish()
    }
}

// === impl JwksSource ===

impl std::fmt::Debug for JwksSource {
    /// Never prints the URL's user info or query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(u) => f
                .debug_tuple("Url")
                .field(&raw::shown_url(&u.to_string()))
                .finish(),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

// === impl AggregatorAccess ===

impl std::fmt::Debug for AggregatorAccess {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disabled => "Disabled",
            Self::Signed(_) => "Signed(..)",
            Self::Unsigned => "Unsigned",
        })
    }
}

// === impl AggregatorConfig ===

impl AggregatorConfig {
    /// One line for `drawbridge check`.
    pub fn summary(&self) -> String {
        match self.access {
            AggregatorAccess::Disabled => {
                "disabled: every call refused until aggregator.signing_secret is set".to_owned()
            }
            AggregatorAccess::Signed(_) => format!(
                "callers sign with ditto-signature, at most {:?} old",
                self.max_signature_age
            ),
            AggregatorAccess::Unsigned => {
                "unsigned calls answered (aggregator.allow_unsigned)".to_owned()
            }
        }
    }

    /// What an operator should hear about at `drawbridge check` and at start.
    pub fn warnings(&self) -> Vec<Problem> {
        match self.access {
            AggregatorAccess::Unsigned => vec![Problem::new(
                "aggregator.allow_unsigned",
                "true: anyone who can reach POST /auth/webhook can ask which user and permissions any \
                 token has; set aggregator.signing_secret instead",
            )],
            AggregatorAccess::Disabled | AggregatorAccess::Signed(_) => Vec::new(),
        }
    }
}

/// `[rate_limit]`
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Sustained requests per second per IP.
    pub per_second: NonZeroU32,
    /// Burst per IP.
    pub burst: NonZeroU32,
}

fn base64_secret(value: &str, key: &str, p: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(bytes) if !bytes.is_empty() => Some(bytes),
        _ => {
            p.push(Problem::new(key, "must be non-empty base64"));
            None
        }
    }
}

/// A secret, or else the explicit opt-in, or else a closed door; never both, since an unsigned
/// call would make the secret worthless.
fn aggregator_access(r: &raw::RawAggregator, p: &mut Vec<Problem>) -> AggregatorAccess {
    match (&r.signing_secret, r.allow_unsigned) {
        (Some(_), true) => {
            p.push(Problem::new(
                "aggregator.allow_unsigned",
                "cannot be combined with signing_secret (an unsigned call would bypass it); remove one",
            ));
            AggregatorAccess::Disabled
        }
        (Some(v), false) => base64_secret(v, "aggregator.signing_secret", p)
            .map_or(AggregatorAccess::Disabled, AggregatorAccess::Signed),
        (None, true) => AggregatorAccess::Unsigned,
        (None, false) => AggregatorAccess::Disabled,
    }
}

fn http_url(value: &str, key: &str, p: &mut Vec<Problem>) -> Option<Uri> {
    match value.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {
            Some(u)
        }
        _ => {
            p.push(Problem::new(key, "must be an http(s) URL"));
            None
        }
    }
}

pub(crate) fn permissions(raw: &raw::RawPermissions) -> Permissions {
    let access = |a: &raw::RawAccess| Access {
        everything: a.everything,
        queries_by_collection: a.queries_by_collection.clone(),
    };
    Permissions {
        read: access(&raw.read),
        write: access(&raw.write),
        remote_query: raw.remote_query,
    }
}

fn algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    name.parse().ok()
}

fn webhook(name: &str, w: &raw::RawWebhook, p: &mut Vec<Problem>) -> Option<WebhookConfig> {
    let at = |k: &str| format!("providers.{name}.{k}");
    let url = match &w.url {
        None => {
            p.push(Problem::new(at("url"), "missing"));
            None
        }
        Some(u) => http_url(u, &at("url"), p),
    };
    if w.timeout_ms == 0 {
        p.push(Problem::new(at("timeout_ms"), "must be greater than 0"));
    }
    if w.max_concurrency == 0 {
        p.push(Problem::new(
            at("max_concurrency"),
            "must be greater than 0",
        ));
    }
    let signing_secret = w
        .signing_secret
        .as_deref()
        .and_then(|s| base64_secret(s, &at("signing_secret"), p));
    let mut headers = HeaderMap::new();
    for (k, v) in &w.headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(mut v)) => {
                v.set_sensitive(true);
                headers.insert(k, v);
            }
            _ => p.push(Problem::new(
                at(&format!("headers.{k}")),
                "not a valid header name and value",
            )),
        }
    }
    Some(WebhookConfig {
        url: url?,
        timeout: Duration::from_millis(w.timeout_ms),
        request_format: w.request_format,
        signing_secret,
        headers,
        max_concurrency: w.max_concurrency,
        retries: w.retries,
        circuit_failures: w.circuit_failures,
        circuit_cooldown: Duration::from_millis(w.circuit_cooldown_ms),
    })
}

fn jwt(name: &str, j: &raw::RawJwt, p: &mut Vec<Problem>) -> Option<JwtConfig> {
    let at = |k: &str| format!("providers.{name}.{k}");
    let issuer = match &j.issuer {
        Some(i) if !i.is_empty() => Some(i.clone()),
        _ => {
            p.push(Problem::new(at("issuer"), "missing"));
            None
        }
    };
    if j.audiences.is_empty() {
        p.push(Problem::new(
            at("audiences"),
            "must list at least one audience",
        ));
    }
    let keys = match (&j.jwks_url, &j.keys_file) {
        (Some(u), None) => http_url(u, &at("jwks_url"), p).map(JwksSource::Url),
        (None, Some(f)) => Some(JwksSource::File(PathBuf::from(f))),
        _ => {
            p.push(Problem::new(
                at("jwks_url"),
                "set exactly one of jwks_url and keys_file",
            ));
            None
        }
    };
    let mut algorithms = Vec::new();
    for (i, a) in j.algorithms.iter().enumerate() {
        match algorithm(a) {
            Some(
                alg @ (jsonwebtoken::Algorithm::HS256
                | jsonwebtoken::Algorithm::HS384
                | jsonwebtoken::Algorithm::HS512),
            ) => {
                let _ = alg;
                p.push(Problem::new(
                    format!("providers.{name}.algorithms.{i}"),
                    "symmetric algorithms are not accepted from outside tokens; use RS*, PS*, ES* or EdDSA",
                ));
            }
            Some(alg) => algorithms.push(alg),
            None => p.push(Problem::new(
                format!("providers.{name}.algorithms.{i}"),
                "unknown algorithm",
            )),
        }
    }
    if j.algorithms.is_empty() {
        p.push(Problem::new(
            at("algorithms"),
            "must list at least one algorithm",
        ));
    }
    if j.jwks_refresh_seconds == 0 {
        p.push(Problem::new(
            at("jwks_refresh_seconds"),
            "must be greater than 0",
        ));
    }
    Some(JwtConfig {
        issuer: issuer?,
        audiences: j.audiences.clone(),
        keys: keys?,
        refresh: Duration::from_secs(j.jwks_refresh_seconds),
        algorithms,
        user_claim: j.user_claim.clone(),
        leeway: Duration::from_secs(j.leeway_seconds),
        profile_claims: ProfileClaims {
            email: j.profile_claims.email.clone(),
            displayname: j.profile_claims.displayname.clone(),
            image: j.profile_claims.image.clone(),
        },
        permissions: permissions(&j.permissions),
    })
}

/// Finds a member cycle reachable from `start`, if any.
fn cycle(start: &str, providers: &BTreeMap<String, raw::RawProvider>) -> bool {
    fn visit<'a>(
        name: &'a str,
        providers: &'a BTreeMap<String, raw::RawProvider>,
        stack: &mut Vec<&'a str>,
    ) -> bool {
        if stack.contains(&name) {
            return true;
        }
        let Some(raw::RawProvider::Group(g)) = providers.get(name) else {
            return false;
        };
        stack.push(name);
        let found = g.members.iter().any(|m| visit(m, providers, stack));
        stack.pop();
        found
    }
    visit(start, providers, &mut Vec::new())
}

/// Validates the auth sections of the config, one function per section, collecting every problem.
pub(super) fn validate(r: &raw::RawConfig, p: &mut Vec<Problem>) -> Option<Auth> {
    Some(Auth {
        providers: providers(&r.providers, p),
        apps: apps(r, p),
        cache: cache(&r.cache, p),
        session: session(&r.session, p),
        aggregator: AggregatorConfig {
            access: aggregator_access(&r.aggregator, p),
            max_signature_age: Duration::from_secs(r.aggregator.max_signature_age_seconds),
        },
        rate_limit: rate_limit(&r.rate_limit, p),
        cors_allowed_origins: cors(&r.cors, p),
        forward_auth: forward_auth(r, p),
        code_exchange: code_exchange(r, p),
    })
}

/// `[providers.*]`: each provider by its kind; a broken one is left out (its problems are listed).
fn providers(
    raw: &BTreeMap<String, raw::RawProvider>,
    p: &mut Vec<Problem>,
) -> BTreeMap<String, ProviderConfig> {
    let mut providers = BTreeMap::new();
    for (name, raw_provider) in raw {
        let built = match raw_provider {
            raw::RawProvider::Webhook(w) => webhook(name, w, p).map(ProviderConfig::Webhook),
            raw::RawProvider::Jwt(j) => jwt(name, j, p).map(ProviderConfig::Jwt),
            raw::RawProvider::Group(g) => group(name, g, raw, p).map(ProviderConfig::Group),
        };
        if let Some(b) = built {
            providers.insert(name.clone(), b);
        }
    }
    providers
}

/// `kind = "group"`: members that exist, no cycle, a strategy.
fn group(
    name: &str,
    g: &raw::RawGroup,
    all: &BTreeMap<String, raw::RawProvider>,
    p: &mut Vec<Problem>,
) -> Option<GroupConfig> {
    let at = |k: &str| format!("providers.{name}.{k}");
    if g.members.is_empty() {
        p.push(Problem::new(
            at("members"),
            "must list at least one provider",
        ));
    }
    for (i, m) in g.members.iter().enumerate() {
        if !all.contains_key(m) {
            p.push(Problem::new(
                format!("providers.{name}.members.{i}"),
                format!("no provider named {m:?}"),
            ));
        }
    }
    if cycle(name, all) {
        p.push(Problem::new(at("members"), "a group cannot contain itself"));
    }
    match g.strategy {
        None => {
            p.push(Problem::new(
                at("strategy"),
                "missing (first_success, all or ordered)",
            ));
            None
        }
        Some(strategy) => Some(GroupConfig {
            members: g.members.clone(),
            strategy,
            fallthrough_on_error: g.fallthrough_on_error,
        }),
    }
}

/// `[apps.*]`: every provider an app names exists; no apps means any app.
fn apps(r: &raw::RawConfig, p: &mut Vec<Problem>) -> Option<BTreeMap<String, Vec<String>>> {
    if r.apps.is_empty() {
        return None;
    }
    let mut apps = BTreeMap::new();
    for (app, a) in &r.apps {
        for (i, prov) in a.providers.iter().enumerate() {
            if !r.providers.contains_key(prov) {
                p.push(Problem::new(
                    format!("apps.{app}.providers.{i}"),
                    format!("no provider named {prov:?}"),
                ));
            }
        }
        apps.insert(app.clone(), a.providers.clone());
    }
    Some(apps)
}

/// `[cache]`: a bounded cache that keeps allows for some time.
fn cache(c: &raw::RawCache, p: &mut Vec<Problem>) -> CacheConfig {
    if c.max_entries == 0 {
        p.push(Problem::new("cache.max_entries", "must be greater than 0"));
    }
    if c.max_ttl_seconds == 0 {
        p.push(Problem::new(
            "cache.max_ttl_seconds",
            "must be greater than 0 (set negative_ttl_seconds to 0 to never cache denials)",
        ));
    }
    CacheConfig {
        max_entries: c.max_entries,
        max_ttl: Duration::from_secs(c.max_ttl_seconds),
        negative_ttl: Duration::from_secs(c.negative_ttl_seconds),
        stale_if_error: Duration::from_secs(c.stale_if_error_seconds),
    }
}

/// `[session]`: an allowed algorithm, a key where HS256 needs one, non-zero lifetimes, names.
fn session(s: &raw::RawSession, p: &mut Vec<Problem>) -> SessionConfig {
    let session_algorithm = match s.algorithm.as_deref() {
        None => None,
        Some(a) => match algorithm(a) {
            Some(
                alg @ (jsonwebtoken::Algorithm::EdDSA
                | jsonwebtoken::Algorithm::ES256
                | jsonwebtoken::Algorithm::RS256
                | jsonwebtoken::Algorithm::HS256),
            ) => Some(alg),
            _ => {
                p.push(Problem::new(
                    "session.algorithm",
                    "must be EdDSA, ES256, RS256 or HS256",
                ));
                None
            }
        },
    };
    if session_algorithm == Some(jsonwebtoken::Algorithm::HS256) && s.key_file.is_none() {
        p.push(Problem::new(
            "session.key_file",
            "HS256 needs a key_file holding the shared secret",
        ));
    }
    for (key, v) in [
        ("session.max_ttl_seconds", s.max_ttl_seconds),
        ("session.ticket_ttl_seconds", s.ticket_ttl_seconds),
    ] {
        if v == 0 {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    if s.revalidate_seconds > raw::MAX_SESSION_REVALIDATE_SECONDS {
        p.push(Problem::new(
            "session.revalidate_seconds",
            format!(
                "must be at most {} (one day); 0 turns it off",
                raw::MAX_SESSION_REVALIDATE_SECONDS
            ),
        ));
    }
    let token_signing = match s.token_signing.as_str() {
        "hmac" => TokenSigning::Hmac,
        "key" => TokenSigning::Key,
        _ => {
            p.push(Problem::new(
                "session.token_signing",
                "must be \"hmac\" (sessions verified by drawbridge only) or \"key\" (by the JWKS too)",
            ));
            TokenSigning::Hmac
        }
    };
    if s.issuer.is_empty() || s.audience.is_empty() {
        p.push(Problem::new(
            "session.issuer",
            "issuer and audience must not be empty",
        ));
    }
    SessionConfig {
        algorithm: session_algorithm,
        key_file: s.key_file.as_ref().map(PathBuf::from),
        previous_key_files: s.previous_key_files.iter().map(PathBuf::from).collect(),
        issuer: s.issuer.clone(),
        audience: s.audience.clone(),
        max_ttl: Duration::from_secs(s.max_ttl_seconds),
        close_grace: Duration::from_secs(s.close_grace_seconds),
        ticket_ttl: Duration::from_secs(s.ticket_ttl_seconds),
        revalidate: Duration::from_secs(s.revalidate_seconds),
        token_signing,
    }
}

/// `[rate_limit]`: `None` when disabled, else a non-zero rate and burst.
fn rate_limit(r: &raw::RawRateLimit, p: &mut Vec<Problem>) -> Option<RateLimitConfig> {
    if !r.enabled {
        return None;
    }
    match (NonZeroU32::new(r.per_second), NonZeroU32::new(r.burst)) {
        (Some(per_second), Some(burst)) => Some(RateLimitConfig { per_second, burst }),
        _ => {
            p.push(Problem::new(
                "rate_limit",
                "per_second and burst must be greater than 0 (or set enabled = false)",
            ));
            None
        }
    }
}

/// `[cors]`: each allowed origin once.
fn cors(c: &raw::RawCors, p: &mut Vec<Problem>) -> Vec<String> {
    let unique: BTreeSet<&String> = c.allowed_origins.iter().collect();
    if unique.len() != c.allowed_origins.len() {
        p.push(Problem::new(
            "cors.allowed_origins",
            "lists an origin twice",
        ));
    }
    c.allowed_origins.clone()
}

/// `[forward_auth]`
#[derive(Debug, Clone, Default)]
pub struct ForwardAuthConfig {
    /// Where a request without a session is redirected (302); `None` answers 401.
    pub signin_url: Option<HeaderValue>,
    /// The app and provider that decide an identity provider's bearer token, when accepted.
    pub provider_tokens: Option<AppProvider>,
    /// The one source of the forwarded request's path the door decides on.
    pub uri_from: UriSource,
}

/// `forward_auth.uri_from`: where the forward-auth door reads the path it is asked about. Exactly
/// one source counts; any other that is present must agree with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UriSource {
    /// The path under `/auth/check/` (Envoy Gateway's `extAuth` appends the original path).
    #[default]
    Path,
    /// One request header, set by the ingress: a path, or an absolute URL.
    Header(HeaderName),
}

impl std::fmt::Display for UriSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path => f.write_str("path"),
            Self::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// Which claim of a verified JWT gives each profile field; empty reads none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileClaims {
    /// Claim of the e-mail address.
    pub email: String,
    /// Claim of the display name.
    pub displayname: String,
    /// Claim of the picture URL.
    pub image: String,
}

/// An app and the provider that decides its tokens: the forward-auth door's provider tokens, and
/// the login API's code exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProvider {
    /// The app the token is decided for.
    pub app: String,
    /// The provider that decides it.
    pub provider: String,
}

/// `[forward_auth]`: an absolute http(s) URL or absolute path to sign in at, and, when provider
/// tokens are accepted, a configured provider (enabled for the app when apps are restricted).
fn forward_auth(r: &raw::RawConfig, p: &mut Vec<Problem>) -> ForwardAuthConfig {
    let f = &r.forward_auth;
    let signin_url = f.signin_url.as_deref().and_then(|url| {
        let absolute = url.starts_with('/') && !url.starts_with("//")
            || url
                .parse::<Uri>()
                .ok()
                .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        match HeaderValue::from_str(url) {
            Ok(v) if absolute => Some(v),
            _ => {
                p.push(Problem::new(
                    "forward_auth.signin_url",
                    "must be an http(s) URL or a path starting with / (e.g. \"https://login.example.com/\")",
                ));
                None
            }
        }
    });
    let provider_tokens = if f.accept_provider_tokens {
        provider_ref(
            r,
            (f.app.as_deref(), f.provider.as_deref()),
            ("forward_auth.app", "forward_auth.provider"),
            "forward_auth.accept_provider_tokens",
            p,
        )
    } else {
        None
    };
    ForwardAuthConfig {
        signin_url,
        provider_tokens,
        uri_from: uri_source(&f.uri_from, p),
    }
}

/// `forward_auth.uri_from`: `"path"` or `"header:<name>"` with a valid header name that is not
/// one the client alone controls the meaning of (`Host`, `Authorization`, `Cookie`).
fn uri_source(value: &str, p: &mut Vec<Problem>) -> UriSource {
    const KEY: &str = "forward_auth.uri_from";
    if value == "path" {
        return UriSource::Path;
    }
    let name = value
        .strip_prefix("header:")
        .map(str::trim)
        .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok());
    match name {
        Some(name)
            if ![
                http::header::HOST,
                http::header::AUTHORIZATION,
                http::header::COOKIE,
            ]
            .contains(&name) =>
        {
            UriSource::Header(name)
        }
        _ => {
            p.push(Problem::new(
                KEY,
                "must be \"path\" or \"header:<name>\" (e.g. \"header:x-forwarded-uri\" for Traefik, \"header:x-original-url\" for ingress-nginx, \"header:x-original-uri\" for nginx auth_request)",
            ));
            UriSource::Path
        }
    }
}

/// `[native]`: the code exchange names a configured provider and an app that accepts it, both or
/// neither.
fn code_exchange(r: &raw::RawConfig, p: &mut Vec<Problem>) -> Option<AppProvider> {
    let n = &r.native;
    if n.code_provider.is_none() && n.code_app.is_none() {
        return None;
    }
    provider_ref(
        r,
        (n.code_app.as_deref(), n.code_provider.as_deref()),
        ("native.code_app", "native.code_provider"),
        "native.code_provider",
        p,
    )
}

/// An app and provider named at `keys`, both required (else a problem at `needs`): the provider
/// configured, the app accepting it when apps are restricted.
fn provider_ref(
    r: &raw::RawConfig,
    (app, provider): (Option<&str>, Option<&str>),
    (app_key, provider_key): (&str, &str),
    needs: &str,
    p: &mut Vec<Problem>,
) -> Option<AppProvider> {
    match (app, provider) {
        (Some(app), Some(provider)) if !app.is_empty() && !provider.is_empty() => {
            if !r.providers.contains_key(provider) {
                p.push(Problem::new(provider_key, "names no configured provider"));
            } else if !r.apps.is_empty()
                && !r
                    .apps
                    .get(app)
                    .is_some_and(|a| a.providers.iter().any(|x| x == provider))
            {
                p.push(Problem::new(
                    app_key,
                    format!("names no configured app that accepts {provider_key}"),
                ));
            }
            Some(AppProvider {
                app: app.to_owned(),
                provider: provider.to_owned(),
            })
        }
        _ => {
            p.push(Problem::new(
                needs,
                format!("needs {app_key} and {provider_key}"),
            ));
            None
        }
    }
}
