//! The auth sections of the config, one file each under `auth/`: providers, apps, the decision
//! cache, sessions, the aggregator door, the login rate limit, CORS, forward-auth and the code
//! exchange. This file composes them into [`Auth`].

pub(super) mod aggregator;
pub(super) mod apps;
pub(super) mod cache;
pub(super) mod cors;
pub(super) mod forward_auth;
pub(super) mod native;
pub(super) mod providers;
pub(super) mod rate_limit;
pub(super) mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use aggregator::{
    AggregatorAccess, AggregatorConfig, DEFAULT_AGGREGATOR_ALLOW_UNSIGNED,
    DEFAULT_SIGNATURE_MAX_AGE_SECONDS, RawAggregator,
};
pub use apps::{AppProvider, RawApp};
pub use cache::{
    CacheConfig, DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_CACHE_MAX_TTL_SECONDS,
    DEFAULT_CACHE_NEGATIVE_TTL_SECONDS, DEFAULT_CACHE_STALE_IF_ERROR_SECONDS, RawCache,
};
pub use cors::RawCors;
pub use forward_auth::{
    DEFAULT_FORWARD_AUTH_ACCEPT_PROVIDER_TOKENS, DEFAULT_FORWARD_AUTH_ASSERTION,
    DEFAULT_FORWARD_AUTH_URI_FROM, ForwardAuthConfig, RawForwardAuth, UriSource,
};
pub use native::{DEFAULT_NATIVE_TOKEN_FIELD, RawNative, TokenField};
pub use providers::{
    DEFAULT_CIRCUIT_COOLDOWN_MS, DEFAULT_CIRCUIT_FAILURES, DEFAULT_JWKS_REFRESH_SECONDS,
    DEFAULT_JWT_ALGORITHMS, DEFAULT_JWT_LEEWAY_SECONDS, DEFAULT_JWT_USER_CLAIM,
    DEFAULT_PROFILE_DISPLAYNAME_CLAIM, DEFAULT_PROFILE_EMAIL_CLAIM, DEFAULT_PROFILE_IMAGE_CLAIM,
    DEFAULT_PROVIDER_MAX_CONCURRENCY, DEFAULT_PROVIDER_RETRIES, DEFAULT_PROVIDER_TIMEOUT_MS,
    GroupConfig, JwksSource, JwtConfig, ProfileClaims, ProviderConfig, RawAccess, RawGroup, RawJwt,
    RawPermissions, RawProfileClaims, RawProvider, RawRequestFormat, RawStrategy, RawWebhook,
    RequestFormat, Strategy, WebhookConfig,
};
pub use rate_limit::{
    DEFAULT_RATE_BURST, DEFAULT_RATE_LIMIT_ENABLED, DEFAULT_RATE_PER_SECOND, RateLimitConfig,
    RawRateLimit,
};
pub use session::{
    DEFAULT_SESSION_AUDIENCE, DEFAULT_SESSION_CLOSE_GRACE_SECONDS, DEFAULT_SESSION_ISSUER,
    DEFAULT_SESSION_MAX_TTL_SECONDS, DEFAULT_SESSION_REVALIDATE_SECONDS,
    DEFAULT_SESSION_TOKEN_SIGNING, DEFAULT_TICKET_TTL_SECONDS, MAX_SESSION_REVALIDATE_SECONDS,
    RawSession, SessionConfig, TokenSigning,
};

use super::problem::Problem;
use super::raw;
use super::section::Section;

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
    /// The JSON field login and refresh replies carry the session token in.
    pub token_field: TokenField,
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

/// Validates the auth sections of the config, one file per section, collecting every problem.
pub(super) fn validate(r: &raw::RawConfig, p: &mut Vec<Problem>) -> Option<Auth> {
    let named = apps::Named {
        providers: &r.providers,
        apps: &r.apps,
    };
    Some(Auth {
        providers: providers::validate(&r.providers, p),
        apps: apps::validate(&r.apps, &r.providers, p),
        cache: cache::validate(&r.cache, p),
        session: session::validate(&r.session, p),
        aggregator: aggregator::validate(&r.aggregator, p),
        rate_limit: rate_limit::validate(&r.rate_limit, p),
        cors_allowed_origins: cors::validate(&r.cors, p),
        forward_auth: forward_auth::validate(&r.forward_auth, &named, p),
        code_exchange: native::validate(&r.native, &named, p),
        token_field: native::token_field(&r.native, p),
    })
}

/// Every auth key reloads live. A reload reads the session keys and the JWKS files again; no
/// other auth section names a file. Destructured whole, so a new auth section is looked at here.
impl Section for Auth {
    fn named_files(&self, files: &mut Vec<PathBuf>) {
        let Self {
            providers,
            apps: _,
            cache: _,
            session,
            aggregator: _,
            rate_limit: _,
            cors_allowed_origins: _,
            forward_auth: _,
            code_exchange: _,
            token_field: _,
        } = self;
        session.named_files(files);
        providers.named_files(files);
    }
}
