//! The HTTP body type every response and forwarded request carries, and its small constructors.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

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

/// An empty body.
pub(crate) fn empty() -> Body {
    full(Bytes::new())
}
