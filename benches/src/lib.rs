//! Support code for ringcast's criterion benchmarks (`cargo bench -p ringcast-benches`).
//!
//! The benchmarks themselves live in `benches/`, one file per part of the broadcast pipeline,
//! each named `scenario/parameter`:
//!
//! - `encode/<size>`: a server frame encoded once (`ringcast::testing::encode_message`), bytes/s;
//! - `fanout/<n>`: one encoded frame queued to `n` local subscribers through the hub and
//!   written out by the output path's sans-IO half (`ringcast::testing::drain`: the queue's
//!   iovecs and completions, with the IO stubbed), elements/s;
//! - `handoff/<n>`: messages crossing from one core's hub to `n` subscribers on another
//!   core, on two threads, messages/s;
//! - `parse_client_frame/<size>`: a masked client frame decoded and unmasked by the server's
//!   own decoder (`ringcast::testing::FrameDecoder`), bytes/s;
//! - `histogram/record`, `histogram/on_message` and `histogram/interval_handoff`: loadgen's
//!   latency recording, the whole per-frame receive path, and the per-second hand-over.
//! - `deflate/compress/<backend>/L<level>/<size>` and `deflate/inflate/<backend>/<size>`:
//!   permessage-deflate of one chat-like JSON message with no context takeover, miniz_oxide
//!   against zlib-rs (the choice of issue 20), bytes/s of the uncompressed payload.
//!
//! This crate holds what several benchmarks share: the criterion settings that keep the whole
//! run under five minutes ([`criterion_config`]) and the payload sizes ([`PAYLOAD_SIZES`]).
//! Client frames are built with `ringcast-proto`, the framing code loadgen sends with.

use std::time::Duration;

use criterion::Criterion;

/// Payload sizes of the per-size benchmarks, with the label used in the benchmark name.
pub const PAYLOAD_SIZES: [(usize, &str); 5] = [
    (16, "16B"),
    (64, "64B"),
    (1024, "1KiB"),
    (16 * 1024, "16KiB"),
    (1024 * 1024, "1MiB"),
];

/// Criterion settings for every benchmark: few samples and short windows, because the whole
/// `cargo bench` must stay under five minutes on a 2-core CI machine; these micro-benchmarks
/// are stable enough that 20 samples of 2 s give a usable confidence interval.
pub fn criterion_config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// A payload of `len` bytes that is not all zeros (so nothing can special-case it).
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
