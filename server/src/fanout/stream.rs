//! One order per room: the offsets, epoch and kept messages of the rooms homed on a core.
//!
//! Every room has a home core ([`home_core`]): every message of the room, from whichever core
//! or node, is sequenced there ([`Streams::sequence`]: the next offset, a copy kept for
//! recovery) before any subscriber gets it, and the home core hands it to the other cores in
//! that order, so every subscriber of the room sees one order. A client that reconnects with
//! its last position is answered from here ([`Streams::answer`]).
//!
//! Kept messages are copies charged to `--history-budget` (not to the fan-out budget, which
//! would pause publishers for what is only kept): each core evicts the oldest of its rooms'
//! kept messages first once its share of the budget is full, a room keeps at most `--history`
//! messages, and a kept message expires `--history-ttl` after it was published. A room that
//! keeps nothing and had no message for `--history-ttl` is forgotten: its next message starts
//! a new epoch at offset 1, so a client holding the old epoch is told `reset`.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::budget::heap_chunk;
use crate::metrics::{CoreMetrics, RecoveryOutcome};
use crate::output::Replay;

/// The core that orders room `name`'s messages, out of `cores` (FNV-1a of the name: the same
/// on every core and every run).
pub fn home_core(name: &str, cores: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % cores.max(1) as u64) as usize
}

/// The node's continuity with the other nodes, `Broker::continuity`: None while it is cut
/// off, else a generation that changes whenever it may have missed their messages (always
/// `Some(0)` without a broker).
pub type Continuity = Option<u64>;

/// What a client asked for when it connected (`?since=`, `?history=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// `?since=`: no position yet; tell me the room's.
    Nothing,
    /// `?since=EPOCH:OFFSET`: the messages after OFFSET of EPOCH.
    After {
        /// The epoch the client's offset belongs to.
        epoch: String,
        /// The last offset the client got.
        offset: u64,
    },
    /// `?history=N`: the last N kept messages.
    Last(usize),
}

/// The answer to a [`Since`]: what the client is told first and what is replayed after it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What the first message says.
    pub outcome: RecoveryOutcome,
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// The offset the first message names: the last one before what follows.
    pub offset: u64,
    /// The messages after `offset` to send before live ones (offsets `offset + 1`...).
    pub replay: Replay,
}

/// What one kept message costs `--history-budget` besides its buffer: its entry in the room's
/// queue and in the core's eviction order, and the shared header its first replay gives it.
const KEPT_OVERHEAD: usize = std::mem::size_of::<Kept>()
    + std::mem::size_of::<(Arc<str>, u64)>()
    + heap_chunk(3 * std::mem::size_of::<usize>());

/// One kept message.
#[derive(Debug)]
struct Kept {
    /// Its frame (a copy the fan-out budget does not count).
    frame: Bytes,
    /// When it was sequenced.
    at: Instant,
    /// What it is charged to the history budget.
    charged: usize,
}

/// One room's order and kept messages.
#[derive(Debug)]
struct RoomStream {
    /// Changes whenever continuity is lost (new stream).
    epoch: Arc<str>,
    /// The last offset given (0: none yet).
    last: u64,
    /// Kept messages, offsets `last - kept.len() + 1 ..= last`.
    kept: VecDeque<Kept>,
    /// The kept frames as one shared slice, made on the first answer after a change.
    snapshot: Option<Arc<[Bytes]>>,
    /// When the last message was sequenced (or the stream made).
    active: Instant,
    /// The node's continuity with the other nodes when the stream was made (`--broker`).
    generation: u64,
}

impl RoomStream {
    /// The offset of the first kept message (`last + 1` when none is kept).
    fn first_kept(&self) -> u64 {
        self.last + 1 - self.kept.len() as u64
    }

    /// The kept frames from offset `after + 1` on (`after` at least `first_kept() - 1`).
    fn replay_after(&mut self, after: u64) -> Replay {
        let snapshot = self
            .snapshot
            .get_or_insert_with(|| self.kept.iter().map(|kept| kept.frame.clone()).collect());
        Replay::new(
            Arc::clone(snapshot),
            (after + 1 - (self.last + 1 - self.kept.len() as u64)) as usize,
        )
    }
}

