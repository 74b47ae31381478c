//! Header rewriting for forwarded requests: hop-by-hop removal, X-Forwarded-*, identity headers.

pub(crate) mod forwarded;

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers that never cross the proxy (RFC 9110 §7.6.1, plus the legacy ones it names).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Prefix of the identity headers only drawbridge may set.
pub(crate) const IDENTITY_PREFIX: &str = "x-drawbridge-";

/// `X-Forwarded-For`
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Real-IP` (nginx's single-address form of `X-Forwarded-For`).
pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether the `Connection` header lists `token` (case-insensitive, comma-separated).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An HTTP/1.1 upgrade request: `Connection: upgrade` and an `Upgrade` header.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
/// When `keep_upgrade` is set (an upgrade handshake), `Connection: upgrade` and `Upgrade` survive.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a header name reads as `x-drawbridge-*`: compared case-insensitively with `_` taken as
/// `-`, because CGI, WSGI, Rack and PHP turn both into the same `HTTP_X_DRAWBRIDGE_*` variable.
pub(crate) fn is_identity(name: &str) -> bool {
    let prefix = IDENTITY_PREFIX.as_bytes();
    name.as_bytes().get(..prefix.len()).is_some_and(|head| {
        head.iter()
            .zip(prefix)
            .all(|(h, p)| h.to_ascii_lowercase() == *p || (*h == b'_' && *p == b'-'))
    })
}

/// Removes every header that reads as `x-drawbridge-*` ([`is_identity`]): only drawbridge sets
/// those, never a client.
pub(crate) fn strip_identity(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_identity(k.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
///
/// `peer` is the address the request came from (the TCP peer, or the PROXY protocol source). With
/// `keep_chain` (the peer is a trusted proxy whose forwarding headers parsed) the incoming
/// `X-Forwarded-For` list is kept and `peer` appended to it. Without it every forwarding header
/// the client sent is dropped, `Forwarded` included, and `X-Forwarded-For` is `peer` alone: a
/// client cannot name itself to the sync server.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    keep_chain: bool,
    proto: &'static str,
    host: Option<&str>,
) {
    let prior = keep_chain
        .then(|| headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()))
        .flatten();
    let xff = match prior {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {peer}"),
        _ => peer.to_string(),
    };
    if !keep_chain {
        // A client's own claims about where it is from never reach the sync server.
        headers.remove(header::FORWARDED);
        headers.remove(&X_REAL_IP);
    }
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(v) => {
            headers.insert(&X_FORWARDED_HOST, v);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// A header map holding `pairs` in order, repeated names appended: what the header tests start from.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = header_map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn upgrade_handshake_keeps_upgrade_headers() {
        let mut h = header_map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(!h.contains_key("keep-alive"));
    }

    #[test]
    fn identity_headers_from_clients_are_stripped() {
        let mut h = header_map(&[
            ("x-drawbridge-user", "root"),
            ("X-Drawbridge-App", "a"),
            ("x_drawbridge_user", "root"),
            ("X_DRAWBRIDGE_PERMISSIONS", "e30"),
            ("x-drawbridge_assertion", "forged"),
            ("x_drawbridge-provider", "p"),
            ("x-drawbridge-", "empty suffix"),
            ("x-other", "1"),
            ("x-drawbridge", "no dash: not ours"),
            ("x-drawbridgeuser", "1"),
            ("y-drawbridge-user", "1"),
            ("xx-drawbridge-user", "1"),
        ]);
        strip_identity(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "x-drawbridge",
                "x-drawbridgeuser",
                "x-other",
                "xx-drawbridge-user",
                "y-drawbridge-user"
            ]
        );
    }

    #[test]
    fn identity_reading_folds_case_and_underscores_only() {
        for name in [
            "x-drawbridge-user",
            "X_Drawbridge_User",
            "x_drawbridge-a",
            "x-drawbridge-",
        ] {
            assert!(is_identity(name), "{name}");
        }
        for name in [
            "x-drawbridge",
            "x.drawbridge.user",
            "x-drawbridge.user",
            "",
            "x-",
        ] {
            assert!(!is_identity(name), "{name}");
        }
    }

    #[test]
    fn forwarded_for_from_a_trusted_proxy_appends_the_peer() {
        let mut h = header_map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "spoofed"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        set_forwarded(
            &mut h,
            "10.1.2.3".parse().unwrap(),
            true,
            "https",
            Some("gw.example"),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.9, 10.1.2.3");
        assert_eq!(h.get("forwarded").unwrap(), "for=203.0.113.9");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "gw.example");
    }

    #[test]
    fn forwarded_for_from_anyone_else_is_replaced_by_the_peer() {
        let mut h = header_map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ]);
        set_forwarded(&mut h, "192.0.2.44".parse().unwrap(), false, "https", None);
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["192.0.2.44"]);
        assert!(!h.contains_key("forwarded"));
        assert!(!h.contains_key("x-real-ip"));
        assert!(!h.contains_key("x-forwarded-host"));
    }
}
