//! The relay: bytes both ways, untouched, with frame boundaries tracked so drawbridge can end a
//! tunnel with a proper close frame to each side.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::frames::{CloseFrame, FrameTracker};
use super::registry::{CloseReason, Ctl};

/// Bytes read at once per direction while data flows; borrowed from a pool for the burst.
const BUF_BYTES: usize = 8 * 1024;
/// What an idle direction waits with: a read that fills it means a burst, which borrows a big buffer.
const IDLE_BUF_BYTES: usize = 512;
/// Big buffers kept for reuse (4 MiB at most); more are freed.
const POOL_MAX: usize = 512;

/// Big read buffers shared by every tunnel, so an idle tunnel holds none.
static POOL: std::sync::Mutex<Vec<Box<[u8]>>> = std::sync::Mutex::new(Vec::new());

fn take_buf() -> Box<[u8]> {
    POOL.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop()
        .unwrap_or_else(|| vec![0u8; BUF_BYTES].into_boxed_slice())
}

fn give_buf(buf: Box<[u8]>) {
    let mut pool = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pool.len() < POOL_MAX {
        pool.push(buf);
    }
}

/// A direction's read buffer: small while idle, a pooled 8 KiB one during a burst.
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
                    give_buf(b);
                }
            }
            _ => {}
        }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Some(b) = self.big.take() {
            give_buf(b);
        }
    }
}
/// How long a side gets to answer our close frame before its socket is shut.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// From the decision to close to dropping both sockets, whatever the peers do.
const STOP_DEADLINE: Duration = Duration::from_secs(3);
/// How long the other direction may linger after one side has gone.
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
    /// A socket failed or a side broke the framing.
    Error,
}

impl Ended {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Closed(r) => r.label(),
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToUpstream,
    ToClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpEnd {
    Eof,
    Stopped,
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
    let (stop_tx, stop_rx) = watch::channel(None::<CloseReason>);
    let first_close = AtomicU8::new(NOBODY);
    let up = pump(
        client_r,
        upstream_w,
        Dir::ToUpstream,
        stop_rx.clone(),
        &to_upstream_bytes,
        &first_close,
    );
    let down = pump(
        upstream_r,
        client_w,
        Dir::ToClient,
        stop_rx,
        &to_client_bytes,
        &first_close,
    );
    let supervisor = async {
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
    };
    tokio::pin!(up, down, supervisor);
    let (mut up_end, mut down_end, mut stopped) = (None, None, None);
    // Armed (reset) only once one side is gone; its branch is disabled until then.
    let linger = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(linger);
    let mut lingering = false;
    while up_end.is_none() || down_end.is_none() {
        tokio::select! {
            reason = &mut supervisor, if stopped.is_none() => {
                stopped = Some(reason);
                stop_tx.send_replace(Some(reason));
                // A peer may trickle one huge frame; the close waits for its end only this long.
                linger.as_mut().reset(tokio::time::Instant::now() + STOP_DEADLINE);
                lingering = true;
            }
            end = &mut up, if up_end.is_none() => up_end = Some(end),
            end = &mut down, if down_end.is_none() => down_end = Some(end),
            () = &mut linger, if lingering => break,
        }
        if !lingering && (up_end.is_some() || down_end.is_some()) {
            // Not stopped by us (that armed the deadline already): one side left on its own.
            // One side is gone: the other gets a bounded time to finish its close.
            let wait = if stopped.is_some() {
                CLOSE_WAIT * 2
            } else {
                LINGER
            };
            linger.as_mut().reset(tokio::time::Instant::now() + wait);
            lingering = true;
        }
    }
    if let Some(reason) = stopped {
        return Ended::Closed(reason);
    }
    match first_close.load(Ordering::Relaxed) {
        CLIENT => Ended::Client,
        UPSTREAM => Ended::Upstream,
        _ => match (up_end, down_end) {
            (Some(PumpEnd::Error), _) | (_, Some(PumpEnd::Error)) => Ended::Error,
            (Some(PumpEnd::Eof), _) => Ended::Client,
            _ => Ended::Upstream,
        },
    }
}

/// Copies one direction. When told to stop, finishes the frame in flight, writes our close frame,
/// drains the peer's answer for a moment, and shuts the writer.
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    dir: Dir,
    mut stop: watch::Receiver<Option<CloseReason>>,
    bytes: &IntCounter,
    first_close: &AtomicU8,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = ReadBuf::new();
    let mut tracker = FrameTracker::new();
    loop {
        let stopping = *stop.borrow_and_update();
        if let Some(reason) = stopping {
            if tracker.at_boundary() {
                let frame = match dir {
                    Dir::ToClient => {
                        let (code, text) = reason.client_close();
                        CloseFrame::new(code, text, None)
                    }
                    // Frames toward a server are masked (RFC 6455 5.3).
                    Dir::ToUpstream => {
                        let (code, text) = reason.upstream_close();
                        CloseFrame::new(code, text, Some(rand::random()))
                    }
                };
                let _ = w.write_all(frame.as_bytes()).await;
                let _ = w.flush().await;
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    while let Ok(n) = r.read(buf.space()).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                let _ = w.shutdown().await;
                return PumpEnd::Stopped;
            }
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
            Ok(0) => {
                let _ = w.shutdown().await;
                return PumpEnd::Eof;
            }
            Ok(n) => n,
            Err(_) => {
                let _ = w.shutdown().await;
                return PumpEnd::Error;
            }
        };
        if buf.big.is_none() && n == IDLE_BUF_BYTES {
            // A burst: move to a big buffer and take what is already there, so a message
            // slightly larger than the idle buffer still goes out in one write.
            let mut big = take_buf();
            big[..n].copy_from_slice(&buf.idle);
            if let Some(Ok(more)) = r.read(&mut big[n..]).now_or_never() {
                n += more;
            }
            buf.big = Some(big);
        }
        let Ok(adv) = tracker.advance(buf.filled(n), stopping.is_some()) else {
            let _ = w.shutdown().await;
            return PumpEnd::Error;
        };
        if adv.close_seen {
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
                return PumpEnd::Error;
            }
            bytes.inc_by(adv.consumed as u64);
        }
        buf.adapt(n);
        // While stopping, bytes past the boundary belong to frames nobody will read: dropped.
    }
}
