//! Websocket framing for a relay that never decodes payloads (RFC 6455 §5.2).
//!
//! The relay copies bytes between the client and the sync server unchanged, client masks
//! included. To end a tunnel cleanly it must write its own Close frame *between* two frames,
//! never inside one, and it needs to notice when either side sends a Close. [`FrameTracker`]
//! follows one direction of the stream and finds where each frame ends from the headers alone:
//! payload bytes are skipped by counting, never read. [`CloseFrame`] is the frame it injects.
//!
//! Both work on the caller's buffers and the stack; nothing here allocates.
//!
//! It uses nothing else from the crate; `benches/frames.rs` times it through `drawbridge::bench`.

#[cfg(test)]
mod tests;

/// The longest frame header: 2 bytes, a 64-bit extended length, a 4-byte masking key.
const MAX_HEADER_LEN: usize = 2 + 8 + 4;

/// The Close opcode (RFC 6455 §5.5.1).
const OPCODE_CLOSE: u8 = 0x8;

/// Control frames carry at most 125 payload bytes (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A Close payload is a 2-byte code followed by the reason.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Why a byte stream is not a websocket frame stream.
///
/// Only what breaks framing itself is checked; the endpoints enforce the rest of RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A 64-bit payload length with its most significant bit set, which RFC 6455 §5.2 forbids.
    #[error("websocket frame has a 64-bit payload length with the most significant bit set")]
    LengthTopBitSet,
}

/// What one call to `advance` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Advance {
    /// Bytes of the input this call accounted for (all of it unless `stop_at_boundary`).
    pub(crate) consumed: usize,
    /// A Close frame (opcode 0x8) header was completed within the consumed bytes.
    pub(crate) close_seen: bool,
    /// Frames completed within the consumed bytes.
    pub frames: u64,
}

/// Frame-boundary state of one direction of a websocket stream.
///
/// Between calls it is in one of three states: at a boundary (`head_len == 0`,
/// `remaining == 0`), part way through a header that arrived split (`head_len > 0`), or inside
/// a payload (`remaining > 0`).
#[derive(Debug, Clone, Default)]
pub struct FrameTracker {
    /// Header bytes gathered so far, when a header arrives split across calls. Headers that
    /// arrive whole are parsed in place and never copied here.
    head: [u8; MAX_HEADER_LEN],
    /// How many bytes of `head` are filled.
    head_len: usize,
    /// Payload bytes of the current frame not yet seen.
    remaining: u64,
}

// === impl FrameTracker ===

impl FrameTracker {
    /// A tracker for a stream that starts at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the next byte starts a new frame header.
    pub(crate) fn at_boundary(&self) -> bool {
        self.head_len == 0 && self.remaining == 0
    }

    /// Feeds `data`. With `stop_at_boundary == false` it accounts for all of `data`. With `true` it stops
    /// at the first frame boundary: if already at a boundary it consumes nothing; otherwise it consumes up
    /// to and including the last byte of the current frame (or all of `data` if the frame does not end in it).
    ///
    /// Each call costs O(frame headers in `data`), however long the payloads.
    ///
    /// # Errors
    /// [`FrameError`] when `data` holds a header no websocket peer may send. The stream cannot be
    /// followed past it, so the tracker is no longer meaningful and the tunnel should be dropped.
    pub fn advance(&mut self, data: &[u8], stop_at_boundary: bool) -> Result<Advance, FrameError> {
        let mut seen = Advance::default();
        if stop_at_boundary && self.at_boundary() {
            return Ok(seen);
        }
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let rest = data.len() - pos;
                // usize is at most 64 bits wide, so these casts are lossless.
                if (rest as u64) < self.remaining {
                    self.remaining -= rest as u64;
                    pos = data.len();
                    break;
                }
                pos += self.remaining as usize;
                self.remaining = 0;
                seen.frames += 1;
                if stop_at_boundary {
                    break;
                }
            }
            if pos == data.len() {
                break;
            }

