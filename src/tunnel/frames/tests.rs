//! Frame boundaries and Close frames, checked against frames that tungstenite encodes and reads.

use std::io::{self, Cursor, Read, Write};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{self, Role, WebSocket};

use super::*;

const TEXT: OpCode = OpCode::Data(Data::Text);
const BINARY: OpCode = OpCode::Data(Data::Binary);
const CONTINUE: OpCode = OpCode::Data(Data::Continue);
const PING: OpCode = OpCode::Control(Control::Ping);
const PONG: OpCode = OpCode::Control(Control::Pong);
const CLOSE: OpCode = OpCode::Control(Control::Close);

const MIB: usize = 1 << 20;

/// Payload sizes at and around each change of length encoding.
const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, MIB];

/// One frame encoded by tungstenite, as it would cross the wire.
fn encode(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        mask,
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    Frame::from_payload(header, Bytes::copy_from_slice(payload))
        .format(&mut out)
        .unwrap();
    out
}

/// A payload whose bytes look like headers, so a tracker that reads payloads goes wrong.
fn payload(len: usize) -> Vec<u8> {
    [0x88, 0xff, 0x7f, 0x81, 0x7e]
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// A mask key that varies with `seed`.
fn key(seed: usize) -> [u8; 4] {
    let b = seed as u8;
    [0x37 ^ b, 0xfa, 0x21 ^ b, 0x3d]
}

/// A stream of frames with the truth about where each one is.
#[derive(Default)]
struct Stream {
    bytes: Vec<u8>,
    /// Offset just past each frame's last byte.
    ends: Vec<usize>,
    /// Offset just past each Close frame's header.
    close_header_ends: Vec<usize>,
}

impl Stream {
    fn push(&mut self, opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) {
        let frame = encode(opcode, fin, payload, mask);
        let header_len = frame.len() - payload.len();
        if opcode == CLOSE {
            self.close_header_ends.push(self.bytes.len() + header_len);
        }
        self.bytes.extend_from_slice(&frame);
        self.ends.push(self.bytes.len());
    }

    fn is_boundary(&self, at: usize) -> bool {
        at == 0 || self.ends.binary_search(&at).is_ok()
    }

    /// Frames that end within `(from, to]`.
    fn frames_in(&self, from: usize, to: usize) -> u64 {
        count_in(&self.ends, from, to)
    }

    /// Close headers that end within `(from, to]`.
    fn closes_in(&self, from: usize, to: usize) -> u64 {
        count_in(&self.close_header_ends, from, to)
    }

    /// The first frame end at or after `at`.
    fn next_end(&self, at: usize) -> usize {
        self.ends[self.ends.partition_point(|&e| e < at)]
    }
}

fn count_in(sorted: &[usize], from: usize, to: usize) -> u64 {
    (sorted.partition_point(|&e| e <= to) - sorted.partition_point(|&e| e <= from)) as u64
}

/// Every kind of frame a websocket stream carries, masked and unmasked, in every length
/// encoding, with `largest` as the biggest data payload.
fn mixed_stream(largest: usize) -> Stream {
    let mut s = Stream::default();
    for (i, &len) in SIZES.iter().filter(|&&len| len <= largest).enumerate() {
        s.push(BINARY, true, &payload(len), None);
        s.push(BINARY, true, &payload(len), Some(key(i)));
    }
    s.push(TEXT, true, b"hello", None);
    s.push(TEXT, true, b"hello", Some(key(1)));
    // A fragmented message with a Ping between its fragments, as RFC 6455 §5.4 allows.
    s.push(TEXT, false, b"frag", Some(key(2)));
    s.push(CONTINUE, false, &payload(300), Some(key(3)));
    s.push(PING, true, b"", Some(key(4)));
    s.push(CONTINUE, false, b"", None);
    s.push(CONTINUE, true, b"mented", Some(key(5)));
    s.push(PING, true, &payload(125), None);
    s.push(PONG, true, &payload(125), Some(key(6)));
    s.push(PONG, true, b"", None);
    s.push(CLOSE, true, b"", None);
    s.push(CLOSE, true, b"", Some(key(7)));
    s.push(CLOSE, true, b"\x03\xe8bye", Some(key(8)));
    s.push(CLOSE, true, &[0x0f, 0xa1], None);
    s.push(BINARY, true, b"after close", None);
    s
}

/// Feeds `data` with `stop_at_boundary == false` and checks what it reports against `s`,
/// where `data` starts at offset `from` of `s`.
fn feed_checked(t: &mut FrameTracker, s: &Stream, from: usize, data: &[u8]) {
    let to = from + data.len();
    let seen = t.advance(data, false).unwrap();
    assert_eq!(seen.consumed, data.len(), "consumed in {from}..{to}");
    assert_eq!(seen.frames, s.frames_in(from, to), "frames in {from}..{to}");
    assert_eq!(
        seen.close_seen,
        s.closes_in(from, to) > 0,
        "close_seen in {from}..{to}"
    );
    assert_eq!(t.at_boundary(), s.is_boundary(to), "boundary at {to}");
}

/// From offset `at` of `s`, a stop-at-boundary call must end exactly at the current frame's
/// end, or consume nothing when `at` is a boundary.
fn stop_checked(t: &mut FrameTracker, s: &Stream, at: usize, data: &[u8]) -> usize {
    let seen = t.advance(data, true).unwrap();
    let want = if s.is_boundary(at) {
        0
    } else {
        (s.next_end(at) - at).min(data.len())
    };
    assert_eq!(seen.consumed, want, "stop from {at}");
    let to = at + want;
    assert_eq!(
        seen.frames,
        s.frames_in(at, to),
        "frames stopping {at}..{to}"
    );
    assert_eq!(
        seen.close_seen,
        s.closes_in(at, to) > 0,
        "close_seen stopping {at}..{to}"
    );
    assert_eq!(t.at_boundary(), s.is_boundary(to), "boundary at {to}");
    want
}

#[test]
fn tracker_each_frame_whole_completes_one_frame() {
    let opcodes = [TEXT, BINARY, CONTINUE, PING, PONG, CLOSE];
    for opcode in opcodes {
        let sizes: &[usize] = if matches!(opcode, OpCode::Control(_)) {
            &[0, 1, 125]
        } else {
            &SIZES
        };
        for &len in sizes {
            for mask in [None, Some(key(len))] {
                let frame = encode(opcode, true, &payload(len), mask);
                let mut t = FrameTracker::new();
                let seen = t.advance(&frame, false).unwrap();
                let want = Advance {
                    consumed: frame.len(),
                    close_seen: opcode == CLOSE,
                    frames: 1,
                };
                assert_eq!(seen, want, "{opcode:?} len {len} mask {mask:?}");
                assert!(t.at_boundary());
            }
        }
    }
}

#[test]
fn tracker_new_is_at_boundary() {
    assert!(FrameTracker::new().at_boundary());
}

#[test]
fn tracker_many_frames_in_one_chunk_counts_all() {
    let s = mixed_stream(MIB);
    let mut t = FrameTracker::new();
    feed_checked(&mut t, &s, 0, &s.bytes);
    assert_eq!(s.frames_in(0, s.bytes.len()), s.ends.len() as u64);
}

#[test]
fn tracker_one_byte_per_call_finds_every_boundary() {
    let s = mixed_stream(MIB);
    let mut t = FrameTracker::new();
    for (at, byte) in s.bytes.iter().enumerate() {
        feed_checked(&mut t, &s, at, std::slice::from_ref(byte));
    }
}

#[test]
fn tracker_split_at_every_offset_finds_true_boundaries() {
    let s = mixed_stream(65536);
    for at in 0..=s.bytes.len() {
        let mut t = FrameTracker::new();
        feed_checked(&mut t, &s, 0, &s.bytes[..at]);
        let mut stopped = t.clone();
        feed_checked(&mut t, &s, at, &s.bytes[at..]);
        assert!(t.at_boundary());

        // Stopping from here must end exactly at this frame's end.
        let taken = stop_checked(&mut stopped, &s, at, &s.bytes[at..]);
        assert!(stopped.at_boundary());
        assert_eq!(
            stop_checked(&mut stopped, &s, at + taken, &s.bytes[at + taken..]),
            0
        );
    }
}

#[test]
fn tracker_random_chunks_match_true_boundaries() {
    // Tiny chunks over the 1 MiB frames would only repeat the one-byte test, slowly.
    let small = mixed_stream(65536);
    let large = mixed_stream(MIB);
    let runs = [
        (&small, 3),
        (&small, 16),
        (&large, 200),
        (&large, 8192),
        (&large, 70_000),
    ];
    for (seed, (s, max_chunk)) in (0..).zip(runs.iter().cycle().take(20)) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut t = FrameTracker::new();
        let mut at = 0;
        while at < s.bytes.len() {
            let len = rng.random_range(1..=*max_chunk).min(s.bytes.len() - at);
            let chunk = &s.bytes[at..at + len];
            // Now and then the relay wants to inject a frame and asks to stop at the next boundary;
            // whatever that leaves unconsumed is fed again in the next chunk.
            if rng.random_ratio(1, 4) {
                at += stop_checked(&mut t, s, at, chunk);
            } else {
                feed_checked(&mut t, s, at, chunk);
                at += len;
            }
        }
        assert!(t.at_boundary(), "seed {seed}");
    }
}

