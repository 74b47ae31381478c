//! A `kind = "jwt"` provider's settings through the public config API: what the provider is
//! built from, and the settings refused before it could be built (symmetric or unknown
//! algorithms, an ambiguous key source, no issuer or audience).
//!
//! The provider's behaviour against a real JWKS server is tested next to it, in
//! `src/auth/jwt/tests.rs`; the login route over HTTP in `tests/jwt_login.rs`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use drawbridge::config::auth::{JwksSource, JwtConfig, ProviderConfig};
use drawbridge::config::raw::DEFAULT_JWKS_REFRESH_SECONDS;
use drawbridge::{Config, ConfigError};
use jsonwebtoken::Algorithm;

fn parse(provider: &str) -> Result<Config, ConfigError> {
    let text = format!("[upstream]\nurl = \"http://127.0.0.1:8080\"\n[providers.oidc]\n{provider}");
    Config::from_toml(&text, &HashMap::new())
}

fn jwt(provider: &str) -> JwtConfig {
    let config = parse(provider).expect("config is valid");
    match config.auth.providers.get("oidc") {
        Some(ProviderConfig::Jwt(j)) => j.clone(),
        other => panic!("not a jwt provider: {other:?}"),
    }
}

fn problems(provider: &str) -> Vec<String> {
    parse(provider)
        .expect_err("config should be rejected")
        .lines()
}

const MINIMAL: &str = r#"
kind = "jwt"
issuer = "https://issuer.test/"
audiences = ["drawbridge"]
jwks_url = "https://issuer.test/.well-known/jwks.json"
"#;

#[test]
fn jwt_provider_minimal_settings_get_safe_defaults() {
    let j = jwt(MINIMAL);
    assert_eq!(j.issuer, "https://issuer.test/");
    assert_eq!(j.audiences, ["drawbridge"]);
    assert!(
        matches!(&j.keys, JwksSource::Url(u) if u == "https://issuer.test/.well-known/jwks.json")
    );
    assert_eq!(
        j.algorithms,
        [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
    );
    assert_eq!(j.user_claim, "sub");
    assert_eq!(j.leeway, Duration::ZERO);
    assert_eq!(j.refresh, Duration::from_secs(DEFAULT_JWKS_REFRESH_SECONDS));
    assert_eq!(j.permissions, Default::default());
}

#[test]
fn jwt_provider_full_settings_are_kept_with_placeholders_verbatim() {
    let j = jwt(r#"
kind = "jwt"
issuer = "https://issuer.test/"
audiences = ["a", "b"]
keys_file = "/etc/drawbridge/jwks.json"
jwks_refresh_seconds = 60
algorithms = ["PS256", "ES384"]
user_claim = "email"
leeway_seconds = 30
[providers.oidc.permissions]
remoteQuery = false
[providers.oidc.permissions.read]
everything = true
[providers.oidc.permissions.write.queriesByCollection]
notes = ["owner == '{sub}'"]
"#);
    assert!(
        matches!(&j.keys, JwksSource::File(p) if p == std::path::Path::new("/etc/drawbridge/jwks.json"))
    );
    assert_eq!(j.refresh, Duration::from_secs(60));
    assert_eq!(j.algorithms, [Algorithm::PS256, Algorithm::ES384]);
    assert_eq!(j.user_claim, "email");
    assert_eq!(j.leeway, Duration::from_secs(30));
    assert!(j.permissions.read.everything);
    assert_eq!(
        j.permissions.write.queries_by_collection["notes"],
        ["owner == '{sub}'"]
    );
    assert_eq!(j.permissions.remote_query, Some(false));
}

#[test]
fn jwt_provider_symmetric_or_unknown_algorithm_is_rejected() {
    for (alg, why) in [
        ("HS256", "symmetric"),
        ("HS384", "symmetric"),
        ("HS512", "symmetric"),
        ("none", "unknown algorithm"),
        ("RSA-OAEP", "unknown algorithm"),
    ] {
        let l = problems(&format!("{MINIMAL}algorithms = [\"ES256\", \"{alg}\"]\n"));
        assert_eq!(l.len(), 1, "{alg}: {l:?}");
        assert!(
            l[0].starts_with("providers.oidc.algorithms.1: ") && l[0].contains(why),
            "{alg}: {l:?}"
        );
    }
    let l = problems(&format!("{MINIMAL}algorithms = []\n"));
    assert!(l[0].starts_with("providers.oidc.algorithms: "), "{l:?}");
}

#[test]
fn jwt_provider_needs_exactly_one_key_source() {
    let both = format!("{MINIMAL}keys_file = \"jwks.json\"\n");
    let neither = MINIMAL.replace("jwks_url = ", "# jwks_url = ");
    for text in [both, neither] {
        let l = problems(&text);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].starts_with("providers.oidc.jwks_url: set exactly one"),
            "{l:?}"
        );
    }
    let l = problems(&MINIMAL.replace("https://issuer.test/.well-known", "ftp://issuer.test"));
    assert!(l[0].starts_with("providers.oidc.jwks_url: "), "{l:?}");
}

#[test]
fn jwt_provider_without_issuer_or_audience_is_rejected() {
    let l = problems(
        &MINIMAL
            .replace("issuer = ", "# issuer = ")
            .replace("audiences = ", "# audiences = "),
    );
    assert!(
        l.iter().any(|p| p.starts_with("providers.oidc.issuer: ")),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|p| p.starts_with("providers.oidc.audiences: ")),
        "{l:?}"
    );
}
