//! The Ditto SDK door: `/_ditto/auth/challenge` and `/_ditto/auth/login` relayed byte for byte to
//! the sync server, the login pre-checked with drawbridge's own providers and cache, and the access
//! tokens of relayed successes remembered for the Ditto websocket path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use moka::Expiry;
use sha2::{Digest, Sha256};

use super::read_body;
use crate::auth::{Decision, Door, Reason};
use crate::body::Body;
use crate::clock::unix_now;
use crate::config::Config;
use crate::forward::{self, Peer};
use crate::gateway::Shared;
use crate::gateway::respond;
use crate::headers;

/// Largest login reply read to learn its token.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// An access token the sync server issued in a login success drawbridge relayed.
#[derive(Debug, Clone)]
pub(crate) struct KnownToken {
    /// `userId` of the reply.
    pub(crate) user: String,
    /// `accessExpiry` in Unix seconds.
    pub(crate) expires_at: u64,
}

struct UntilExpiry;

impl Expiry<[u8; 32], Arc<KnownToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Arc<KnownToken>,
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(v.expires_at.saturating_sub(unix_now())))
    }
}

/// Access tokens seen in relayed successes, by SHA-256 (never the token itself), until they expire.
pub(crate) struct KnownTokens {
    cache: moka::sync::Cache<[u8; 32], Arc<KnownToken>>,
}

impl KnownTokens {
    pub(crate) fn new() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn learn(&self, token: &str, known: KnownToken) {
        if known.expires_at > unix_now() {
            self.cache.insert(Self::key(token), Arc::new(known));
        }
    }

    pub(crate) fn get(&self, token: &str) -> Option<Arc<KnownToken>> {
        self.cache
            .get(&Self::key(token))
            .filter(|k| k.expires_at > unix_now())
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The SDK's failure shape, with the provider's clientInfo.
fn failure(
    status: StatusCode,
    reason: Reason,
    description: &str,
    client_info: Option<&serde_json::Value>,
) -> Response<Body> {
    respond::json(
        status,
        &serde_json::json!({
            "result": "failure",
            "reason": reason.as_str(),
            "description": description,
            "additionalDebugDescription": "answered by the drawbridge gateway",
            "clientInfo": client_info,
        }),
    )
}

/// Relays `/_ditto/auth/login` after the pre-check.
pub(crate) async fn login(
    shared: &Shared,
    req: Request<Incoming>,
    peer: Peer,
    config: &Config,
) -> Response<Body> {
    let (mut parts, body) =
        match read_body(req, shared.config.load().limits.header_read_timeout).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
    let (Some(app), Some(provider), Some(token)) = (
        form_field(&body, "appId"),
        form_field(&body, "provider"),
        form_field(&body, "token"),
    ) else {
        return failure(
            StatusCode::BAD_REQUEST,
            Reason::MalformedRequest,
            "the login form needs appId, provider and token",
            None,
        );
    };
    match shared
        .auth
        .decide(Door::Ditto, &app, &provider, &token)
        .await
    {
        Ok(Decision::Allow(_)) => {}
        Ok(Decision::Deny(deny)) => {
            return failure(
                StatusCode::UNAUTHORIZED,
                Reason::InvalidCredentials,
                &deny.description,
                deny.client_info.as_ref(),
            );
        }
        Err(error) => {
            let status = respond::provider_error(&error).status();
            return failure(
                status,
                error.reason(),
                "the identity provider could not be asked",
                None,
            );
        }
    }

    // Allowed: the original bytes go to the sync server, and its reply comes back unchanged.
    forward::rewrite_head(&mut parts, peer, config, false);
    let upstream = Request::from_parts(
        parts,
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    let resp = match shared.forwarder.send(upstream, config).await {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%error, "ditto login relay failed");
            return respond::upstream_error(&error);
        }
    };
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    let bytes = match Limited::new(body, MAX_REPLY_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return respond::error(StatusCode::BAD_GATEWAY, "upstream login reply unreadable");
        }
    };
    if parts.status == StatusCode::OK {
        learn(shared, &bytes);
    }
    Response::from_parts(
        parts,
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

/// Remembers `accessToken` from a `"result":"success"` reply until its `accessExpiry`.
fn learn(shared: &Shared, reply: &Bytes) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(reply) else {
        return;
    };
    if v["result"] != "success" {
        return;
    }
    let (Some(token), Some(expiry)) = (v["accessToken"].as_str(), v["accessExpiry"].as_str())
    else {
        tracing::warn!("ditto login success without accessToken/accessExpiry; nothing learned");
        return;
    };
    let Ok(expiry) =
        time::OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339)
    else {
        tracing::warn!("ditto login success with an unreadable accessExpiry; nothing learned");
        return;
    };
    let user = v["userId"].as_str().unwrap_or_default().to_owned();
    let expires_at = u64::try_from(expiry.unix_timestamp()).unwrap_or(0);
    shared
        .ditto_tokens
        .learn(token, KnownToken { user, expires_at });
}

/// The access token of a Ditto websocket handshake: `X-DITTO-AUTH`, Bearer, or a cookie whose value is known.
pub(crate) fn known_token(shared: &Shared, headers: &http::HeaderMap) -> Option<Arc<KnownToken>> {
    if let Some(t) = headers.get("x-ditto-auth").and_then(|v| v.to_str().ok()) {
        return shared.ditto_tokens.get(t.trim());
    }
    if let Some(t) = super::bearer(headers) {
        if let Some(k) = shared.ditto_tokens.get(t) {
            return Some(k);
        }
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find_map(|(_, v)| shared.ditto_tokens.get(v))
}