            // A header starts (or continues) at `pos`. The common case is a header wholly inside
            // this chunk: parse it where it lies. Otherwise gather it across calls.
            let rest = &data[pos..];
            let whole = match rest {
                [_, second, ..] if self.head_len == 0 => {
                    Some(header_len(*second)).filter(|&n| n <= rest.len())
                }
                _ => None,
            };
            let (payload_len, close) = match whole {
                Some(n) => {
                    pos += n;
                    parse_header(&rest[..n])?
                }
                None => {
                    pos += self.gather(rest);
                    if !self.head_complete() {
                        // `gather` took all of `data`; the header ends in a later chunk.
                        break;
                    }
                    self.head_len = 0;
                    parse_header(&self.head)?
                }
            };

            seen.close_seen |= close;
            self.remaining = payload_len;
            if payload_len == 0 {
                // An empty payload (an empty Close or Ping, say) ends with its header.
                seen.frames += 1;
                if stop_at_boundary {
                    break;
                }
            }
        }
        seen.consumed = pos;
        Ok(seen)
    }

    /// Copies header bytes from `data` into `head` until the header is whole or `data` runs
    /// out, and returns how many it took.
    fn gather(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            // The second byte says how long the header is; until then, ask for two.
            let need = if self.head_len < 2 {
                2
            } else {
                header_len(self.head[1])
            };
            let n = (need - self.head_len).min(data.len() - taken);
            if n == 0 {
                return taken;
            }
            self.head[self.head_len..self.head_len + n].copy_from_slice(&data[taken..taken + n]);
            self.head_len += n;
            taken += n;
        }
    }

    /// Whether `head` holds a whole header.
    fn head_complete(&self) -> bool {
        self.head_len >= 2 && self.head_len == header_len(self.head[1])
    }
}

/// The length of a header whose second byte is `second`: 2, plus the extended payload length
/// (none, 16 or 64 bits), plus the masking key if the mask bit is set.
fn header_len(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let key = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + key
}

/// Reads a whole header from the start of `head`: the payload length, and whether the frame
/// is a Close.
fn parse_header(head: &[u8]) -> Result<(u64, bool), FrameError> {
    let len = match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => {
            let mut be = [0; 8];
            be.copy_from_slice(&head[2..10]);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(FrameError::LengthTopBitSet);
            }
            len
        }
        len => u64::from(len),
    };
    Ok((len, head[0] & 0x0f == OPCODE_CLOSE))
}

/// A Close frame ready to write: at most 2 + 4 + 125 bytes, built on the stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseFrame {
    buf: [u8; 2 + 4 + MAX_CONTROL_PAYLOAD],
    len: usize,
}

// === impl CloseFrame ===

impl CloseFrame {
    /// A Close frame (FIN, opcode 0x8) with `code` and `reason` (reason truncated at a UTF-8 char boundary to
    /// fit 123 bytes). `mask: Some(key)` masks the payload, as frames sent toward a server must be (RFC 6455 5.3);
    /// `None` for frames sent to a client.
    ///
    /// `code` should be one an endpoint may send (RFC 6455 §7.4: not 1005, 1006 or 1015), and
    /// `key` should come from a strong random source, as RFC 6455 §5.3 asks; neither is checked.
    pub(crate) fn new(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Self {
        let reason = truncate_at_char_boundary(reason, MAX_CLOSE_REASON);
        let payload_len = 2 + reason.len();
        let mut buf = [0; 2 + 4 + MAX_CONTROL_PAYLOAD];
        buf[0] = 0x80 | OPCODE_CLOSE;
        // At most 125, so it fits the 7-bit length with no extended length.
        buf[1] = payload_len as u8;
        let mut start = 2;
        if let Some(key) = mask {
            buf[1] |= 0x80;
            buf[2..6].copy_from_slice(&key);
            start = 6;
        }
        let end = start + payload_len;
        buf[start..start + 2].copy_from_slice(&code.to_be_bytes());
        buf[start + 2..end].copy_from_slice(reason.as_bytes());
        if let Some(key) = mask {
            for (i, byte) in buf[start..end].iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        Self { buf, len: end }
    }

    /// The frame's bytes, header included.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The longest prefix of `s` that fits `max` bytes and ends on a char boundary.
fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // Index 0 is always a boundary, so this stops.
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
