//! `[apps.<appID>]`: which providers each app accepts, and the app/provider pairs other sections
//! name (the forward-auth door's provider tokens, the code exchange).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::problem::Problem;
use super::providers::RawProvider;

/// `[apps.<appID>]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApp {
    /// Providers this app accepts.
    pub providers: Vec<String>,
}

/// An app and the provider that decides its tokens: the forward-auth door's provider tokens, and
/// the login API's code exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProvider {
    /// The app the token is decided for.
    pub app: String,
    /// The provider that decides it.
    pub provider: String,
}

/// `[apps.*]`: every provider an app names exists; no apps means any app.
pub(in crate::config) fn validate(
    apps: &BTreeMap<String, RawApp>,
    providers: &BTreeMap<String, RawProvider>,
    p: &mut Vec<Problem>,
) -> Option<BTreeMap<String, Vec<String>>> {
    if apps.is_empty() {
        return None;
    }
    let mut validated = BTreeMap::new();
    for (app, a) in apps {
        for (i, prov) in a.providers.iter().enumerate() {
            if !providers.contains_key(prov) {
                p.push(Problem::new(
                    format!("apps.{app}.providers.{i}"),
                    format!("no provider named {prov:?}"),
                ));
            }
        }
        validated.insert(app.clone(), a.providers.clone());
    }
    Some(validated)
}

/// The raw providers and apps another section's app/provider pair is checked against.
pub(in crate::config) struct Named<'a> {
    /// `[providers.*]`
    pub(in crate::config) providers: &'a BTreeMap<String, RawProvider>,
    /// `[apps.*]`
    pub(in crate::config) apps: &'a BTreeMap<String, RawApp>,
}

/// An app and provider named at `keys`, both required (else a problem at `needs`): the provider
/// configured, the app accepting it when apps are restricted.
pub(in crate::config) fn provider_ref(
    r: &Named<'_>,
    (app, provider): (Option<&str>, Option<&str>),
    (app_key, provider_key): (&str, &str),
    needs: &str,
    p: &mut Vec<Problem>,
) -> Option<AppProvider> {
    match (app, provider) {
        (Some(app), Some(provider)) if !app.is_empty() && !provider.is_empty() => {
            if !r.providers.contains_key(provider) {
                p.push(Problem::new(provider_key, "names no configured provider"));
            } else if !r.apps.is_empty()
                && !r
                    .apps
                    .get(app)
                    .is_some_and(|a| a.providers.iter().any(|x| x == provider))
            {
                p.push(Problem::new(
                    app_key,
                    format!("names no configured app that accepts {provider_key}"),
                ));
            }
            Some(AppProvider {
                app: app.to_owned(),
                provider: provider.to_owned(),
            })
        }
        _ => {
            p.push(Problem::new(
                needs,
                format!("needs {app_key} and {provider_key}"),
            ));
            None
        }
    }
}
