//! What a reload to another config gives up: the restrictions the running config has and the
//! next one lacks.

use super::Config;
use super::auth::{AggregatorAccess, ProviderConfig, Strategy};

// === impl Config ===

impl Config {
    /// The keys at which `next` lifts a restriction that `self` (running) has: the apps list
    /// gone (any app), an app accepting a provider it did not, the client CA gone, a webhook's
    /// signing secret gone, an `all` group asking fewer members, the aggregator open to unsigned
    /// calls, a newly public upgrade path, the Ditto websocket gate or the login rate limit off.
    /// A reload applies them all the same; the operator hears about it.
    pub fn removed_restrictions(&self, next: &Self) -> Vec<String> {
        let mut keys = Vec::new();
        let (a, b) = (&self.auth, &next.auth);
        match (&a.apps, &b.apps) {
            (Some(_), None) => keys.push("apps".to_owned()),
            (Some(before), Some(after)) => {
                for (app, providers) in after {
                    let widened = before
                        .get(app)
                        .is_some_and(|old| providers.iter().any(|p| !old.contains(p)));
                    if widened {
                        keys.push(format!("apps.{app}.providers"));
                    }
                }
            }
            (None, _) => {}
        }
        if let (Some(before), Some(after)) = (&self.tls, &next.tls)
            && before.client_ca_file.is_some()
            && after.client_ca_file.is_none()
        {
            keys.push("tls.client_ca_file".to_owned());
        }
        for (name, before) in &a.providers {
            match (before, b.providers.get(name)) {
                (ProviderConfig::Webhook(old), Some(ProviderConfig::Webhook(new)))
                    if old.signing_secret.is_some() && new.signing_secret.is_none() =>
                {
                    keys.push(format!("providers.{name}.signing_secret"));
                }
                (ProviderConfig::Group(old), Some(ProviderConfig::Group(new)))
                    if old.strategy == Strategy::All =>
                {
                    if new.strategy != Strategy::All {
                        keys.push(format!("providers.{name}.strategy"));
                    } else if old.members.iter().any(|m| !new.members.contains(m)) {
                        keys.push(format!("providers.{name}.members"));
                    }
                }
                _ => {}
            }
        }
        if a.aggregator.access != AggregatorAccess::Unsigned
            && b.aggregator.access == AggregatorAccess::Unsigned
        {
            keys.push("aggregator.allow_unsigned".to_owned());
        }
        let public = &self.upstream.public_upgrade_paths;
        if next
            .upstream
            .public_upgrade_paths
            .iter()
            .any(|p| !public.contains(p))
        {
            keys.push("upstream.public_upgrade_paths".to_owned());
        }
        if self.ditto.require_known_token && next.ditto.enabled && !next.ditto.require_known_token {
            keys.push("ditto.require_known_token".to_owned());
        }
        if a.rate_limit.is_some() && b.rate_limit.is_none() {
            keys.push("rate_limit.enabled".to_owned());
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::settle::{MAX_RELOAD_SETTLE_MS, MIN_RELOAD_SETTLE_MS};
    use super::*;
    use crate::config::System;

    /// A plaintext config with `upstream` lines in `[upstream]` and `rest` after it.
    fn config(upstream: &str, rest: &str) -> Config {
        let text = format!(
            "[listen]\nplaintext = true\n[upstream]\nurl = \"http://127.0.0.1:1\"\n{upstream}{rest}"
        );
        Config::from_toml(&text, &System).unwrap()
    }

    const STRICT: &str = "[providers.a]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:2\"\nsigning_secret = \"c2VjcmV0\"\n\
        [providers.b]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:3\"\n\
        [providers.both]\nkind = \"group\"\nmembers = [\"a\", \"b\"]\nstrategy = \"all\"\n\
        [apps.app]\nproviders = [\"a\"]\n";

    #[test]
    fn removed_restrictions_names_each_lifted_key_and_nothing_for_a_tightening() {
        let strict = config("", STRICT);
        let loose = config(
            "public_upgrade_paths = [\"/public\"]\n",
            "[providers.a]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:2\"\n\
             [providers.b]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:3\"\n\
             [providers.both]\nkind = \"group\"\nmembers = [\"a\"]\nstrategy = \"all\"\n\
             [rate_limit]\nenabled = false\n[aggregator]\nallow_unsigned = true\n",
        );
        assert_eq!(
            strict.removed_restrictions(&loose),
            [
                "apps",
                "providers.a.signing_secret",
                "providers.both.members",
                "aggregator.allow_unsigned",
                "upstream.public_upgrade_paths",
                "rate_limit.enabled",
            ]
        );
        assert!(loose.removed_restrictions(&strict).is_empty());
        assert!(strict.removed_restrictions(&strict).is_empty());

        let widened = config(
            "",
            &STRICT
                .replace("providers = [\"a\"]", "providers = [\"a\", \"b\"]")
                .replace("strategy = \"all\"", "strategy = \"first_success\""),
        );
        assert_eq!(
            strict.removed_restrictions(&widened),
            ["apps.app.providers", "providers.both.strategy"]
        );
    }

    #[test]
    fn settle_ms_outside_its_bounds_is_refused() {
        for bad in [0, MIN_RELOAD_SETTLE_MS - 1, MAX_RELOAD_SETTLE_MS + 1] {
            let text = format!(
                "[listen]\nplaintext = true\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[reload]\nsettle_ms = {bad}\n"
            );
            let error = Config::from_toml(&text, &System).unwrap_err();
            assert!(
                error
                    .lines()
                    .iter()
                    .any(|l| l.starts_with("reload.settle_ms")),
                "{bad}: {error}"
            );
        }
        assert_eq!(config("", "").reload.settle, Duration::from_millis(500));
    }
}
