//! The relay: bytes both ways, untouched, with frame boundaries tracked so drawbridge can end a
//! tunnel with a proper close frame to each side.
//!
//! A tunnel ends in one of four ways, and in each one both sides learn it from a close frame
//! wherever a close frame can be sent:
//! - A side sends a close frame: it is relayed, and so is the other side's answer.
//! - drawbridge ends the tunnel (expiry, revocation, shutdown): each direction finishes the frame
//!   in flight, then gets drawbridge's close frame.
//! - A side vanishes without a close frame (end of stream, a reset, a write that fails): the other
//!   side gets one in its place, 1011 "upstream went away" toward the client, 1001 "client went
//!   away" toward the sync server (masked, as frames toward a server are).
//! - A side breaks the framing: the relay cannot follow the stream any more and drops both.
//!
//! A close frame can only go between two frames. When a side vanishes in the middle of a frame
//! toward the other, the other has a frame header promising payload that will never come, and
//! nothing the relay adds can make that stream right: a close frame sent there would be read as
//! the rest of the payload, and padding the payload out to its declared length would hand the
//! application a message nobody sent (and could mean writing up to 2^63 bytes). So inside a frame
//! the relay sends nothing more and ends the stream cleanly (TLS close_notify, then FIN). The
//! endpoint sees a truncated frame and a closed connection, fails the websocket connection
//! (RFC 6455 §7.1.7) and reports 1006 (abnormal closure), which is what happened.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::frames::{CloseFrame, FrameTracker};
use crate::pool::Pool;
use crate::registry::{CloseReason, Ctl};

/// Bytes relayed at once per direction while data flows; borrowed from a pool for the burst.
///
/// Four TLS records' worth (16 KiB of plaintext each, RFC 8446 §5.1): one write toward a TLS side
/// goes out as full records in one system call, where a smaller buffer would cut every record
/// short; and what a TLS side sends is gathered from several records into one write.
const BUF_BYTES: usize = 64 * 1024;
/// What an idle direction waits with: a read that fills it means a burst, which borrows a big buffer.
/// Small, because every open tunnel holds two: a ping or a short message still fits.
const IDLE_BUF_BYTES: usize = 128;
/// A read at least this long means data is flowing: what the source has ready already is
/// gathered into the same write. A shorter one (a small message) goes out at once, without
/// asking the source again.
const GATHER_FROM_BYTES: usize = 8 * 1024;
/// Big read buffers shared by every tunnel, so an idle tunnel holds none; 64 kept (4 MiB).
static POOL: Pool = Pool::new(BUF_BYTES, 64);

/// A direction's read buffer: small while idle, a pooled [`BUF_BYTES`] one during a burst.
struct ReadBuf {
    idle: [u8; IDLE_BUF_BYTES],
    big: Option<Box<[u8]>>,
}

impl ReadBuf {
    fn new() -> Self {
        Self {
            idle: [0; IDLE_BUF_BYTES],
            big: None,
        }
    }

    fn space(&mut self) -> &mut [u8] {
        match &mut self.big {
            Some(b) => b,
            None => &mut self.idle,
        }
    }

    fn filled(&self, n: usize) -> &[u8] {
        match &self.big {
            Some(b) => &b[..n],
            None => &self.idle[..n],
        }
    }

    /// After a read of `n` bytes into the big buffer: a short read ends the burst.
    fn adapt(&mut self, n: usize) {
        match &self.big {
            Some(b) if n < b.len() => {
                if let Some(b) = self.big.take() {
                    POOL.give(b);
                }
            }
            _ => {}
        }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Some(b) = self.big.take() {
            POOL.give(b);
        }
    }
}
/// How long a side gets to answer our close frame before its socket is shut.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// From the decision to close to dropping both sockets, whatever the peers do.
const STOP_DEADLINE: Duration = Duration::from_secs(3);
/// How long the other direction may linger after one side has gone with no close frame seen.
const LINGER: Duration = Duration::from_secs(10);

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// drawbridge closed it.
    Closed(CloseReason),
    /// The client closed first.
    Client,
    /// The sync server closed first.
    Upstream,
    /// The sync server vanished without a close frame; the client got 1011 if it was at a frame boundary.
    UpstreamLost,
    /// The client vanished without a close frame; the sync server got 1001 if it was at a frame boundary.
    ClientLost,
    /// A side broke the framing.
    Error,
}

// === impl Ended ===

