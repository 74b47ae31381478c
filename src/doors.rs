//! The auth doors answered by drawbridge itself, and what they share: body limits, JSON, CORS.

pub(crate) mod aggregator;
pub(crate) mod ditto;
pub(crate) mod forward_auth;
pub(crate) mod login;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::Body;
use crate::respond::DoorError;

/// Largest body the auth routes read.
pub(crate) const MAX_AUTH_BODY_BYTES: usize = 64 * 1024;

/// Reads a whole auth-route body, refusing more than 64 KiB with 413 and a body not received within
/// `within` (`limits.header_read_timeout_ms`) with 408, in the failure shape.
pub(crate) async fn read_body(
    req: Request<Incoming>,
    within: std::time::Duration,
) -> Result<(http::request::Parts, Bytes), DoorError> {
    let (parts, body) = req.into_parts();
    let Ok(collected) =
        tokio::time::timeout(within, Limited::new(body, MAX_AUTH_BODY_BYTES).collect()).await
    else {
        return Err(DoorError::BodyTimeout);
    };
    match collected {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(DoorError::BodyTooLarge),
        Err(_) => Err(DoorError::BodyUnreadable),
    }
}

/// Parses JSON into `T`, answering 400 `MalformedRequest` with the serde message (which names
/// the field, never echoes a value).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DoorError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let description = match e.classify() {
            serde_json::error::Category::Data => strip_position(&e.to_string()),
            serde_json::error::Category::Eof => "truncated JSON".to_owned(),
            _ => "body is not JSON".to_owned(),
        };
        DoorError::Json(description)
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// RFC 3339 for a Unix time.
pub(crate) fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Adds CORS headers for an allowed `Origin`; a disallowed origin gets none (the browser refuses).
///
/// Only an origin listed by name is echoed, with `Access-Control-Allow-Credentials: true` (the
/// session cookie rides along). `"*"` admits any other origin without credentials, as the literal
/// `Access-Control-Allow-Origin: *`: echoing an arbitrary origin together with credentials would
/// let any web page act with a visitor's session.
pub(crate) fn cors(allowed: &[String], origin: Option<&HeaderValue>, response: &mut HeaderMap) {
    let Some(origin) = origin else { return };
    let listed = origin.to_str().is_ok_and(|o| {
        allowed
            .iter()
            .any(|a| a != "*" && o.eq_ignore_ascii_case(a))
    });
    if listed {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    } else if allowed.iter().any(|a| a == "*") {
        response.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        return;
    }
    response.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// A CORS preflight answer.
pub(crate) fn preflight(allowed: &[String], request: &HeaderMap) -> Response<Body> {
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    cors(allowed, request.get(header::ORIGIN), resp.headers_mut());
    if resp
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::credentials::session_token as bearer;

    #[test]
    fn bearer_comes_from_authorization_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def"),
        );
        assert_eq!(bearer(&h), Some("abc.def"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("drawbridge_session=c"),
        );
        assert_eq!(
            bearer(&h),
            Some("c"),
            "a Basic header does not hide the cookie"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("BEARER  t "),
        );
        assert_eq!(
            bearer(&h),
            Some("t"),
            "the header wins, its scheme in any case"
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; drawbridge_session=tok; b=2"),
        );
        assert_eq!(bearer(&h), Some("tok"));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
