//! The webhook provider: the Ditto webhook contract over the shared client, with signing,
//! a concurrency cap, retries on connect errors, and a circuit breaker.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use rand::Rng;
use serde::Deserialize;
use sha2::Digest;
use tokio::sync::Semaphore;

use super::breaker::Breaker;
use super::check::{Check, HttpClient, ProviderError};
use super::decision::{Allow, CompactJson, Decision, Profile, Reason};
use super::signature;
use crate::clock::unix_now;
use crate::config::auth::{RequestFormat, WebhookConfig};
use crate::metrics::AuthMetrics;
use crate::permissions::Permissions;

/// Replies larger than this are refused unread.
pub(crate) const MAX_REPLY_BYTES: usize = 1024 * 1024;
/// First retry backoff; doubled per attempt, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(25);

/// A webhook named in the config.
pub(crate) struct WebhookProvider {
    name: String,
    config: WebhookConfig,
    client: HttpClient,
    permits: Semaphore,
    breaker: Breaker,
    metrics: AuthMetrics,
}

impl WebhookProvider {
    pub(crate) fn new(
        name: &str,
        config: &WebhookConfig,
        client: HttpClient,
        metrics: &AuthMetrics,
    ) -> Self {
        let gauge = metrics.circuit_open.with_label_values(&[name]);
        Self {
            name: name.to_owned(),
            permits: Semaphore::new(config.max_concurrency),
            breaker: Breaker::new(
                name,
                config.circuit_failures,
                config.circuit_cooldown,
                gauge,
            ),
            config: config.clone(),
            client,
            metrics: metrics.clone(),
        }
    }

    pub(crate) async fn check(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        // The breaker hands out a permit that gives its slot back if this future is dropped
        // mid-call (the client hung up, or a group let another member win).
        let guarded = self.breaker.call(async {
            tokio::time::timeout(self.config.timeout, self.call(check))
                .await
                .unwrap_or(Err(ProviderError::Timeout))
        });
        let result = guarded.await.unwrap_or(Err(ProviderError::CircuitOpen));
        let outcome = match &result {
            Ok(Decision::Allow(_)) => "allow",
            Ok(Decision::Deny(_)) => "deny",
            Err(e) => e.label(),
        };
        self.metrics
            .provider_requests
            .with_label_values(&[&self.name, outcome])
            .inc();
        if let Err(error) = &result {
            tracing::warn!(provider = %self.name, %error, cause = ?std::error::Error::source(error).map(ToString::to_string), "provider call failed");
        }
        result
    }

    fn body(&self, check: &Check<'_>) -> Bytes {
        let v = match self.config.request_format {
            RequestFormat::Legacy => serde_json::json!({
                "appID": check.app, "provider": check.provider, "token": check.token,
            }),
            RequestFormat::V1 => serde_json::json!({
                "databaseID": check.app, "version": "1", "provider": check.provider, "token": check.token,
            }),
        };
        Bytes::from(v.to_string())
    }

    fn request(&self, body: &Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.config.url.clone();
        let h = req.headers_mut();
        h.extend(self.config.headers.clone());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(key) = &self.config.signing_secret
            && let Ok(v) = HeaderValue::from_str(&signature::sign(key, unix_now(), body))
        {
            h.insert(signature::HEADER, v);
        }
        req
    }

    async fn call(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ProviderError::CircuitOpen)?;
        let body = self.body(check);
        let mut attempt = 0;
        let resp = loop {
            let span = crate::telemetry::child_span(|| {
                tracing::trace_span!(
                    target: crate::telemetry::TARGET,
                    "webhook_request",
                    otel.kind = "client",
                    drawbridge.provider = %self.name,
                    drawbridge.attempt = attempt + 1,
                    http.response.status_code = tracing::field::Empty,
                )
            });
            let mut req = self.request(&body);
            span.in_scope(|| crate::telemetry::inject(req.headers_mut()));
            let sent =
                tracing::Instrument::instrument(self.client.request(req), span.clone()).await;
            if let Ok(resp) = &sent {
                span.record("http.response.status_code", resp.status().as_u16());
            }
            match sent {
                Ok(resp) => break resp,
                Err(e) if e.is_connect() && attempt < self.config.retries => {
                    let cap = RETRY_BASE.saturating_mul(1 << attempt.min(8));
                    let wait = rand::rng().random_range(Duration::ZERO..=cap);
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(e) if e.is_connect() => return Err(ProviderError::Connect(e.into())),
                Err(e) => return Err(ProviderError::Request(e.into())),
            }
        };
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|_| ProviderError::Reply("reply too large or cut short"))?
            .to_bytes();
        match status {
            StatusCode::OK => parse_reply(&bytes, check),
            // A 401 is a denial; keep its clientInfo if the body says one.
            StatusCode::UNAUTHORIZED => {
                let client_info = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("clientInfo").cloned());
                Ok(Decision::deny(
                    Reason::InvalidCredentials,
                    "the provider refused the token",
                    client_info,
                ))
            }
            other => Err(ProviderError::Status(other)),
        }
    }
}

