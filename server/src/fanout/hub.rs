//! The rooms of one core, publishing, and fan-out to the other cores and nodes.
//!
//! A message is encoded once into a `Bytes` as the core's reader decodes it from its publisher
//! ([`Hub::publish`]), its bytes counted in the fan-out budget until its last handle drops.
//! [`Hub::publish_frame`] sends it to Redis to be ordered for every node (`broker/`, with
//! `--broker`: it comes back on the subscribe link), or else has the room's home core put it
//! in the room's order (`stream.rs`): the home core pushes one
//! core-local handle of it into the queue of every local subscriber of the room and sends one
//! clone to each other core's mailbox (`mail.rs`), which does the same for its subscribers.
//! A recovering client's questions go to the home core the same way ([`Hub::recover`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::broker::Broker;
use super::mail::{Mail, Mailboxes, RecoverAnswer, RecoverRequest, MAIL_BYTES};
use super::room::{Frames, Room, DEFLATE_WINDOWS};
use super::stream::{home_core, Answer, Position, Since, Streams};
use crate::budget::{FanoutBudget, FRAME_HANDLE_BYTES};
use crate::clock::CoarseClock;
use crate::metrics::{CoreMetrics, RecoveryOutcome, FANOUT_SAMPLE_EVERY};
use crate::output::{CoreOutput, Subscriber};
use crate::ws::{encode_frame_into, CloseCode, Compressors, MessageKind, MIN_COMPRESS_WINDOW};

/// The first message a recovering client gets: where it stands in the room's order.
fn notice(answer: &Answer) -> String {
    format!(
        r#"{{"ringcast":"{}","epoch":"{}","offset":{}}}"#,
        answer.outcome.label(),
        answer.epoch,
        answer.offset
    )
}

/// How long a question may wait for Redis to tell where its room stands (a link that failed
/// took the anchor with it): then it is answered from this node's own stream.
const PARK_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who asked a home core where a room stands.
#[derive(Debug)]
enum Asker {
    /// A client of this core.
    Here(Rc<Subscriber>),
    /// The client with `ticket` on core `core`.
    Core {
        /// Its core.
        core: usize,
        /// Its ticket there.
        ticket: u64,
    },
}

/// A question waiting for Redis to tell where its room stands.
#[derive(Debug)]
struct Parked {
    /// What was asked.
    since: Since,
    /// Who asked.
    asker: Asker,
    /// When it was parked.
    parked_at: Instant,
}

/// The rooms of one core, the streams of the rooms homed on it, every core's mailbox, and the
/// other nodes.
#[derive(Debug)]
pub struct Hub {
    /// This core's index.
    index: usize,
    /// Rooms with at least one local subscriber.
    rooms: RefCell<HashMap<Arc<str>, Rc<Room>>>,
    /// Order and kept messages of the rooms homed on this core.
    streams: RefCell<Streams>,
    /// Every core's mailbox, by index.
    cores: Mailboxes,
    /// Recovering clients of this core waiting for their room's home core, by ticket.
    asking: RefCell<HashMap<u64, Rc<Subscriber>>>,
    /// Questions to this home core waiting for Redis to tell where their room stands, by room.
    parked: RefCell<HashMap<Arc<str>, Vec<Parked>>>,
    /// The last ticket given.
    tickets: Cell<u64>,
    /// The other nodes, with `--broker`.
    broker: Option<Arc<Broker>>,
    /// This core's frame-handle ledger (and flush list), shared with its subscribers.
    core_output: Rc<CoreOutput>,
    /// This core's metrics.
    metrics: Arc<CoreMetrics>,
    /// The process-wide fan-out budget, charged for every frame encoded here.
    budget: Arc<FanoutBudget>,
    /// This core's coarse clock (what kept messages are stamped with: no clock read per
    /// message).
    clock: Rc<CoarseClock>,
    /// Messages fanned out on this core; every [`FANOUT_SAMPLE_EVERY`]-th is timed.
    fanned_out: Cell<u32>,
    /// With `--deflate on`: what compresses the messages of the rooms homed here, once each.
    compressors: Option<RefCell<Compressors>>,
    /// For the rooms homed here: how many cores have subscribers taking compressed frames of
    /// each window (9-15 bits). A room's messages are compressed for the smallest window in
    /// use, which every deflate subscriber with that window or a larger one can inflate.
    deflate_interest: RefCell<HashMap<Arc<str>, [u16; DEFLATE_WINDOWS]>>,
    /// Messages compressed on this core; every [`FANOUT_SAMPLE_EVERY`]-th is timed.
    compressed: Cell<u32>,
}

