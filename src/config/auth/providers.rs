//! `[providers.<name>]`: the named providers (webhook, jwt, group): their raw form, their
//! validated settings, and the JWKS files they name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::super::section::{Section, base64_secret};
use super::super::text::{SecretText, UrlText, shown_url};
use crate::permissions::{Access, Permissions};

/// Default webhook call timeout.
pub const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 2_000;
/// Default cap on concurrent calls to one webhook.
pub const DEFAULT_PROVIDER_MAX_CONCURRENCY: usize = 64;
/// Default retries on connect errors.
pub const DEFAULT_PROVIDER_RETRIES: u32 = 1;
/// Default consecutive failures that open a provider's circuit.
pub const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
/// Default time an open circuit fails fast.
pub const DEFAULT_CIRCUIT_COOLDOWN_MS: u64 = 10_000;
/// Default JWKS refresh interval.
pub const DEFAULT_JWKS_REFRESH_SECONDS: u64 = 300;
/// Default `alg` values a jwt provider accepts.
pub const DEFAULT_JWT_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
/// Default claim that becomes the user ID.
pub const DEFAULT_JWT_USER_CLAIM: &str = "sub";
/// Default clock skew allowed on `exp`/`nbf`.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 0;

/// `[providers.<name>]`, tagged by `kind`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawProvider {
    /// A Ditto-contract webhook.
    Webhook(RawWebhook),
    /// A locally verified JWT.
    Jwt(RawJwt),
    /// Several providers behind one name.
    Group(RawGroup),
}

/// `kind = "webhook"`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhook {
    /// http or https URL.
    pub url: Option<UrlText>,
    /// Deadline for the whole call, retries included.
    pub timeout_ms: u64,
    /// `legacy` (`appID`) or `v1` (`databaseID`, `version`).
    pub request_format: RawRequestFormat,
    /// Base64 HMAC key; when set every call carries `ditto-signature`.
    pub signing_secret: Option<SecretText>,
    /// Extra static request headers (an `Authorization` among them, often).
    pub headers: std::collections::BTreeMap<String, SecretText>,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Retries on connect errors only.
    pub retries: u32,
    /// Consecutive failures that open the circuit (0 disables it).
    pub circuit_failures: u32,
    /// How long an open circuit fails fast.
    pub circuit_cooldown_ms: u64,
}

/// Webhook request body shape.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawRequestFormat {
    /// `{"appID","provider","token"}`
    #[default]
    Legacy,
    /// `{"databaseID","version":"1","provider","token"}`
    V1,
}

/// `kind = "jwt"`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match).
    pub audiences: Vec<String>,
    /// JWKS endpoint, fetched at start and refreshed in the background.
    pub jwks_url: Option<UrlText>,
    /// A local JWKS JSON file instead of a URL.
    pub keys_file: Option<String>,
    /// JWKS refresh interval.
    pub jwks_refresh_seconds: u64,
    /// Accepted `alg` values.
    pub algorithms: Vec<String>,
    /// Claim that becomes the user ID.
    pub user_claim: String,
    /// Clock skew allowed on `exp`/`nbf`.
    pub leeway_seconds: u64,
    /// Permissions granted, with `{claim}` placeholders in queries.
    pub permissions: RawPermissions,
    /// Claims read into the user's profile (restdb's `email`, `displayname`, `image`).
    pub profile_claims: RawProfileClaims,
}

/// Default claim of the profile's e-mail address (OpenID Connect's).
pub const DEFAULT_PROFILE_EMAIL_CLAIM: &str = "email";
/// Default claim of the profile's display name (OpenID Connect's).
pub const DEFAULT_PROFILE_DISPLAYNAME_CLAIM: &str = "name";
/// Default claim of the profile's picture URL (OpenID Connect's).
pub const DEFAULT_PROFILE_IMAGE_CLAIM: &str = "picture";

/// `[providers.<name>.profile_claims]` of a jwt provider: which claim gives each profile field;
/// `""` reads none.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProfileClaims {
    /// Claim of the e-mail address.
    pub email: String,
    /// Claim of the display name.
    pub displayname: String,
    /// Claim of the picture URL.
    pub image: String,
}

impl Default for RawProfileClaims {
    fn default() -> Self {
        Self {
            email: DEFAULT_PROFILE_EMAIL_CLAIM.to_owned(),
            displayname: DEFAULT_PROFILE_DISPLAYNAME_CLAIM.to_owned(),
            image: DEFAULT_PROFILE_IMAGE_CLAIM.to_owned(),
        }
    }
}

/// A permissions template in the Ditto shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPermissions {
    /// Read rules.
    pub read: RawAccess,
    /// Write rules.
    pub write: RawAccess,
    /// Whether remote queries are allowed.
    #[serde(rename = "remoteQuery")]
    pub remote_query: Option<bool>,
}