/// The streams of the rooms homed on one core.
#[derive(Debug)]
pub struct Streams {
    /// Rooms by name.
    rooms: HashMap<Arc<str>, RoomStream>,
    /// Every kept message of this core's rooms, oldest first (room, offset): what is evicted
    /// first when the budget is full. Entries of messages evicted otherwise are skipped.
    order: VecDeque<(Arc<str>, u64)>,
    /// Bytes charged for the kept messages.
    held: usize,
    /// Kept messages, all rooms.
    kept: usize,
    /// This core's share of `--history-budget`.
    share: usize,
    /// `--history`.
    per_room: usize,
    /// `--history-ttl`.
    ttl: Duration,
    /// Makes epochs: random per process, then a counter.
    epoch_seed: u64,
    /// Streams made so far on this core.
    made: u64,
    /// Where the kept bytes and messages are shown.
    metrics: Arc<CoreMetrics>,
}

impl Streams {
    /// The streams of core `core` of `cores`, keeping `per_room` messages each for `ttl`,
    /// within its share of `budget` bytes.
    pub fn new(
        core: usize,
        cores: usize,
        per_room: usize,
        ttl: Duration,
        budget: usize,
        metrics: Arc<CoreMetrics>,
    ) -> Self {
        // RandomState is seeded randomly per process: a restart gives every room a new epoch.
        let epoch_seed = RandomState::new().hash_one(core);
        Streams {
            rooms: HashMap::new(),
            order: VecDeque::new(),
            held: 0,
            kept: 0,
            share: budget / cores.max(1),
            per_room,
            ttl,
            epoch_seed,
            made: 0,
            metrics,
        }
    }

    /// Gives `frame`, a message of `room`, the room's next offset and keeps a copy of it.
    /// `continuity` is the node's with the other nodes (see [`Continuity`]).
    pub fn sequence(
        &mut self,
        room: &Arc<str>,
        frame: &Bytes,
        now: Instant,
        continuity: Continuity,
    ) -> u64 {
        let offset = {
            let stream = self.stream(room, now, continuity);
            stream.last += 1;
            stream.active = now;
            stream.last
        };
        if self.per_room > 0 {
            let charged = heap_chunk(frame.len()) + KEPT_OVERHEAD;
            let stream = self.rooms.get_mut(room).expect("made above");
            stream.kept.push_back(Kept {
                frame: Bytes::copy_from_slice(frame),
                at: now,
                charged,
            });
            stream.snapshot = None;
            self.order.push_back((Arc::clone(room), offset));
            self.held += charged;
            self.kept += 1;
            CoreMetrics::add(&self.metrics.history_messages, 1);
            CoreMetrics::add(&self.metrics.history_bytes, charged as u64);
            if stream.kept.len() > self.per_room {
                self.evict_oldest_of(room);
            }
            while self.held > self.share && self.evict_oldest() {}
        }
        offset
    }

    /// Answers a client of `room` that asked `since`. While the node is cut off from the
    /// other nodes a position is not continued (`reset`): what they publish meanwhile is
    /// missing here.
    pub fn answer(
        &mut self,
        room: &Arc<str>,
        since: &Since,
        now: Instant,
        continuity: Continuity,
    ) -> Answer {
        let cut_off = continuity.is_none();
        let stream = self.stream(room, now, continuity);
        let epoch = Arc::clone(&stream.epoch);
        let last = stream.last;
        let first_kept = stream.first_kept();
        let (outcome, offset, replay) = match since {
            Since::Nothing => (RecoveryOutcome::Position, last, Replay::default()),
            Since::Last(count) => {
                let after = last.saturating_sub(*count as u64).max(first_kept - 1);
                (
                    RecoveryOutcome::Recovered,
                    after,
                    stream.replay_after(after),
                )
            }
            Since::After {
                epoch: asked,
                offset,
            } if !cut_off && **asked == *epoch && *offset <= last && *offset + 1 >= first_kept => (
                RecoveryOutcome::Recovered,
                *offset,
                stream.replay_after(*offset),
            ),
            Since::After { .. } => (RecoveryOutcome::Reset, last, Replay::default()),
        };
        Answer {
            outcome,
            epoch,
            offset,
            replay,
        }
    }