/// The webhook reply, by the contract. Unknown fields are ignored; known ones must have their types.
#[derive(Debug, Deserialize)]
struct Reply {
    authenticated: Option<bool>,
    /// The spelling older docs and samples use.
    authenticate: Option<bool>,
    #[serde(rename = "expirationSeconds")]
    expiration_seconds: Option<u32>,
    #[serde(rename = "userID")]
    user_id: Option<String>,
    permissions: Option<Permissions>,
    #[serde(rename = "clientInfo")]
    client_info: Option<serde_json::Value>,
    #[serde(rename = "identityServiceMetadata")]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// drawbridge's extension: the user's profile, read leniently (it never decides a login).
    #[serde(rename = "userInfo")]
    user_info: Option<serde_json::Value>,
}

/// The profile of a reply's `userInfo`: restdb's `email`, `displayname`, `image` (or OpenID
/// Connect's `name`, `picture`); anything but a non-empty string is ignored.
fn profile(user_info: Option<&serde_json::Value>) -> Option<Profile> {
    let info = user_info?.as_object()?;
    let read = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| info.get(*k).and_then(serde_json::Value::as_str))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Profile {
        email: read(&["email"]),
        displayname: read(&["displayname", "name"]),
        image: read(&["image", "picture"]),
    }
    .non_empty()
}

/// Parses a 200 reply strictly: `authenticated` (or `authenticate`) must be a bool, and an allow
/// needs a positive `expirationSeconds`.
pub(crate) fn parse_reply(bytes: &[u8], check: &Check<'_>) -> Result<Decision, ProviderError> {
    let reply: Reply =
        serde_json::from_slice(bytes).map_err(|_| ProviderError::Reply("not a webhook reply"))?;
    let Some(authenticated) = reply.authenticated.or(reply.authenticate) else {
        return Err(ProviderError::Reply("no authenticated field"));
    };
    if !authenticated {
        return Ok(Decision::deny(
            Reason::InvalidCredentials,
            "the provider refused the token",
            reply.client_info,
        ));
    }
    let seconds = match reply.expiration_seconds {
        Some(s) if s > 0 => s,
        _ => return Err(ProviderError::Reply("an allow needs expirationSeconds")),
    };
    let user_id = match reply.user_id {
        Some(u) if !u.is_empty() => u,
        // No userID: a stable pseudonym derived from the provider and token, never the token itself.
        _ => {
            let digest = sha2::Sha256::new()
                .chain_update(check.provider.as_bytes())
                .chain_update([0])
                .chain_update(check.token.as_bytes())
                .finalize();
            format!("anon-{}", hex::encode(&digest[..8]))
        }
    };
    Ok(Decision::Allow(std::sync::Arc::new(Allow {
        user_id,
        expires_at: unix_now() + u64::from(seconds),
        permissions: std::sync::Arc::new(reply.permissions.unwrap_or_default()),
        profile: profile(reply.user_info.as_ref()).map(Box::new),
        client_info: reply.client_info.map(CompactJson::from),
        metadata: reply
            .metadata
            .map(|m| CompactJson::from(serde_json::Value::Object(m))),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: Check<'static> = Check {
        app: "app",
        provider: "p",
        token: "t",
    };

    #[test]
    fn both_spellings_of_authenticated_are_accepted() {
        for field in ["authenticated", "authenticate"] {
            let body = format!(r#"{{"{field}": true, "expirationSeconds": 60, "userID": "u1"}}"#);
            let Ok(Decision::Allow(a)) = parse_reply(body.as_bytes(), &CHECK) else {
                panic!("{field} not accepted");
            };
            assert_eq!(a.user_id, "u1");
        }
    }

    #[test]
    fn denial_keeps_client_info() {
        let d = parse_reply(
            br#"{"authenticated": false, "clientInfo": {"why": "expired"}}"#,
            &CHECK,
        )
        .unwrap();
        let Decision::Deny(d) = d else { panic!() };
        assert_eq!(
            d.client_info,
            Some(serde_json::json!({"why": "expired"}).into())
        );
    }

    #[test]
    fn contract_violations_are_errors_not_decisions() {
        for bad in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"userID": "u"}"#,
            br#"{"authenticated": "yes"}"#,
            br#"{"authenticated": true}"#,
            br#"{"authenticated": true, "expirationSeconds": 0}"#,
            br#"{"authenticated": true, "expirationSeconds": -5}"#,
            br#"{"authenticated": true, "expirationSeconds": 60, "permissions": {"read": {"everything": "yes"}}}"#,
        ] {
            assert!(
                matches!(parse_reply(bad, &CHECK), Err(ProviderError::Reply(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn missing_user_id_becomes_a_pseudonym_not_the_token() {
        let Ok(Decision::Allow(a)) = parse_reply(
            br#"{"authenticated": true, "expirationSeconds": 5}"#,
            &CHECK,
        ) else {
            panic!()
        };
        assert!(a.user_id.starts_with("anon-"), "{}", a.user_id);
        assert_eq!(a.user_id.len(), "anon-".len() + 16);
    }
}
