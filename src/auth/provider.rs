//! `Provider`: the named things that answer whether a token is good (webhook, jwt, group).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::check::{Check, Fingerprint, HttpClient, ProviderError};
use super::decision::Decision;
use super::group::{GroupProvider, Member};
use super::jwt::JwtProvider;
use super::webhook::WebhookProvider;
use crate::config::auth::{
    GroupConfig, JwksSource, JwtConfig, ProviderConfig, RequestFormat, Strategy, WebhookConfig,
};
use crate::metrics::AuthMetrics;

/// A configured provider.
pub(crate) enum Provider {
    Webhook(Box<WebhookProvider>),
    Jwt(JwtProvider),
    Group(GroupProvider<Provider>),
}

impl Provider {
    /// Asks the provider. Denials are `Ok(Decision::Deny)`; only failures are `Err`.
    pub(crate) fn check<'a>(
        &'a self,
        check: &'a Check<'a>,
    ) -> BoxFuture<'a, Result<Decision, ProviderError>> {
        let (kind, asked): (_, BoxFuture<'a, _>) = match self {
            Self::Webhook(w) => ("webhook", Box::pin(w.check(check))),
            Self::Jwt(j) => ("jwt", Box::pin(j.check(check))),
            Self::Group(g) => ("group", Box::pin(g.check(check))),
        };
        let span = crate::telemetry::child_span(|| {
            tracing::trace_span!(
                target: crate::telemetry::TARGET,
                "provider",
                drawbridge.provider = check.provider,
                drawbridge.provider.kind = kind,
                drawbridge.outcome = tracing::field::Empty,
            )
        });
        if span.is_disabled() {
            return asked;
        }
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = asked.await;
                let outcome = match &result {
                    Ok(d) => d.label(),
                    Err(e) => e.label(),
                };
                tracing::Span::current().record("drawbridge.outcome", outcome);
                result
            },
            span,
        ))
    }

    /// Ready to answer (a JWT provider has fetched its keys once).
    pub(crate) fn ready(&self) -> bool {
        match self {
            Self::Jwt(j) => j.ready(),
            Self::Webhook(_) | Self::Group(_) => true,
        }
    }
}

impl Member for Provider {
    fn ask<'a>(&'a self, check: &'a Check<'a>) -> BoxFuture<'a, Result<Decision, ProviderError>> {
        self.check(check)
    }
}

/// Feeds named, length-prefixed fields to a SHA-256, so no two settings run together.
struct Fields(Sha256);

impl Fields {
    fn bytes(&mut self, name: &str, value: &[u8]) {
        for part in [name.as_bytes(), value] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.bytes(name, value.as_bytes());
    }

    fn number(&mut self, name: &str, value: u128) {
        self.bytes(name, &value.to_be_bytes());
    }

    fn duration(&mut self, name: &str, value: std::time::Duration) {
        self.number(name, value.as_nanos());
    }

    fn flag(&mut self, name: &str, value: bool) {
        self.bytes(name, &[u8::from(value)]);
    }

    /// A value with a serde form (permissions, algorithms): its JSON, by value.
    fn json(&mut self, name: &str, value: &impl serde::Serialize) {
        self.bytes(name, &serde_json::to_vec(value).unwrap_or_default());
    }
}

/// Every setting of one webhook provider. Destructured whole, so a new field cannot be left out.
fn webhook_fields(f: &mut Fields, c: &WebhookConfig) {
    let WebhookConfig {
        url,
        timeout,
        request_format,
        signing_secret,
        headers,
        max_concurrency,
        retries,
        circuit_failures,
        circuit_cooldown,
    } = c;
    f.text("kind", "webhook");
    f.text("url", &url.to_string());
    f.duration("timeout", *timeout);
    f.text(
        "request_format",
        match request_format {
            RequestFormat::Legacy => "legacy",
            RequestFormat::V1 => "v1",
        },
    );
    match signing_secret {
        Some(secret) => f.bytes("signing_secret", secret),
        None => f.flag("unsigned", true),
    }
    let mut sorted: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    sorted.sort_unstable();
    f.number("headers", sorted.len() as u128);
    for (name, value) in sorted {
        f.bytes("header", name);
        f.bytes("value", value);
    }
    f.number("max_concurrency", *max_concurrency as u128);
    f.number("retries", u128::from(*retries));
    f.number("circuit_failures", u128::from(*circuit_failures));
    f.duration("circuit_cooldown", *circuit_cooldown);
}

/// Every setting of one JWT provider, and the contents of its keys file.
fn jwt_fields(f: &mut Fields, c: &JwtConfig) {
    let JwtConfig {
        issuer,
        audiences,
        keys,
        refresh,
        algorithms,
        user_claim,
        leeway,
        profile_claims,
        permissions,
    } = c;
    f.text("kind", "jwt");
    f.text("issuer", issuer);
    f.number("audiences", audiences.len() as u128);
    for aud in audiences {
        f.text("audience", aud);
    }
    match keys {
        JwksSource::Url(url) => f.text("jwks_url", &url.to_string()),
        JwksSource::File(path) => {
            f.bytes("jwks_file", path.as_os_str().as_encoded_bytes());
            f.bytes("jwks", &std::fs::read(path).unwrap_or_default());
        }
    }
    f.duration("refresh", *refresh);
    f.json("algorithms", algorithms);
    f.text("user_claim", user_claim);
    f.duration("leeway", *leeway);
    f.text("profile_email", &profile_claims.email);
    f.text("profile_displayname", &profile_claims.displayname);
    f.text("profile_image", &profile_claims.image);
    f.json("permissions", permissions);
}

