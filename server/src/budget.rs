//! What the server holds for delivery, and the fan-out budget that bounds it.
//!
//! Every byte a client can make the server hold is charged somewhere:
//! - per connection (`output/queue.rs`): frames queued or handed to a write that has not
//!   completed, each at its length plus [`FRAME_HANDLE_BYTES`]; over `--max-backlog` the
//!   connection is a slow consumer (1008);
//! - per process, here: the bytes of every live broadcast frame (counted once, however many
//!   connections and cores share it, released when its last handle drops) plus every core's
//!   frame handles (queued, in flight, or waiting in a hand-off mailbox). Over `--fanout-budget`
//!   heavy publishers (over their fair share of the inbound rate, `input/rate.rs`) are not read
//!   (TCP pushes back on a flooder) and over twice the budget no publisher is (a core takes its
//!   mail at once: what the publishers stopped at the budget sent is all it can add);
//! - inbound: a read buffer holds at most one frame (`--max-message` plus header) and a
//!   reassembly at most `--max-message`; the HTTP phase at most `--max-header-size`.
//!
//! Frame bytes are tracked with `Bytes::from_owner`: the owner's drop gives the bytes back, on
//! whichever core drops the last handle. That is one atomic add and one subtract per message,
//! never per delivery; handles are counted in plain per-core cells and mirrored into an atomic
//! once per fan-out or write, so other cores can read them.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How often a paused publisher or mailbox looks at the budget again. Polling keeps wake-ups
/// off the hot path (no waker crosses cores); pauses are rare and last milliseconds.
pub const BUDGET_POLL: Duration = Duration::from_millis(1);

/// Waits until `has_room()` holds (true) or `deadline`, if any, passes (false).
pub async fn wait_for_room(mut has_room: impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
    while !has_room() {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return false;
        }
        tokio::time::sleep(BUDGET_POLL).await;
    }
    true
}

/// A frame as one core's queues hold it: the shared encoded frame behind a core-local `Rc`
/// (one atomic `Bytes` clone per core per message, a plain increment per delivery).
pub type LocalFrame = Rc<Bytes>;

/// What one queued frame costs besides the frame itself: its handle in a queue.
pub const FRAME_HANDLE_BYTES: usize = std::mem::size_of::<LocalFrame>();

/// What the system allocator (glibc malloc) really takes for an allocation of `bytes`: a chunk
/// of the request plus an 8-byte header, rounded up to 16 bytes, and at least 32. Charges use
/// it so a tiny frame is counted at what it holds, not at its length (a 2-byte frame takes a
/// 32-byte chunk).
pub const fn heap_chunk(bytes: usize) -> usize {
    let chunk = (bytes + 8 + 15) & !15;
    if chunk < 32 {
        32
    } else {
        chunk
    }
}

/// What a live frame costs besides its own buffer's chunk, per core that holds it: the `Rc` box
/// of its core-local handle (two counts and the `Bytes`).
const PER_CORE_FRAME_OVERHEAD: usize =
    heap_chunk(2 * std::mem::size_of::<usize>() + std::mem::size_of::<Bytes>());

/// What a tracked frame costs besides its buffer's chunk, once: the box `Bytes::from_owner`
/// allocates for its owner (a reference count and the [`TrackedFrame`]).
const TRACKED_FRAME_OVERHEAD: usize =
    heap_chunk(std::mem::size_of::<usize>() + std::mem::size_of::<TrackedFrame>());

/// What a control frame that one connection holds alone (a pong, a close) costs besides its
/// length and its handle: its `Rc` box, the owner box of a tracked frame, and its buffer's
/// chunk at the least. The connection's `--max-backlog` charges it (`output/queue.rs`), so a
/// client that pings and never reads is a slow consumer after `--max-backlog` of real memory,
/// not after ten times that.
pub const CONTROL_FRAME_OVERHEAD: usize =
    PER_CORE_FRAME_OVERHEAD + TRACKED_FRAME_OVERHEAD + heap_chunk(0);

