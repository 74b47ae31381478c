//! `[native]`: the native login API's reply shape and code exchange (restdb's `POST /auth/token {"code"}`).

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::apps::{AppProvider, Named, provider_ref};

/// `native.token_field`: session replies name the token `sessionToken`, the native API's name.
pub const DEFAULT_NATIVE_TOKEN_FIELD: &str = "sessionToken";

/// `[native]`: the native login API.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNative {
    /// The provider `POST /auth/token {"code"}` logs in through (restdb's code exchange).
    pub code_provider: Option<String>,
    /// The app that login is for.
    pub code_app: Option<String>,
    /// The JSON field that carries the session token in login and refresh replies:
    /// `sessionToken` (native clients) or `token` (restdb clients).
    pub token_field: String,
}

impl Default for RawNative {
    fn default() -> Self {
        Self {
            code_provider: None,
            code_app: None,
            token_field: DEFAULT_NATIVE_TOKEN_FIELD.to_owned(),
        }
    }
}

/// `native.token_field`: the one JSON field a login or refresh reply carries its token in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenField {
    /// `sessionToken`, the native login API's name.
    #[default]
    SessionToken,
    /// `token`, restdb's name.
    Token,
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

/// `native.token_field`: `sessionToken` or `token`.
pub(in crate::config) fn token_field(n: &RawNative, p: &mut Vec<Problem>) -> TokenField {
    match n.token_field.as_str() {
        "sessionToken" => TokenField::SessionToken,
        "token" => TokenField::Token,
        _ => {
            p.push(Problem::new(
                "native.token_field",
                "must be \"sessionToken\" (native clients) or \"token\" (restdb clients)",
            ));
            TokenField::SessionToken
        }
    }
}
