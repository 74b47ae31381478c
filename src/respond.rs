//! The one place where errors become responses: [`DoorError`] is every refusal a door, the tunnel
//! gate or the dispatcher makes, and [`DoorError::respond`] is the one function that turns it into a
//! response, in the failure shape of the door that answers ([`Front`]).
//!
//! Three shapes exist, each what its clients read: the Ditto SDK failure
//! `{"result":"failure","reason",..}` on the auth doors and the tunnel gate, `{"error","status"}` for
//! requests refused before routing and for upstream failures, and the webhook reply
//! `{"authenticated":false,..}` on the aggregator. The plain JSON and body builders for successful
//! answers live here too.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::credentials::SessionRejected;
use crate::auth::{CompactJson, Deny, ProviderError, Reason};
use crate::body::{Body, empty, full};
use crate::canonical::TargetError;
use crate::forward::UpstreamError;

/// Why a request is answered before any door sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// A plain `CONNECT` (HTTP/1.1 or HTTP/2): drawbridge is no forward proxy.
    #[error("CONNECT is not served")]
    Connect,
    /// An RFC 8441 extended CONNECT whose `:protocol` is not exactly `websocket`.
    #[error("extended CONNECT is served for the websocket protocol only")]
    ConnectProtocol,
    /// `Upgrade: websocket` on something other than an HTTP/1.1 GET (RFC 6455 §4.1).
    #[error("a websocket handshake must be an HTTP/1.1 GET")]
    UpgradeMethod,
    /// The request target has no canonical form.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A forward-auth check whose forwarded target headers are repeated or disagree.
    #[error("the forwarded target is repeated or contradictory")]
    ForwardedTarget,
    /// A forward-auth check without the source of the forwarded path that
    /// `forward_auth.uri_from` names.
    #[error("the forwarded path is missing from the source forward_auth.uri_from names")]
    ForwardedTargetMissing,
}

impl Refusal {
    /// The `route` metric label of every refused request.
    pub(crate) const LABEL: &'static str = "refused";
}

