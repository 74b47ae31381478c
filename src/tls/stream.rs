//! The main listener's TLS connections, over rustls's unbuffered API with buffers drawbridge
//! lends from a pool only while bytes are in flight.
//!
//! rustls's buffered connection keeps a 4 KiB receive buffer for its whole life (it sizes it
//! before every read, and an open connection always has a read pending), so every idle websocket
//! tunnel held one. Here a connection holds no buffer while idle:
//! - **Receiving.** Nothing is lent until the socket is readable. Then one pooled [`BUF_BYTES`]
//!   buffer takes everything the kernel has (several 16 KiB records in one `recv`), the complete
//!   records are decrypted, and the buffer goes back. A partial record left at the end is kept in
//!   a box of its own size, so a client that sends part of a record and stops holds only what it
//!   sent.
//! - **Sending.** Plaintext is encrypted into a pooled buffer and written; the buffer goes back
//!   once the socket took it all. While the socket is full it stays lent (a slow reader holds at
//!   most one), unless what is left is small enough to keep in a box of its own.
//! - **Plaintext.** A record is decrypted straight into the reader's buffer; what does not fit is
//!   kept for the next read.
//!
//! Early data is never enabled (the server config leaves `max_early_data_size` at 0), so it is
//! never read. A TLS error sends its alert when the socket takes it at once, and the stream then
//! fails with `InvalidData`, as tokio-rustls did. End of stream without a `close_notify` is
//! `UnexpectedEof`, so a truncation is never mistaken for a clean end.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::pool::Pool;

/// What one pooled buffer holds: four full records (16 KiB of plaintext each, RFC 8446 §5.1) with
/// their overhead, and room to join the largest handshake message (64 KiB, a long client
/// certificate chain) from its records.
const BUF_BYTES: usize = 72 * 1024;
/// Plaintext encrypted per write at most: four full records, which fit one buffer.
const MAX_WRITE: usize = 64 * 1024;
/// Pending bytes at most that move into a box of their own when the socket is not ready, so the
/// pooled buffer can go back: a partial record always fits.
const PARK_MAX: usize = 18 * 1024;
/// Small writes (an HTTP head beside its body) are gathered into one record up to this many
/// bytes; a larger first slice is encrypted on its own.
const GATHER_MAX: usize = 16 * 1024;

/// The buffers every TLS connection borrows; 64 kept (4.5 MiB).
static POOL: Pool = Pool::new(BUF_BYTES, 64);

/// A server-side TLS connection over TCP; see the module docs.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed.
    rx: Buf,
    /// Ciphertext not yet written.
    tx: Buf,
    /// Plaintext decrypted beyond what the last read could take, from `plain_at`.
    plain: Vec<u8>,
    plain_at: usize,
    /// The peer sent `close_notify`: reads end once `plain` is drained.
    read_closed: bool,
    /// A `close_notify` of ours is queued: nothing more may be written.
    write_closed: bool,
    /// The last read that waited, woken when a write's processing finds plaintext or the end.
    reader: Option<Waker>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("rx", &self.rx.len())
            .field("tx", &self.tx.len())
            .field("plain", &(self.plain.len() - self.plain_at))
            .finish_non_exhaustive()
    }
}

/// What one round of rustls's record processing did.
enum Step {
    /// Handshake bytes queued, plaintext taken, or nothing visible: go on.
    Progress,
    /// rustls needs more ciphertext before anything else can happen.
    NeedData,
    /// This many bytes of the plaintext offered were encrypted.
    Encrypted(usize),
    /// The peer's `close_notify` arrived.
    PeerClosed,
}

/// What a round of processing may send, once the connection can send application data.
#[derive(Clone, Copy)]
enum Send<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

// === impl TlsStream ===

impl TlsStream {
    /// Runs the server side of a handshake on `tcp` under `config`.
    ///
    /// # Errors
    /// The socket's error, `UnexpectedEof` when the client leaves, or `InvalidData` with rustls's
    /// error (its alert sent when the socket takes it).
    pub(crate) async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut stream = Self {
            tcp,
            conn,
            rx: Buf::default(),
            tx: Buf::default(),
            plain: Vec::new(),
            plain_at: 0,
            read_closed: false,
            write_closed: false,
            reader: None,
        };
        poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    /// The negotiated session: protocol version, ALPN, the client's certificates.
    pub(crate) fn session(&self) -> &rustls::CommonState {
        &self.conn
    }

