//! `ditto-signature: t=<unix seconds>,v1=<hex>`: HMAC-SHA256 over `"<t>.<raw body>"`, keyed with the shared secret.
//! A verified call is remembered (by a digest of its timestamp and body) until its age window
//! closes, so the same signed call is answered once.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The header name.
pub const HEADER: &str = "ditto-signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` signed at `t` (Unix seconds) with the decoded `key`.
pub fn sign(key: &[u8], t: u64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(key, t, body).finalize().into_bytes())
    )
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header.
    #[error("missing ditto-signature")]
    Missing,
    /// Not `t=..,v1=..`.
    #[error("malformed ditto-signature")]
    Malformed,
    /// Older than allowed, or too far in the future.
    #[error("ditto-signature expired")]
    Stale,
    /// The HMAC does not match.
    #[error("ditto-signature does not match")]
    Mismatch,
}

/// Checks a header value against `body`, accepting timestamps within `max_age_secs` of `now`;
/// returns the verified timestamp.
///
/// # Errors
/// [`SignatureError`] saying what was wrong.
pub fn verify(
    key: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: u64,
    max_age_secs: u64,
) -> Result<u64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => {
                candidates.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > max_age_secs {
        return Err(SignatureError::Stale);
    }
    let expected = mac(key, t, body);
    // verify_slice compares in constant time.
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// What identifies one signed call: SHA-256 over its timestamp and raw body. The MAC is a
/// function of exactly these, so extra or reordered `v1` entries make no new call.
pub(crate) fn call_id(t: u64, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(t.to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// Most signed calls one replica remembers at once (about 40 bytes each): more than a signer can
/// send within the age window at any rate the aggregator is meant for.
pub(crate) const MAX_REMEMBERED_CALLS: u64 = 1_000_000;

/// Signed calls already answered by this replica, each until its age window closes.
pub(crate) struct SeenCalls {
    /// Call ID → the Unix second its window closes.
    calls: moka::sync::Cache<[u8; 32], u64>,
}

/// Each call is kept until its window closes.
struct UntilWindowEnd;

impl moka::Expiry<[u8; 32], u64> for UntilWindowEnd {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        until: &u64,
        _: std::time::Instant,
    ) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(
            until.saturating_sub(crate::clock::unix_now()),
        ))
    }
}

impl SeenCalls {
    /// Remembers at most `capacity` calls.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            calls: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilWindowEnd)
                .build(),
        }
    }

    /// Records call `id` until `until` (Unix seconds); false when it was recorded already.
    pub(crate) fn first_sighting(&self, id: [u8; 32], until: u64) -> bool {
        self.calls.entry(id).or_insert(until).is_fresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_body_verifies_and_a_changed_one_does_not() {
        let h = sign(b"secret", 1_700_000_000, b"{\"token\":\"x\"}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(
                b"secret",
                Some(&h),
                b"{\"token\":\"x\"}",
                1_700_000_010,
                300
            ),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(
                b"secret",
                Some(&h),
                b"{\"token\":\"y\"}",
                1_700_000_010,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&h), b"{\"token\":\"x\"}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_signature_is_stale() {
        let h = sign(b"k", 1000, b"b");
        assert_eq!(
            verify(b"k", Some(&h), b"b", 1000 + 301, 300),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn malformed_and_missing_headers_are_refused() {
        assert_eq!(
            verify(b"k", None, b"b", 0, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(b"k", Some("v1=00"), b"b", 0, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"k", Some("t=1,v1=zz"), b"b", 1, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_call_is_seen_once_and_ids_follow_time_and_body() {
        let seen = SeenCalls::new(100);
        let until = crate::clock::unix_now() + 60;
        let id = call_id(12, b"hello");
        assert!(seen.first_sighting(id, until));
        assert!(!seen.first_sighting(id, until), "a replay is seen");
        assert!(seen.first_sighting(call_id(13, b"hello"), until));
        assert!(seen.first_sighting(call_id(12, b"hello!"), until));
    }

    #[test]
    fn matches_an_independent_hmac_vector() {
        // Computed outside this code: printf '12.hello' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign(b"key", 12, b"hello"),
            "t=12,v1=77dfcabc359b3d9cc53a80961b23a8adfd5ab6b38478121d62b1fb11faad052a"
        );
    }
}
