//! `[native]`: the native login API's code exchange (restdb's `POST /auth/token {"code"}`).

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::apps::{AppProvider, Named, provider_ref};

/// `[native]`: the native login API.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNative {
    /// The provider `POST /auth/token {"code"}` logs in through (restdb's code exchange).
    pub code_provider: Option<String>,
    /// The app that login is for.
    pub code_app: Option<String>,
}

/// `[native]`: the code exchange names a configured provider and an app that accepts it, both or
/// neither.
pub(in crate::config) fn validate(
    n: &RawNative,
    r: &Named<'_>,
    p: &mut Vec<Problem>,
) -> Option<AppProvider> {
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
