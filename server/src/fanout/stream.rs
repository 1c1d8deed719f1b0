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
//!
//! With `--broker`, Redis orders the rooms (`broker/`): a message that comes back from it has
//! its epoch and offset already ([`Position`]), and the home core takes them instead of
//! counting. A position that does not continue the room's stream (another epoch, or a hole:
//! this node missed messages) starts the stream anew there, keeping nothing from before, and
//! so does a message this node orders alone (Redis unreachable: an epoch of this node's own):
//! [`Sequenced::broken`], on which the cores close the room's clients that count offsets.
//! A stream not yet Redis's, or no longer followed (the node unsubscribed from the room:
//! [`Streams::unfollow`]), learns where the room stands from its next message, or from an
//! anchor ([`Streams::anchor`]) the home core asks for when a client wants to know first; an
//! unfollowed stream that missed nothing meanwhile goes on with what it kept.

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

/// A place in a room's order, given by Redis (`--broker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// A message's offset in it (from 1), or in an anchor the last offset given (0: none).
    pub offset: u64,
}

/// What [`Streams::sequence`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced {
    /// The message's offset.
    pub offset: u64,
    /// The room's stream did not continue to it: what clients counted before is not this
    /// stream's, and they must reconnect to learn where they stand.
    pub broken: bool,
}

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
    /// Whose epoch and offsets these are.
    origin: Origin,
}

/// Whose epoch and offsets a stream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// This core's own (no broker, or Redis unreachable).
    Own,
    /// Redis's, and the node hears the room from Redis: every later message reaches it.
    Followed,
    /// Redis's, but the node stopped hearing the room (it unsubscribed): where the room
    /// stands now must be asked ([`Streams::anchor`]) before anything is answered from it.
    Unfollowed,
}

impl RoomStream {
    /// A stream of `epoch` whose last offset is `last`, keeping nothing yet.
    fn new(epoch: Arc<str>, last: u64, now: Instant, origin: Origin) -> Self {
        RoomStream {
            epoch,
            last,
            kept: VecDeque::new(),
            snapshot: None,
            active: now,
            origin,
        }
    }

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

