//! `[ditto]`: the Ditto SDK door: on or off, its path prefix, and the gate on its websocket.

use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::section::Section;

/// `ditto.enabled`: the door is off.
pub const DEFAULT_DITTO_ENABLED: bool = false;
/// `ditto.path_prefix`: none, the SDK's paths start at `/_ditto`.
pub const DEFAULT_DITTO_PATH_PREFIX: &str = "";
/// `ditto.require_known_token`: `/_ditto/ws` is not gated on a learned token.
pub const DEFAULT_DITTO_REQUIRE_KNOWN_TOKEN: bool = false;

/// `[ditto]`: the Ditto SDK door.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDitto {
    /// Answer `/_ditto/auth/*` and gate `/_ditto/ws` by the Ditto rules.
    pub enabled: bool,
    /// A path prefix before `/_ditto` (the SDK keeps one when its auth URL ends with a slash).
    pub path_prefix: String,
    /// Open `/_ditto/ws` only with an access token seen in a relayed login success.
    pub require_known_token: bool,
}

impl Default for RawDitto {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_DITTO_ENABLED,
            path_prefix: DEFAULT_DITTO_PATH_PREFIX.to_owned(),
            require_known_token: DEFAULT_DITTO_REQUIRE_KNOWN_TOKEN,
        }
    }
}

/// `[ditto]`
#[derive(Debug, Clone, Default)]
pub struct Ditto {
    /// Whether the door is on.
    pub enabled: bool,
    /// Prefix before `/_ditto`, without a trailing slash (`""` for none).
    pub path_prefix: String,
    /// Gate `/_ditto/ws` on an access token seen in a login success.
    pub require_known_token: bool,
}

impl Ditto {
    /// `<prefix>/_ditto/auth/challenge`
    pub fn challenge_path(&self) -> String {
        format!("{}/_ditto/auth/challenge", self.path_prefix)
    }

    /// `<prefix>/_ditto/auth/login`
    pub fn login_path(&self) -> String {
        format!("{}/_ditto/auth/login", self.path_prefix)
    }

    /// `<prefix>/_ditto/ws`
    pub fn ws_path(&self) -> String {
        format!("{}/_ditto/ws", self.path_prefix)
    }
}

/// `[ditto]`: a canonical path prefix, and the websocket gate only with the door on.
pub(super) fn validate(raw: &RawDitto, p: &mut Vec<Problem>) -> Ditto {
    let prefix = raw.path_prefix.trim_end_matches('/').to_owned();
    if !(prefix.is_empty() || prefix.starts_with('/')) || prefix.contains(['?', '#']) {
        p.push(Problem::new(
            "ditto.path_prefix",
            "must be empty or a path starting with / (e.g. \"/sync-gw\")",
        ));
    } else if !prefix.is_empty()
        && crate::canonical::canonical_path(&prefix).as_deref() != Ok(prefix.as_str())
    {
        // Requests are routed on their canonical path: another spelling would never match.
        p.push(Problem::new(
            "ditto.path_prefix",
            "must be canonical: no empty, . or .. segments, no escapes of unreserved characters",
        ));
    }
    if raw.require_known_token && !raw.enabled {
        p.push(Problem::new(
            "ditto.require_known_token",
            "needs ditto.enabled = true",
        ));
    }
    Ditto {
        enabled: raw.enabled,
        path_prefix: prefix,
        require_known_token: raw.require_known_token,
    }
}

/// Every key reloads live.
impl Section for Ditto {}
