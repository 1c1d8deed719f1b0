//! Encoded once: publishing one message to a room allocates the same small number of times
//! whatever the number of subscribers (the frame is one shared `Bytes`; each delivery is a
//! reference-count increment and a queue push).
//!
//! A counting global allocator measures the allocations of `encode_message` + `Hub::publish_frame`
//! for rooms of 1, 100 and 10,000 socket-less subscribers on a standalone hub (`ringcast::testing`). And no atomic
//! read-modify-write per delivery: every queue holds the same core-local `Rc` handle of the
//! frame (a non-atomic count), not a clone of the `Bytes` (whose count is atomic).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;

use ringcast::testing::{
    drain, encode_message, held_handles, MessageKind, Room, Subscriber, TestCore,
};

/// Wraps the system allocator and counts allocations (including reallocations).
struct CountingAllocator;

thread_local! {
    /// Allocations by this thread since it started: per thread, so tests running in parallel
    /// do not count each other's. (A const-initialised Cell needs no allocation itself.)
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one allocation of the calling thread.
fn count_allocation() {
    ALLOCATIONS.with(|count| count.set(count.get() + 1));
}

/// Allocations of the calling thread so far.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Broadcasts measured per room size.
const ROUNDS: u64 = 20;

/// A room of `count` socket-less subscribers of `core` with the default 1 MiB budget.
fn room_of(core: &TestCore, count: usize) -> (Rc<Room>, Vec<Rc<Subscriber>>) {
    let queues: Vec<Rc<Subscriber>> = (0..count).map(|_| core.subscriber(1 << 20)).collect();
    let room = queues
        .iter()
        .map(|subscriber| core.hub.join("bench", Rc::clone(subscriber)))
        .last()
        .expect("at least one subscriber");
    (room, queues)
}

/// Average allocations per broadcast (encode + publish) to a room of `subscribers`.
fn allocations_per_broadcast(subscribers: usize) -> u64 {
    let core = TestCore::standalone();
    let hub = &core.hub;
    let (room, queues) = room_of(&core, subscribers);
    let payload = [7u8; 64];
    // Warm-up round outside the measurement (first-use effects, if any).
    hub.publish_frame(&room, encode_message(MessageKind::Binary, &payload));
    let mut total = 0;
    for _ in 0..ROUNDS {
        // Drain like the output backend would, outside the measurement.
        for subscriber in &queues {
            drain(subscriber);
        }
        let before = allocations();
        hub.publish_frame(&room, encode_message(MessageKind::Binary, &payload));
        total += allocations() - before;
    }
    for subscriber in &queues {
        let written = drain(subscriber);
        assert_eq!(
            written.len(),
            2 + payload.len(),
            "every subscriber received the broadcast"
        );
        assert_eq!(&written[2..], &payload[..]);
    }
    total / ROUNDS
}

#[test]
fn allocations_per_broadcast_do_not_grow_with_subscribers() {
    let one = allocations_per_broadcast(1);
    let hundred = allocations_per_broadcast(100);
    let ten_thousand = allocations_per_broadcast(10_000);
    assert_eq!(one, hundred, "1 vs 100 subscribers");
    assert_eq!(one, ten_thousand, "1 vs 10,000 subscribers");
    // The frame's buffer, its shared header (on the first clone), this core's one `Rc`
    // handle of it, and the copy the room's home core keeps for recovery (its queues grow
    // now and then, amortized).
    assert!(one <= 4, "{one} allocations per broadcast");
}

#[test]
fn every_delivery_shares_one_core_local_handle() {
    const SUBSCRIBERS: usize = 10_000;
    let core = TestCore::standalone();
    let hub = &core.hub;
    let (room, queues) = room_of(&core, SUBSCRIBERS);
    hub.publish_frame(&room, encode_message(MessageKind::Binary, &[7u8; 64]));
    let first = held_handles(&queues[0])
        .pop()
        .expect("the first queue got the frame");
    for subscriber in &queues {
        let handles = held_handles(subscriber);
        assert_eq!(handles.len(), 1, "every subscriber got one frame");
        assert!(
            Rc::ptr_eq(&handles[0], &first),
            "a delivery queued its own handle instead of sharing the core's"
        );
    }
    // The queues' handles and `first`: nothing else (the hub kept no extra reference).
    assert_eq!(Rc::strong_count(&first), SUBSCRIBERS + 1);
}
