//! Websocket frame-boundary tracking per MiB relayed, against copying the same MiB.
//!
//! Run: `cargo bench --bench frames`
//!
//! Medians from `cargo bench --bench frames` on 2026-11-23, 2 vCPU x86_64 (shared), Rust 1.95.
//! Three runs, all while another build used both cores (load average 2.4 to 8), so a bench's
//! median moved by up to half between runs; each median below is the middle of the three, and the
//! ratio to the copy is taken within each run. Every case is about 1 MiB fed in 8 KiB chunks.
//!
//! | bench                                     | median   | throughput | vs copy, per run  |
//! |-------------------------------------------|----------|------------|-------------------|
//! | baseline/copy (1 MiB, `copy_from_slice`)  | 156.5 µs | 6.2 GiB/s  | 1                 |
//! | track/1KiB_masked (1,016 frames)          | 6.58 µs  | 148 GiB/s  | 0.040 to 0.060    |
//! | track/125B (8,256 unmasked frames)        | 55.5 µs  | 17.6 GiB/s | 0.30 to 0.50      |
//! | track/1MiB_frame (one masked frame)       | 0.90 µs  | ~1 TiB/s   | 0.0055 to 0.0082  |
//!
//! The relay copies every byte it forwards anyway; the tracker's cost reads as a fraction of that
//! copy. It reads only headers, so it costs per frame, not per byte: about 6.5 ns per frame,
//! or per chunk inside one large frame. Small frames are its worst case; one large frame is
//! almost free.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

// The relay's own tracker, through the library's hidden `bench` re-exports.
use drawbridge::bench::FrameTracker;

const MIB: usize = 1 << 20;

/// The relay's read size when the figures above were taken; it now reads up to 64 KiB while data
/// flows, so fewer calls per MiB than here.
const CHUNK: usize = 8 * 1024;

/// Appends one FIN binary frame with a `len`-byte payload, laid out as RFC 6455 §5.2 says.
/// The payload bytes are arbitrary: the tracker never reads them, so they need no real masking.
fn push_frame(out: &mut Vec<u8>, len: usize, mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x82);
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend((0..len).map(|i| (i as u8).wrapping_mul(31)));
}

/// As many whole frames of `len`-byte payloads as fit in 1 MiB, or one frame if it does not fit.
fn stream(len: usize, mask: Option<[u8; 4]>) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(MIB + 14);
    let mut frames = 0;
    loop {
        let before = out.len();
        push_frame(&mut out, len, mask);
        if frames > 0 && out.len() > MIB {
            out.truncate(before);
            return (out, frames);
        }
        frames += 1;
    }
}

/// Feeds `data` to a fresh tracker in relay-sized chunks and returns the frames it completed.
fn track(data: &[u8]) -> u64 {
    let mut tracker = FrameTracker::new();
    let mut frames = 0;
    for chunk in data.chunks(CHUNK) {
        frames += tracker.advance(chunk, false).unwrap().frames;
    }
    frames
}

fn tracking(c: &mut Criterion) {
    let key = Some([0x37, 0xfa, 0x21, 0x3d]);
    let cases = [
        ("1KiB_masked", stream(1024, key)),
        ("125B", stream(125, None)),
        ("1MiB_frame", stream(MIB, key)),
    ];
    let mut group = c.benchmark_group("frames");

    let source = vec![0x5a; MIB];
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("baseline/copy", |b| {
        let mut buf = vec![0; CHUNK];
        b.iter(|| {
            for chunk in black_box(source.as_slice()).chunks(CHUNK) {
                buf[..chunk.len()].copy_from_slice(chunk);
                black_box(&mut buf);
            }
        });
    });

    for (name, (data, frames)) in &cases {
        assert_eq!(
            track(data),
            *frames,
            "{name}: the tracker must see every frame"
        );
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("track/{name}"), |b| {
            b.iter(|| track(black_box(data)));
        });
    }
    group.finish();
}

criterion_group!(benches, tracking);
criterion_main!(benches);
