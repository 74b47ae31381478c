//! Session tokens: minted after an allow, verified on every session route and upgrade.

use serde::{Deserialize, Serialize};

use super::Permissions;

/// The claims of a drawbridge session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Issuer (`session.issuer`).
    pub iss: String,
    /// Audience (`session.audience`).
    pub aud: String,
    /// The user ID the provider named.
    pub sub: String,
    /// The app ID.
    pub app: String,
    /// The provider name.
    pub prv: String,
    /// What the user may do.
    pub permissions: Permissions,
    /// Provider clientInfo, handed back by userinfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<serde_json::Value>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// When the login happened (kept across refreshes).
    pub auth_time: u64,
    /// The provider decision's expiry: no refresh goes past it.
    pub dex: u64,
    /// Session ID, kept across refreshes.
    pub sid: String,
    /// Token ID, new on every mint.
    pub jti: String,
}