#[test]
fn tracker_stop_at_boundary_at_boundary_consumes_nothing() {
    let frame = encode(BINARY, true, b"abc", Some(key(0)));
    let mut t = FrameTracker::new();
    assert_eq!(t.advance(&frame, true).unwrap(), Advance::default());
    t.advance(&frame, false).unwrap();
    assert_eq!(t.advance(&frame, true).unwrap(), Advance::default());
    assert!(t.at_boundary());
}

#[test]
fn tracker_stop_mid_header_consumes_through_frame_end() {
    let mut bytes = encode(BINARY, true, &payload(200), Some(key(0)));
    let first_end = bytes.len();
    bytes.extend(encode(TEXT, true, b"next", None));
    let mut t = FrameTracker::new();
    t.advance(&bytes[..3], false).unwrap();
    let seen = t.advance(&bytes[3..], true).unwrap();
    assert_eq!(
        seen,
        Advance {
            consumed: first_end - 3,
            close_seen: false,
            frames: 1
        }
    );
    assert!(t.at_boundary());
}

#[test]
fn tracker_empty_close_completes_at_header_end() {
    for mask in [None, Some(key(0))] {
        let mut bytes = encode(BINARY, true, b"x", None);
        let start = bytes.len();
        bytes.extend(encode(CLOSE, true, b"", mask));
        bytes.extend(encode(BINARY, true, b"tail", None));

        let mut t = FrameTracker::new();
        t.advance(&bytes[..start + 1], false).unwrap();
        let seen = t.advance(&bytes[start + 1..], true).unwrap();
        let header_len = if mask.is_some() { 6 } else { 2 };
        assert_eq!(
            seen,
            Advance {
                consumed: header_len - 1,
                close_seen: true,
                frames: 1
            }
        );
        assert!(t.at_boundary());
    }
}

