//! The stream hyper reads and writes: it carries the connection's slot under
//! `limits.max_connections`, tells the connection's activity when bytes arrive (and whether they
//! opened with the HTTP/2 preface), and can make hyper see end-of-stream.
//!
//! The slot travels with the stream, so a websocket tunnel (which takes the stream over from
//! hyper after a 101) keeps counting against the cap until the tunnel ends.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::activity::Activity;
use super::clients::ClientSlot;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One place under `limits.max_connections`, counted in `drawbridge_connections_open`, and
/// the client's place under `limits.max_connections_per_client` when it has one.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
    open: IntGauge,
}

// === impl Slot ===

impl Slot {
    /// Takes the place `permit` grants.
    pub(super) fn new(permit: OwnedSemaphorePermit, open: IntGauge) -> Self {
        open.inc();
        Self {
            _permit: permit,
            _client: None,
            open,
        }
    }

    /// Keeps `client` (the client's own place) for as long as this slot.
    pub(super) fn hold(&mut self, client: Option<ClientSlot>) {
        self._client = client;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// How much of the HTTP/2 preface the first bytes matched.
#[derive(Debug, Clone, Copy)]
enum Sniff {
    Matched(usize),
    Decided,
}

/// A client stream under hyper; see the module docs.
#[derive(Debug)]
pub(super) struct Guarded<I> {
    inner: I,
    activity: Arc<Activity>,
    sniff: Sniff,
    _slot: Slot,
}

// === impl Guarded ===

impl<I> Guarded<I> {
    /// Wraps `inner`, holding `slot` until the stream is dropped.
    pub(super) fn new(inner: I, activity: Arc<Activity>, slot: Slot) -> Self {
        Self {
            inner,
            activity,
            sniff: Sniff::Matched(0),
            _slot: slot,
        }
    }

    fn sniff(&mut self, read: &[u8]) {
        let Sniff::Matched(done) = self.sniff else {
            return;
        };
        let want = &H2_PREFACE[done..];
        let n = read.len().min(want.len());
        self.sniff = if read[..n] != want[..n] {
            Sniff::Decided
        } else if done + n == H2_PREFACE.len() {
            self.activity.set_http2();
            Sniff::Decided
        } else {
            Sniff::Matched(done + n)
        };
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Filling nothing is end-of-stream, which hyper answers by closing.
        if this.activity.reads_ended() {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                this.activity.wake_on_end(cx.waker());
                if this.activity.reads_ended() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.on_bytes();
                    if matches!(this.sniff, Sniff::Matched(_)) {
                        this.sniff(&buf.filled()[before..]);
                    }
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Semaphore;

    use super::*;

    fn guarded<I>(inner: I) -> (Guarded<I>, Arc<Activity>, IntGauge) {
        let open = IntGauge::new("open", "open").unwrap();
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let activity = Arc::new(Activity::new());
        let io = Guarded::new(inner, activity.clone(), Slot::new(permit, open.clone()));
        (io, activity, open)
    }

    #[tokio::test]
    async fn preface_in_any_split_is_noticed() {
        for split in [1, 5, 23, 24] {
            let (mut client, server) = tokio::io::duplex(64);
            let (mut io, activity, _) = guarded(server);
            client.write_all(&H2_PREFACE[..split]).await.unwrap();
            let mut buf = [0u8; 24];
            let n = io.read(&mut buf).await.unwrap();
            assert!(!activity.is_http2() || n == 24, "split {split}");
            client.write_all(&H2_PREFACE[split..]).await.unwrap();
            let mut rest = vec![0u8; 24 - n];
            io.read_exact(&mut rest).await.unwrap();
            assert!(activity.is_http2(), "split {split}");
        }
    }

    #[tokio::test]
    async fn http1_and_near_misses_are_not_http2() {
        for start in [
            &b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
            b"PRI / HTTP/1.1\r\nhost: a\r\n\r\n",
        ] {
            let (mut client, server) = tokio::io::duplex(64);
            let (mut io, activity, _) = guarded(server);
            client.write_all(start).await.unwrap();
            let mut buf = vec![0u8; start.len()];
            io.read_exact(&mut buf).await.unwrap();
            assert!(!activity.is_http2(), "{:?}", String::from_utf8_lossy(start));
        }
    }

    #[tokio::test]
    async fn ended_reads_wake_a_blocked_reader_with_eof_and_writes_still_work() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut io, activity, _) = guarded(server);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = io.read(&mut buf).await.unwrap();
            io.write_all(b"bye").await.unwrap();
            n
        });
        tokio::task::yield_now().await;
        activity.end_reads();
        assert_eq!(reader.await.unwrap(), 0);
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"bye");
    }

    #[tokio::test]
    async fn slot_is_counted_until_the_stream_drops() {
        let (_client, server) = tokio::io::duplex(64);
        let (io, _, open) = guarded(server);
        assert_eq!(open.get(), 1);
        drop(io);
        assert_eq!(open.get(), 0);
    }
}
