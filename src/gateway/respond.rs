//! The one place where errors become responses, and the small body helpers every door uses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::{Deny, ProviderError, Reason};
use crate::body::{Body, full};
use crate::forward::UpstreamError;
use crate::gateway::route::Refusal;

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
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
pub(crate) fn upstream_error(err: &UpstreamError) -> Response<Body> {
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
pub(crate) fn refused(refusal: &Refusal) -> Response<Body> {
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
    }
}

/// `OPTIONS *`: 204 with `Allow`, answered by the gateway.
pub(crate) fn server_options() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    resp
}

/// The Ditto SDK failure shape every auth door uses:
/// `{"result":"failure","reason":..,"description":..,"clientInfo":..}`.
pub(crate) fn failure(
    status: StatusCode,
    reason: Reason,
    description: &str,
    client_info: Option<&serde_json::Value>,
) -> Response<Body> {
    let mut resp = json(
        status,
        &serde_json::json!({
            "result": "failure",
            "reason": reason.as_str(),
            "description": description,
            "clientInfo": client_info,
        }),
    );
    if status == StatusCode::UNAUTHORIZED && reason == Reason::InvalidToken {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    resp
}

/// A denial: 401 with the provider's clientInfo.
pub(crate) fn denied(deny: &Deny) -> Response<Body> {
    failure(
        StatusCode::UNAUTHORIZED,
        deny.reason,
        &deny.description,
        deny.client_info.as_ref(),
    )
}

/// A provider that gave no answer: 503 `Timeout` when it timed out, 502 `Internal` otherwise.
pub(crate) fn provider_error(error: &ProviderError) -> Response<Body> {
    match error.reason() {
        Reason::Timeout => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::Timeout,
            "the provider did not answer in time",
            None,
        ),
        _ => failure(
            StatusCode::BAD_GATEWAY,
            Reason::Internal,
            "the provider could not be asked",
            None,
        ),
    }
}

/// 429 `RateLimited` with `Retry-After: 1`.
pub(crate) fn rate_limited() -> Response<Body> {
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
pub(crate) fn invalid_token(description: &str) -> Response<Body> {
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
        assert!(
            resp.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body = body_json(resp).await;
        assert_eq!(body["result"], "failure");
        assert_eq!(body["reason"], "InvalidToken");
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

    #[test]
    fn error_responses_are_json_and_not_cached() {
        let resp = error(StatusCode::BAD_GATEWAY, "upstream unavailable");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
