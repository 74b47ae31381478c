//! The sync server's end of an open tunnel, unwrapped from hyper's upgrade.
//!
//! hyper hands an upgraded connection over in a box sized for the forwarder's connection type,
//! which has room for a TLS client session even when the sync server is reached over plain TCP:
//! about 0.7 KiB that an open tunnel would keep for its whole life, idle or not. [`UpstreamIo::new`]
//! takes the TCP socket out of that box when the connection is plain. Bytes the sync server sent
//! right behind its 101 (hyper read them with the response head) are handed out first, copied out
//! of hyper's read buffer so that buffer is not kept alive by them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::upgrade::{Parts, Upgraded};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// What the forwarder's connector yields: plain TCP or TLS over it.
type Conn = MaybeHttpsStream<TokioIo<TcpStream>>;

/// The sync server's end of a tunnel; see the module docs.
#[derive(Debug)]
pub(crate) struct UpstreamIo {
    /// Bytes the sync server sent behind its 101, not yet read.
    pre: Bytes,
    io: Inner,
}

/// Plain TCP: the socket alone; or TLS to the sync server, whose session needs the room anyway;
/// or a connection of another type (none today): hyper's upgraded connection as it is.
type Inner = Either<TcpStream, Either<Box<TokioIo<Conn>>, TokioIo<Upgraded>>>;

// === impl UpstreamIo ===

impl UpstreamIo {
    /// Unwraps the upgraded connection to the sync server.
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        match upgraded.downcast::<Conn>() {
            Ok(Parts { io, read_buf, .. }) => {
                // A copy: hyper's leftover shares (and would keep) its whole read buffer.
                let pre = if read_buf.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(&read_buf)
                };
                let io = match io {
                    MaybeHttpsStream::Http(tcp) => Either::Left(tcp.into_inner()),
                    tls @ MaybeHttpsStream::Https(_) => {
                        Either::Right(Either::Left(Box::new(TokioIo::new(tls))))
                    }
                };
                Self { pre, io }
            }
            Err(upgraded) => Self {
                pre: Bytes::new(),
                io: Either::Right(Either::Right(TokioIo::new(upgraded))),
            },
        }
    }

    /// Whether the sync server is reached over the plain TCP socket itself.
    #[cfg(test)]
    fn is_tcp(&self) -> bool {
        matches!(self.io, Either::Left(_))
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            if this.pre.is_empty() {
                this.pre = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::{Request, header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::Config;
    use crate::forward::Forwarder;

    /// A sync server that answers one websocket handshake with its 101 and `then` in one write.
    async fn sync_server(then: &'static [u8]) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                assert_eq!(s.read(&mut byte).await.unwrap(), 1);
                head.push(byte[0]);
            }
            let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\
                upgrade: websocket\r\n\r\n"
                .to_vec();
            answer.extend_from_slice(then);
            s.write_all(&answer).await.unwrap();
            // Echo what comes through the tunnel, so the test sees writes arrive.
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        addr
    }

    /// Opens a tunnel to `addr` through the forwarder drawbridge uses.
    async fn upgraded(addr: std::net::SocketAddr) -> Upgraded {
        let config = Config::from_toml(
            &format!("[upstream]\nurl = \"http://{addr}\"\n"),
            &HashMap::new(),
        )
        .unwrap();
        let forwarder = Forwarder::new(&config.upstream).unwrap();
        let req = Request::get(format!("http://{addr}/sync"))
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(crate::body::empty())
            .unwrap();
        let mut resp = forwarder.send(req, &config).await.unwrap();
        assert_eq!(resp.status(), 101);
        hyper::upgrade::on(&mut resp).await.unwrap()
    }

    #[tokio::test]
    async fn plain_upstream_is_unwrapped_to_its_tcp_socket() {
        let addr = sync_server(b"").await;
        let mut io = UpstreamIo::new(upgraded(addr).await);
        assert!(
            io.is_tcp(),
            "the forwarder's plain connection was not unwrapped"
        );
        io.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test]
    async fn bytes_sent_with_the_101_are_read_first() {
        let addr = sync_server(b"\x81\x05hello").await;
        let mut io = UpstreamIo::new(upgraded(addr).await);
        let mut got = [0u8; 7];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x81\x05hello");
        io.write_all(b"next").await.unwrap();
        let mut echo = [0u8; 4];
        io.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"next");
    }
}