/// Every refusal a door, the tunnel gate or the dispatcher answers with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DoorError {
    /// Refused before routing.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request body did not arrive within `limits.header_read_timeout_ms`.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The request body is larger than an auth route reads.
    #[error("request body larger than 64 KiB")]
    BodyTooLarge,
    /// The request body broke off.
    #[error("request body could not be read")]
    BodyUnreadable,
    /// The body is not the JSON the route expects; the text names the field, never a value.
    #[error("{0}")]
    Json(String),
    /// A required field is missing or two disagree.
    #[error("{0}")]
    Malformed(&'static str),
    /// A known route called with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No such route under `/auth/`.
    #[error("no such auth route")]
    NotFound,
    /// A session credential that opens nothing.
    #[error(transparent)]
    InvalidToken(#[from] SessionRejected),
    /// The provider (or the session minted from its answer) refused the login.
    #[error("{}", .0.description)]
    Denied(Arc<Deny>),
    /// The provider gave no answer.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The client called a login route too often.
    #[error("too many requests; slow down")]
    RateLimited,
    /// Something on drawbridge's side failed; the details are in the server log.
    #[error("{0}")]
    Internal(&'static str),
    /// The sync server could not be asked.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The sync server's reply to a relayed login could not be read.
    #[error("upstream login reply unreadable")]
    UpstreamReply,
    /// The aggregator is closed until a signing secret is configured.
    #[error("the aggregator is disabled until aggregator.signing_secret is set")]
    AggregatorDisabled,
    /// An aggregator call without a valid `ditto-signature`.
    #[error("invalid ditto-signature")]
    BadSignature,
    /// A forward-auth check without an identity, answered with a redirect to sign in.
    #[error("sign in first")]
    SignIn(HeaderValue),
}

/// The door that answers, for the errors whose failure shape is the door's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// The native login API, `/auth/*`.
    Login,
    /// The Ditto SDK door's own pre-check of `/_ditto/auth/login`.
    Ditto,
    /// The webhook aggregator, `/auth/webhook`.
    Aggregator,
    /// The websocket gate.
    Tunnel,
    /// The forward-auth door, `/auth/check`, asked by an ingress.
    ForwardAuth,
    /// The dispatcher, before or after a door: refusals, rate limits, forwarding.
    Gateway,
}

// === impl DoorError ===

impl DoorError {
    /// The response for this error when `front` answers. The reading of the request (body and
    /// JSON), rate limits and session problems have one shape whichever door meets them; the
    /// dispatcher's refusals and upstream failures have the `{"error","status"}` shape; the rest
    /// take the shape of the door.
    pub(crate) fn respond(&self, front: Front) -> Response<Body> {
        let bad = StatusCode::BAD_REQUEST;
        match (self, front) {
            // An ingress passes 401 and 403 on to its client and turns anything else into 500.
            (Self::Refused(refusal), Front::ForwardAuth) => {
                error(StatusCode::FORBIDDEN, &refusal.to_string())
            }
            (Self::SignIn(url), _) => sign_in(url),
            (Self::InvalidToken(SessionRejected::Required), Front::ForwardAuth) => {
                let mut resp = invalid_token(&SessionRejected::Missing.to_string());
                // No credentials were sent: a bare challenge (RFC 6750 §3).
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
            (Self::Denied(deny), Front::ForwardAuth) => {
                let mut resp = denied(deny);
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                resp
            }
            (Self::Refused(refusal), _) => refused(refusal),
            (Self::Upstream(error), _) => upstream_error(error),
            (Self::UpstreamReply, _) => error(StatusCode::BAD_GATEWAY, &self.to_string()),
            (Self::RateLimited, _) => rate_limited(),
            (Self::InvalidToken(why), _) => invalid_token(&why.to_string()),
            (Self::BodyTimeout, _) => malformed(StatusCode::REQUEST_TIMEOUT, self),
            (Self::BodyTooLarge, _) => malformed(StatusCode::PAYLOAD_TOO_LARGE, self),
            (Self::BodyUnreadable | Self::Json(_), _) => malformed(bad, self),
            (Self::Internal(_), _) => failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                Reason::Internal,
                &self.to_string(),
                None,
            ),
            // The webhook reply shape.
            (Self::AggregatorDisabled | Self::BadSignature, _) => {
                webhook_refusal(StatusCode::UNAUTHORIZED, &self.to_string())
            }
            (Self::Malformed(why), Front::Aggregator) => webhook_refusal(bad, why),
            (Self::MethodNotAllowed, Front::Aggregator) => {
                webhook_refusal(StatusCode::METHOD_NOT_ALLOWED, &self.to_string())
            }
            (Self::Provider(e), Front::Aggregator) => {
                webhook_refusal(provider_status(e), e.reason().as_str())
            }
            (Self::Denied(deny), Front::Aggregator) => {
                webhook_refusal(StatusCode::UNAUTHORIZED, &deny.description)
            }
            // The Ditto SDK door's own failures.
            (Self::Malformed(why), Front::Ditto) => {
                ditto_failure(bad, failure_body(Reason::MalformedRequest, why, None))
            }
            (Self::Denied(deny), Front::Ditto) => ditto_failure(
                StatusCode::UNAUTHORIZED,
                failure_body(
                    Reason::InvalidCredentials,
                    &deny.description,
                    deny.client_info.as_ref(),
                ),
            ),
            (Self::Provider(e), Front::Ditto) => ditto_failure(
                provider_status(e),
                failure_body(e.reason(), "the identity provider could not be asked", None),
            ),
            // The SDK failure shape of the login API, the tunnel gate and the dispatcher.
            (Self::Malformed(_), _) => malformed(bad, self),
            (Self::MethodNotAllowed, _) => malformed(StatusCode::METHOD_NOT_ALLOWED, self),
            (Self::NotFound, _) => malformed(StatusCode::NOT_FOUND, self),
            (Self::Denied(deny), _) => denied(deny),
            (Self::Provider(e), _) => provider_error(e),
        }
    }
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, value: &(impl serde::Serialize + ?Sized)) -> Response<Body> {
    // A Serialize that is not a JSON value (a map with non-string keys) is a bug; answer 500.
    let Ok(bytes) = serde_json::to_vec(value) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `{"error": "...", "status": N}` with a fixed, generic message.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": message, "status": status.as_u16() }),
    )
}