/// Read or write rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccess {
    /// Everything in every collection.
    pub everything: bool,
    /// Per collection, queries a document must match.
    #[serde(rename = "queriesByCollection")]
    pub queries_by_collection: std::collections::BTreeMap<String, Vec<String>>,
}

/// `kind = "group"`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGroup {
    /// Member provider names.
    pub members: Vec<String>,
    /// How members are combined.
    pub strategy: Option<RawStrategy>,
    /// `ordered`: also fall through when a member errors.
    pub fallthrough_on_error: bool,
}

/// Group strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStrategy {
    /// Ask all at once; the first allow wins.
    FirstSuccess,
    /// All must allow.
    All,
    /// Try in order.
    Ordered,
}

impl Default for RawWebhook {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: DEFAULT_PROVIDER_TIMEOUT_MS,
            request_format: RawRequestFormat::default(),
            signing_secret: None,
            headers: BTreeMap::new(),
            max_concurrency: DEFAULT_PROVIDER_MAX_CONCURRENCY,
            retries: DEFAULT_PROVIDER_RETRIES,
            circuit_failures: DEFAULT_CIRCUIT_FAILURES,
            circuit_cooldown_ms: DEFAULT_CIRCUIT_COOLDOWN_MS,
        }
    }
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            jwks_url: None,
            keys_file: None,
            jwks_refresh_seconds: DEFAULT_JWKS_REFRESH_SECONDS,
            algorithms: DEFAULT_JWT_ALGORITHMS.map(str::to_owned).to_vec(),
            user_claim: DEFAULT_JWT_USER_CLAIM.to_owned(),
            leeway_seconds: DEFAULT_JWT_LEEWAY_SECONDS,
            permissions: RawPermissions::default(),
            profile_claims: RawProfileClaims::default(),
        }
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
pub use RawRequestFormat as RequestFormat;
/// Group strategy.
pub use RawStrategy as Strategy;

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

// === impl WebhookConfig ===

impl std::fmt::Debug for WebhookConfig {
    /// Never prints the signing secret, the extra headers' values (marked sensitive), or the
    /// URL's user info and query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &shown_url(&self.url.to_string()))
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
                .field(&shown_url(&u.to_string()))
                .finish(),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

// === impl AggregatorAccess ===

/// `[providers.*]`: each provider by its kind; a broken one is left out (its problems are listed).
pub(in crate::config) fn validate(
    raw: &BTreeMap<String, RawProvider>,
    p: &mut Vec<Problem>,
) -> BTreeMap<String, ProviderConfig> {
    let mut providers = BTreeMap::new();
    for (name, raw_provider) in raw {
        let built = match raw_provider {
            RawProvider::Webhook(w) => webhook(name, w, p).map(ProviderConfig::Webhook),
            RawProvider::Jwt(j) => jwt(name, j, p).map(ProviderConfig::Jwt),
            RawProvider::Group(g) => group(name, g, raw, p).map(ProviderConfig::Group),
        };
        if let Some(b) = built {
            providers.insert(name.clone(), b);
        }
    }
    providers
}

/// Every provider reloads live (an unchanged one is kept as it runs); a reload reads the JWKS
/// files of the jwt providers again.
impl Section for BTreeMap<String, ProviderConfig> {
    fn named_files(&self, files: &mut Vec<PathBuf>) {
        files.extend(self.values().filter_map(|p| match p {
            ProviderConfig::Jwt(j) => match &j.keys {
                JwksSource::File(path) => Some(path.clone()),
                JwksSource::Url(_) => None,
            },
            ProviderConfig::Webhook(_) | ProviderConfig::Group(_) => None,
        }));
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

fn permissions(raw: &RawPermissions) -> Permissions {
    let access = |a: &RawAccess| Access {
        everything: a.everything,
        queries_by_collection: a.queries_by_collection.clone(),
    };
    Permissions {
        read: access(&raw.read),
        write: access(&raw.write),
        remote_query: raw.remote_query,
    }
}

fn webhook(name: &str, w: &RawWebhook, p: &mut Vec<Problem>) -> Option<WebhookConfig> {
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

fn jwt(name: &str, j: &RawJwt, p: &mut Vec<Problem>) -> Option<JwtConfig> {
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
        match a.parse::<jsonwebtoken::Algorithm>().ok() {
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
fn cycle(start: &str, providers: &BTreeMap<String, RawProvider>) -> bool {
    fn visit<'a>(
        name: &'a str,
        providers: &'a BTreeMap<String, RawProvider>,
        stack: &mut Vec<&'a str>,
    ) -> bool {
        if stack.contains(&name) {
            return true;
        }
        let Some(RawProvider::Group(g)) = providers.get(name) else {
            return false;
        };
        stack.push(name);
        let found = g.members.iter().any(|m| visit(m, providers, stack));
        stack.pop();
        found
    }
    visit(start, providers, &mut Vec::new())
}

/// `kind = "group"`: members that exist, no cycle, a strategy.
fn group(
    name: &str,
    g: &RawGroup,
    all: &BTreeMap<String, RawProvider>,
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