impl Ended {
    /// The close code drawbridge sent the client, when drawbridge ended the tunnel.
    pub(crate) fn client_close_code(self) -> Option<u16> {
        match self {
            Self::Closed(r) => Some(r.client_close().0),
            _ => None,
        }
    }

    /// The bounded `reason` label of `drawbridge_tunnel_closes_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Closed(r) => r.label(),
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::UpstreamLost => "upstream_lost",
            Self::ClientLost => "client_lost",
            Self::Error => "error",
        }
    }
}

/// One end of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

// === impl Side ===

impl Side {
    /// The close the other end gets when this one vanishes without a close frame.
    fn lost_close(self) -> (u16, &'static str) {
        match self {
            // 1011, "an unexpected condition prevented the server from fulfilling the request"
            // (RFC 6455 §7.4.1). The IANA registry's later 1014 "Bad Gateway" would be more
            // precise, but clients that validate codes against RFC 6455 alone refuse it:
            // tungstenite 0.28 turns it into a 1002 "Protocol violation".
            Self::Upstream => (1011, "upstream went away"),
            Self::Client => (1001, "client went away"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToUpstream,
    ToClient,
}

// === impl Dir ===

impl Dir {
    /// The end this direction reads from.
    fn source(self) -> Side {
        match self {
            Self::ToUpstream => Side::Client,
            Self::ToClient => Side::Upstream,
        }
    }

    /// The end this direction writes to.
    fn sink(self) -> Side {
        match self {
            Self::ToUpstream => Side::Upstream,
            Self::ToClient => Side::Client,
        }
    }

    /// A Close frame for this direction's sink.
    fn close_frame(self, (code, reason): (u16, &str)) -> CloseFrame {
        match self {
            Self::ToClient => CloseFrame::new(code, reason, None),
            // Frames toward a server are masked (RFC 6455 5.3).
            Self::ToUpstream => CloseFrame::new(code, reason, Some(rand::random())),
        }
    }
}

/// Why a tunnel winds down. The first cause wins; later ones find it winding down already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// drawbridge ends it: each direction finishes its frame in flight, then sends our close.
    Closing(CloseReason),
    /// This end vanished without a close frame: the other end gets [`Side::lost_close`].
    Lost(Side),
}

/// Records `cause` unless the tunnel already winds down; whether it was recorded.
fn begin(stop: &watch::Sender<Option<Stop>>, cause: Stop) -> bool {
    stop.send_if_modified(|now| {
        if now.is_some() {
            return false;
        }
        *now = Some(cause);
        true
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpEnd {
    /// The source ended after its close frame.
    Eof,
    /// We wound the direction down (our close, or the sink's end vanished).
    Stopped,
    /// The source vanished without a close frame.
    Lost,
    /// The framing broke, or a write failed while drawbridge was closing.
    Error,
}

const NOBODY: u8 = 0;
const CLIENT: u8 = 1;
const UPSTREAM: u8 = 2;

/// Relays until both sides are done, or until `ctl` says to close (deadline or command).
pub(crate) async fn run<C, U>(
    client: C,
    upstream: U,
    mut ctl: watch::Receiver<Ctl>,
    to_upstream_bytes: IntCounter,
    to_client_bytes: IntCounter,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Send + Unpin,
    U: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (client_r, client_w) = tokio::io::split(client);
    let (upstream_r, upstream_w) = tokio::io::split(upstream);
    let stop = watch::Sender::new(None::<Stop>);
    let first_close = AtomicU8::new(NOBODY);
    // Built where they are pinned, so no moved-from copy needs room in the tunnel's task, which
    // lives as long as the tunnel.
    let mut up = std::pin::pin!(pump(
        client_r,
        upstream_w,
        Dir::ToUpstream,
        &stop,
        &to_upstream_bytes,
        &first_close,
    ));
    let mut down = std::pin::pin!(pump(
        upstream_r,
        client_w,
        Dir::ToClient,
        &stop,
        &to_client_bytes,
        &first_close,
    ));
    let mut supervisor = std::pin::pin!(async {
        loop {
            let now = *ctl.borrow_and_update();
            match now {
                Ctl::Close(reason) => return reason,
                Ctl::Until(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => return CloseReason::Expired,
                        changed = ctl.changed() => {
                            if changed.is_err() {
                                // The registry went away: only the deadline is left.
                                tokio::time::sleep_until(deadline).await;
                                return CloseReason::Expired;
                            }
                        }
                    }
                }
            }
        }
    });
    let (mut up_end, mut down_end, mut stopped) = (None, None, None);
    let mut supervised = true;
    // Armed (reset) only once one side is gone; its branch is disabled until then.
    let linger = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(linger);
    let mut lingering = false;
    while up_end.is_none() || down_end.is_none() {
        tokio::select! {
            reason = &mut supervisor, if supervised => {
                supervised = false;
                // Unless a side vanished first, which winds the tunnel down already.
                if begin(&stop, Stop::Closing(reason)) {
                    stopped = Some(reason);
                    // A peer may trickle one huge frame; the close waits for its end only this long.
                    linger.as_mut().reset(tokio::time::Instant::now() + STOP_DEADLINE);
                    lingering = true;
                }
            }
            end = &mut up, if up_end.is_none() => up_end = Some(end),
            end = &mut down, if down_end.is_none() => down_end = Some(end),
            () = &mut linger, if lingering => break,
        }
        if !lingering && (up_end.is_some() || down_end.is_some()) {
            // One side is gone: the other gets a bounded time to finish its close. When a side
            // vanished, the other was sent our close; when a close frame already crossed, the
            // closing handshake is under way. Either way only an answer is awaited.
            let wait = if stop.borrow().is_some() || first_close.load(Ordering::Relaxed) != NOBODY {
                CLOSE_WAIT * 2
            } else {
                LINGER
            };
            linger.as_mut().reset(tokio::time::Instant::now() + wait);
            lingering = true;
        }
    }
    tracing::trace!(?up_end, ?down_end, "relay done");
    if let Some(reason) = stopped {
        return Ended::Closed(reason);
    }
    // A side that sent a close frame started a proper close, whatever the other did after.
    match first_close.load(Ordering::Relaxed) {
        CLIENT => return Ended::Client,
        UPSTREAM => return Ended::Upstream,
        _ => {}
    }
    match *stop.borrow() {
        Some(Stop::Lost(Side::Upstream)) => Ended::UpstreamLost,
        Some(Stop::Lost(Side::Client)) => Ended::ClientLost,
        _ => Ended::Error,
    }
}

/// Copies one direction, from its source to its sink.
///
/// When drawbridge closes the tunnel: finishes the frame in flight, writes our close frame, drains
/// the source's answer for a moment, and shuts the sink. When the source vanishes without a close
/// frame: writes the lost-close to the sink if at a frame boundary, and shuts it. When the sink
/// vanishes: drains the source's answer to the close the other direction sent it, and stops.
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    dir: Dir,
    stop_tx: &watch::Sender<Option<Stop>>,
    bytes: &IntCounter,
    first_close: &AtomicU8,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut stop = stop_tx.subscribe();
    let mut buf = ReadBuf::new();
    let mut tracker = FrameTracker::new();
    // Whether the source sent a close frame: its end of stream is then the expected end.
    let mut source_closed = false;
    loop {
        let stopping = *stop.borrow_and_update();
        match stopping {
            Some(Stop::Closing(reason)) if tracker.at_boundary() => {
                let close = match dir {
                    Dir::ToClient => reason.client_close(),
                    Dir::ToUpstream => reason.upstream_close(),
                };
                write_close(&mut w, dir, close).await;
                drain(&mut r, &mut buf).await;
                let _ = w.shutdown().await;
                return PumpEnd::Stopped;
            }
            Some(Stop::Lost(side)) if side == dir.source() => {
                // The other direction failed to write to our source: nothing more comes from it.
                return source_lost(&mut w, dir, &tracker).await;
            }
            Some(Stop::Lost(_)) => {
                // The sink vanished. The source was sent a close by the other direction; what it
                // still sends is its answer, and nobody is left to read it.
                drain(&mut r, &mut buf).await;
                let _ = w.shutdown().await;
                return PumpEnd::Stopped;
            }
            Some(Stop::Closing(_)) | None => {}
        }
        let read = tokio::select! {
            biased;
            changed = stop.changed(), if stopping.is_none() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
            read = r.read(buf.space()) => read,
        };
        let mut n = match read {
            Ok(n) if n > 0 => n,
            end => {
                if source_closed {
                    // The end of a close handshake the source started or answered.
                    let _ = w.shutdown().await;
                    return if end.is_ok() {
                        PumpEnd::Eof
                    } else {
                        PumpEnd::Error
                    };
                }
                // End of stream or a reset, with no close frame: the source is gone.
                begin(stop_tx, Stop::Lost(dir.source()));
                return source_lost(&mut w, dir, &tracker).await;
            }
        };
        if buf.big.is_none() && n == IDLE_BUF_BYTES {
            // A burst: move to a big buffer and take what is already there, so a message
            // slightly larger than the idle buffer still goes out in one write.
            let mut big = POOL.take();
            big[..n].copy_from_slice(&buf.idle);
            if let Some(Ok(more)) = r.read(&mut big[n..]).now_or_never() {
                n += more;
            }
            buf.big = Some(big);
        }
        if let Some(big) = &mut buf.big {
            // A read hands over what one receive brought (a TLS side: the records it held, an HTTP/2
            // stream: one DATA frame); take what is already there behind it too.
            while n >= GATHER_FROM_BYTES && n < big.len() {
                match r.read(&mut big[n..]).now_or_never() {
                    Some(Ok(more)) if more > 0 => n += more,
                    _ => break,
                }
            }
        }
        let Ok(adv) = tracker.advance(buf.filled(n), stopping.is_some()) else {
            let _ = w.shutdown().await;
            return PumpEnd::Error;
        };
        if adv.close_seen {
            source_closed = true;
            let who = if dir == Dir::ToUpstream {
                CLIENT
            } else {
                UPSTREAM
            };
            let _ = first_close.compare_exchange(NOBODY, who, Ordering::Relaxed, Ordering::Relaxed);
        }
        if adv.consumed > 0 {
            if w.write_all(&buf.filled(n)[..adv.consumed]).await.is_err()
                || w.flush().await.is_err()
            {
                // The sink vanished: the other direction closes toward our source, whose
                // answer this direction then drains (the next turn of the loop).
                begin(stop_tx, Stop::Lost(dir.sink()));
                if matches!(*stop.borrow(), Some(Stop::Lost(_))) {
                    continue;
                }
                return PumpEnd::Error;
            }
            bytes.inc_by(adv.consumed as u64);
        }
        buf.adapt(n);
        // While stopping, bytes past the boundary belong to frames nobody will read: dropped.
    }
}

/// The source vanished without a close frame. The sink gets the lost-close only at a frame
/// boundary; inside a frame it gets nothing more (see the module doc). Then its end of stream.
async fn source_lost<W>(w: &mut W, dir: Dir, tracker: &FrameTracker) -> PumpEnd
where
    W: AsyncWrite + Unpin,
{
    if tracker.at_boundary() {
        write_close(w, dir, dir.source().lost_close()).await;
    }
    let _ = w.shutdown().await;
    PumpEnd::Lost
}

/// Writes a close frame to the sink; a sink that fails now is gone anyway.
async fn write_close<W>(w: &mut W, dir: Dir, close: (u16, &str))
where
    W: AsyncWrite + Unpin,
{
    let frame = dir.close_frame(close);
    let _ = w.write_all(frame.as_bytes()).await;
    let _ = w.flush().await;
}

/// Reads and drops what the source still sends, until its end of stream or [`CLOSE_WAIT`].
async fn drain<R>(r: &mut R, buf: &mut ReadBuf)
where
    R: AsyncRead + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Ok(n) = r.read(buf.space()).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    #[test]
    fn lost_close_codes_are_ones_a_strict_client_accepts() {
        for side in [Side::Client, Side::Upstream] {
            let (code, reason) = side.lost_close();
            assert!(CloseCode::from(code).is_allowed(), "{side:?}: {code}");
            let frame = Dir::ToClient.close_frame((code, reason));
            assert_eq!(
                frame.as_bytes().len(),
                2 + 2 + reason.len(),
                "not truncated"
            );
        }
    }

    #[test]
    fn relay_future_holds_no_big_buffer() {
        // What an open tunnel keeps for its whole life, idle or not: this future, in its task.
        let (client, _client) = tokio::io::duplex(64);
        let (upstream, _upstream) = tokio::io::duplex(64);
        let (_ctl, ctl) = watch::channel(Ctl::Close(CloseReason::Shutdown));
        let bytes = IntCounter::new("bytes", "bytes").unwrap();
        let relay = run(client, upstream, ctl, bytes.clone(), bytes);
        let size = std::mem::size_of_val(&relay);
        assert!(
            size < BUF_BYTES / 8,
            "the relay's future takes {size} bytes"
        );
    }

    #[test]
    fn each_direction_closes_toward_the_side_it_writes_to() {
        for dir in [Dir::ToUpstream, Dir::ToClient] {
            assert_ne!(dir.source(), dir.sink());
            // Toward the sync server the frame is masked, toward the client it is not.
            let masked = dir.close_frame((1001, "x")).as_bytes()[1] & 0x80 != 0;
            assert_eq!(masked, dir.sink() == Side::Upstream, "{dir:?}");
        }
    }
}
