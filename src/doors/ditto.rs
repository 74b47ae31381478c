//! The Ditto SDK door: `/_ditto/auth/challenge` and `/_ditto/auth/login` relayed byte for byte to
//! the sync server, the login pre-checked with drawbridge's own providers and cache, and the access
//! tokens of relayed successes remembered for the Ditto websocket path.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::read_body;
use crate::auth::grant::Grant;
use crate::auth::known_tokens::{KnownToken, KnownTokens};
use crate::auth::{Decision, Door};
use crate::body::{Body, full};
use crate::forward::{self, Peer};
use crate::headers;
use crate::respond::DoorError;
use crate::state::Ctx;

/// Largest login reply read to learn its token.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Relays `/_ditto/auth/login` after the pre-check.
///
/// # Errors
/// The [`DoorError`] the login is refused with: a malformed form, a denial, a provider or
/// upstream failure.
pub(crate) async fn login(
    cx: Ctx<'_>,
    req: Request<Incoming>,
    peer: Peer,
) -> Result<Response<Body>, DoorError> {
    let live = cx.live;
    let config = &live.config;
    let (mut parts, body) = read_body(req, config.limits.header_read_timeout).await?;
    let (Some(app), Some(provider), Some(token)) = (
        form_field(&body, "appId"),
        form_field(&body, "provider"),
        form_field(&body, "token"),
    ) else {
        return Err(DoorError::Malformed(
            "the login form needs appId, provider and token",
        ));
    };
    if let Decision::Deny(deny) = live
        .auth
        .decide(Door::Ditto, &app, &provider, &token)
        .await?
    {
        return Err(DoorError::Denied(deny));
    }

    // Allowed: the original bytes go to the sync server, and its reply comes back unchanged.
    forward::rewrite_head(&mut parts, peer, config, live.sessions.issuer(), false);
    let upstream = Request::from_parts(parts, full(body));
    let resp = live
        .forwarder
        .send(upstream, config)
        .await
        .inspect_err(|error| tracing::warn!(%error, "ditto login relay failed"))?;
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    let bytes = Limited::new(body, MAX_REPLY_BYTES)
        .collect()
        .await
        .map_err(|_| DoorError::UpstreamReply)?
        .to_bytes();
    if parts.status == StatusCode::OK {
        // Written (here and for the other replicas) before the client has the token.
        learn(cx, &bytes, (&app, &provider, &token)).await;
    }
    Ok(Response::from_parts(parts, full(bytes)))
}

/// Remembers `accessToken` from a `"result":"success"` reply until its `accessExpiry`, with the
/// login (`app`, `provider`, provider token) its tunnels are re-checked with.
async fn learn(cx: Ctx<'_>, reply: &Bytes, (app, provider, token): (&str, &str, &str)) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(reply) else {
        return;
    };
    if v["result"] != "success" {
        return;
    }
    let (Some(access), Some(expiry)) = (v["accessToken"].as_str(), v["accessExpiry"].as_str())
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
    let sid = KnownTokens::session_id(access);
    let grant = Grant {
        app: app.to_owned(),
        provider: provider.to_owned(),
        token: token.to_owned(),
        until: expires_at,
    };
    cx.shared
        .learn_ditto_token(
            cx.live,
            access,
            KnownToken {
                user,
                expires_at,
                sid,
            },
            grant,
        )
        .await;
}
