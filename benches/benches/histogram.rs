//! `histogram/*`: the cost of loadgen's per-delivery accounting, which runs once per delivered
//! message in every receiver. Everything here calls loadgen's own code (its stats and its
//! receiver, through `loadgen::testing`), so the numbers follow it when it changes.
//!
//! - `histogram/record`: one `record()` into a histogram built by `loadgen::new_histogram`;
//! - `histogram/on_message`: everything a receiver does per delivered frame
//!   (`Receiver::on_message`: stamp decode, sequence check, four histogram records, counters);
//! - `histogram/interval_handoff`: the once-a-second handoff, where a worker adds its interval
//!   figures (here one second of 100k deliveries) into the run's accumulator and resets them
//!   (`IntervalStats::drain_from`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use loadgen::testing::{
    ConnectionSpec, IntervalStats, Receiver, RunTotals, Stamp, Upgraded, Window, WorkerStats,
    STAMP_LEN,
};
use loadgen::{new_histogram, Plan};
use ringcast_benches::criterion_config;
use std::hint::black_box;

/// Latencies recorded per interval in the handoff benchmark (one second at 100k deliveries/s).
const DELIVERIES_PER_INTERVAL: usize = 100_000;

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
    group.finish();
}

/// A receiver of the default scenario (one publisher, one room) as `loadgen run` builds it.
fn receiver() -> Receiver {
    let plan = Plan::from_run_args(&["--url", "ws://127.0.0.1:9/ws"]).expect("valid scenario");
    let spec = ConnectionSpec::of(&plan.scenario, 0);
    Receiver::new(spec, &plan.scenario, Upgraded::default())
}

fn on_message(c: &mut Criterion) {
    let mut receiver = receiver();
    let mut stats = WorkerStats {
        interval: IntervalStats::new(),
        totals: RunTotals::new(1),
    };
    let window = Window {
        t0_ns: 0,
        measure_start_ns: 0,
        measure_end_ns: u64::MAX,
    };
    let values = latencies(4096);
    let mut payload = vec![b'.'; 64.max(STAMP_LEN)];
    let mut seq = 0u64;
    let mut group = c.benchmark_group("histogram");
    group.throughput(Throughput::Elements(1));
    group.bench_function("on_message", |b| {
        b.iter(|| {
            // Intended at seq ms, received one latency later: in order, never a duplicate.
            let intended_ns = 1_000_000_000 + seq * 1_000_000;
            let stamp = Stamp {
                run_id: 0,
                publisher: 0,
                seq,
                intended_ns,
                sent_ns: intended_ns,
            };
            let _ = stamp.write_to(&mut payload);
            let now_ns = intended_ns + values[(seq % values.len() as u64) as usize];
            // Wire length: the payload plus a 2-byte server frame header.
            let wire_len = payload.len() as u64 + 2;
            receiver.on_message(
                black_box(&payload),
                wire_len,
                now_ns,
                Some(&window),
                &mut stats,
            );
            seq += 1;
        })
    });
    group.finish();
    // The accounting must have taken the path measured above, not the foreign-frame exit.
    assert_eq!(
        stats.totals.foreign, 0,
        "benchmark frames were not recognised"
    );
}

fn interval_handoff(c: &mut Criterion) {
    let mut filled = IntervalStats::new();
    for value in latencies(DELIVERIES_PER_INTERVAL) {
        filled.latency.saturating_record(value);
        filled.latency_uncorrected.saturating_record(value);
        filled.delivered += 1;
    }
    // Time per handoff (its cost depends on the histograms' size, not on how many values they
    // hold), so no throughput here.
    let mut accumulator = IntervalStats::new();
    c.bench_function("histogram/interval_handoff", |b| {
        b.iter_batched_ref(
            || filled.clone(),
            |interval| accumulator.drain_from(interval),
            BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = record, on_message, interval_handoff
}
criterion_main!(benches);