    /// Drops kept messages older than `--history-ttl`, and forgets rooms that keep nothing
    /// and had no message for as long.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        let expired: Vec<Arc<str>> = self
            .rooms
            .iter()
            .filter(|(_, stream)| {
                stream
                    .kept
                    .front()
                    .is_some_and(|kept| now.saturating_duration_since(kept.at) >= ttl)
            })
            .map(|(name, _)| Arc::clone(name))
            .collect();
        for room in expired {
            while self.rooms.get(&room).is_some_and(|stream| {
                stream
                    .kept
                    .front()
                    .is_some_and(|kept| now.saturating_duration_since(kept.at) >= ttl)
            }) {
                self.evict_oldest_of(&room);
            }
        }
        self.rooms.retain(|_, stream| {
            !stream.kept.is_empty() || now.saturating_duration_since(stream.active) < ttl
        });
        self.compact_order();
    }

    /// The stream of `room`, made (a new epoch at offset 0) if it has none, or made anew if
    /// the node lost messages of the other nodes since it was made.
    fn stream(&mut self, room: &Arc<str>, now: Instant, continuity: Continuity) -> &mut RoomStream {
        let stale = match (self.rooms.get(room), continuity) {
            (Some(stream), Some(generation)) => stream.generation != generation,
            _ => false,
        };
        if stale {
            while self
                .rooms
                .get(room)
                .is_some_and(|stream| !stream.kept.is_empty())
            {
                self.evict_oldest_of(room);
            }
            self.rooms.remove(room);
        }
        if !self.rooms.contains_key(room) {
            self.made += 1;
            let epoch = format!(
                "{:016x}",
                self.epoch_seed ^ self.made.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            );
            self.rooms.insert(
                Arc::clone(room),
                RoomStream {
                    epoch: Arc::from(epoch),
                    last: 0,
                    kept: VecDeque::new(),
                    snapshot: None,
                    active: now,
                    generation: continuity.unwrap_or(0),
                },
            );
        }
        self.rooms.get_mut(room).expect("inserted above")
    }

    /// Evicts the oldest kept message of this core's rooms; false when none is kept.
    fn evict_oldest(&mut self) -> bool {
        while let Some((room, offset)) = self.order.pop_front() {
            let is_oldest = self
                .rooms
                .get(&room)
                .is_some_and(|stream| !stream.kept.is_empty() && stream.first_kept() == offset);
            if is_oldest {
                self.evict_oldest_of(&room);
                return true;
            }
        }
        false
    }

    /// Evicts the oldest kept message of `room`.
    fn evict_oldest_of(&mut self, room: &Arc<str>) {
        let Some(stream) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(kept) = stream.kept.pop_front() {
            stream.snapshot = None;
            self.held -= kept.charged;
            self.kept -= 1;
            CoreMetrics::sub(&self.metrics.history_messages, 1);
            CoreMetrics::sub(&self.metrics.history_bytes, kept.charged as u64);
        }
        self.compact_order();
    }

    /// Drops the eviction order's entries of messages evicted by count or age once they are
    /// half of it, so it stays within twice the kept messages.
    fn compact_order(&mut self) {
        if self.order.len() <= 2 * self.kept + 64 {
            return;
        }
        let rooms = &self.rooms;
        self.order.retain(|(room, offset)| {
            rooms
                .get(room)
                .is_some_and(|stream| *offset >= stream.first_kept() && *offset <= stream.last)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node without a broker.
    const ALONE: Continuity = Some(0);

    fn streams(per_room: usize, budget: usize) -> Streams {
        Streams::new(
            0,
            1,
            per_room,
            Duration::from_secs(60),
            budget,
            Arc::default(),
        )
    }

    fn frame(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn drain(mut replay: Replay) -> Vec<Bytes> {
        std::iter::from_fn(|| replay.pop()).collect()
    }

    #[test]
    fn home_cores_are_stable_and_spread() {
        assert_eq!(home_core("lobby", 4), home_core("lobby", 4));
        assert_eq!(home_core("anything", 1), 0);
        let homes: std::collections::HashSet<usize> = (0..100)
            .map(|i| home_core(&format!("room{i}"), 4))
            .collect();
        assert_eq!(homes.len(), 4, "100 rooms land on every one of 4 cores");
    }

    #[test]
    fn offsets_count_and_recovery_replays_what_was_missed() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let now = Instant::now();
        let position = streams.answer(&room, &Since::Nothing, now, ALONE);
        assert_eq!(position.outcome, RecoveryOutcome::Position);
        assert_eq!(position.offset, 0);
        for i in 1..=5 {
            assert_eq!(
                streams.sequence(&room, &frame(&format!("m{i}")), now, ALONE),
                i
            );
        }
        let since = Since::After {
            epoch: position.epoch.to_string(),
            offset: 2,
        };
        let answer = streams.answer(&room, &since, now, ALONE);
        assert_eq!(answer.outcome, RecoveryOutcome::Recovered);
        assert_eq!(answer.offset, 2);
        assert_eq!(
            drain(answer.replay),
            vec![frame("m3"), frame("m4"), frame("m5")]
        );
        let up_to_date = Since::After {
            epoch: position.epoch.to_string(),
            offset: 5,
        };
        let answer = streams.answer(&room, &up_to_date, now, ALONE);
        assert_eq!(
            (answer.outcome, answer.offset),
            (RecoveryOutcome::Recovered, 5)
        );
        assert!(answer.replay.is_empty());
        let last_two = streams.answer(&room, &Since::Last(2), now, ALONE);
        assert_eq!(last_two.offset, 3);
        assert_eq!(drain(last_two.replay), vec![frame("m4"), frame("m5")]);
    }

    #[test]
    fn other_epochs_evicted_and_future_positions_are_reset() {
        let mut streams = streams(3, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let now = Instant::now();
        for i in 1..=10 {
            streams.sequence(&room, &frame(&format!("m{i}")), now, ALONE);
        }
        let epoch = streams
            .answer(&room, &Since::Nothing, now, ALONE)
            .epoch
            .to_string();
        for (asked_epoch, offset) in [("other", 9), (epoch.as_str(), 6), (epoch.as_str(), 11)] {
            let since = Since::After {
                epoch: asked_epoch.to_owned(),
                offset,
            };
            let answer = streams.answer(&room, &since, now, ALONE);
            assert_eq!(
                answer.outcome,
                RecoveryOutcome::Reset,
                "{asked_epoch}:{offset}"
            );
            assert_eq!(answer.offset, 10);
            assert!(answer.replay.is_empty());
        }
        let oldest_kept = Since::After { epoch, offset: 7 };
        let answer = streams.answer(&room, &oldest_kept, now, ALONE);
        assert_eq!(drain(answer.replay).len(), 3, "offsets 8-10 are kept");
    }

    #[test]
    fn the_budget_evicts_the_core_s_oldest_first() {
        let one = heap_chunk(100) + KEPT_OVERHEAD;
        let mut streams = streams(100, 3 * one);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let now = Instant::now();
        let payload = "x".repeat(100);
        streams.sequence(&a, &frame(&payload), now, ALONE);
        streams.sequence(&b, &frame(&payload), now, ALONE);
        streams.sequence(&b, &frame(&payload), now, ALONE);
        streams.sequence(&b, &frame(&payload), now, ALONE);
        assert_eq!(streams.held, 3 * one);
        let a_all = streams.answer(&a, &Since::Last(10), now, ALONE);
        assert!(a_all.replay.is_empty(), "a's message was the oldest");
        assert_eq!(
            streams
                .answer(&b, &Since::Last(10), now, ALONE)
                .replay
                .len(),
            3
        );
    }

    #[test]
    fn a_node_cut_off_from_the_others_resets_and_a_hole_starts_a_new_epoch() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let now = Instant::now();
        for i in 1..=3 {
            streams.sequence(&room, &frame(&format!("m{i}")), now, Some(4));
        }
        let epoch = streams.answer(&room, &Since::Nothing, now, Some(4)).epoch;
        let since = Since::After {
            epoch: epoch.to_string(),
            offset: 1,
        };
        let cut_off = streams.answer(&room, &since, now, None);
        assert_eq!(
            cut_off.outcome,
            RecoveryOutcome::Reset,
            "while the link is down"
        );
        assert_eq!(
            streams.answer(&room, &since, now, Some(4)).outcome,
            RecoveryOutcome::Recovered
        );
        let after_hole = streams.answer(&room, &since, now, Some(5));
        assert_eq!(
            after_hole.outcome,
            RecoveryOutcome::Reset,
            "back after a hole"
        );
        assert_ne!(after_hole.epoch, epoch, "a new epoch");
        assert_eq!((after_hole.offset, streams.held), (0, 0));
    }

    #[test]
    fn old_messages_expire_and_an_idle_room_gets_a_new_epoch() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let start = Instant::now();
        streams.sequence(&room, &frame("m1"), start, ALONE);
        let epoch = streams.answer(&room, &Since::Nothing, start, ALONE).epoch;
        streams.expire(start + Duration::from_secs(61));
        assert_eq!(streams.held, 0);
        let later = streams.answer(
            &room,
            &Since::Nothing,
            start + Duration::from_secs(61),
            ALONE,
        );
        assert_ne!(later.epoch, epoch, "forgotten after the TTL: a new epoch");
        assert_eq!(later.offset, 0);
    }
}
