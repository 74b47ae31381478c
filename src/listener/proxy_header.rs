//! The PROXY protocol header (HAProxy's v1 text line and v2 binary block), read before TLS when
//! `listen.proxy_protocol` is on: the source address it names is the connection's client.
//!
//! The bytes are read exactly as far as the header goes and no further, so the TLS ClientHello
//! (or the first HTTP/1 request, in plaintext) that follows stays in the socket for the next
//! reader: 15 bytes first (the shortest header of either version), then, for v2, the length its
//! fixed part states, and for v1 one byte at a time up to its `\r\n` (at most 107 bytes in all).
//! The `ppp` crate parses what was read. Anything else (no header, a header cut short, an
//! unknown version, a longer v1 line) is [`HeaderError`], and the connection is refused.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (PROXY protocol §2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The longest v2 header taken: addresses plus TLVs (a proxy's TLS and unique-ID TLVs fit many
/// times over); the format allows 64 KiB, which no proxy sends.
const V2_MAX: usize = V2_FIXED + 4096;
/// The longest v1 line, `\r\n` included (§2.1).
const V1_MAX: usize = 107;
/// The shortest header of either version (`PROXY UNKNOWN\r\n`): read at once, never too much.
const SHORTEST: usize = 15;

/// Why a connection's PROXY header was not taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum HeaderError {
    /// The first bytes are no PROXY header, or one that does not parse.
    #[error("no valid PROXY protocol header: {0}")]
    Invalid(&'static str),
    /// The peer closed (or the socket failed) before the header was complete.
    #[error("connection closed before its PROXY protocol header was complete")]
    Closed(#[source] std::io::Error),
}

impl HeaderError {
    /// The bounded `reason` label.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Closed(_) => "closed",
        }
    }
}

/// Reads one PROXY header from `io`. `Ok(Some(source))` for a proxied TCP connection,
/// `Ok(None)` when the header says the connection is the proxy's own (v2 `LOCAL`, such as a
/// health check) or names no IP source (v1 `UNKNOWN`, v2 unspecified or UNIX): the TCP peer
/// then stands.
///
/// # Errors
/// [`HeaderError`] for anything but one whole, valid header.
pub(super) async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = vec![0u8; SHORTEST];
    io.read_exact(&mut buf).await.map_err(HeaderError::Closed)?;
    if buf.starts_with(V2_SIGNATURE) {
        buf.resize(V2_FIXED, 0);
        io.read_exact(&mut buf[SHORTEST..])
            .await
            .map_err(HeaderError::Closed)?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if V2_FIXED + len > V2_MAX {
            return Err(HeaderError::Invalid(
                "v2 header longer than drawbridge takes",
            ));
        }
        buf.resize(V2_FIXED + len, 0);
        io.read_exact(&mut buf[V2_FIXED..])
            .await
            .map_err(HeaderError::Closed)?;
        v2(&buf)
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(HeaderError::Invalid("v1 line longer than 107 bytes"));
            }
            buf.push(io.read_u8().await.map_err(HeaderError::Closed)?);
        }
        v1(&buf)
    } else {
        Err(HeaderError::Invalid("the connection did not open with one"))
    }
}

fn v1(buf: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v1::{Addresses, Header};
    let header =
        Header::try_from(buf).map_err(|_| HeaderError::Invalid("v1 line does not parse"))?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unknown => None,
    })
}

fn v2(buf: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header =
        Header::try_from(buf).map_err(|_| HeaderError::Invalid("v2 header does not parse"))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Writes `bytes` then `rest` to a pipe, reads one header, and returns it and what is left.
    async fn parse(
        bytes: &[u8],
        rest: &[u8],
    ) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(bytes).await.unwrap();
        client.write_all(rest).await.unwrap();
        drop(client);
        let got = read(&mut server).await;
        let mut left = Vec::new();
        server.read_to_end(&mut left).await.unwrap();
        (got, left)
    }

    fn v2_header(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_name_the_source_and_leave_the_rest_unread() {
        let (got, left) = parse(
            b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 443\r\n",
            b"\x16\x03\x01",
        )
        .await;
        assert_eq!(got.unwrap(), Some("203.0.113.7:4711".parse().unwrap()));
        assert_eq!(left, b"\x16\x03\x01");
        let (got, left) = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n", b"GET").await;
        assert_eq!(got.unwrap(), Some("[2001:db8::7]:4711".parse().unwrap()));
        assert_eq!(left, b"GET");
        let (got, left) = parse(b"PROXY UNKNOWN\r\n", b"x").await;
        assert_eq!(got.unwrap(), None);
        assert_eq!(
            left, b"x",
            "the shortest header is read without a byte more"
        );
    }

    #[tokio::test]
    async fn v2_proxy_names_the_source_and_local_names_none() {
        // 203.0.113.7:4711 -> 10.0.0.1:443, TCP over IPv4, plus one NOOP TLV.
        let addrs = [
            203, 0, 113, 7, 10, 0, 0, 1, 0x12, 0x67, 0x01, 0xbb, 0x04, 0x00, 0x01, 0x00,
        ];
        let (got, left) = parse(&v2_header(1, 0x11, &addrs), b"\x16\x03\x01").await;
        assert_eq!(got.unwrap(), Some("203.0.113.7:4711".parse().unwrap()));
        assert_eq!(left, b"\x16\x03\x01");
        let (got, left) = parse(&v2_header(0, 0x00, &[]), b"\x16").await;
        assert_eq!(got.unwrap(), None);
        assert_eq!(left, b"\x16");
        let mut v6 = Vec::new();
        v6.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&[0x12, 0x67, 0x01, 0xbb]);
        let (got, _) = parse(&v2_header(1, 0x21, &v6), b"").await;
        assert_eq!(got.unwrap(), Some("[2001:db8::7]:4711".parse().unwrap()));
    }

    #[tokio::test]
    async fn anything_but_a_whole_valid_header_is_refused() {
        for (bytes, reason) in [
            (
                &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcd"[..],
                "invalid",
            ),
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", "invalid"),
            (b"PROXY TCP4 203.0.113.7 10.0.0.1 4711\r\n", "invalid"),
            (b"PROXY TCP4 999.0.113.7 10.0.0.1 4711 443\r\n", "invalid"),
            (b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 443", "closed"),
            (b"PROXY TCP4 203.0.113.7", "closed"),
            (&[b'P'; 8][..], "closed"),
        ] {
            let (got, _) = parse(bytes, b"").await;
            assert_eq!(
                got.unwrap_err().label(),
                reason,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = format!("PROXY TCP4 {} 10.0.0.1 1 2\r\n", "1".repeat(120));
        assert_eq!(
            parse(long.as_bytes(), b"").await.0.unwrap_err().label(),
            "invalid"
        );
        // A v2 header cut short, one with a bad version, and one longer than taken.
        let whole = v2_header(1, 0x11, &[203, 0, 113, 7, 10, 0, 0, 1, 0, 1, 0, 2]);
        assert_eq!(
            parse(&whole[..20], b"").await.0.unwrap_err().label(),
            "closed"
        );
        let mut bad = whole.clone();
        bad[12] = 0x31;
        assert_eq!(parse(&bad, b"").await.0.unwrap_err().label(), "invalid");
        let mut huge = whole[..14].to_vec();
        huge.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&huge, b"").await.0.unwrap_err().label(), "invalid");
    }
}
