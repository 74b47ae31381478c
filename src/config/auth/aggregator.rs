//! `[aggregator]`: who may call the webhook aggregator door, and how old a signature may be.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::super::section::base64_secret;
use super::super::text::SecretText;

/// Default oldest accepted `ditto-signature` on the aggregator door.
pub const DEFAULT_SIGNATURE_MAX_AGE_SECONDS: u64 = 300;
/// By default the aggregator door answers only signed calls.
pub const DEFAULT_AGGREGATOR_ALLOW_UNSIGNED: bool = false;

/// `[aggregator]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAggregator {
    /// Base64 key the caller's `ditto-signature` must verify with; absent = the door refuses
    /// every call unless `allow_unsigned` is set.
    pub signing_secret: Option<SecretText>,
    /// Oldest accepted signature.
    pub max_signature_age_seconds: u64,
    /// Answer unsigned calls (no `signing_secret`): an explicit opt-in, warned about.
    pub allow_unsigned: bool,
}

impl Default for RawAggregator {
    fn default() -> Self {
        Self {
            signing_secret: None,
            max_signature_age_seconds: DEFAULT_SIGNATURE_MAX_AGE_SECONDS,
            allow_unsigned: DEFAULT_AGGREGATOR_ALLOW_UNSIGNED,
        }
    }
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

/// `[aggregator]`: who may call, and the oldest signature accepted.
pub(in crate::config) fn validate(r: &RawAggregator, p: &mut Vec<Problem>) -> AggregatorConfig {
    AggregatorConfig {
        access: access(r, p),
        max_signature_age: Duration::from_secs(r.max_signature_age_seconds),
    }
}

/// A secret, or else the explicit opt-in, or else a closed door; never both, since an unsigned
/// call would make the secret worthless.
fn access(r: &RawAggregator, p: &mut Vec<Problem>) -> AggregatorAccess {
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