    /// Gives `frame`, a message of `room`, its offset (`position`'s, from Redis, or else the
    /// room's next) and keeps a copy of it. None: Redis's position is not past the stream's
    /// (a message published before the anchor this stream started from): not delivered.
    pub fn sequence(
        &mut self,
        room: &Arc<str>,
        frame: &Bytes,
        now: Instant,
        position: Option<Position>,
    ) -> Option<Sequenced> {
        let broken = match position {
            Some(position) => self.continue_shared(room, now, position)?,
            None => self.continue_local(room),
        };
        let offset = {
            let stream = self.stream(room, now);
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
        Some(Sequenced { offset, broken })
    }

    /// Whether `room`'s stream is Redis's and the node hears the room from Redis.
    pub fn is_followed(&self, room: &str) -> bool {
        self.origin(room) == Some(Origin::Followed)
    }

    /// The node stopped hearing `room` from Redis (it unsubscribed): its stream keeps what it
    /// has, but is not answered from until Redis tells where the room stands.
    pub fn unfollow(&mut self, room: &str) {
        if let Some(stream) = self.rooms.get_mut(room) {
            if stream.origin == Origin::Followed {
                stream.origin = Origin::Unfollowed;
            }
        }
    }

    /// Redis tells where `room` stands (`position`: its epoch and last offset). A followed
    /// stream is left as it is (every later message reaches it in order anyway); one left
    /// where Redis is (nothing was missed while unfollowed) is followed again with what it
    /// kept; any other starts anew at `position`: true if one was there (whoever counted its
    /// offsets must reconnect).
    pub fn anchor(&mut self, room: &Arc<str>, position: Position, now: Instant) -> bool {
        match self.rooms.get_mut(room) {
            Some(stream) if stream.origin == Origin::Followed => return false,
            Some(stream)
                if stream.origin == Origin::Unfollowed
                    && stream.epoch == position.epoch
                    && stream.last == position.offset =>
            {
                stream.origin = Origin::Followed;
                return false;
            }
            _ => {}
        }
        let existed = self.rooms.contains_key(room);
        self.forget(room);
        let stream = RoomStream::new(position.epoch, position.offset, now, Origin::Followed);
        self.rooms.insert(Arc::clone(room), stream);
        existed
    }

    /// Whose epoch and offsets `room`'s stream has (None: it has none).
    fn origin(&self, room: &str) -> Option<Origin> {
        self.rooms.get(room).map(|stream| stream.origin)
    }

    /// Makes `room`'s stream ready for the message at `position`: true if the stream had to
    /// start anew (another epoch, a hole, or an epoch of this node's own before); None if
    /// the stream is past it already.
    fn continue_shared(
        &mut self,
        room: &Arc<str>,
        now: Instant,
        position: Position,
    ) -> Option<bool> {
        let existed = match self.rooms.get(room) {
            Some(stream) if stream.origin == Origin::Followed && stream.epoch == position.epoch => {
                match position.offset.cmp(&(stream.last + 1)) {
                    std::cmp::Ordering::Less => return None,
                    std::cmp::Ordering::Equal => return Some(false),
                    std::cmp::Ordering::Greater => true,
                }
            }
            existed => existed.is_some(),
        };
        self.forget(room);
        self.rooms.insert(
            Arc::clone(room),
            RoomStream::new(position.epoch, position.offset - 1, now, Origin::Followed),
        );
        Some(existed)
    }

    /// Makes `room`'s stream ready for a message this node orders alone: true if the stream
    /// was Redis's (it starts anew, in an epoch of this node's own).
    fn continue_local(&mut self, room: &Arc<str>) -> bool {
        let redis_s = self
            .origin(room)
            .is_some_and(|origin| origin != Origin::Own);
        if redis_s {
            self.forget(room);
        }
        redis_s
    }

    /// Answers a client of `room` that asked `since`. While the node is not `in_touch` with
    /// Redis (`Broker::in_touch`; always without a broker) a position is not continued
    /// (`reset`): what the other nodes publish meanwhile is missing here.
    pub fn answer(
        &mut self,
        room: &Arc<str>,
        since: &Since,
        now: Instant,
        in_touch: bool,
    ) -> Answer {
        let stream = self.stream(room, now);
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
            } if in_touch && **asked == *epoch && *offset <= last && *offset + 1 >= first_kept => (
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

    /// The stream of `room`, made (a new epoch of this core's at offset 0) if it has none.
    fn stream(&mut self, room: &Arc<str>, now: Instant) -> &mut RoomStream {
        if !self.rooms.contains_key(room) {
            self.made += 1;
            let epoch = format!(
                "{:016x}",
                self.epoch_seed ^ self.made.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            );
            let stream = RoomStream::new(Arc::from(epoch), 0, now, Origin::Own);
            self.rooms.insert(Arc::clone(room), stream);
        }
        self.rooms.get_mut(room).expect("inserted above")
    }

    /// Forgets `room`'s stream and what it kept.
    fn forget(&mut self, room: &Arc<str>) {
        while self
            .rooms
            .get(room)
            .is_some_and(|stream| !stream.kept.is_empty())
        {
            self.evict_oldest_of(room);
        }
        self.rooms.remove(room);
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

    /// Ordered by this node (no broker, or Redis unreachable).
    const ALONE: Option<Position> = None;
    /// Answered in touch with Redis (always without a broker).
    const IN_TOUCH: bool = true;

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
        let position = streams.answer(&room, &Since::Nothing, now, IN_TOUCH);
        assert_eq!(position.outcome, RecoveryOutcome::Position);
        assert_eq!(position.offset, 0);
        for i in 1..=5 {
            assert_eq!(
                streams
                    .sequence(&room, &frame(&format!("m{i}")), now, ALONE)
                    .map(|sequenced| sequenced.offset),
                Some(i)
            );
        }
        let since = Since::After {
            epoch: position.epoch.to_string(),
            offset: 2,
        };
        let answer = streams.answer(&room, &since, now, IN_TOUCH);
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
        let answer = streams.answer(&room, &up_to_date, now, IN_TOUCH);
        assert_eq!(
            (answer.outcome, answer.offset),
            (RecoveryOutcome::Recovered, 5)
        );
        assert!(answer.replay.is_empty());
        let last_two = streams.answer(&room, &Since::Last(2), now, IN_TOUCH);
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
            .answer(&room, &Since::Nothing, now, IN_TOUCH)
            .epoch
            .to_string();
        for (asked_epoch, offset) in [("other", 9), (epoch.as_str(), 6), (epoch.as_str(), 11)] {
            let since = Since::After {
                epoch: asked_epoch.to_owned(),
                offset,
            };
            let answer = streams.answer(&room, &since, now, IN_TOUCH);
            assert_eq!(
                answer.outcome,
                RecoveryOutcome::Reset,
                "{asked_epoch}:{offset}"
            );
            assert_eq!(answer.offset, 10);
            assert!(answer.replay.is_empty());
        }
        let oldest_kept = Since::After { epoch, offset: 7 };
        let answer = streams.answer(&room, &oldest_kept, now, IN_TOUCH);
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
        let a_all = streams.answer(&a, &Since::Last(10), now, IN_TOUCH);
        assert!(a_all.replay.is_empty(), "a's message was the oldest");
        assert_eq!(
            streams
                .answer(&b, &Since::Last(10), now, IN_TOUCH)
                .replay
                .len(),
            3
        );
    }

    /// Redis's position for offset `offset` of `epoch`.
    fn at(epoch: &str, offset: u64) -> Option<Position> {
        Some(Position {
            epoch: Arc::from(epoch),
            offset,
        })
    }

    #[test]
    fn redis_positions_are_taken_and_a_hole_or_a_local_message_breaks_the_stream() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let now = Instant::now();
        // A node that joins a room at offset 41 of Redis's epoch takes it as it is.
        for offset in 41..=43 {
            let sequenced = streams.sequence(&room, &frame("m"), now, at("e1", offset));
            assert_eq!(
                sequenced,
                Some(Sequenced {
                    offset,
                    broken: false
                })
            );
        }
        let since = |epoch: &str, offset| Since::After {
            epoch: epoch.to_owned(),
            offset,
        };
        let answer = streams.answer(&room, &since("e1", 41), now, IN_TOUCH);
        assert_eq!(
            (answer.outcome, answer.replay.len()),
            (RecoveryOutcome::Recovered, 2)
        );
        let cut_off = streams.answer(&room, &since("e1", 41), now, false);
        assert_eq!(
            cut_off.outcome,
            RecoveryOutcome::Reset,
            "while Redis is away"
        );

        // A hole (44 and 45 missed): nothing from before is continued.
        let hole = streams.sequence(&room, &frame("m"), now, at("e1", 46));
        assert_eq!(
            hole,
            Some(Sequenced {
                offset: 46,
                broken: true
            })
        );
        assert_eq!(
            streams.sequence(&room, &frame("m"), now, at("e1", 45)),
            None,
            "not past the stream: not delivered"
        );
        let answer = streams.answer(&room, &since("e1", 43), now, IN_TOUCH);
        assert_eq!(
            (answer.outcome, answer.offset),
            (RecoveryOutcome::Reset, 46)
        );
        assert_eq!(
            streams
                .answer(&room, &since("e1", 46), now, IN_TOUCH)
                .outcome,
            RecoveryOutcome::Recovered
        );

        // Ordered here alone (Redis away): an epoch of this node's own.
        let local = streams.sequence(&room, &frame("m"), now, ALONE);
        assert_eq!(
            local,
            Some(Sequenced {
                offset: 1,
                broken: true
            })
        );
        let own = streams.answer(&room, &Since::Nothing, now, IN_TOUCH).epoch;
        assert_ne!(&*own, "e1");
        let next = streams.sequence(&room, &frame("m"), now, ALONE);
        assert_eq!(
            next,
            Some(Sequenced {
                offset: 2,
                broken: false
            })
        );

        // Redis back (or its state lost: another epoch): its stream again, from scratch.
        let back = streams.sequence(&room, &frame("m"), now, at("e2", 1));
        assert_eq!(
            back,
            Some(Sequenced {
                offset: 1,
                broken: true
            })
        );
        assert_eq!(streams.held, streams.rooms[&room].kept[0].charged);
        assert_eq!(
            streams
                .answer(&room, &since(&own, 2), now, IN_TOUCH)
                .outcome,
            RecoveryOutcome::Reset
        );
    }

    #[test]
    fn an_anchor_starts_a_stream_not_yet_redis_s_and_changes_nothing_after() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let now = Instant::now();
        let anchor = |offset| Position {
            epoch: Arc::from("e1"),
            offset,
        };
        assert!(!streams.anchor(&room, anchor(7), now), "nothing was there");
        assert!(streams.is_followed(&room));
        let told = streams.answer(&room, &Since::Nothing, now, IN_TOUCH);
        assert_eq!((&*told.epoch, told.offset), ("e1", 7));
        // Published before the anchor, still on its way: not delivered; then on from 8.
        assert_eq!(streams.sequence(&room, &frame("m"), now, at("e1", 6)), None);
        let next = streams.sequence(&room, &frame("m"), now, at("e1", 8));
        assert_eq!(
            next,
            Some(Sequenced {
                offset: 8,
                broken: false
            })
        );
        assert!(!streams.anchor(&room, anchor(20), now), "Redis's already");
        assert_eq!(
            streams.answer(&room, &Since::Nothing, now, IN_TOUCH).offset,
            8
        );
        // A stream of this node's own (Redis was away) is replaced: broken.
        let other: Arc<str> = Arc::from("other");
        streams.sequence(&other, &frame("m"), now, ALONE);
        assert!(streams.anchor(&other, anchor(3), now));
    }