/// Maps an upstream failure to its response; the details stay in the server log.
fn upstream_error(err: &UpstreamError) -> Response<Body> {
    match err {
        UpstreamError::Refused(_) => error(StatusCode::BAD_GATEWAY, "upstream unavailable"),
        UpstreamError::Timeout => error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
        UpstreamError::BodyTooLarge => {
            error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        UpstreamError::Failed(_) | UpstreamError::Switched => {
            error(StatusCode::BAD_GATEWAY, "upstream failed")
        }
    }
}

/// The methods the gateway forwards, for `Allow`.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Maps a request refused before routing: CONNECT is 405 with `Allow`, everything else 400.
fn refused(refusal: &Refusal) -> Response<Body> {
    match refusal {
        Refusal::Connect => {
            let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            resp
        }
        Refusal::ConnectProtocol => error(
            StatusCode::BAD_REQUEST,
            "extended CONNECT is served for the websocket protocol only",
        ),
        Refusal::UpgradeMethod => error(
            StatusCode::BAD_REQUEST,
            "a websocket handshake must be an HTTP/1.1 GET",
        ),
        // A fixed text per kind of target, never the target itself.
        Refusal::Target(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Refusal::ForwardedTarget | Refusal::ForwardedTargetMissing => {
            error(StatusCode::BAD_REQUEST, &refusal.to_string())
        }
    }
}

/// 302 to where a forward-auth client signs in; the body is empty, the ingress relays the head.
fn sign_in(url: &HeaderValue) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(header::LOCATION, url.clone());
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `OPTIONS *`: 204 with `Allow`, answered by the gateway.
pub(crate) fn server_options() -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    resp
}

/// The Ditto SDK failure body:
/// `{"result":"failure","reason":..,"description":..,"clientInfo":..}`.
fn failure_body(
    reason: Reason,
    description: &str,
    client_info: Option<&CompactJson>,
) -> serde_json::Value {
    serde_json::json!({
        "result": "failure",
        "reason": reason.as_str(),
        "description": description,
        "clientInfo": client_info,
    })
}

/// The Ditto SDK failure shape every auth door uses, with `WWW-Authenticate` on an invalid token.
fn failure(
    status: StatusCode,
    reason: Reason,
    description: &str,
    client_info: Option<&CompactJson>,
) -> Response<Body> {
    let mut resp = json(status, &failure_body(reason, description, client_info));
    if status == StatusCode::UNAUTHORIZED && reason == Reason::InvalidToken {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    resp
}

/// A request the route cannot read: `MalformedRequest` with the error's own text.
fn malformed(status: StatusCode, error: &DoorError) -> Response<Body> {
    failure(status, Reason::MalformedRequest, &error.to_string(), None)
}

/// A [`failure_body`] as the Ditto SDK door's pre-check answers it, marked as drawbridge's
/// answer; no `WWW-Authenticate`, as the sync server sends none.
fn ditto_failure(status: StatusCode, mut body: serde_json::Value) -> Response<Body> {
    body["additionalDebugDescription"] = "answered by the drawbridge gateway".into();
    json(status, &body)
}

/// The webhook reply shape of a refused aggregator call.
fn webhook_refusal(status: StatusCode, why: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"authenticated": false, "clientInfo": null, "error": why}),
    )
}

/// A denial: 401 with the provider's clientInfo.
fn denied(deny: &Deny) -> Response<Body> {
    failure(
        StatusCode::UNAUTHORIZED,
        deny.reason,
        &deny.description,
        deny.client_info.as_ref(),
    )
}

