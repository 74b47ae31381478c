//! The webhook aggregator door: `POST /auth/webhook[/<provider>]` in the Ditto webhook contract,
//! so a sync server with one webhook URL per provider can point it here.
//!
//! Its answer names the user and permissions behind any token, so it is closed by default: only
//! callers signing with `aggregator.signing_secret` are answered, or anyone when the operator has
//! opted into `aggregator.allow_unsigned`. The gateway rate-limits it per client IP before it runs.
//! A signed call is answered once: a replay within its age window is refused, on this replica
//! (memory) and, in cluster mode, on every other (`SET NX` in Redis until the window closes).

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{parse_json, read_body};
use crate::auth::signature;
use crate::auth::{Decision, Door};
use crate::body::Body;
use crate::clock::unix_now;
use crate::config::auth::{AggregatorAccess, AggregatorConfig};
use crate::respond::{self, DoorError};
use crate::state::{Ctx, Shared};

/// Either request shape: legacy `appID`, or v1 `databaseID` + `version`.
#[derive(Deserialize)]
struct WebhookRequest {
    #[serde(rename = "appID")]
    app_id: Option<String>,
    #[serde(rename = "databaseID")]
    database_id: Option<String>,
    provider: Option<String>,
    token: String,
}

/// Cluster key kind of the signed calls already answered.
const SEEN_KIND: &str = "agg-seen";

/// Whether the call signed at `t` over `body` is new: remembered here and, in cluster mode, in
/// Redis until its window closes. With Redis away, this replica's memory is all there is.
async fn first_sighting(shared: &Shared, t: u64, body: &[u8], max_age: u64) -> bool {
    let id = signature::call_id(t, body);
    let until = t.saturating_add(max_age).saturating_add(1);
    if !shared.signed_calls.first_sighting(id, until) {
        return false;
    }
    let Some(cluster) = &shared.cluster else {
        return true;
    };
    let ttl = std::time::Duration::from_secs(until.saturating_sub(unix_now()).max(1));
    cluster.claim(SEEN_KIND, &hex::encode(id), ttl).await != Some(false)
}

fn reply(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    respond::json(status, &v)
}

/// Says at start when the door is disabled (an unsigned door is among the config's warnings).
pub(crate) fn announce(config: &AggregatorConfig) {
    if matches!(config.access, AggregatorAccess::Disabled) {
        tracing::info!(
            "webhook aggregator disabled: POST /auth/webhook refuses every call until aggregator.signing_secret is set"
        );
    }
}

/// Answers `/auth/webhook` (`path_provider` = None) or `/auth/webhook/<provider>`.
///
/// # Errors
/// The [`DoorError`] the call is refused with. A denial is no error: it is the webhook reply
/// `authenticated: false`.
pub(crate) async fn handle(
    cx: Ctx<'_>,
    path_provider: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, DoorError> {
    let (shared, live) = (cx.shared, cx.live);
    let config = &live.config;
    // A closed door refuses before reading anything, whatever the method or body.
    if matches!(config.auth.aggregator.access, AggregatorAccess::Disabled) {
        tracing::warn!(
            "aggregator call refused: the door is disabled until aggregator.signing_secret is set"
        );
        return Err(DoorError::AggregatorDisabled);
    }
    if req.method() != Method::POST {
        return Err(DoorError::MethodNotAllowed);
    }
    let (parts, body) = read_body(req, config.limits.header_read_timeout).await?;
    if let AggregatorAccess::Signed(key) = &config.auth.aggregator.access {
        let header = parts
            .headers
            .get(signature::HEADER)
            .and_then(|v| v.to_str().ok());
        let max_age = config.auth.aggregator.max_signature_age.as_secs();
        match signature::verify(key, header, &body, unix_now(), max_age) {
            Err(error) => {
                tracing::warn!(%error, "aggregator call refused");
                return Err(DoorError::BadSignature);
            }
            Ok(t) => {
                if !first_sighting(shared, t, &body, max_age).await {
                    tracing::warn!(
                        "aggregator call refused: this signed call was answered before (replay)"
                    );
                    return Err(DoorError::BadSignature);
                }
            }
        }
    }
    let w: WebhookRequest = parse_json(&body)?;
    let provider = match (path_provider, w.provider.as_deref()) {
        (Some(p), Some(b)) if p != b => {
            return Err(DoorError::Malformed("provider in the path and body differ"));
        }
        (Some(p), _) | (None, Some(p)) => p.to_owned(),
        (None, None) => return Err(DoorError::Malformed("provider: missing")),
    };
    let Some(app) = w.app_id.or(w.database_id) else {
        return Err(DoorError::Malformed("appID or databaseID: missing"));
    };
    Ok(
        match live
            .auth
            .decide(Door::Aggregator, &app, &provider, &w.token)
            .await?
        {
            Decision::Allow(a) => reply(
                StatusCode::OK,
                serde_json::json!({
                    "authenticated": true,
                    "expirationSeconds": a.expires_at.saturating_sub(unix_now()),
                    "userID": a.user_id,
                    "permissions": *a.permissions,
                    "clientInfo": a.client_info,
                    "identityServiceMetadata": a.metadata,
                }),
            ),
            Decision::Deny(d) => reply(
                StatusCode::OK,
                serde_json::json!({"authenticated": false, "clientInfo": d.client_info}),
            ),
        },
    )
}