/// A counter on its own cache line (written by one core, read by all).
#[derive(Debug, Default)]
#[repr(align(64))]
struct PaddedCounter(AtomicUsize);

/// Process-wide view of the fan-out memory, shared by all cores.
#[derive(Debug)]
pub struct FanoutBudget {
    /// Bytes of live broadcast frames, with their per-core handles' boxes.
    frame_bytes: PaddedCounter,
    /// What each tracked frame is charged besides its buffer's chunk: the owner's box, and one
    /// handle box per core (every core may hold one).
    frame_overhead: usize,
    /// Per core: bytes of frame handles it holds (mirror of its [`CoreLedger`]).
    handle_bytes: Box<[PaddedCounter]>,
    /// Bytes of mail waiting in the hand-off channels between cores.
    mail_bytes: PaddedCounter,
    /// `--fanout-budget`.
    limit: usize,
}

impl FanoutBudget {
    /// Accounting for `cores` cores under `limit` bytes (`--fanout-budget`).
    pub fn new(cores: usize, limit: usize) -> Arc<Self> {
        Arc::new(FanoutBudget {
            frame_bytes: PaddedCounter::default(),
            frame_overhead: TRACKED_FRAME_OVERHEAD + cores * PER_CORE_FRAME_OVERHEAD,
            handle_bytes: (0..cores).map(|_| PaddedCounter::default()).collect(),
            mail_bytes: PaddedCounter::default(),
            limit,
        })
    }

    /// Bytes held for delivery now: live frames, every core's handles, mail between cores.
    pub fn used(&self) -> usize {
        let handles: usize = self
            .handle_bytes
            .iter()
            .map(|counter| counter.0.load(Ordering::Relaxed))
            .sum();
        self.frame_bytes.0.load(Ordering::Relaxed)
            + handles
            + self.mail_bytes.0.load(Ordering::Relaxed)
    }

    /// A mail of `bytes` entered a hand-off channel.
    pub fn mail_sent(&self, bytes: usize) {
        self.mail_bytes.0.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A mail of `bytes` left a hand-off channel.
    pub fn mail_taken(&self, bytes: usize) {
        self.mail_bytes.0.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes of live broadcast frames.
    #[cfg(test)]
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes.0.load(Ordering::Relaxed)
    }

    /// True while a publisher must wait before its next message: over the budget if it is a
    /// heavy publisher (over its fair share of the inbound rate, see `input/rate.rs`), over
    /// twice the budget for everyone. So a flooder is paused first and the light publishers of
    /// other rooms go on, and the held bytes stay under twice the budget whatever happens.
    pub fn must_pause(&self, heavy_publisher: bool) -> bool {
        let used = self.used();
        used > self.limit.saturating_mul(2) || (heavy_publisher && used > self.limit)
    }

    /// `--fanout-budget` in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What a frame of `len` bytes is charged while it lives: its buffer's chunk, its owner's
    /// box and its handles' boxes.
    pub fn frame_cost(&self, len: usize) -> usize {
        heap_chunk(len) + self.frame_overhead
    }

    /// Wraps an encoded frame so its bytes count until its last handle drops.
    pub fn track(self: &Arc<Self>, frame: Vec<u8>) -> Bytes {
        let charged = self.frame_cost(frame.capacity());
        self.frame_bytes.0.fetch_add(charged, Ordering::Relaxed);
        Bytes::from_owner(TrackedFrame {
            bytes: frame,
            charged,
            budget: Arc::clone(self),
        })
    }

    /// Publishes core `core`'s handle bytes.
    fn store_handles(&self, core: usize, bytes: usize) {
        if let Some(counter) = self.handle_bytes.get(core) {
            counter.0.store(bytes, Ordering::Relaxed);
        }
    }
}

/// A frame's buffer that gives its size back to [`FanoutBudget`] when dropped.
struct TrackedFrame {
    /// Header and payload.
    bytes: Vec<u8>,
    /// What it was charged.
    charged: usize,
    /// Where the bytes are counted.
    budget: Arc<FanoutBudget>,
}

impl AsRef<[u8]> for TrackedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for TrackedFrame {
    fn drop(&mut self) {
        self.budget
            .frame_bytes
            .0
            .fetch_sub(self.charged, Ordering::Relaxed);
    }
}

/// One core's frame handles, counted without atomics; mirrored into [`FanoutBudget`] by
/// [`CoreLedger::mirror`] at the end of each fan-out and write.
#[derive(Debug)]
pub struct CoreLedger {
    /// Handle bytes held by this core's connections and its mailbox.
    handle_bytes: Cell<usize>,
    /// This core's index in `budget`.
    core: usize,
    /// The process-wide view.
    budget: Arc<FanoutBudget>,
}

impl CoreLedger {
    /// The ledger of core `core`.
    pub fn new(core: usize, budget: Arc<FanoutBudget>) -> Self {
        CoreLedger {
            handle_bytes: Cell::new(0),
            core,
            budget,
        }
    }