/// The [`Fingerprint`] of every provider, by name.
pub(crate) fn fingerprints(
    configs: &BTreeMap<String, ProviderConfig>,
) -> HashMap<String, Fingerprint> {
    fn one(
        name: &str,
        configs: &BTreeMap<String, ProviderConfig>,
        done: &mut HashMap<String, Fingerprint>,
    ) -> Option<Fingerprint> {
        if let Some(f) = done.get(name) {
            return Some(*f);
        }
        let config = configs.get(name)?;
        let mut f = Fields(Sha256::new());
        match config {
            ProviderConfig::Webhook(c) => webhook_fields(&mut f, c),
            ProviderConfig::Jwt(c) => jwt_fields(&mut f, c),
            ProviderConfig::Group(GroupConfig {
                members,
                strategy,
                fallthrough_on_error,
            }) => {
                f.text("kind", "group");
                f.text(
                    "strategy",
                    match strategy {
                        Strategy::FirstSuccess => "first_success",
                        Strategy::All => "all",
                        Strategy::Ordered => "ordered",
                    },
                );
                f.flag("fallthrough_on_error", *fallthrough_on_error);
                f.number("members", members.len() as u128);
                for member in members {
                    f.text("member", member);
                    if let Some(digest) = one(member, configs, done) {
                        f.bytes("member_fingerprint", &digest);
                    }
                }
            }
        }
        let digest: Fingerprint = f.0.finalize().into();
        done.insert(name.to_owned(), digest);
        Some(digest)
    }
    let mut done = HashMap::new();
    for name in configs.keys() {
        one(name, configs, &mut done);
    }
    done
}

/// Builds every provider; groups get `Arc`s of their members (config validation rejected cycles).
/// A provider `reuse` returns is kept as it runs instead of being built again.
pub(crate) fn build_all(
    configs: &BTreeMap<String, ProviderConfig>,
    client: &HttpClient,
    metrics: &AuthMetrics,
    reuse: &dyn Fn(&str) -> Option<Arc<Provider>>,
) -> HashMap<String, Arc<Provider>> {
    fn build(
        name: &str,
        configs: &BTreeMap<String, ProviderConfig>,
        client: &HttpClient,
        metrics: &AuthMetrics,
        reuse: &dyn Fn(&str) -> Option<Arc<Provider>>,
        built: &mut HashMap<String, Arc<Provider>>,
    ) -> Option<Arc<Provider>> {
        if let Some(p) = built.get(name) {
            return Some(p.clone());
        }
        if let Some(p) = reuse(name).filter(|_| configs.contains_key(name)) {
            built.insert(name.to_owned(), p.clone());
            return Some(p);
        }
        let provider = match configs.get(name)? {
            ProviderConfig::Webhook(c) => Provider::Webhook(Box::new(WebhookProvider::new(
                name,
                c,
                client.clone(),
                metrics,
            ))),
            ProviderConfig::Jwt(c) => Provider::Jwt(JwtProvider::new(name, c, client.clone())),
            ProviderConfig::Group(c) => {
                let members = c
                    .members
                    .iter()
                    .filter_map(|m| {
                        build(m, configs, client, metrics, reuse, built).map(|p| (m.clone(), p))
                    })
                    .collect();
                Provider::Group(GroupProvider::new(c, members))
            }
        };
        let provider = Arc::new(provider);
        built.insert(name.to_owned(), provider.clone());
        Some(provider)
    }
    let mut built = HashMap::new();
    for name in configs.keys() {
        build(name, configs, client, metrics, reuse, &mut built);
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint_of(providers: &str) -> Fingerprint {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{providers}");
        let config = crate::config::Config::from_toml(
            &text,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        fingerprints(&config.auth.providers)["p"]
    }

    #[test]
    fn fingerprint_follows_every_setting_by_value() {
        let base = "[providers.p]\nkind = \"webhook\"\nurl = \"https://a.example/hook\"\nsigning_secret = \"c2VjcmV0\"\n[providers.p.headers]\nx-a = \"1\"\n";
        let same = fingerprint_of(base);
        assert_eq!(same, fingerprint_of(base), "a digest is stable");
        for changed in [
            base.replace("a.example", "b.example"),
            base.replace("c2VjcmV0", "b3RoZXI="),
            base.replace("x-a = \"1\"", "x-a = \"2\""),
            base.replace("\"webhook\"\n", "\"webhook\"\ntimeout_ms = 1234\n"),
            base.replace("\"webhook\"\n", "\"webhook\"\nrequest_format = \"v1\"\n"),
        ] {
            assert_ne!(same, fingerprint_of(&changed), "{changed}");
        }
        let group = "[providers.m]\nkind = \"webhook\"\nurl = \"https://a.example/hook\"\n\
                     [providers.p]\nkind = \"group\"\nmembers = [\"m\"]\nstrategy = \"ordered\"\n";
        assert_ne!(
            fingerprint_of(group),
            fingerprint_of(&group.replace("a.example", "b.example")),
            "a group follows its members"
        );
    }
}
