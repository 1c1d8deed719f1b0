//! `handoff/<n>`: messages published on one core's hub reaching `n` subscribers of another
//! core's hub through the mailbox between them, on two real threads (the cross-core part of a
//! broadcast: the room's home core, the publisher's here, puts it in order and keeps a copy,
//! then one `Bytes` clone and one mail per message per core, then the receiving core's local
//! fan-out). Elements/s = messages handed over per second. The receiving queues are
//! drained with `ringcast::testing::drain` (the output path with the IO stubbed) every 256
//! messages.

use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::testing::{
    detached, drain, encode_message, home_core, FanoutBudget, Mail, MessageKind, Room, Subscriber,
    TestCore,
};
use ringcast_benches::{criterion_config, payload};

/// Subscribers on the receiving core.
const SUBSCRIBERS: [usize; 2] = [1, 100];
/// Messages between two drains of the receiving queues.
const PER_DRAIN: u64 = 256;

/// A room whose home is core 0 of two (the publishing core).
fn room_homed_on_the_publisher() -> String {
    (0..)
        .map(|i| format!("bench{i}"))
        .find(|name| home_core(name, 2) == 0)
        .expect("some name lands on core 0")
}

/// Core `core` of two (`cores`: both mailboxes), with `subscribers` socket-less subscribers in
/// the bench's room.
fn core_with_room(
    core: usize,
    cores: Vec<tokio::sync::mpsc::UnboundedSender<Mail>>,
    budget: Arc<FanoutBudget>,
    subscribers: usize,
) -> (TestCore, Rc<Room>, Vec<Rc<Subscriber>>) {
    let core = TestCore::new(core, cores, budget);
    let name = room_homed_on_the_publisher();
    let queues: Vec<_> = (0..subscribers).map(|_| detached(1 << 30)).collect();
    let room = queues
        .iter()
        .map(|subscriber| core.hub.join(&name, Rc::clone(subscriber)))
        .last()
        .expect("at least one subscriber");
    (core, room, queues)
}

/// Publishes `messages` on core 0 and returns when core 1 has delivered them all.
fn hand_over(messages: u64, subscribers: usize) -> Duration {
    let budget = FanoutBudget::new(2, usize::MAX);
    // Core 0's own mailbox gets nothing: the room is homed on it.
    let (own, _own_inbox) = tokio::sync::mpsc::unbounded_channel();
    let (mailbox, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let cores = vec![own, mailbox];
    let receiver_cores = cores.clone();
    let receiver_budget = Arc::clone(&budget);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = thread::spawn(move || {
        let (core, _room, queues) = core_with_room(1, receiver_cores, receiver_budget, subscribers);
        ready_tx.send(()).expect("bench thread alive");
        let mut delivered = 0;
        while delivered < messages {
            match inbox.blocking_recv() {
                Some(Mail::Shutdown) | None => break,
                Some(mail) => core.hub.take(mail),
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
    let (core, room, local) = core_with_room(0, cores, budget, 1);
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
