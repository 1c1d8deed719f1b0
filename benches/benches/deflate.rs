//! `deflate/...`: permessage-deflate's cost per message with two Rust deflate backends, to
//! choose the server's (issue 20): `miniz_oxide` (pure Rust, flate2's default `rust_backend`),
//! called through its stream API as flate2 calls it, and zlib-rs through flate2 with the
//! workspace's `zlib-rs` feature.
//!
//! Each operation is what a server with no context takeover does per message: compress —
//! reset the stream, deflate the whole message raw with a sync flush, strip the trailing
//! 00 00 ff ff (RFC 7692 7.2.1) — at levels 1 and 6; inflate — reset, inflate the message with
//! the tail appended back (7.2.2). The payload is the chat-like JSON of `--payload json`
//! (`ringcast_proto::chat`, without loadgen's stamp) at 64 B, 1 KiB and 16 KiB; throughput is
//! the uncompressed payload's bytes for both directions. Before measuring, the compression
//! ratio of each size and level is printed (payload / compressed bytes, tail stripped).
//!
//!   cargo bench -p ringcast-benches --bench deflate

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZFlush};
use ringcast_benches::criterion_config;
use ringcast_proto::chat;

/// Payload sizes, with the label used in the benchmark name.
const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (16 * 1024, "16KiB")];

/// The compression levels measured: zlib's fastest useful one and its default.
const LEVELS: [u32; 2] = [1, 6];

/// The empty stored block a sync flush ends with.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A per-message deflate with no context takeover, one implementation per backend.
trait Backend {
    /// Compresses `payload` into `out` (sized to hold it), tail stripped; returns the length.
    fn compress(&mut self, payload: &[u8], out: &mut [u8]) -> usize;
    /// Inflates `input` (the compressed message with the tail appended) into `out`; returns
    /// the length.
    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> usize;
}

/// miniz_oxide's stream API, as flate2's `rust_backend` drives it.
struct Miniz {
    /// Raw deflate at the level asked for.
    compressor: Box<CompressorOxide>,
    /// Raw inflate.
    inflater: Box<InflateState>,
}

impl Miniz {
    fn new(level: u32) -> Miniz {
        // Negative window bits: raw deflate, no zlib header.
        let flags = create_comp_flags_from_zip_params(level as i32, -15, 0);
        Miniz {
            compressor: Box::new(CompressorOxide::new(flags)),
            inflater: InflateState::new_boxed(DataFormat::Raw),
        }
    }
}

impl Backend for Miniz {
    fn compress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        self.compressor.reset();
        let result = miniz_oxide::deflate::stream::deflate(
            &mut self.compressor,
            payload,
            out,
            MZFlush::Sync,
        );
        assert_eq!(
            result.bytes_consumed,
            payload.len(),
            "output buffer too small"
        );
        strip_tail(&out[..result.bytes_written])
    }

    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        self.inflater.reset(DataFormat::Raw);
        let result =
            miniz_oxide::inflate::stream::inflate(&mut self.inflater, input, out, MZFlush::Sync);
        assert_eq!(result.bytes_consumed, input.len(), "{:?}", result.status);
        result.bytes_written
    }
}

/// zlib-rs through flate2 (the workspace's `zlib-rs` feature).
struct ZlibRs {
    /// Raw deflate at the level asked for.
    compressor: Compress,
    /// Raw inflate.
    inflater: Decompress,
}

impl ZlibRs {
    fn new(level: u32) -> ZlibRs {
        ZlibRs {
            compressor: Compress::new(Compression::new(level), false),
            inflater: Decompress::new(false),
        }
    }
}

impl Backend for ZlibRs {
    fn compress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        self.compressor.reset();
        self.compressor
            .compress(payload, out, FlushCompress::Sync)
            .expect("compresses");
        assert_eq!(
            self.compressor.total_in(),
            payload.len() as u64,
            "output buffer too small"
        );
        strip_tail(&out[..self.compressor.total_out() as usize])
    }

    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        self.inflater.reset(false);
        self.inflater
            .decompress(input, out, FlushDecompress::Sync)
            .expect("inflates");
        assert_eq!(self.inflater.total_in(), input.len() as u64);
        self.inflater.total_out() as usize
    }
}

/// The length of a sync-flushed message without its trailing empty stored block.
fn strip_tail(compressed: &[u8]) -> usize {
    assert!(
        compressed.ends_with(&TAIL),
        "a sync flush ends with 00 00 ff ff"
    );
    compressed.len() - TAIL.len()
}

/// The benchmark's payload of `size` bytes.
fn payload(size: usize) -> Vec<u8> {
    chat::message(0, 0, size, "").expect("64 B and more hold a chat message")
}

/// A buffer that holds any sync-flushed deflate of `size` bytes (stored blocks at worst).
fn compress_buffer(size: usize) -> Vec<u8> {
    vec![0; size + size / 100 + 64]
}

/// Backends by name, at `level`.
fn backends(level: u32) -> [(&'static str, Box<dyn Backend>); 2] {
    [
        ("miniz_oxide", Box::new(Miniz::new(level))),
        ("zlib-rs", Box::new(ZlibRs::new(level))),
    ]
}

/// Prints the compression ratio of every size and level, per backend, and checks that each
/// backend inflates what the other compressed (both speak the same format).
fn print_ratios() {
    println!("deflate: compression ratio (payload / compressed, tail stripped)");
    for level in LEVELS {
        for (size, label) in SIZES {
            let body = payload(size);
            let mut pair = backends(level);
            let mut figures = Vec::new();
            let mut messages = Vec::new();
            for (name, backend) in pair.iter_mut() {
                let mut out = compress_buffer(size);
                let len = backend.compress(&body, &mut out);
                figures.push(format!("{name} {len} B {:.2}x", size as f64 / len as f64));
                out.truncate(len);
                out.extend_from_slice(&TAIL);
                messages.push(out);
            }
            for ((_, backend), message) in pair.iter_mut().zip(messages.iter().rev()) {
                let mut back = vec![0; size];
                assert_eq!(backend.inflate(message, &mut back), size);
                assert_eq!(back, body);
            }
            println!("  level {level} {label:>5}: {}", figures.join(", "));
        }
    }
}

fn deflate(c: &mut Criterion) {
    print_ratios();
    let mut group = c.benchmark_group("deflate");
    for (size, label) in SIZES {
        let body = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        for level in LEVELS {
            for (name, mut backend) in backends(level) {
                let mut out = compress_buffer(size);
                let id = BenchmarkId::new(format!("compress/{name}/L{level}"), label);
                group.bench_function(id, |b| {
                    b.iter(|| backend.compress(black_box(&body), &mut out))
                });
            }
        }
        // What is inflated: zlib-rs' level 6 output (both backends read the same bytes).
        let mut compressed = compress_buffer(size);
        let len = ZlibRs::new(6).compress(&body, &mut compressed);
        let mut input = compressed[..len].to_vec();
        input.extend_from_slice(&TAIL);
        for (name, mut backend) in backends(6) {
            let mut out = vec![0; size];
            group.bench_function(BenchmarkId::new(format!("inflate/{name}"), label), |b| {
                b.iter(|| backend.inflate(black_box(&input), &mut out))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = deflate
}
criterion_main!(benches);
