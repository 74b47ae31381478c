//! The one place where errors become responses, and the small body helpers every door uses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

use crate::forward::UpstreamError;

/// Boxed error carried by response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type of every door.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

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
        UpstreamError::Failed(_) => error(StatusCode::BAD_GATEWAY, "upstream failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn error_responses_are_json_and_not_cached() {
        let resp = error(StatusCode::BAD_GATEWAY, "upstream unavailable");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