#[test]
fn tracker_empty_input_changes_nothing() {
    let frame = encode(BINARY, true, &payload(1000), None);
    let mut t = FrameTracker::new();
    t.advance(&frame[..1], false).unwrap();
    for stop in [false, true] {
        assert_eq!(t.advance(&[], stop).unwrap(), Advance::default());
    }
    assert_eq!(t.advance(&frame[1..], false).unwrap().frames, 1);
}

#[test]
fn tracker_largest_legal_length_stays_inside_frame() {
    // 2^63 - 1 payload bytes: legal, and never finished in a test's lifetime.
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&key(0));
    let mut t = FrameTracker::new();
    let seen = t.advance(&header, false).unwrap();
    assert_eq!(seen.frames, 0);
    let chunk = payload(8192);
    for _ in 0..1000 {
        for stop in [false, true] {
            let seen = t.advance(&chunk, stop).unwrap();
            assert_eq!((seen.consumed, seen.frames), (chunk.len(), 0));
        }
    }
    assert!(!t.at_boundary());
}

#[test]
fn tracker_length_top_bit_set_is_error() {
    let mut header = vec![0x82, 0x7f];
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    header.extend_from_slice(b"payload");

    let mut whole = FrameTracker::new();
    assert_eq!(
        whole.advance(&header, false),
        Err(FrameError::LengthTopBitSet)
    );

    // Split, the error comes with the byte that completes the header.
    let mut split = FrameTracker::new();
    for byte in &header[..9] {
        split.advance(std::slice::from_ref(byte), false).unwrap();
    }
    assert_eq!(
        split.advance(&header[9..], true),
        Err(FrameError::LengthTopBitSet)
    );
}