impl Hub {
    /// The hub of core `index`, whose subscribers report to `core_output`: it orders the rooms
    /// homed here in `streams`, mails `cores` (every core, by index) and `broker` (the other
    /// nodes), counts into `metrics`, charges what it encodes to the fan-out budget (its
    /// ledger's), reads the time from `clock` and compresses with `compressors`
    /// (`--deflate on`).
    #[expect(
        clippy::too_many_arguments,
        reason = "one per thing a core's hub is built from"
    )]
    pub fn new(
        index: usize,
        core_output: Rc<CoreOutput>,
        cores: Mailboxes,
        streams: Streams,
        broker: Option<Arc<Broker>>,
        metrics: Arc<CoreMetrics>,
        clock: Rc<CoarseClock>,
        compressors: Option<Compressors>,
    ) -> Self {
        let budget = Arc::clone(core_output.ledger.budget());
        Hub {
            index,
            rooms: RefCell::new(HashMap::new()),
            streams: RefCell::new(streams),
            cores,
            asking: RefCell::new(HashMap::new()),
            parked: RefCell::new(HashMap::new()),
            tickets: Cell::new(0),
            broker,
            core_output,
            metrics,
            budget,
            clock,
            fanned_out: Cell::new(0),
            compressors: compressors.map(RefCell::new),
            deflate_interest: RefCell::new(HashMap::new()),
            compressed: Cell::new(0),
        }
    }

    /// Adds `subscriber` to `room` (created on first join); returns the room.
    pub fn join(&self, room: &str, subscriber: Rc<Subscriber>) -> Rc<Room> {
        let mut rooms = self.rooms.borrow_mut();
        let room = match rooms.get(room) {
            Some(existing) => Rc::clone(existing),
            None => {
                let name: Arc<str> = Arc::from(room);
                let created = Rc::new(Room::new(Arc::clone(&name)));
                if let Some(broker) = &self.broker {
                    broker.room_opened(&name);
                }
                rooms.insert(name, Rc::clone(&created));
                CoreMetrics::add(&self.metrics.rooms, 1);
                created
            }
        };
        drop(rooms);
        if let Some(window) = room.add(subscriber) {
            self.tell_deflate_interest(room.shared_name(), window, true);
        }
        room
    }

    /// Removes `subscriber` from `room`, dropping the room when it becomes empty.
    pub fn leave(&self, room: &Rc<Room>, subscriber: &Rc<Subscriber>) {
        let (now_empty, window) = room.remove(subscriber);
        if let Some(window) = window {
            self.tell_deflate_interest(room.shared_name(), window, false);
        }
        if now_empty && self.rooms.borrow_mut().remove(room.name()).is_some() {
            CoreMetrics::sub(&self.metrics.rooms, 1);
            if let Some(broker) = &self.broker {
                broker.room_closed(room.name());
            }
        }
    }

    /// Publishes a client's message: encodes it once, its bytes counted in the fan-out budget
    /// until the last handle drops, and fans it out ([`Hub::publish_frame`]).
    pub fn publish(&self, room: &Room, kind: MessageKind, payload: &[u8]) {
        self.publish_frame(room, self.encode(kind, payload));
    }

    /// Publishes a message from outside any room (`POST /publish`) like [`Hub::publish`]: in
    /// room `name`'s order, to its subscribers on every core and node.
    pub fn publish_named(&self, name: &str, kind: MessageKind, payload: &[u8]) {
        let frame = self.encode(kind, payload);
        let local = self.rooms.borrow().get(name).cloned();
        let members = local.as_ref().map_or(0, |room| room.member_count());
        let name = local.map_or_else(|| Arc::from(name), |room| Arc::clone(room.shared_name()));
        self.route(&name, frame, members);
    }

    /// Publishes an encoded frame from a local client ([`Hub::route`]).
    pub fn publish_frame(&self, room: &Room, frame: Bytes) {
        self.route(room.shared_name(), frame, room.member_count());
    }

    /// The handles a message of a room with `local_members` on this core will cost on every
    /// core: this core's count stands for each core's (connections spread evenly over the
    /// cores' listeners).
    pub fn fanout_estimate(&self, local_members: usize) -> usize {
        local_members * self.cores.cores() * FRAME_HANDLE_BYTES
    }

    /// Tells `room`'s home core that this core's first subscriber taking compressed frames of
    /// `window` bits joined (`joined`) or its last one left. Messages sequenced before the
    /// home core knows go plain to the new subscriber (RSV1 is per message), and a few may be
    /// compressed for nobody after the last one left: neither is wrong, and a core's mail
    /// keeps its own joins and leaves in order, so the counts never drift.
    fn tell_deflate_interest(&self, room: &Arc<str>, window: u8, joined: bool) {
        if self.compressors.is_none() {
            return;
        }
        let home = home_core(room, self.cores.cores());
        if home == self.index {
            self.deflate_interest_changed(room, window, joined);
        } else {
            let mail = Mail::DeflateInterest {
                room: Arc::clone(room),
                window,
                joined,
            };
            self.cores.send(home, mail);
        }
    }

    /// On the room's home core: counts a core's interest in compressed frames of `window`.
    fn deflate_interest_changed(&self, room: &Arc<str>, window: u8, joined: bool) {
        let mut interest = self.deflate_interest.borrow_mut();
        let Some(index) = window
            .checked_sub(MIN_COMPRESS_WINDOW)
            .map(usize::from)
            .filter(|&index| index < DEFLATE_WINDOWS)
        else {
            return;
        };
        let counts = interest
            .entry(Arc::clone(room))
            .or_insert([0; DEFLATE_WINDOWS]);
        counts[index] = if joined {
            counts[index].saturating_add(1)
        } else {
            counts[index].saturating_sub(1)
        };
        if counts.iter().all(|&count| count == 0) {
            interest.remove(room);
        }
    }

    /// On the room's home core: `frame` compressed once for the smallest window any core's
    /// subscribers of `room` take, charged to the fan-out budget like the plain frame; None
    /// when no subscriber takes compressed frames or the message stays plain (short or
    /// incompressible). One compression in [`FANOUT_SAMPLE_EVERY`] is timed
    /// (`ringcast_deflate_seconds`).
    fn compress(&self, room: &Arc<str>, frame: &Bytes) -> Option<(u8, Bytes)> {
        let compressors = self.compressors.as_ref()?;
        let window = {
            let interest = self.deflate_interest.borrow();
            let counts = interest.get(room)?;
            let smallest = counts.iter().position(|&count| count > 0)?;
            MIN_COMPRESS_WINDOW + smallest as u8
        };
        let count = self.compressed.get();
        self.compressed.set(count.wrapping_add(1));
        let started = count.is_multiple_of(FANOUT_SAMPLE_EVERY).then(Instant::now);
        let compressed = compressors.borrow_mut().compressed_frame(frame, window);
        if let Some(started) = started {
            self.metrics.record_deflate(started.elapsed());
        }
        let compressed = compressed?;
        self.metrics.count_compressed(frame.len(), compressed.len());
        Some((window, self.budget.track(compressed)))
    }

    /// Sends a frame published on this node to be put in `room`'s order: with a broker, to
    /// Redis, which orders it for every node (it comes back on the subscribe link, to this
    /// node too); without one, or while Redis cannot take it, to the room's home core (this
    /// core, or one mail away, charged with the fan-out a room with `local_members` here is
    /// about to cost).
    fn route(&self, room: &Arc<str>, frame: Bytes, local_members: usize) {
        let forwarded = (self.broker.as_ref()).is_some_and(|broker| broker.forward(room, &frame));
        if forwarded {
            return;
        }
        if home_core(room, self.cores.cores()) == self.index {
            self.sequence(room, frame, None);
        } else {
            let reserved = self.fanout_estimate(local_members);
            self.cores.publish(room, &frame, reserved, None);
        }
    }

    /// On the room's home core: gives `frame` its offset (`position`'s, from Redis, or the
    /// room's next), keeping a copy for recovery, delivers it to this core's subscribers and
    /// mails it to the other cores, in that order for every message of the room. If the room's
    /// stream broke there, every core first closes the room's clients that count offsets.
    fn sequence(&self, room: &Arc<str>, frame: Bytes, position: Option<Position>) {
        if let Some(position) = &position {
            if !self.streams.borrow().is_followed(room) {
                // The first message from Redis tells where the room stood before it.
                let before = Position {
                    epoch: Arc::clone(&position.epoch),
                    offset: position.offset - 1,
                };
                self.anchored(room, before);
            }
        }
        let sequenced =
            self.streams
                .borrow_mut()
                .sequence(room, &frame, self.clock.now(), position);
        let Some(sequenced) = sequenced else {
            return;
        };
        if sequenced.broken {
            self.close_counting(room);
            self.cores.discontinuity(self.index, room);
        }
        let deflated = self.compress(room, &frame);
        let local = self.rooms.borrow().get(room).cloned();
        if let Some(local) = local {
            self.deliver_locally(&local, &frame, deflated.as_ref());
        }
        self.cores
            .broadcast(self.index, room, &frame, deflated.as_ref());
    }

    /// Encodes one frame, its bytes counted in the fan-out budget until the last handle drops.
    fn encode(&self, kind: MessageKind, payload: &[u8]) -> Bytes {
        let mut encoded = Vec::new();
        encode_frame_into(&mut encoded, kind.opcode(), payload);
        self.budget.track(encoded)
    }

    /// Takes a mail from another core (or the broker).
    pub fn take(&self, mail: Mail) {
        self.budget.mail_taken(MAIL_BYTES);
        match mail {
            Mail::Publish {
                room,
                frame,
                reserved,
                position,
            } => {
                self.budget.mail_taken(reserved);
                self.sequence(&room, frame, position);
            }
            Mail::Discontinuity { room } => self.close_counting(&room),
            Mail::Anchor { room, position } => self.anchored(&room, position),
            Mail::Unfollowed { room } => self.streams.borrow_mut().unfollow(&room),
            Mail::Broadcast {
                room,
                frame,
                deflated,
            } => {
                let target = self.rooms.borrow().get(&room).cloned();
                if let Some(target) = target {
                    self.deliver_locally(&target, &frame, deflated.as_ref());
                }
            }
            Mail::DeflateInterest {
                room,
                window,
                joined,
            } => self.deflate_interest_changed(&room, window, joined),
            Mail::Recover(request) => {
                let RecoverRequest {
                    room,
                    since,
                    core,
                    ticket,
                } = *request;
                self.answer_or_park(&room, since, Asker::Core { core, ticket });
            }
            Mail::Answer(answer) => {
                let asking = self.asking.borrow_mut().remove(&answer.ticket);
                if let Some(subscriber) = asking {
                    self.answered(&subscriber, answer.answer);
                }
            }
            Mail::Shutdown => {}
        }
    }

    /// A client that joined `room` asked where it stands (`?since=`, `?history=`): live
    /// messages wait until the room's home core answers.
    pub fn recover(&self, room: &Room, subscriber: &Rc<Subscriber>, since: Since) {
        subscriber.begin_recovery(Arc::clone(room.shared_name()));
        self.ask(room.shared_name(), subscriber, since);
    }

    /// A recovering client queued all it was answered but the room went on meanwhile: asks the
    /// home core for what followed.
    pub fn catch_up(&self, subscriber: &Rc<Subscriber>) {
        if subscriber.is_closing() {
            return;
        }
        if let Some((room, Some(epoch), offset)) = subscriber.recovery_position() {
            let since = Since::After {
                epoch: epoch.to_string(),
                offset,
            };
            self.ask(&room, subscriber, since);
        }
    }

    /// Asks `room`'s home core about `since` for `subscriber`: answered at once here if this
    /// is the home core, else by mail (the answer comes after every message it covers).
    fn ask(&self, room: &Arc<str>, subscriber: &Rc<Subscriber>, since: Since) {
        let home = home_core(room, self.cores.cores());
        if home == self.index {
            self.answer_or_park(room, since, Asker::Here(Rc::clone(subscriber)));
            return;
        }
        let ticket = self.tickets.get() + 1;
        self.tickets.set(ticket);
        self.asking
            .borrow_mut()
            .insert(ticket, Rc::clone(subscriber));
        let request = RecoverRequest {
            room: Arc::clone(room),
            since,
            core: self.index,
            ticket,
        };
        self.cores.send(home, Mail::Recover(Box::new(request)));
    }

    /// On the room's home core: answers `since` for `asker`, unless the node has a broker and
    /// has not heard the room from Redis yet (it cannot tell Redis's position): then the
    /// question waits for the room's first message from Redis or for the anchor asked for
    /// here, whichever comes first.
    fn answer_or_park(&self, room: &Arc<str>, since: Since, asker: Asker) {
        if let Some(broker) = &self.broker {
            if broker.in_touch() && !self.streams.borrow().is_followed(room) {
                let mut parked = self.parked.borrow_mut();
                let waiting = parked.entry(Arc::clone(room)).or_default();
                if waiting.is_empty() {
                    broker.anchor(room);
                }
                waiting.push(Parked {
                    since,
                    asker,
                    parked_at: self.clock.now(),
                });
                return;
            }
        }
        let answer =
            self.streams
                .borrow_mut()
                .answer(room, &since, self.clock.now(), self.in_touch());
        self.reply(asker, answer);
    }

    /// Sends `answer` to whoever asked.
    fn reply(&self, asker: Asker, answer: Answer) {
        match asker {
            Asker::Here(subscriber) => self.answered(&subscriber, answer),
            Asker::Core { core, ticket } => {
                let answer = RecoverAnswer { ticket, answer };
                self.cores.send(core, Mail::Answer(Box::new(answer)));
            }
        }
    }

    /// On the room's home core: Redis told where `room` stands (an anchor, or the first
    /// message of the room from Redis, `position` being the offset before it). A stream of
    /// this node's own gives way (its counting clients are closed on every core), and the
    /// questions waiting for it are answered, before any later message.
    fn anchored(&self, room: &Arc<str>, position: Position) {
        let broken = (self.streams.borrow_mut()).anchor(room, position, self.clock.now());
        if broken {
            self.close_counting(room);
            self.cores.discontinuity(self.index, room);
        }
        let waiting = self.parked.borrow_mut().remove(room);
        for parked in waiting.into_iter().flatten() {
            self.answer_or_park(room, parked.since, parked.asker);
        }
    }

    /// Answers the questions that waited for Redis too long ([`PARK_LIMIT`], an anchor lost
    /// with a failed link) or while the node lost touch with it: from this node's own stream.
    fn answer_stale_parked(&self, now: Instant) {
        let stale: Vec<Arc<str>> = (self.parked.borrow().iter())
            .filter(|(_, waiting)| {
                !self.in_touch()
                    || waiting.first().is_some_and(|parked| {
                        now.saturating_duration_since(parked.parked_at) >= PARK_LIMIT
                    })
            })
            .map(|(room, _)| Arc::clone(room))
            .collect();
        for room in stale {
            let waiting = self.parked.borrow_mut().remove(&room);
            for parked in waiting.into_iter().flatten() {
                let answer = (self.streams.borrow_mut()).answer(&room, &parked.since, now, false);
                self.reply(parked.asker, answer);
            }
        }
    }

    /// Gives a recovering client its answer: the first one is told to the client (a JSON text
    /// message) and counted; a later one (catching up) must continue where it stands, or the
    /// client could not know what it missed: it is closed with 1013 to reconnect.
    fn answered(&self, subscriber: &Rc<Subscriber>, answer: Answer) {
        let Some((_, told, _)) = subscriber.recovery_position() else {
            return;
        };
        let first = if told.is_none() {
            self.metrics.count_recovery(answer.outcome);
            let notice = notice(&answer);
            Some(Rc::new(self.encode(MessageKind::Text, notice.as_bytes())))
        } else if answer.outcome != RecoveryOutcome::Recovered {
            subscriber.close(
                CloseCode::TryAgainLater,
                "fell behind the room's history while recovering",
            );
            return;
        } else {
            None
        };
        CoreMetrics::add(&self.metrics.replayed_messages, answer.replay.len() as u64);
        subscriber.recovery_answered(first, answer.epoch, answer.offset, answer.replay);
    }

    /// Whether Redis orders this node's messages and this node hears its order (always
    /// without a broker).
    fn in_touch(&self) -> bool {
        self.broker.as_ref().is_none_or(|broker| broker.in_touch())
    }

    /// `room`'s stream broke (`stream.rs`): this core's clients of the room that count offsets
    /// would count on from a position that is not the room's; they are closed (1013) to
    /// reconnect and be told where they stand (`recovered` on a node that has what they
    /// missed, else `reset`).
    fn close_counting(&self, room: &Arc<str>) {
        let Some(local) = self.rooms.borrow().get(room).cloned() else {
            return;
        };
        let mut counting = Vec::new();
        local.for_each(&mut |subscriber: &Rc<Subscriber>| {
            if subscriber.counts_offsets() {
                counting.push(Rc::clone(subscriber));
            }
        });
        for subscriber in counting {
            subscriber.close(
                CloseCode::TryAgainLater,
                "this node missed messages of the room: reconnect",
            );
        }
    }

    /// Drops kept messages past `--history-ttl` (the keepalive sweep calls it each tick).
    pub fn expire_history(&self, now: Instant) {
        self.answer_stale_parked(now);
        self.streams.borrow_mut().expire(now);
    }

    /// Queues `frame` or its compressed form `deflated` (this core's one handle of each) for
    /// every subscriber of `room` on this core, then makes the core's new handle count visible
    /// to the others (once per message, not per delivery). One message in
    /// [`FANOUT_SAMPLE_EVERY`] is timed (`ringcast_fanout_seconds`): two clock reads cost as
    /// much as the rest of a one-member fan-out (measured with the `fanout/1` bench).
    fn deliver_locally(&self, room: &Room, frame: &Bytes, deflated: Option<&(u8, Bytes)>) {
        let count = self.fanned_out.get();
        self.fanned_out.set(count.wrapping_add(1));
        let started = count.is_multiple_of(FANOUT_SAMPLE_EVERY).then(Instant::now);
        let frames = Frames {
            plain: Rc::new(frame.clone()),
            deflated: deflated.map(|(window, deflated)| (*window, Rc::new(deflated.clone()))),
        };
        let delivered = room.deliver(&frames);
        self.core_output.ledger.mirror();
        if delivered.slow > 0 {
            self.metrics
                .slow_consumer_closes
                .fetch_add(delivered.slow, Ordering::Relaxed);
        }
        if delivered.compressed > 0 {
            CoreMetrics::add(&self.metrics.deflate_deliveries, delivered.compressed);
        }
        if let Some(started) = started {
            self.metrics.record_fanout(started.elapsed());
        }
    }

    /// Calls `visit` for every local subscriber (keepalive sweep, shutdown). `visit` must not
    /// join or leave rooms.
    pub fn for_each_subscriber(&self, mut visit: impl FnMut(&Rc<Subscriber>)) {
        for room in self.rooms.borrow().values() {
            room.for_each(&mut visit);
        }
    }

    /// Number of local subscribers across rooms.
    pub fn subscriber_count(&self) -> usize {
        self.rooms
            .borrow()
            .values()
            .map(|room| room.member_count())
            .sum()
    }
}

