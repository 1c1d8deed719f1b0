//! `handoff/<n>`: messages published on one core's hub reaching `n` subscribers of another
//! core's hub through the mailbox between them, on two real threads (the cross-core part of a
//! broadcast: one `Bytes` clone and one mail per message per core, then the receiving core's
//! local fan-out). Elements/s = messages handed over per second. The receiving queues are
//! drained with `drain_detached` (the output path with the IO stubbed) every 256 messages.

use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::budget::FanoutMemory;
use ringcast::fanout::hub::{Hub, Mail};
use ringcast::metrics::CoreMetrics;
use ringcast::output::subscriber::{drain_detached, Subscriber};
use ringcast::{encode_message, MessageKind};
use ringcast_benches::{criterion_config, payload};

/// Subscribers on the receiving core.
const SUBSCRIBERS: [usize; 2] = [1, 100];
/// Messages between two drains of the receiving queues.
const PER_DRAIN: u64 = 256;

/// A hub for core `core` of two, with `subscribers` socket-less subscribers in room "bench".
fn hub_with_room(
    core: usize,
    peers: Vec<tokio::sync::mpsc::UnboundedSender<Mail>>,
    memory: Arc<FanoutMemory>,
    subscribers: usize,
) -> (Hub, Rc<ringcast::Room>, Vec<Rc<Subscriber>>) {
    let metrics: Arc<[CoreMetrics]> =
        Arc::from(vec![CoreMetrics::default(), CoreMetrics::default()]);
    let hub = Hub::new(core, peers, metrics, memory);
    let queues: Vec<_> = (0..subscribers)
        .map(|_| Rc::new(Subscriber::detached(1 << 30)))
        .collect();
    let room = queues
        .iter()
        .map(|subscriber| hub.join("bench", Rc::clone(subscriber)))
        .last()
        .expect("at least one subscriber");
    (hub, room, queues)
}

/// Publishes `messages` on core 0 and returns when core 1 has delivered them all.
fn hand_over(messages: u64, subscribers: usize) -> Duration {
    let memory = FanoutMemory::new(2, usize::MAX);
    let (mailbox, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let receiver_memory = Arc::clone(&memory);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = thread::spawn(move || {
        let (hub, _room, queues) = hub_with_room(1, Vec::new(), receiver_memory, subscribers);
        ready_tx.send(()).expect("bench thread alive");
        let mut delivered = 0;
        while delivered < messages {
            match inbox.blocking_recv() {
                Some(Mail::Broadcast { room, frame }) => hub.deliver_from_peer(&room, frame),
                Some(Mail::Shutdown) | None => break,
            }
            delivered += 1;
            if delivered % PER_DRAIN == 0 || delivered == messages {
                for queue in &queues {
                    drain_detached(queue);
                }
            }
        }
        delivered
    });
    let (hub, room, local) = hub_with_room(0, vec![mailbox], memory, 1);
    ready_rx.recv().expect("receiver started");
    let frame = encode_message(MessageKind::Binary, &payload(64));
    let start = Instant::now();
    for sent in 1..=messages {
        hub.publish(&room, frame.clone());
        if sent % PER_DRAIN == 0 {
            drain_detached(&local[0]);
        }
    }
    let delivered = receiver.join().expect("receiver thread");
    let elapsed = start.elapsed();
    assert_eq!(delivered, messages, "every message crossed");
    elapsed
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff");
    for subscribers in SUBSCRIBERS {
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter_custom(|iterations| hand_over(iterations, subscribers))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = handoff
}
criterion_main!(benches);