    /// `count` handles were taken.
    pub fn charge_handles(&self, count: usize) {
        self.handle_bytes
            .set(self.handle_bytes.get() + count * FRAME_HANDLE_BYTES);
    }

    /// `count` handles were written or dropped; other cores see it at once (a release follows
    /// a write, so it is as rare as writes, not deliveries).
    pub fn release_handles(&self, count: usize) {
        self.handle_bytes.set(
            self.handle_bytes
                .get()
                .saturating_sub(count * FRAME_HANDLE_BYTES),
        );
        self.mirror();
    }

    /// The process-wide view this ledger mirrors into.
    pub fn budget(&self) -> &Arc<FanoutBudget> {
        &self.budget
    }

    /// Makes this core's count visible to the other cores (a plain store, not a read-modify-
    /// write: only this core writes it). Charges are mirrored once per fan-out.
    pub fn mirror(&self) {
        self.budget
            .store_handles(self.core, self.handle_bytes.get());
    }

    /// Handle bytes this core holds.
    #[cfg(test)]
    pub fn handle_bytes(&self) -> usize {
        self.handle_bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_bytes_are_released_by_the_last_handle() {
        let budget = FanoutBudget::new(1, 1000);
        let frame = budget.track(vec![0u8; 600]);
        let copy = frame.clone();
        let charged = budget.frame_bytes();
        assert!(
            charged > 600,
            "the length and the handles' boxes: {charged}"
        );
        drop(frame);
        assert_eq!(budget.frame_bytes(), charged, "one handle still holds it");
        let second = budget.track(vec![0u8; 600]);
        assert!(budget.must_pause(true));
        assert!(
            budget.must_pause(true),
            "a heavy publisher waits over the budget"
        );
        assert!(
            !budget.must_pause(false),
            "a light one only over twice the budget"
        );
        drop(copy);
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn small_allocations_cost_a_whole_chunk() {
        assert_eq!(heap_chunk(0), 32);
        assert_eq!(heap_chunk(2), 32, "an empty message's frame");
        assert_eq!(heap_chunk(24), 32);
        assert_eq!(heap_chunk(25), 48);
        assert_eq!(heap_chunk(1000), 1008);
        let budget = FanoutBudget::new(1, 1 << 20);
        assert!(
            budget.frame_cost(2) >= 32 + 64 + 64,
            "buffer, owner box, handle box: {}",
            budget.frame_cost(2)
        );
    }

    #[test]
    fn handles_count_once_mirrored() {
        let budget = FanoutBudget::new(2, 3 * FRAME_HANDLE_BYTES);
        let ledger = CoreLedger::new(1, Arc::clone(&budget));
        ledger.charge_handles(4);
        assert_eq!(budget.used(), 0, "not visible before mirror");
        ledger.mirror();
        assert_eq!(budget.used(), 4 * FRAME_HANDLE_BYTES);
        assert!(budget.must_pause(true));
        ledger.release_handles(4);
        assert!(!budget.must_pause(true));
    }
}
