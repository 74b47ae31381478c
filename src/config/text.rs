//! Config strings with a safe `Debug`: secrets shown as `<redacted>`, URLs without their user
//! info or query.

use serde::{Deserialize, Serialize};

/// A config string that may be a secret (a signing secret, an extra header's value): read as a
/// plain string, shown by `Debug` as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Written as `<redacted>` whatever it holds (`drawbridge config-keys` lists defaults only, but a
/// secret never leaves in any form).
impl Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl std::ops::Deref for SecretText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// A URL from the config: read as a plain string; `Debug` shows it without user info (a
/// password) or query (an API key), see [`shown_url`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UrlText(pub String);

impl std::fmt::Debug for UrlText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&shown_url(&self.0), f)
    }
}

/// Written as [`shown_url`] shows it.
impl Serialize for UrlText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&shown_url(&self.0))
    }
}

impl std::ops::Deref for UrlText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// `url` with any `user:password@` replaced, safe to log.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `url` safe to show: `user:password@` becomes `<redacted>@` and a query `?<redacted>`.
pub fn shown_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((before, _)) => (before, "?<redacted>"),
        None => (url, ""),
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("<redacted>@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{path}{query}")
}
