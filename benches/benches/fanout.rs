//! `fanout/<n>`: publishing one encoded 64-byte frame to the `n` local subscribers of a room
//! through the server's hub (`Hub::publish_frame`, what a publish does once the message is
//! encoded), elements/s = deliveries queued per second. The subscribers are socket-less
//! (`ringcast::testing::detached`) with the server's default 1 MiB budget, so the figure is the
//! user-space cost per delivery, which should stay well under 0.3 us: on this kind of machine
//! the kernel's TCP send costs several microseconds per delivery (docs/ARCHITECTURE.md).
//!
//! Queues are drained outside the timed part every few publishes (through the output path's
//! sans-IO half, as the flush task would), so memory stays bounded and the queues stay at a
//! realistic depth.
//!
//! `fanout_flush/<n>`: the whole per-core path of one message with the IO stubbed: publish
//! (a handle pushed per subscriber, each connection listed once on the core's flush list), then
//! one flush step (`flush_now`, the epoll driver's step: the next write of every
//! listed connection described as iovecs, "sent" by a stub that takes every byte, finished:
//! handles released, frames popped). elements/s = deliveries per second through both halves.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::testing::{
    detached, drain, encode_message, flush_now, Hub, MessageKind, Room, Sent, Subscriber, TestCore,
};
use ringcast_benches::{criterion_config, payload};

/// Subscriber counts of the benchmark.
const SUBSCRIBERS: [usize; 3] = [1, 100, 10_000];
/// Publishes between two drains of every queue.
const PUBLISHES_PER_DRAIN: u64 = 8;
/// The server's default per-connection outbound budget (--max-backlog).
const MAX_BACKLOG: usize = 1 << 20;

/// A room of `count` subscribers made by `make`.
fn room_of(
    hub: &Hub,
    count: usize,
    make: impl Fn() -> Rc<Subscriber>,
) -> (Rc<Room>, Vec<Rc<Subscriber>>) {
    let subscribers: Vec<_> = (0..count).map(|_| make()).collect();
    let mut room = None;
    for subscriber in &subscribers {
        room = Some(hub.join("bench", Rc::clone(subscriber)));
    }
    (room.expect("at least one subscriber"), subscribers)
}

/// Publishes `frame` `iterations` times, draining every queue every PUBLISHES_PER_DRAIN
/// publishes (untimed); returns the time spent publishing. Panics if a queue did not receive
/// every frame, so a broken fan-out cannot report a fast figure.
fn publish_frames(
    hub: &Hub,
    room: &Room,
    subscribers: &[Rc<Subscriber>],
    frame: &Bytes,
    iterations: u64,
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut remaining = iterations;
    while remaining > 0 {
        let chunk = remaining.min(PUBLISHES_PER_DRAIN);
        let start = Instant::now();
        for _ in 0..chunk {
            hub.publish_frame(room, frame.clone());
        }
        timed += start.elapsed();
        for subscriber in subscribers {
            assert_eq!(
                subscriber.held_frames() as u64,
                chunk,
                "every subscriber gets every frame"
            );
            // As if the kernel took everything: releases the budget for the next chunk.
            drain(subscriber);
        }
        remaining -= chunk;
    }
    timed
}

/// Publishes `frame` and runs one flush step whose stub takes every byte, `iterations` times;
/// returns the time. Panics unless every subscriber got (and "wrote") every frame.
fn publish_and_flush(
    core: &TestCore,
    room: &Room,
    subscribers: &[Rc<Subscriber>],
    frame: &Bytes,
    iterations: u64,
) -> Duration {
    let flush = &core.core_output.flush;
    let (mut listed, mut iovecs) = (Vec::new(), Vec::new());
    let mut frames_written = 0;
    let now = Instant::now();
    let start = Instant::now();
    for _ in 0..iterations {
        core.hub.publish_frame(room, frame.clone());
        let tally = flush_now(flush, &mut listed, &mut iovecs, now, |_, _, iovecs| {
            Sent::Done(Ok(iovecs.iter().map(|iov| iov.iov_len).sum()))
        });
        frames_written += tally.frames();
    }
    let timed = start.elapsed();
    assert_eq!(
        frames_written,
        iterations * subscribers.len() as u64,
        "every subscriber writes every frame"
    );
    assert!(subscribers.iter().all(|s| s.held_frames() == 0));
    timed
}

fn fanout(c: &mut Criterion) {
    let frame = encode_message(MessageKind::Binary, &payload(64));
    let mut group = c.benchmark_group("fanout");
    for count in SUBSCRIBERS {
        let core = TestCore::standalone();
        let (room, subscribers) = room_of(&core.hub, count, || detached(MAX_BACKLOG));
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter_custom(|iterations| {
                publish_frames(&core.hub, &room, &subscribers, &frame, iterations)
            })
        });
    }
    group.finish();
}

fn fanout_flush(c: &mut Criterion) {
    let frame = encode_message(MessageKind::Binary, &payload(64));
    let mut group = c.benchmark_group("fanout_flush");
    for count in SUBSCRIBERS {
        let core = TestCore::standalone();
        let (room, subscribers) =
            room_of(&core.hub, count, || core.flushed_subscriber(MAX_BACKLOG));
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter_custom(|iterations| {
                publish_and_flush(&core, &room, &subscribers, &frame, iterations)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = fanout, fanout_flush
}
criterion_main!(benches);
