//! What a login comes to: an allow with the user's permissions and profile, or a denial with
//! its reason. Every door, provider kind and cache speaks it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::permissions::Permissions;

/// An authenticated login. The decision cache holds one per cached allow, so it is kept small:
/// permissions shared with every allow that has the same ones, provider JSON as compact text, the
/// profile boxed (most allows have none).
#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    /// The user the provider named.
    pub user_id: String,
    /// When the provider's answer stops being valid (Unix seconds).
    pub expires_at: u64,
    /// What the user may do (one allocation shared by the allows that grant the same).
    pub permissions: Arc<Permissions>,
    /// Provider data handed back to the client untouched.
    pub client_info: Option<CompactJson>,
    /// `identityServiceMetadata`, passed through.
    pub metadata: Option<CompactJson>,
    /// What the provider said of the user (jwt claims, a webhook's `userInfo`), for userinfo.
    pub profile: Option<Box<Profile>>,
}

/// A JSON value kept as its compact text, which is exactly what serializing the value writes:
/// a cached object costs its bytes rather than a tree of map nodes. Parsed back only where it is
/// written out (a session minted, a reply answered), so what a client receives is unchanged.
#[derive(Clone, PartialEq, Eq)]
pub struct CompactJson(Box<str>);

// === impl CompactJson ===

impl CompactJson {
    /// The compact text of `value` (object keys in the order serializing a value puts them).
    pub fn new(value: &serde_json::Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    /// The value again.
    pub fn value(&self) -> serde_json::Value {
        // Made from a value's own serialization, which always parses back to it.
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<serde_json::Value> for CompactJson {
    fn from(value: serde_json::Value) -> Self {
        Self::new(&value)
    }
}

impl std::fmt::Debug for CompactJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CompactJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for CompactJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(|v| Self::new(&v))
    }
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
    pub client_info: Option<CompactJson>,
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
            client_info: client_info.map(CompactJson::from),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_writes_exactly_what_the_value_writes() {
        let text = r#"{ "z": [1, 2.5, -3, 1e3, null], "a": {"ü": "\u00e9\n\"", "b": true}, "m": 18446744073709551615 }"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let compact = CompactJson::new(&value);
        assert_eq!(
            serde_json::to_string(&compact).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(compact.value(), value);
        assert_eq!(
            serde_json::to_value(Some(&compact)).unwrap(),
            serde_json::to_value(Some(&value)).unwrap()
        );
        // Read back from its own output, as the shared cache level does.
        let back: CompactJson = serde_json::from_str(compact.as_str()).unwrap();
        assert_eq!(back, compact);
        // Compact text: no whitespace kept from the provider's reply.
        assert!(!compact.as_str().contains(' '), "{compact:?}");
    }
}