#[test]
fn tracker_client_websocket_messages_counted() {
    // A real client: tungstenite picks a fresh random mask for every frame.
    let mut ws = WebSocket::from_raw_socket(Cursor::new(Vec::new()), Role::Client, None);
    ws.send(Message::text("hello")).unwrap();
    ws.send(Message::binary(payload(70_000))).unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
    ws.send(Message::Pong(Bytes::new())).unwrap();
    ws.close(Some(protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let wire = ws.get_ref().get_ref().clone();

    let mut t = FrameTracker::new();
    let mut frames = 0;
    let mut close_chunks = 0;
    for chunk in wire.chunks(1000) {
        let seen = t.advance(chunk, false).unwrap();
        frames += seen.frames;
        close_chunks += u64::from(seen.close_seen);
    }
    assert_eq!((frames, close_chunks), (5, 1));
    assert!(t.at_boundary());
}

/// A socket whose reads come from `input` and whose writes are kept.
struct Wire {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `bytes` as the first message of a websocket in `role`.
fn read_close(bytes: &[u8], role: Role) -> Option<protocol::CloseFrame> {
    let wire = Wire {
        input: Cursor::new(bytes.to_vec()),
        output: Vec::new(),
    };
    let mut ws = WebSocket::from_raw_socket(wire, role, None);
    match ws.read().unwrap() {
        Message::Close(close) => close,
        other => panic!("expected a Close, read {other:?}"),
    }
}

#[test]
fn close_frame_unmasked_reads_back_through_tungstenite_client() {
    let frame = CloseFrame::new(4001, "session expired", None);
    // A client rejects masked frames from a server, so this also checks the mask bit is clear.
    let close = read_close(frame.as_bytes(), Role::Client).unwrap();
    assert_eq!(u16::from(close.code), 4001);
    assert_eq!(close.reason.as_str(), "session expired");
}

#[test]
fn close_frame_masked_reads_back_through_tungstenite_server() {
    let frame = CloseFrame::new(4003, "session revoked", Some([1, 2, 3, 4]));
    // A server rejects unmasked frames from a client and unmasks the rest.
    let close = read_close(frame.as_bytes(), Role::Server).unwrap();
    assert_eq!(u16::from(close.code), 4003);
    assert_eq!(close.reason.as_str(), "session revoked");
}

#[test]
fn close_frame_bytes_follow_rfc_layout() {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let reason = "going away";
    let mut want_payload = 1001u16.to_be_bytes().to_vec();
    want_payload.extend_from_slice(reason.as_bytes());

    let plain = CloseFrame::new(1001, reason, None);
    let bytes = plain.as_bytes();
    assert_eq!(bytes[0], 0x88, "FIN and opcode 0x8, no RSV bits");
    assert_eq!(
        bytes[1],
        want_payload.len() as u8,
        "mask bit clear, 7-bit length"
    );
    assert_eq!(&bytes[2..], want_payload);

    let masked = CloseFrame::new(1001, reason, Some(key));
    let bytes = masked.as_bytes();
    assert_eq!(bytes[0], 0x88);
    assert_eq!(bytes[1], 0x80 | want_payload.len() as u8, "mask bit set");
    assert_eq!(bytes[2..6], key);
    let unmasked: Vec<u8> = bytes[6..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    assert_eq!(unmasked, want_payload);
}

#[test]
fn close_frame_empty_reason_has_code_only() {
    let frame = CloseFrame::new(1000, "", None);
    assert_eq!(frame.as_bytes(), [0x88, 0x02, 0x03, 0xe8]);
    let close = read_close(frame.as_bytes(), Role::Client).unwrap();
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(close.reason.as_str(), "");
}

#[test]
fn close_frame_long_reason_truncated_at_char_boundary() {
    let cases = [
        ("a".repeat(123), 123),
        ("a".repeat(124), 123),
        ("a".repeat(1000), 123),
        // A 2-byte char across the limit is dropped whole.
        ("a".repeat(122) + "é", 122),
        // 41 three-byte chars fill 123 bytes exactly.
        ("€".repeat(50), 123),
        ("a".repeat(121) + "😀", 121),
        ("ab".to_owned() + &"😀".repeat(40), 122),
    ];
    for (reason, kept) in cases {
        for mask in [None, Some([9, 8, 7, 6])] {
            let frame = CloseFrame::new(4001, &reason, mask);
            let header_len = if mask.is_some() { 6 } else { 2 };
            assert_eq!(frame.as_bytes().len(), header_len + 2 + kept);
            assert!(frame.as_bytes().len() <= 2 + 4 + 125);
            let role = if mask.is_some() {
                Role::Server
            } else {
                Role::Client
            };
            // tungstenite rejects a reason that is not UTF-8.
            let close = read_close(frame.as_bytes(), role).unwrap();
            assert_eq!(close.reason.as_str(), &reason[..kept]);
        }
    }
}

#[test]
fn close_frame_tracked_as_one_close() {
    for mask in [None, Some([1, 2, 3, 4])] {
        let frame = CloseFrame::new(4001, "session expired", mask);
        let mut t = FrameTracker::new();
        let seen = t.advance(frame.as_bytes(), false).unwrap();
        assert_eq!(
            seen,
            Advance {
                consumed: frame.as_bytes().len(),
                close_seen: true,
                frames: 1
            }
        );
        assert!(t.at_boundary());
    }
}