/// 503 when the provider timed out, 502 otherwise, whatever the door's shape.
fn provider_status(error: &ProviderError) -> StatusCode {
    match error.reason() {
        Reason::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// A provider that gave no answer: 503 `Timeout` when it timed out, 502 `Internal` otherwise.
fn provider_error(error: &ProviderError) -> Response<Body> {
    match error.reason() {
        Reason::Timeout => failure(
            provider_status(error),
            Reason::Timeout,
            "the provider did not answer in time",
            None,
        ),
        _ => failure(
            provider_status(error),
            Reason::Internal,
            "the provider could not be asked",
            None,
        ),
    }
}

/// 429 `RateLimited` with `Retry-After: 1`.
fn rate_limited() -> Response<Body> {
    let mut r = failure(
        StatusCode::TOO_MANY_REQUESTS,
        Reason::RateLimited,
        "too many requests; slow down",
        None,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A session problem: 401 `InvalidToken` with `WWW-Authenticate: Bearer`.
fn invalid_token(description: &str) -> Response<Body> {
    failure(
        StatusCode::UNAUTHORIZED,
        Reason::InvalidToken,
        description,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(resp: Response<Body>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Whether `resp` carries a `WWW-Authenticate: Bearer …` challenge.
    fn challenges_bearer(resp: &Response<Body>) -> bool {
        resp.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    }

    #[tokio::test]
    async fn payload_too_large_maps_to_413() {
        let resp = upstream_error(&UpstreamError::BodyTooLarge);
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body_json(resp).await["status"], 413);
    }

    #[tokio::test]
    async fn upstream_timeout_maps_to_504() {
        let resp = upstream_error(&UpstreamError::Timeout);
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            body_json(resp).await,
            serde_json::json!({"error": "upstream timed out", "status": 504})
        );
    }

    #[tokio::test]
    async fn provider_timeout_maps_to_503_and_broken_provider_to_502() {
        let resp = provider_error(&ProviderError::Timeout);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(resp).await["reason"], "Timeout");
        let resp = provider_error(&ProviderError::Reply("garbage"));
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(body_json(resp).await["reason"], "Internal");
    }

    #[tokio::test]
    async fn invalid_session_maps_to_401_with_bearer_challenge() {
        let resp = invalid_token("session token expired");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(challenges_bearer(&resp));
        let body = body_json(resp).await;
        assert_eq!(body["result"], "failure");
        assert_eq!(body["reason"], "InvalidToken");
    }

    #[tokio::test]
    async fn ditto_denial_maps_to_401_in_the_sdk_failure_shape_without_a_challenge() {
        let deny = Deny {
            reason: Reason::InvalidCredentials,
            description: "no such user".into(),
            client_info: Some(serde_json::json!({"hint": "sign up"}).into()),
        };
        let resp = DoorError::Denied(Arc::new(deny)).respond(Front::Ditto);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            body_json(resp).await,
            serde_json::json!({
                "result": "failure",
                "reason": "InvalidCredentials",
                "description": "no such user",
                "additionalDebugDescription": "answered by the drawbridge gateway",
                "clientInfo": {"hint": "sign up"},
            })
        );
    }

    #[tokio::test]
    async fn connect_maps_to_405_with_allow_and_other_refusals_to_400() {
        use crate::canonical::TargetError;
        let resp = refused(&Refusal::Connect);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            !resp.headers()[header::ALLOW]
                .to_str()
                .unwrap()
                .contains("CONNECT")
        );
        assert_eq!(body_json(resp).await["status"], 405);
        for refusal in [
            Refusal::ConnectProtocol,
            Refusal::UpgradeMethod,
            Refusal::Target(TargetError::EncodedSlash),
        ] {
            let resp = refused(&refusal);
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{refusal}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(body_json(resp).await["status"], 400);
        }
    }

    #[tokio::test]
    async fn forward_auth_refusals_map_to_401_403_and_302() {
        let resp = DoorError::InvalidToken(SessionRejected::Required).respond(Front::ForwardAuth);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let resp = DoorError::InvalidToken(SessionRejected::Revoked).respond(Front::ForwardAuth);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(challenges_bearer(&resp));
        let deny = Deny {
            reason: Reason::InvalidCredentials,
            description: "no".to_owned(),
            client_info: None,
        };
        let resp = DoorError::Denied(Arc::new(deny)).respond(Front::ForwardAuth);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
        let resp = DoorError::Refused(Refusal::Target(TargetError::EncodedSlash))
            .respond(Front::ForwardAuth);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let url = HeaderValue::from_static("https://login.example/");
        let resp = DoorError::SignIn(url.clone()).respond(Front::ForwardAuth);
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(resp.headers()[header::LOCATION], url);
    }

    #[test]
    fn error_responses_are_json_and_not_cached() {
        let resp = error(StatusCode::BAD_GATEWAY, "upstream unavailable");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
