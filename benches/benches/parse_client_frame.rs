//! `parse_client_frame/<size>`: decoding one masked client frame and unmasking its payload, by
//! payload size, with the server's own decoder (`ringcast::ws::decode::FrameDecoder`, the code
//! the connection's reader task runs on its read buffer; no socket involved).
//!
//! The input is a buffer of identical masked binary frames back to back (at least 64 KiB, like
//! a busy client's socket read). The decoder unmasks in place, so each pass over the buffer
//! flips the payloads between masked and unmasked; for binary frames that changes nothing the
//! decoder looks at, so passes repeat without re-copying the input and the timed loop holds
//! nothing but decoding.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::testing::{Decoded, FrameDecoder};
use ringcast_benches::{criterion_config, payload, PAYLOAD_SIZES};
use ringcast_proto::{opcode, Frame};

/// Bytes of frames in the input buffer at least.
const INPUT_BYTES: usize = 64 * 1024;
/// A mask key like a client's (the value does not change the cost).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The server's default --max-message is 64 KiB; the 1 MiB case needs a larger limit.
const MAX_MESSAGE: usize = 2 << 20;

/// Decodes `iterations` frames from `input`, wrapping to its start at the end; returns the
/// time spent. Panics if a frame does not decode as one whole binary message, so a decoder
/// that stopped working could not report a fast figure.
fn decode_frames(decoder: &mut FrameDecoder, input: &mut [u8], iterations: u64) -> Duration {
    let mut offset = 0;
    let start = Instant::now();
    for _ in 0..iterations {
        let consumed = match decoder.decode(&mut input[offset..]) {
            Ok(Decoded::Event { event, consumed }) => {
                black_box(event);
                consumed
            }
            other => panic!("expected one whole frame, decoder said {other:?}"),
        };
        offset += consumed;
        if offset == input.len() {
            offset = 0;
        }
    }
    start.elapsed()
}

fn parse_client_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_client_frame");
    for (size, label) in PAYLOAD_SIZES {
        let data = payload(size);
        let mut frame = Vec::new();
        Frame::new(opcode::BINARY, &data)
            .masked(MASK)
            .encode(&mut frame);
        let mut input = frame.repeat(INPUT_BYTES.div_ceil(frame.len()));
        let mut decoder = FrameDecoder::new(MAX_MESSAGE);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iterations| decode_frames(&mut decoder, &mut input, iterations))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = parse_client_frame
}
criterion_main!(benches);