    /// Drives the handshake until it is complete and everything rustls queued after it (the
    /// server's last flight under TLS 1.2, session tickets under TLS 1.3) is written.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_flush_tx(cx))?;
            match self.step(&mut ReadBuf::new(&mut []), Send::Nothing)? {
                Step::Progress | Step::Encrypted(_) => {}
                Step::NeedData if !self.conn.is_handshaking() => return Poll::Ready(Ok(())),
                Step::NeedData => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "client left during the TLS handshake",
                        )));
                    }
                }
                Step::PeerClosed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "client closed during the TLS handshake",
                    )));
                }
            }
        }
    }

    /// One round of rustls's processing over the ciphertext received: plaintext goes into `sink`
    /// (the rest into `plain`), handshake bytes into `tx`, and `send` is encrypted into `tx` if the
    /// connection is at a point where it may be.
    fn step(&mut self, sink: &mut ReadBuf<'_>, send: Send<'_>) -> io::Result<Step> {
        let status = self.conn.process_tls_records(self.rx.filled_mut());
        let mut discard = status.discard;
        let step = match status.state {
            Err(error) => {
                self.rx.consume(discard);
                return Err(self.fail(error));
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(invalid)?;
                    discard += record.discard;
                    let n = record.payload.len().min(sink.remaining());
                    sink.put_slice(&record.payload[..n]);
                    self.plain.extend_from_slice(&record.payload[n..]);
                }
                Step::Progress
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                match encode.encode(self.tx.spare(BUF_BYTES)) {
                    Ok(n) => self.tx.commit(n),
                    Err(EncodeError::InsufficientSize(_)) => {
                        self.rx.consume(discard);
                        return Err(too_large());
                    }
                    Err(EncodeError::AlreadyEncoded) => {}
                }
                Step::Progress
            }
            // What was encoded is in `tx`, which goes out before anything queued after it.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                Step::Progress
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                let written = match send {
                    Send::Nothing => None,
                    Send::Data(data) => Some(
                        traffic
                            .encrypt(data, self.tx.spare(BUF_BYTES))
                            .map(|n| (n, data.len())),
                    ),
                    Send::CloseNotify => {
                        self.write_closed = true;
                        Some(
                            traffic
                                .queue_close_notify(self.tx.spare(BUF_BYTES))
                                .map(|n| (n, 0)),
                        )
                    }
                };
                match written {
                    None => Step::NeedData,
                    Some(Ok((n, taken))) => {
                        self.tx.commit(n);
                        Step::Encrypted(taken)
                    }
                    Some(Err(error)) => {
                        self.rx.consume(discard);
                        return Err(match error {
                            EncryptError::InsufficientSize(_) => too_large(),
                            EncryptError::EncryptExhausted => {
                                io::Error::other("TLS: encrypter exhausted")
                            }
                        });
                    }
                }
            }
            Ok(ConnectionState::BlockedHandshake) => Step::NeedData,
            Ok(ConnectionState::PeerClosed) => {
                self.read_closed = true;
                Step::PeerClosed
            }
            Ok(ConnectionState::Closed) => {
                self.read_closed = true;
                self.write_closed = true;
                Step::PeerClosed
            }
            Ok(_) => {
                self.rx.consume(discard);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS: early data, which this server never accepts",
                ));
            }
        };
        self.rx.consume(discard);
        Ok(step)
    }

    /// The stream's error for rustls's `error`, after sending the alert rustls queued for it if the
    /// socket takes it now.
    fn fail(&mut self, error: rustls::Error) -> io::Error {
        if let Ok(ConnectionState::EncodeTlsData(mut alert)) =
            self.conn.process_tls_records(&mut []).state
            && let Ok(n) = alert.encode(self.tx.spare(BUF_BYTES))
        {
            self.tx.commit(n);
        }
        if !self.tx.is_empty() {
            let _ = self.tcp.try_write(self.tx.filled_mut());
            self.tx.clear();
        }
        invalid(error)
    }

    /// Reads what the socket has into `rx`: `Ready(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            if self.tcp.poll_read_ready(cx).is_pending() {
                self.rx.park();
                return Poll::Pending;
            }
            let space = self.rx.spare(PARK_MAX);
            if space.is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS: message larger than the receive buffer",
                )));
            }
            match self.tcp.try_read(space) {
                Ok(n) => {
                    self.rx.commit(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes `tx` out: `Ready` once the socket took all of it.
    fn poll_flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            match Pin::new(&mut self.tcp).poll_write(cx, self.tx.filled_mut()) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.tx.consume(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.tx.park();
                    return Poll::Pending;
                }
            }
        }
        self.tx.park();
        Poll::Ready(Ok(()))
    }

    /// Moves plaintext decrypted earlier into `buf`.
    fn drain_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.plain.len() - self.plain_at).min(buf.remaining());
        buf.put_slice(&self.plain[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
    }

    /// Processing for a write may take plaintext or the peer's end: the reader learns of it.
    fn wake_reader(&mut self) {
        if (self.plain.len() > self.plain_at || self.read_closed)
            && let Some(w) = self.reader.take()
        {
            w.wake();
        }
    }

    /// Encrypts as much of `data` as one write takes and writes it; `Pending` only while earlier
    /// ciphertext is still waiting for the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_flush_tx(cx))?;
        if self.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        loop {
            match self.step(&mut ReadBuf::new(&mut []), Send::Data(data))? {
                Step::Encrypted(n) => {
                    self.wake_reader();
                    // The bytes are taken: the socket gets them now or at the next write or flush.
                    if let Poll::Ready(Err(e)) = self.poll_flush_tx(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(n));
                }
                Step::Progress | Step::PeerClosed => {
                    self.wake_reader();
                    ready!(self.poll_flush_tx(cx))?;
                }
                Step::NeedData => {
                    return Poll::Ready(Err(io::Error::other(
                        "TLS: write before the handshake completed",
                    )));
                }
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Handshake or key-update bytes queued earlier go out first; a full socket wakes this read.
        if let Poll::Ready(Err(e)) = this.poll_flush_tx(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        this.drain_plain(buf);
        loop {
            if buf.remaining() == 0 || (buf.filled().len() > before && this.rx.is_empty()) {
                return Poll::Ready(Ok(()));
            }
            if this.read_closed && this.plain.is_empty() {
                return Poll::Ready(Ok(()));
            }
            match this.step(buf, Send::Nothing)? {
                Step::Progress | Step::Encrypted(_) => {
                    if !this.tx.is_empty()
                        && let Poll::Ready(Err(e)) = this.poll_flush_tx(cx)
                    {
                        return Poll::Ready(Err(e));
                    }
                }
                Step::PeerClosed => {}
                Step::NeedData => {
                    if buf.filled().len() > before {
                        this.rx.park();
                        return Poll::Ready(Ok(()));
                    }
                    match this.poll_fill(cx) {
                        Poll::Pending => {
                            if !this
                                .reader
                                .as_ref()
                                .is_some_and(|w| w.will_wake(cx.waker()))
                            {
                                this.reader = Some(cx.waker().clone());
                            }
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "peer closed connection without sending TLS close_notify",
                            )));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, data)
    }

    /// Gathers small slices (an HTTP head, an HTTP/2 frame header) into one record with what
    /// follows them, up to [`GATHER_MAX`] bytes; a larger first slice goes alone.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut slices = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = slices.next() else {
            return this.poll_send(cx, &[]);
        };
        if first.len() >= GATHER_MAX || bufs.len() == 1 {
            return this.poll_send(cx, first);
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        let mut gathered = Vec::with_capacity(total.min(GATHER_MAX));
        for slice in std::iter::once(first).chain(slices) {
            let take = slice.len().min(GATHER_MAX - gathered.len());
            gathered.extend_from_slice(&slice[..take]);
            if gathered.len() == GATHER_MAX {
                break;
            }
        }
        this.poll_send(cx, &gathered)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_tx(cx)
    }

    /// Sends `close_notify` once, writes out what is queued, then shuts the socket's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.write_closed && !this.conn.is_handshaking() {
            ready!(this.poll_flush_tx(cx))?;
            match this.step(&mut ReadBuf::new(&mut []), Send::CloseNotify) {
                Ok(Step::Encrypted(_)) | Err(_) => break,
                Ok(Step::NeedData) => this.write_closed = true,
                Ok(Step::Progress | Step::PeerClosed) => this.wake_reader(),
            }
        }
        ready!(this.poll_flush_tx(cx))?;
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "TLS: record larger than the send buffer",
    )
}

fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Bytes from `start` to `end` of a buffer that is either lent by [`POOL`] or (parked, or none)
/// a box of exactly the bytes it holds.
#[derive(Default)]
struct Buf {
    mem: Box<[u8]>,
    start: usize,
    end: usize,
}

// === impl Buf ===

impl Buf {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn is_lent(&self) -> bool {
        self.mem.len() == POOL.size()
    }

    fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.park();
    }

    /// Room after the bytes held, at least `want` bytes when a pooled buffer has it: borrows one
    /// (moving parked bytes into it), or moves the bytes held to its front.
    fn spare(&mut self, want: usize) -> &mut [u8] {
        if !self.is_lent() {
            let mut lent = POOL.take();
            let len = self.len();
            lent[..len].copy_from_slice(&self.mem[self.start..self.end]);
            self.mem = lent;
            self.start = 0;
            self.end = len;
        }
        if self.mem.len() - self.end < want.max(1) && self.start > 0 {
            self.mem.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.mem[self.end..]
    }

    fn commit(&mut self, n: usize) {
        self.end += n;
    }

    /// Returns a lent buffer to the pool: when it is empty, or holds few enough bytes to keep in
    /// a box of their own.
    fn park(&mut self) {
        if !self.is_lent() {
            return;
        }
        let kept: Box<[u8]> = if self.is_empty() {
            Box::default()
        } else if self.len() <= PARK_MAX {
            self.mem[self.start..self.end].into()
        } else {
            return;
        };
        self.end = kept.len();
        self.start = 0;
        POOL.give(std::mem::replace(&mut self.mem, kept));
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if self.is_lent() {
            POOL.give(std::mem::take(&mut self.mem));
        }
    }
}

#[cfg(test)]
mod tests;