/// A core's fan-out without sockets or runtime, for benches and tests (`crate::testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::sync::mpsc::UnboundedSender;

    use super::Hub;
    use crate::budget::{CoreLedger, FanoutBudget};
    use crate::fanout::mail::{Mail, Mailboxes};
    use crate::fanout::stream::Streams;
    use crate::metrics::CoreMetrics;
    use crate::output::testing::attach_stub;
    use crate::output::{CoreOutput, Subscriber};
    use crate::ws::Compressors;

    /// One core's fan-out without sockets or runtime: its hub and what the hub reports to.
    #[derive(Debug)]
    pub struct TestCore {
        /// The hub.
        pub hub: Hub,
        /// The ledger, flush list and ended list its subscribers report to.
        pub core_output: Rc<CoreOutput>,
        /// Its metrics.
        pub metrics: Arc<CoreMetrics>,
        /// The fan-out budget it charges.
        pub budget: Arc<FanoutBudget>,
    }

    impl TestCore {
        /// Core `index` of `cores.len()` (every core's mailbox, this one's included, by index),
        /// charging `budget` (made for at least `cores.len()` cores), keeping 1000 messages
        /// per room for recovery.
        pub fn new(
            index: usize,
            cores: Vec<UnboundedSender<Mail>>,
            budget: Arc<FanoutBudget>,
        ) -> Self {
            let core_output = Rc::new(CoreOutput::new(CoreLedger::new(index, Arc::clone(&budget))));
            let metrics = Arc::new(CoreMetrics::default());
            let streams = Streams::new(
                index,
                cores.len(),
                1000,
                Duration::from_secs(300),
                usize::MAX,
                Arc::clone(&metrics),
            );
            let hub = Hub::new(
                index,
                Rc::clone(&core_output),
                Mailboxes::new(cores, Arc::clone(&budget)),
                streams,
                None,
                Arc::clone(&metrics),
                Rc::default(),
                // What `--deflate on` makes by default; idle unless a subscriber takes
                // compressed frames.
                Some(Compressors::new(1, 256)),
            );
            TestCore {
                hub,
                core_output,
                metrics,
                budget,
            }
        }

        /// A single core under an unbounded budget.
        pub fn standalone() -> Self {
            let (own, _) = tokio::sync::mpsc::unbounded_channel();
            TestCore::new(0, vec![own], FanoutBudget::new(1, usize::MAX))
        }

        /// A subscriber of this core without a socket: frames only queue up.
        pub fn subscriber(&self, max_backlog: usize) -> Rc<Subscriber> {
            Rc::new(Subscriber::new(
                max_backlog,
                None,
                Rc::clone(&self.core_output),
                Instant::now(),
            ))
        }

        /// A subscriber of this core listed on its flush list like a connection, its writes left
        /// to the caller's flush step ([`flush_now`] with a stub `send`).
        pub fn flushed_subscriber(&self, max_backlog: usize) -> Rc<Subscriber> {
            let subscriber = self.subscriber(max_backlog);
            attach_stub(&subscriber);
            subscriber
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::testing::TestCore;
    use super::*;
    use crate::output::testing::{detached, drain, held_handles, standalone_core_output};
    use crate::ws::encode_message;

    #[test]
    fn publish_reaches_every_subscriber_of_the_room_only() {
        let core = TestCore::standalone();
        let hub = &core.hub;
        let a = detached(1 << 20);
        let b = detached(1 << 20);
        let other = detached(1 << 20);
        let room = hub.join("chat", Rc::clone(&a));
        hub.join("chat", Rc::clone(&b));
        hub.join("elsewhere", Rc::clone(&other));
        let frame = encode_message(MessageKind::Text, b"hi");
        hub.publish_frame(&room, frame.clone());
        assert_eq!(drain(&a), frame);
        assert_eq!(drain(&b), frame);
        assert!(drain(&other).is_empty());
        assert_eq!(core.metrics.rooms.load(Ordering::Relaxed), 2);
    }

    /// A room name whose home is core `core` of `cores`.
    fn homed_on(core: usize, cores: usize) -> String {
        (0..)
            .map(|i| format!("room{i}"))
            .find(|name| home_core(name, cores) == core)
            .expect("some name lands on every core")
    }

    /// Two cores' hubs on this thread, with their inboxes.
    fn two_cores() -> ([TestCore; 2], [UnboundedReceiver<Mail>; 2]) {
        let budget = FanoutBudget::new(2, usize::MAX);
        let (tx0, rx0) = tokio::sync::mpsc::unbounded_channel();
        let (tx1, rx1) = tokio::sync::mpsc::unbounded_channel();
        let cores = [
            TestCore::new(0, vec![tx0.clone(), tx1.clone()], Arc::clone(&budget)),
            TestCore::new(1, vec![tx0, tx1], budget),
        ];
        (cores, [rx0, rx1])
    }

    /// Hands every waiting mail to its core until none is left.
    fn exchange(cores: &[TestCore; 2], inboxes: &mut [UnboundedReceiver<Mail>; 2]) {
        loop {
            let mut moved = false;
            for (core, inbox) in cores.iter().zip(inboxes.iter_mut()) {
                while let Ok(mail) = inbox.try_recv() {
                    core.hub.take(mail);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn publish_named_goes_to_the_room_s_home_core_then_everywhere() {
        let (cores, mut inboxes) = two_cores();
        let remote_home = homed_on(1, 2);
        let member = detached(1 << 20);
        cores[0].hub.join(&remote_home, Rc::clone(&member));
        cores[0]
            .hub
            .publish_named(&remote_home, MessageKind::Text, b"hi");
        assert!(
            drain(&member).is_empty(),
            "not before its home core ordered it"
        );
        assert!(matches!(
            inboxes[1].try_recv(),
            Ok(Mail::Publish { ref room, .. }) if **room == *remote_home
        ));
        cores[1]
            .hub
            .publish_named(&remote_home, MessageKind::Text, b"hi");
        exchange(&cores, &mut inboxes);
        assert_eq!(drain(&member), b"\x81\x02hi");
    }

    #[test]
    fn every_core_sees_a_room_s_messages_in_one_order() {
        let (cores, mut inboxes) = two_cores();
        for home in 0..2 {
            let name = homed_on(home, 2);
            let members: Vec<_> = (0..2)
                .map(|core| {
                    let member = detached(1 << 20);
                    let room = cores[core].hub.join(&name, Rc::clone(&member));
                    (room, member)
                })
                .collect();
            // Both cores publish before any mail moves: each core's own message must not
            // overtake the other's on one core and not on the other.
            for round in 0..3u8 {
                for (core, (room, _)) in members.iter().enumerate() {
                    let text = [b'a' + core as u8, b'0' + round];
                    cores[core].hub.publish(room, MessageKind::Text, &text);
                }
            }
            exchange(&cores, &mut inboxes);
            let seen: Vec<Vec<u8>> = members.iter().map(|(_, member)| drain(member)).collect();
            assert_eq!(seen[0].len(), 6 * 4, "six messages on core 0");
            assert_eq!(
                seen[0], seen[1],
                "one order for the room homed on core {home}"
            );
            for core in 0..2u8 {
                let own: Vec<u8> = seen[0]
                    .chunks(4)
                    .filter(|frame| frame[2] == b'a' + core)
                    .map(|frame| frame[3])
                    .collect();
                assert_eq!(own, b"012", "core {core}'s messages keep their order");
            }
        }
    }

    #[test]
    fn a_client_recovers_what_it_missed_from_the_home_core_without_gap_or_duplicate() {
        let (cores, mut inboxes) = two_cores();
        let name = homed_on(0, 2);
        let publisher = detached(1 << 20);
        let room = cores[0].hub.join(&name, Rc::clone(&publisher));
        let first = detached(1 << 20);
        let remote_room = cores[1].hub.join(&name, Rc::clone(&first));
        cores[1].hub.recover(&remote_room, &first, Since::Nothing);
        exchange(&cores, &mut inboxes);
        let told = String::from_utf8(drain(&first)[2..].to_vec()).expect("JSON");
        assert!(
            told.starts_with(r#"{"ringcast":"position","epoch":""#),
            "{told}"
        );
        assert!(told.ends_with(r#","offset":0}"#), "{told}");
        let epoch = told.split('"').nth(7).expect("epoch").to_owned();
        for i in 1..=5u8 {
            cores[0].hub.publish(&room, MessageKind::Binary, &[i]);
        }
        // A client on core 1 that got offsets 1 and 2 comes back while 3..5 are in the mail
        // to core 1 and 6 is published after it asked.
        let back = detached(1 << 20);
        cores[1].hub.join(&name, Rc::clone(&back));
        let since = Since::After { epoch, offset: 2 };
        cores[1].hub.recover(&remote_room, &back, since);
        cores[0].hub.publish(&room, MessageKind::Binary, &[6]);
        exchange(&cores, &mut inboxes);
        let got = drain(&back);
        let notice_len = usize::from(got[1]) + 2;
        let notice = String::from_utf8(got[2..notice_len].to_vec()).expect("JSON");
        assert!(notice.starts_with(r#"{"ringcast":"recovered""#), "{notice}");
        assert!(notice.ends_with(r#","offset":2}"#), "{notice}");
        let frames: Vec<u8> = got[notice_len..].chunks(3).map(|frame| frame[2]).collect();
        assert_eq!(frames, [3, 4, 5, 6], "3..5 replayed, 6 live, nothing twice");
        assert_eq!(
            cores[1].metrics.recoveries[RecoveryOutcome::Recovered as usize]
                .load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn a_replay_larger_than_the_backlog_is_queued_as_the_client_drains() {
        let core = TestCore::standalone();
        let name = "big";
        let publisher = core.subscriber(1 << 20);
        let room = core.hub.join(name, Rc::clone(&publisher));
        for i in 0..100u8 {
            core.hub.publish(&room, MessageKind::Binary, &[i; 100]);
        }
        // A backlog of ~10 such frames: the 100 kept ones go out a few at a time.
        let client = core.subscriber(1100);
        core.hub.join(name, Rc::clone(&client));
        core.hub.recover(&room, &client, Since::Last(100));
        assert!(
            client.held_frames() < 10,
            "{} queued at once",
            client.held_frames()
        );
        let mut got = Vec::new();
        loop {
            let chunk = drain(&client);
            for frame in core.core_output.catching_up.take() {
                core.hub.catch_up(&frame);
            }
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
        }
        assert!(!client.is_closing(), "not a slow consumer");
        let notice_len = usize::from(got[1]) + 2;
        let replayed: Vec<u8> = got[notice_len..]
            .chunks(102)
            .map(|frame| frame[2])
            .collect();
        assert_eq!(replayed, (0..100).collect::<Vec<u8>>());
        core.hub.publish(&room, MessageKind::Binary, &[7; 100]);
        assert_eq!(drain(&client).len(), 102, "live once caught up");
    }

    /// A socket-less subscriber that negotiated permessage-deflate with a window of `window`.
    fn deflating(window: u8) -> Rc<Subscriber> {
        let subscriber = Subscriber::new(
            1 << 20,
            None,
            Rc::new(standalone_core_output()),
            Instant::now(),
        );
        Rc::new(subscriber.deflating(window))
    }

    /// The one frame `subscriber` holds.
    fn only_frame(subscriber: &Subscriber) -> Bytes {
        let held = held_handles(subscriber);
        assert_eq!(held.len(), 1);
        Bytes::clone(&held[0])
    }

    #[test]
    fn a_mixed_room_gets_each_message_compressed_once_and_encoded_plain_once() {
        let (cores, mut inboxes) = two_cores();
        let chat_line = br#"{"user":"ada","text":"the quick brown fox jumps over the lazy dog","ts":"2026-12-06T13:40:55Z"}"#;
        let payload = chat_line.repeat(8);
        for home in 0..2 {
            let name = homed_on(home, 2);
            // On each core: a plain client, a deflate client with the full window, one that
            // asked for 12 bits, one that asked for 8 (zlib cannot make 8-bit streams).
            let members: Vec<[Rc<Subscriber>; 4]> = (0..2)
                .map(|core| {
                    let members = [
                        detached(1 << 20),
                        deflating(15),
                        deflating(12),
                        deflating(8),
                    ];
                    for member in &members {
                        cores[core].hub.join(&name, Rc::clone(member));
                    }
                    members
                })
                .collect();
            exchange(&cores, &mut inboxes);
            let home_metrics = &cores[home].metrics;
            let compressed_before = home_metrics.deflate_out_plain_bytes.load(Ordering::Relaxed);
            // Published on the other core: compressed by the home core, once.
            let room = cores[1 - home]
                .hub
                .rooms
                .borrow()
                .get(name.as_str())
                .cloned()
                .unwrap();
            cores[1 - home]
                .hub
                .publish(&room, MessageKind::Text, &payload);
            exchange(&cores, &mut inboxes);
            let plain = only_frame(&members[0][0]);
            let compressed = only_frame(&members[0][1]);
            assert_eq!(plain[0], 0x81, "plain text frame");
            assert_eq!(compressed[0], 0xC1, "FIN, RSV1, text");
            assert!(
                compressed.len() * 3 < plain.len(),
                "{} bytes",
                compressed.len()
            );
            for core in &members {
                for (member, expected) in
                    core.iter().zip([&plain, &compressed, &compressed, &plain])
                {
                    let got = only_frame(member);
                    assert_eq!(
                        got.as_ptr(),
                        expected.as_ptr(),
                        "one shared frame of each kind"
                    );
                }
            }
            assert_eq!(
                home_metrics.deflate_out_plain_bytes.load(Ordering::Relaxed) - compressed_before,
                plain.len() as u64,
                "compressed once"
            );
            // Made for the smallest window in use (12): it inflates within 12 bits.
            let header = ringcast_proto::Header::decode_with(
                &compressed,
                ringcast_proto::Role::Server,
                0x40,
            )
            .unwrap()
            .unwrap();
            let mut with_tail = compressed[header.header_len..].to_vec();
            with_tail.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut inflated = Vec::with_capacity(payload.len());
            flate2::Decompress::new_with_window_bits(false, 12)
                .decompress_vec(&with_tail, &mut inflated, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(inflated, payload);
            for core in &members {
                for member in core {
                    drain(member);
                }
            }
            // A short message goes plain to everyone.
            cores[home].hub.publish(&room, MessageKind::Text, b"hi");
            exchange(&cores, &mut inboxes);
            for core in &members {
                for member in core {
                    assert_eq!(drain(member), b"\x81\x02hi");
                }
            }
        }
    }

    #[test]
    fn a_room_without_deflate_clients_compresses_nothing() {
        let (cores, mut inboxes) = two_cores();
        let name = homed_on(1, 2);
        let plain = detached(1 << 20);
        let room = cores[0].hub.join(&name, Rc::clone(&plain));
        let leaving = deflating(15);
        let remote = cores[0].hub.join(&name, Rc::clone(&leaving));
        cores[0].hub.leave(&remote, &leaving);
        exchange(&cores, &mut inboxes);
        cores[0]
            .hub
            .publish(&room, MessageKind::Text, &[b'a'; 1000]);
        exchange(&cores, &mut inboxes);
        assert_eq!(only_frame(&plain)[0], 0x81);
        for core in &cores {
            assert_eq!(
                core.metrics.deflate_out_plain_bytes.load(Ordering::Relaxed),
                0
            );
        }
        assert!(
            cores[1].hub.deflate_interest.borrow().is_empty(),
            "the leave was counted"
        );
    }

    #[test]
    fn leave_keeps_slots_consistent_and_drops_empty_rooms() {
        let core = TestCore::standalone();
        let hub = &core.hub;
        let subs: Vec<_> = (0..3).map(|_| detached(1 << 20)).collect();
        let room = subs
            .iter()
            .map(|s| hub.join("r", Rc::clone(s)))
            .last()
            .unwrap();
        hub.leave(&room, &subs[0]);
        assert_eq!(room.member_count(), 2);
        hub.leave(&room, &subs[2]);
        hub.leave(&room, &subs[2]);
        assert_eq!(room.member_count(), 1);
        hub.publish_frame(&room, encode_message(MessageKind::Binary, b"x"));
        assert_eq!(drain(&subs[1]), [0x82, 1, b'x']);
        hub.leave(&room, &subs[1]);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(core.metrics.rooms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn published_messages_count_against_the_budget_until_written() {
        let budget = FanoutBudget::new(1, 1 << 20);
        let core = TestCore::new(0, Vec::new(), Arc::clone(&budget));
        let subscriber = core.subscriber(1 << 20);
        let room = core.hub.join("r", Rc::clone(&subscriber));
        core.hub.publish(&room, MessageKind::Text, b"hello");
        assert!(budget.used() > 7 + crate::budget::FRAME_HANDLE_BYTES);
        assert_eq!(drain(&subscriber), b"\x81\x05hello");
        assert_eq!(budget.used(), 0, "written: frame freed, handle released");
    }
}
