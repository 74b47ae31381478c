//! What a login comes to: an allow with the user's permissions and profile, or a denial with
//! its reason. Every door, provider kind and cache speaks it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::permissions::Permissions;

/// An authenticated login.
#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    /// The user the provider named.
    pub user_id: String,
    /// When the provider's answer stops being valid (Unix seconds).
    pub expires_at: u64,
    /// What the user may do.
    pub permissions: Permissions,
    /// Provider data handed back to the client untouched.
    pub client_info: Option<serde_json::Value>,
    /// `identityServiceMetadata`, passed through.
    pub metadata: Option<serde_json::Value>,
    /// What the provider said of the user (jwt claims, a webhook's `userInfo`), for userinfo.
    pub profile: Option<Profile>,
}

/// Why a login failed, in the Ditto SDK's failure vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The provider said no.
    InvalidCredentials,
    /// The request could not be read.
    MalformedRequest,
    /// Unknown app, or the provider is not enabled for it.
    InvalidApp,
    /// A session token is missing, invalid, expired or revoked.
    InvalidToken,
    /// The provider is broken (garbage reply, 5xx, circuit open).
    Internal,
    /// The provider did not answer in time.
    Timeout,
    /// Too many requests from this client.
    RateLimited,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "InvalidCredentials",
            Self::MalformedRequest => "MalformedRequest",
            Self::InvalidApp => "InvalidApp",
            Self::InvalidToken => "InvalidToken",
            Self::Internal => "Internal",
            Self::Timeout => "Timeout",
            Self::RateLimited => "RateLimited",
        }
    }
}

/// A refused login.
#[derive(Debug, Clone, PartialEq)]
pub struct Deny {
    /// Failure reason.
    pub reason: Reason,
    /// A short description safe to show the client.
    pub description: String,
    /// Provider data handed back to the client untouched.
    pub client_info: Option<serde_json::Value>,
}

/// The answer of every door: allow or deny. Provider errors are not decisions and are never cached.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Logged in.
    Allow(Arc<Allow>),
    /// Refused.
    Deny(Arc<Deny>),
}

impl Decision {
    pub(crate) fn deny(
        reason: Reason,
        description: impl Into<String>,
        client_info: Option<serde_json::Value>,
    ) -> Self {
        Self::Deny(Arc::new(Deny {
            reason,
            description: description.into(),
            client_info,
        }))
    }

    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Allow(_) => "allow",
            Self::Deny(_) => "deny",
        }
    }
}

/// What is known of a user beyond the ID: restdb's `email`, `displayname` and `image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Name to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Profile {
    /// `None` when nothing is known, so empty profiles never ride in a token.
    pub fn non_empty(self) -> Option<Self> {
        (self != Self::default()).then_some(self)
    }
}
