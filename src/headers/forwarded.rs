//! Who the client is behind proxies the operator trusts: the rightmost address in
//! `X-Forwarded-For` (or, without it, in the `for=` parameters of RFC 7239 `Forwarded`) that is
//! not itself a trusted proxy.
//!
//! Each proxy appends the address it received the request from, so entries right of the first
//! untrusted one were written by trusted hops, and entries left of it by whoever the client is
//! (and can be anything). A list the caller cannot read is never half-believed: one entry that
//! is not an IP address makes the whole header [`Malformed`].

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName};

use super::X_FORWARDED_FOR;

/// `Forwarded` (RFC 7239).
static FORWARDED: HeaderName = http::header::FORWARDED;

/// Why a trusted proxy's forwarding header was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    /// An `X-Forwarded-For` entry is not an IP address (nor `address:port`).
    #[error("an X-Forwarded-For entry is not an IP address")]
    ForwardedFor,
    /// A `Forwarded` element has no `for=`, or its value is not an IP address (`unknown` and
    /// obfuscated names included: the hop they stand for cannot be checked against the trusted list).
    #[error("a Forwarded element has no for= IP address")]
    Forwarded,
}

impl Malformed {
    /// The bounded `header` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The client a trusted proxy names in `headers`: the rightmost address that `trusted` does not
/// hold, or the leftmost when every one is trusted. `Ok(None)` when the request carries no
/// forwarding header (or only empty ones).
///
/// # Errors
/// [`Malformed`] when an entry of the header read is not an IP address.
pub(crate) fn client(
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> Result<Option<IpAddr>, Malformed> {
    let hops = if headers.contains_key(&X_FORWARDED_FOR) {
        forwarded_for(headers)?
    } else if headers.contains_key(&FORWARDED) {
        forwarded(headers)?
    } else {
        return Ok(None);
    };
    Ok(hops
        .iter()
        .rev()
        .find(|ip| !trusted(**ip))
        .or_else(|| hops.first())
        .copied())
}

/// Every `X-Forwarded-For` entry, leftmost first, over all the header's lines (one list, RFC 9110
/// §5.3). Empty list elements are skipped (§5.6.1).
fn forwarded_for(headers: &HeaderMap) -> Result<Vec<IpAddr>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let text = value.to_str().map_err(|_| Malformed::ForwardedFor)?;
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            hops.push(node(entry).ok_or(Malformed::ForwardedFor)?);
        }
    }
    Ok(hops)
}

/// The `for=` node of every `Forwarded` element, leftmost first.
fn forwarded(headers: &HeaderMap) -> Result<Vec<IpAddr>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all(&FORWARDED) {
        let text = value.to_str().map_err(|_| Malformed::Forwarded)?;
        for element in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let node = element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map(|(_, value)| value.trim())
                .ok_or(Malformed::Forwarded)?;
            let node = match node.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"').ok_or(Malformed::Forwarded)?,
                None => node,
            };
            hops.push(self::node(node).ok_or(Malformed::Forwarded)?);
        }
    }
    Ok(hops)
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:4711`. IPv4-mapped IPv6 becomes IPv4.
fn node(text: &str) -> Option<IpAddr> {
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::headers::header_map;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Trusts 10.0.0.0/8 and ::1.
    fn trusted(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.is_loopback(),
        }
    }

    #[test]
    fn forwarded_for_rightmost_untrusted_entry_is_the_client() {
        for (xff, want) in [
            ("203.0.113.7", "203.0.113.7"),
            ("198.51.100.1, 203.0.113.7", "203.0.113.7"),
            ("198.51.100.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
            ("spoofed-by-client-but-left, 203.0.113.7", "error"),
            ("1.1.1.1,203.0.113.7 ,10.1.1.1,, 10.2.2.2", "203.0.113.7"),
            ("203.0.113.7:4711, 10.0.0.1", "203.0.113.7"),
            ("[2001:db8::7]:4711, ::1", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            // Every hop trusted: the request began inside, at the leftmost.
            ("10.9.9.9, 10.0.0.1", "10.9.9.9"),
        ] {
            let got = client(&header_map(&[("x-forwarded-for", xff)]), trusted);
            if want == "error" {
                assert_eq!(got, Err(Malformed::ForwardedFor), "{xff}");
            } else {
                assert_eq!(got, Ok(Some(ip(want))), "{xff}");
            }
        }
    }

    #[test]
    fn forwarded_for_over_several_lines_is_one_list() {
        let h = header_map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.1"),
        ]);
        assert_eq!(client(&h, trusted), Ok(Some(ip("203.0.113.7"))));
        let h = header_map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        assert_eq!(client(&h, trusted), Ok(Some(ip("203.0.113.7"))));
    }

    #[test]
    fn forwarded_for_garbage_anywhere_is_malformed() {
        for xff in [
            "unknown",
            "203.0.113.7, 10.0.0.1 10.0.0.2",
            "203.0.113.7; 10.0.0.1",
            "999.0.0.1",
            "203.0.113.7, _hidden",
            "[203.0.113.7]",
            "203.0.113.7:99999",
        ] {
            assert_eq!(
                client(&header_map(&[("x-forwarded-for", xff)]), trusted),
                Err(Malformed::ForwardedFor),
                "{xff}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        assert_eq!(client(&h, trusted), Err(Malformed::ForwardedFor));
    }

    #[test]
    fn forwarded_for_parameters_name_the_client() {
        for (value, client_ip) in [
            ("for=203.0.113.7", "203.0.113.7"),
            (
                "for=198.51.100.1, for=203.0.113.7;proto=https, for=10.0.0.1",
                "203.0.113.7",
            ),
            (r#"For="[2001:db8:cafe::17]:4711""#, "2001:db8:cafe::17"),
            ("proto=https;for=203.0.113.7;by=10.0.0.1", "203.0.113.7"),
        ] {
            assert_eq!(
                client(&header_map(&[("forwarded", value)]), trusted),
                Ok(Some(ip(client_ip))),
                "{value}"
            );
        }
        for value in [
            "for=unknown",
            "for=_hidden, for=10.0.0.1",
            "proto=https",
            r#"for="203.0.113.7"#,
            "for=203.0.113.7, by=10.0.0.1",
        ] {
            assert_eq!(
                client(&header_map(&[("forwarded", value)]), trusted),
                Err(Malformed::Forwarded),
                "{value}"
            );
        }
    }

    #[test]
    fn forwarded_for_header_wins_over_forwarded_and_absence_is_none() {
        let h = header_map(&[
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(client(&h, trusted), Ok(Some(ip("203.0.113.7"))));
        assert_eq!(client(&HeaderMap::new(), trusted), Ok(None));
        assert_eq!(
            client(&header_map(&[("x-forwarded-for", " , ")]), trusted),
            Ok(None)
        );
    }
}
