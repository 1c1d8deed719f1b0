//! `handoff/<n>`: messages published on one core's hub reaching `n` subscribers of another
//! core's hub through the mailbox between them, on two real threads (the cross-core part of a
//! broadcast: one `Bytes` clone and one mail per message per core, then the receiving core's
//! local fan-out). Elements/s = messages handed over per second. The receiving queues are
//! drained with `ringcast::testing::drain` (the output path with the IO stubbed) every 256
//! messages.

use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::testing::{
    detached, drain, encode_message, FanoutBudget, Mail, MessageKind, Room, Subscriber, TestCore,
};
use ringcast_benches::{criterion_config, payload};

/// Subscribers on the receiving core.
const SUBSCRIBERS: [usize; 2] = [1, 100];
/// Messages between two drains of the receiving queues.
const PER_DRAIN: u64 = 256;

/// Core `core` of two, with `subscribers` socket-less subscribers in room "bench".
fn core_with_room(
    core: usize,
    peers: Vec<tokio::sync::mpsc::UnboundedSender<Mail>>,
    budget: Arc<FanoutBudget>,
    subscribers: usize,
) -> (TestCore, Rc<Room>, Vec<Rc<Subscriber>>) {
    let core = TestCore::new(core, peers, budget);
    let queues: Vec<_> = (0..subscribers).map(|_| detached(1 << 30)).collect();
    let room = queues
        .iter()
        .map(|subscriber| core.hub.join("bench", Rc::clone(subscriber)))
        .last()
        .expect("at least one subscriber");
    (core, room, queues)
}

/// Publishes `messages` on core 0 and returns when core 1 has delivered them all.
fn hand_over(messages: u64, subscribers: usize) -> Duration {
    let budget = FanoutBudget::new(2, usize::MAX);
    let (mailbox, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let receiver_budget = Arc::clone(&budget);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = thread::spawn(move || {
        let (core, _room, queues) = core_with_room(1, Vec::new(), receiver_budget, subscribers);
        ready_tx.send(()).expect("bench thread alive");
        let mut delivered = 0;
        while delivered < messages {
            match inbox.blocking_recv() {
                Some(Mail::Broadcast { room, frame }) => core.hub.deliver_from_peer(&room, frame),
                Some(Mail::Shutdown) | None => break,
            }
            delivered += 1;
            if delivered % PER_DRAIN == 0 || delivered == messages {
                for queue in &queues {
                    drain(queue);
                }
            }
        }
        delivered
    });
    let (core, room, local) = core_with_room(0, vec![mailbox], budget, 1);
    ready_rx.recv().expect("receiver started");
    let frame = encode_message(MessageKind::Binary, &payload(64));
    let start = Instant::now();
    for sent in 1..=messages {
        core.hub.publish_frame(&room, frame.clone());
        if sent % PER_DRAIN == 0 {
            drain(&local[0]);
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