    #[test]
    fn an_unfollowed_stream_goes_on_with_what_it_kept_only_if_it_missed_nothing() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let now = Instant::now();
        let anchor = |offset| Position {
            epoch: Arc::from("e1"),
            offset,
        };
        streams.anchor(&room, anchor(0), now);
        for offset in 1..=2 {
            streams.sequence(&room, &frame("m"), now, at("e1", offset));
        }
        let since = |offset| Since::After {
            epoch: "e1".to_owned(),
            offset,
        };
        streams.unfollow(&room);
        assert!(
            !streams.is_followed(&room),
            "not answered from until anchored"
        );
        // Nothing happened in the room meanwhile: what was kept still serves.
        assert!(!streams.anchor(&room, anchor(2), now));
        assert!(streams.is_followed(&room));
        let answer = streams.answer(&room, &since(0), now, IN_TOUCH);
        assert_eq!(
            (answer.outcome, answer.replay.len()),
            (RecoveryOutcome::Recovered, 2)
        );
        // Three messages were missed meanwhile: nothing from before is continued.
        streams.unfollow(&room);
        assert!(streams.anchor(&room, anchor(5), now));
        let answer = streams.answer(&room, &since(2), now, IN_TOUCH);
        assert_eq!((answer.outcome, answer.offset), (RecoveryOutcome::Reset, 5));
        // Ordered here alone while unfollowed: Redis's stream gives way to one of this node's.
        streams.unfollow(&room);
        let local = streams.sequence(&room, &frame("m"), now, ALONE);
        assert_eq!(
            local,
            Some(Sequenced {
                offset: 1,
                broken: true
            })
        );
    }

    #[test]
    fn old_messages_expire_and_an_idle_room_gets_a_new_epoch() {
        let mut streams = streams(10, 1 << 20);
        let room: Arc<str> = Arc::from("r");
        let start = Instant::now();
        streams.sequence(&room, &frame("m1"), start, ALONE);
        let epoch = streams
            .answer(&room, &Since::Nothing, start, IN_TOUCH)
            .epoch;
        streams.expire(start + Duration::from_secs(61));
        assert_eq!(streams.held, 0);
        let later = streams.answer(
            &room,
            &Since::Nothing,
            start + Duration::from_secs(61),
            IN_TOUCH,
        );
        assert_ne!(later.epoch, epoch, "forgotten after the TTL: a new epoch");
        assert_eq!(later.offset, 0);
    }
}
