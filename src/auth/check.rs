//! What every provider kind shares with the registry that builds them: the question asked, why
//! no answer came, the HTTP(S) client they call out with, and the digest a provider is kept by.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;

use super::decision::Reason;

/// The one pooled, kept-alive HTTP(S) client every provider call and JWKS fetch shares.
pub(crate) type HttpClient = Client<crate::https::Connector, Full<Bytes>>;

/// Builds the shared provider client.
///
/// # Errors
/// When the platform's root certificates cannot be loaded.
pub(crate) fn http_client() -> std::io::Result<HttpClient> {
    crate::https::client(crate::https::Options {
        http2: true,
        connect_timeout: None,
        pool_idle_timeout: std::time::Duration::from_secs(90),
    })
}

/// One login question.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check<'a> {
    /// The app (or database) ID.
    pub(crate) app: &'a str,
    /// The provider name the client sent.
    pub(crate) provider: &'a str,
    /// The client's token. Never logged.
    pub(crate) token: &'a str,
}

/// Why a provider gave no answer. Never cached; every door fails closed on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No answer within the provider's timeout.
    #[error("provider timed out")]
    Timeout,
    /// The provider could not be reached.
    #[error("provider unreachable")]
    Connect(#[source] Arc<hyper_util::client::legacy::Error>),
    /// The request failed after connecting.
    #[error("provider request failed")]
    Request(#[source] Arc<hyper_util::client::legacy::Error>),
    /// An unexpected HTTP status (5xx and others but 200 and 401).
    #[error("provider answered HTTP {0}")]
    Status(http::StatusCode),
    /// The reply broke the contract: not JSON, wrong types, too large.
    #[error("provider reply unusable: {0}")]
    Reply(&'static str),
    /// The circuit breaker is open: failing fast.
    #[error("provider circuit open")]
    CircuitOpen,
    /// A JWT provider has no usable keys yet.
    #[error("provider keys unavailable")]
    Keys,
}

impl ProviderError {
    /// The failure reason a door reports.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Timeout => Reason::Timeout,
            _ => Reason::Internal,
        }
    }

    /// The bounded metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect(_) => "unreachable",
            Self::Request(_) => "error",
            Self::Status(_) => "bad_status",
            Self::Reply(_) => "bad_reply",
            Self::CircuitOpen => "circuit_open",
            Self::Keys => "no_keys",
        }
    }
}

/// A digest of everything a provider is built from, by value: its kind, every validated setting,
/// its secrets, the keys file of a JWT provider and, for a group, its members' digests. Equal
/// digests mean a reload may keep the running provider (its connections, circuit breaker and
/// cached answers); the shared decision level keys its entries by it, so answers given under
/// other settings are never served. Kept in memory only, never logged.
pub(crate) type Fingerprint = [u8; 32];
