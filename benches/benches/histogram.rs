//! `histogram/*`: the cost of loadgen's latency recording, which runs once per delivered
//! message in every receiver. loadgen is a binary, so this mirrors its stats module with the
//! same hdrhistogram settings: 1 ns .. 100 s, 3 significant digits.
//!
//! - `histogram/record`: one `record()` of a latency (per delivery);
//! - `histogram/interval_handoff`: the once-a-second handoff, where a worker adds its interval
//!   histogram (here holding one second of 100k deliveries) into the run's accumulator and
//!   resets it.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hdrhistogram::Histogram;
use ringcast_benches::criterion_config;
use std::hint::black_box;

/// loadgen's histogram bounds (loadgen/src/stats.rs).
const HIGHEST_TRACKABLE_NS: u64 = 100_000_000_000;
/// Latencies recorded per interval in the handoff benchmark (one second at 100k deliveries/s).
const DELIVERIES_PER_INTERVAL: usize = 100_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_NS, 3).expect("constant bounds are valid")
}

/// Latencies spread like a real run's: mostly 50 us .. 5 ms with a tail to 0.5 s, from a
/// deterministic generator (xorshift) so every run records the same values.
fn latencies(count: usize) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // About one value in 1024 lands in the tail, 100 times slower.
            let tail = if state.trailing_zeros() >= 10 { 100 } else { 1 };
            (50_000 + state % 5_000_000) * tail
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let values = latencies(4096);
    let mut histogram = new_histogram();
    let mut group = c.benchmark_group("histogram");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("record", |b| {
        b.iter(|| {
            next = (next + 1) % values.len();
            histogram.saturating_record(black_box(values[next]));
        })
    });

    let mut filled = new_histogram();
    for value in latencies(DELIVERIES_PER_INTERVAL) {
        filled.saturating_record(value);
    }
    group.finish();

    // Time per handoff (its cost depends on the histogram's size, not on how many values it
    // holds), so no throughput here.
    let mut accumulator = new_histogram();
    c.bench_function("histogram/interval_handoff", |b| {
        b.iter_batched_ref(
            || filled.clone(),
            |interval| {
                accumulator.add(&*interval).expect("same bounds");
                interval.reset();
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = record
}
criterion_main!(benches);
