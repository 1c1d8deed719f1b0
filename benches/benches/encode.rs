//! `encode/<size>`: encoding one server frame (header + payload, one allocation) by payload
//! size. A broadcast pays this once per message, whatever the number of subscribers.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::testing::{encode_message, MessageKind};
use ringcast_benches::{criterion_config, payload, PAYLOAD_SIZES};
use std::hint::black_box;

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (size, label) in PAYLOAD_SIZES {
        let body = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| encode_message(MessageKind::Binary, black_box(&body)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = encode
}
criterion_main!(benches);
