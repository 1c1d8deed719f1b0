//! One receiver's state, without IO: the bytes of each read walked frame by frame, fragmented
//! messages reassembled, each message's stamp accounted (latency, sequence, node class), pings
//! answered, the server's close noted. With `--churn` one `Receiver` lives through all of a
//! subscriber's connections (its sequences must, or a replayed duplicate would look new);
//! with `--recover` it reads the server's first message and counts offsets from it.
//!
//! Frames are parsed in place in the read buffer; only a frame that straddles two reads is
//! copied (into `carry`), and only its own bytes. With permessage-deflate negotiated, a
//! message with RSV1 set is inflated (into the thread's scratch buffer) before anything reads
//! its stamp; what it took on the wire is counted beside its payload.

use std::cell::RefCell;

use ringcast_proto::{opcode, Header, MAX_HEADER_LEN};

use super::window::Window;
use crate::client::{
    parse_frame, FirstMessage, Inflater, Parsed, Position, Stamp, StreamError, Upgraded,
    MAX_SERVER_MESSAGE,
};
use crate::plan::{ConnectionSpec, Scenario};
use crate::stats::{Arrival, Classifier, ReceivedSets, SequenceSet, WorkerStats};

thread_local! {
    /// One inflater and output buffer per worker thread, not per connection: with no context
    /// takeover nothing carries over between messages, and thousands of connections would
    /// otherwise each hold a deflate window.
    static INFLATE: RefCell<(Inflater, Vec<u8>)> = RefCell::new((Inflater::new(), Vec::new()));
}

/// A fragmented message so far.
struct Partial {
    /// Its fragments' payloads, concatenated.
    payload: Vec<u8>,
    /// RSV1 was set on its first frame: the payload is compressed.
    compressed: bool,
    /// Bytes its frames took on the wire, headers included.
    wire_len: u64,
}

/// Per-connection receive state.
pub struct Receiver {
    /// Role and room.
    spec: ConnectionSpec,
    /// Rooms in the run (publisher p is tracked at slot p / rooms).
    rooms: u64,
    /// This process's stamp id.
    run_id: u32,
    /// With several URLs: tells same-node from cross-node deliveries.
    nodes: Option<Classifier>,
    /// Every sequence received, per publisher of this room.
    sequences: Vec<SequenceSet>,
    /// Asks for recovery (`--recover`, subscribers): the first message of each connection may
    /// be the server's JSON answer.
    recover: bool,
    /// The current connection's first message is still to come (`--recover`).
    expect_first: bool,
    /// Epoch and offset of the last message received, once the server told where the stream
    /// stands; `None` without recovery (no first message, or a malformed one).
    position: Option<Position>,
    /// When the current connection's TCP connect started (monotonic ns).
    connect_begun_ns: u64,
    /// After a `recovered` answer, until this run's first message on that connection: the
    /// connect start, from which the first replayed message is timed.
    replay_origin: Option<u64>,
    /// Bytes of an incomplete frame left from the previous read.
    carry: Vec<u8>,
    /// The current connection negotiated permessage-deflate: RSV1 marks compressed messages.
    deflate: bool,
    /// The fragments so far of a fragmented message, while one is in progress.
    fragments: Option<Partial>,
    /// Control frames to send once the read buffer is released.
    replies: Vec<(u8, Vec<u8>)>,
    /// Close code the server sent, once it did.
    server_close: Option<u16>,
    /// Why the frame stream broke, once it did.
    error: Option<StreamError>,
}

impl Receiver {
    /// State for connection `spec`, as its upgrade left it.
    pub fn new(spec: ConnectionSpec, scenario: &Scenario, upgraded: Upgraded) -> Receiver {
        let rooms = scenario.rooms.max(1);
        let publishers_here = scenario.publishers.div_ceil(rooms) as usize;
        Receiver {
            spec,
            rooms,
            run_id: 0,
            nodes: Classifier::of(scenario, spec.index),
            sequences: vec![SequenceSet::default(); publishers_here],
            recover: scenario.recover && spec.publisher.is_none(),
            expect_first: scenario.recover && spec.publisher.is_none(),
            position: None,
            connect_begun_ns: 0,
            replay_origin: None,
            carry: upgraded.leftover,
            deflate: upgraded.deflate,
            fragments: None,
            replies: Vec::new(),
            server_close: None,
            error: None,
        }
    }

    /// Counts only the stamps of run `run_id` (this process's); `new` starts with 0, the id the
    /// tests and benchmarks stamp with.
    pub fn set_run_id(&mut self, run_id: u32) {
        self.run_id = run_id;
    }

    /// Whether this is a stalled subscriber (it stops reading after the warm-up).
    pub fn stalled(&self) -> bool {
        self.spec.stalled
    }

    /// The close code the server sent, once it did.
    pub fn server_close(&self) -> Option<u16> {
        self.server_close
    }

    /// The control frames to send (pongs), taken.
    pub fn take_replies(&mut self) -> Vec<(u8, Vec<u8>)> {
        std::mem::take(&mut self.replies)
    }

    /// Walks the bytes read past the handshake (received at `now_ns`): they are the first
    /// frames.
    pub fn take_leftover(&mut self, now_ns: u64, window: Option<&Window>, stats: &mut WorkerStats) {
        if self.carry.is_empty() {
            return;
        }
        let leftover = std::mem::take(&mut self.carry);
        let counting = !self.spec.stalled;
        self.take_bytes(&leftover, now_ns, window, stats, counting);
    }

    /// The request path of a connection to `path`: with `--recover`, `since=` the last
    /// position known (or an empty `since=` to learn it).
    pub fn request_path(&self, path: &str) -> String {
        if self.recover {
            crate::client::with_since(path, self.position.as_ref())
        } else {
            path.to_string()
        }
    }

    /// Notes when the current connection's TCP connect started (monotonic ns).
    pub fn set_connect_begun(&mut self, ns: u64) {
        self.connect_begun_ns = ns;
    }

    /// A new connection of the same subscriber (begun at monotonic `begun_ns`, upgraded as
    /// `upgraded` says): the frame state starts over, the sequences and the position stay.
    pub fn reconnected(&mut self, upgraded: Upgraded, begun_ns: u64) {
        self.carry = upgraded.leftover;
        self.deflate = upgraded.deflate;
        self.fragments = None;
        self.replies.clear();
        self.server_close = None;
        self.error = None;
        self.expect_first = self.recover;
        self.replay_origin = None;
        self.connect_begun_ns = begun_ns;
    }

    /// Hands this receiver's sequences to the run's loss count once it is done (a stalled one
    /// is not expected to receive, so it is left out, as from `expected`).
    pub fn book(&mut self, stats: &mut WorkerStats) {
        if !self.spec.stalled {
            stats.totals.received.push(ReceivedSets {
                room: self.spec.room,
                by_slot: std::mem::take(&mut self.sequences),
            });
        }
    }

    /// Whether nothing more is read: the server closed, or its frames broke the protocol.
    pub fn finished(&self) -> bool {
        self.error.is_some() || self.server_close.is_some()
    }

    /// Parses every complete frame in `carry + data`, recording what counts; keeps the tail.
    pub fn take_bytes(
        &mut self,
        mut data: &[u8],
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
        counting: bool,
    ) {
        // A frame left over from the previous read is completed with just the bytes it lacks
        // from the front of `data` (a 64 KiB read is not copied behind it); then the rest of
        // `data` is walked in place.
        while !self.carry.is_empty() && !data.is_empty() && !self.finished() {
            let missing = match parse_frame(&self.carry, self.fragments.is_some(), self.deflate) {
                Ok(Parsed::Incomplete {
                    frame_len: Some(frame_len),
                }) => frame_len - self.carry.len(),
                // The header itself is cut: enough bytes for the longest one, then look again
                // (what goes past this frame is walked from `carry` as well).
                Ok(Parsed::Incomplete { frame_len: None }) => {
                    MAX_HEADER_LEN.saturating_sub(self.carry.len()).max(1)
                }
                // A whole frame, or an error: the walk below takes it.
                Ok(Parsed::Frame { .. }) | Err(_) => 0,
            };
            let (head, rest) = data.split_at(missing.min(data.len()));
            self.carry.extend_from_slice(head);
            data = rest;
            let carry = std::mem::take(&mut self.carry);
            let used = self.walk_frames(&carry, now_ns, window, stats, counting);
            self.carry = carry;
            self.carry.drain(..used);
        }
        if self.carry.is_empty() && !self.finished() {
            let used = self.walk_frames(data, now_ns, window, stats, counting);
            // Nothing after a close or a broken frame is read.
            if !self.finished() {
                self.carry.extend_from_slice(&data[used..]);
            }
        }
    }

    /// Walks the complete frames of `buf`; returns the bytes consumed.
    fn walk_frames(
        &mut self,
        buf: &[u8],
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
        counting: bool,
    ) -> usize {
        let mut at = 0;
        while !self.finished() {
            let in_message = self.fragments.is_some();
            let parsed = parse_frame(&buf[at..], in_message, self.deflate).and_then(|parsed| {
                let Parsed::Frame {
                    header,
                    payload,
                    frame_len,
                } = parsed
                else {
                    return Ok(None);
                };
                at += frame_len;
                self.on_frame(header, payload, frame_len, now_ns, window, stats, counting)
                    .map(Some)
            });
            match parsed {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(error) => {
                    stats.totals.protocol_errors += 1;
                    stats.interval.errors += 1;
                    stats
                        .totals
                        .protocol_error_example
                        .get_or_insert_with(|| error.to_string());
                    self.error = Some(error);
                }
            }
        }
        at
    }

    /// Handles one whole frame (already judged by `parse_frame`) of `frame_len` bytes.
    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &mut self,
        header: Header,
        payload: &[u8],
        frame_len: usize,
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
        counting: bool,
    ) -> Result<(), StreamError> {
        match header.opcode {
            opcode::PING => self.replies.push((opcode::PONG, payload.to_vec())),
            opcode::PONG => {}
            opcode::CLOSE => {
                let code = payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                self.server_close = Some(code);
            }
            // A whole message in one frame: read in place.
            opcode::TEXT | opcode::BINARY if header.fin => {
                let wire_len = frame_len as u64;
                self.on_message_bytes(
                    payload,
                    header.rsv1,
                    wire_len,
                    now_ns,
                    window,
                    stats,
                    counting,
                )?;
            }
            // A fragment (the first one, or a continuation: `check` allowed only these; RSV1
            // only on the first, `parse_frame` saw to it).
            _ => {
                let mut message = self.fragments.take().unwrap_or(Partial {
                    payload: Vec::new(),
                    compressed: header.rsv1,
                    wire_len: 0,
                });
                let total = message.payload.len() as u64 + payload.len() as u64;
                if total > MAX_SERVER_MESSAGE {
                    return Err(StreamError::TooLarge(total));
                }
                message.payload.extend_from_slice(payload);
                message.wire_len += frame_len as u64;
                if !header.fin {
                    self.fragments = Some(message);
                } else {
                    self.on_message_bytes(
                        &message.payload,
                        message.compressed,
                        message.wire_len,
                        now_ns,
                        window,
                        stats,
                        counting,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// One whole data message as it came (`compressed`: RSV1 was set), `wire_len` bytes on the
    /// wire: inflated first when compressed (the stamp is inside what was compressed).
    #[allow(clippy::too_many_arguments)]
    fn on_message_bytes(
        &mut self,
        payload: &[u8],
        compressed: bool,
        wire_len: u64,
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
        counting: bool,
    ) -> Result<(), StreamError> {
        if !compressed {
            self.on_data(payload, wire_len, now_ns, window, stats, counting);
            return Ok(());
        }
        INFLATE.with_borrow_mut(|(inflater, inflated)| {
            inflater
                .inflate(payload, inflated, MAX_SERVER_MESSAGE as usize)
                .map_err(StreamError::Inflate)?;
            self.on_data(inflated, wire_len, now_ns, window, stats, counting);
            Ok(())
        })
    }

    /// One whole data message (`wire_len` bytes on the wire): the server's first message
    /// (`--recover`), or a message of the room, which moves the offset on (every one counts,
    /// stamped or not: offsets number the room's messages) and is accounted when `counting`.
    fn on_data(
        &mut self,
        payload: &[u8],
        wire_len: u64,
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
        counting: bool,
    ) {
        if self.expect_first {
            self.expect_first = false;
            let counts = &mut stats.totals.churn.first_messages;
            match FirstMessage::parse(payload) {
                FirstMessage::Position(position) => {
                    counts.position += 1;
                    self.position = Some(position);
                    return;
                }
                FirstMessage::Recovered(position) => {
                    counts.recovered += 1;
                    self.position = Some(position);
                    self.replay_origin = Some(self.connect_begun_ns);
                    return;
                }
                FirstMessage::Reset(position) => {
                    counts.reset += 1;
                    self.position = Some(position);
                    return;
                }
                FirstMessage::Malformed(why) => {
                    // Carry on without a position: the next reconnect asks for one afresh.
                    counts.malformed += 1;
                    stats.totals.churn.malformed_example.get_or_insert(why);
                    self.position = None;
                    return;
                }
                // A server without recovery: this is already the room's first message.
                FirstMessage::None => {
                    counts.none += 1;
                    self.position = None;
                }
            }
        }
        if let Some(position) = self.position.as_mut() {
            position.offset += 1;
        }
        if counting {
            self.on_message(payload, wire_len, now_ns, window, stats);
        }
    }

    /// Accounts one data message received at `now_ns`, `wire_len` bytes on the wire (frame
    /// headers included, compressed when it was).
    pub fn on_message(
        &mut self,
        payload: &[u8],
        wire_len: u64,
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
    ) {
        let Some(stamp) = Stamp::read_from(payload).filter(|s| s.run_id == self.run_id) else {
            stats.totals.foreign += 1;
            return;
        };
        let slot = (stamp.publisher as u64 / self.rooms) as usize;
        let (Some(sequence), true) = (
            self.sequences.get_mut(slot),
            stamp.publisher as u64 % self.rooms == self.spec.room,
        ) else {
            stats.totals.foreign += 1;
            return;
        };
        let arrival = sequence.observe(stamp.seq);
        let measured = window.is_some_and(|w| w.measures(stamp.intended_ns));
        if let Some(origin) = self.replay_origin.take() {
            // Sent before this connection began: missed while away, so replayed.
            if stamp.intended_ns < origin {
                stats
                    .totals
                    .churn
                    .first_replay
                    .saturating_record(now_ns.saturating_sub(origin).max(1));
            }
        }
        if arrival == Arrival::Duplicate {
            stats.totals.duplicated += u64::from(measured);
            return;
        }
        let latency = now_ns.saturating_sub(stamp.intended_ns).max(1);
        let uncorrected = now_ns.saturating_sub(stamp.sent_ns).max(1);
        stats.interval.latency.saturating_record(latency);
        stats
            .interval
            .latency_uncorrected
            .saturating_record(uncorrected);
        stats.interval.delivered += 1;
        stats.interval.delivered_bytes += payload.len() as u64;
        if measured {
            stats.interval.latency_measured.saturating_record(latency);
            let totals = &mut stats.totals;
            totals.latency.saturating_record(latency);
            totals.latency_uncorrected.saturating_record(uncorrected);
            totals.reordered += u64::from(arrival == Arrival::Reordered);
            totals.delivered_bytes += payload.len() as u64;
            totals.delivered_wire_bytes += wire_len;
            if let Some(count) = totals
                .delivered_by_publisher
                .get_mut(stamp.publisher as usize)
            {
                *count += 1;
            }
            if let (Some(nodes), Some(classifier)) = (totals.nodes.as_mut(), self.nodes) {
                nodes
                    .class_mut(classifier.classify(stamp.publisher))
                    .record(latency);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ringcast_proto::{Frame, FrameError};

    use super::*;
    use crate::client::STAMP_LEN;
    use crate::plan::Plan;
    use crate::stats::{IntervalStats, RunTotals};

    /// A subscriber of the default scenario (one publisher, one room).
    fn receiver() -> Receiver {
        let plan = Plan::from_run_args(&["--url", "ws://127.0.0.1:9/ws"]).expect("valid scenario");
        Receiver::new(
            ConnectionSpec::of(&plan.scenario, 0),
            &plan.scenario,
            Upgraded::default(),
        )
    }

    fn stats() -> WorkerStats {
        WorkerStats {
            interval: IntervalStats::new(),
            totals: RunTotals::new(1),
        }
    }

    /// A 64-byte payload stamped as message `seq` of publisher 0.
    fn stamped(seq: u64) -> Vec<u8> {
        let mut payload = vec![b'.'; 64.max(STAMP_LEN)];
        let stamp = Stamp {
            run_id: 0,
            publisher: 0,
            seq,
            intended_ns: 1_000 + seq,
            sent_ns: 1_000 + seq,
        };
        stamp.write_to(&mut payload).expect("payload holds a stamp");
        payload
    }

    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        Frame {
            fin,
            ..Frame::new(op, payload)
        }
        .encode(&mut wire);
        wire
    }

    /// Messages 0 and 1 whole, message 2 in three fragments with a ping between them, message 3
    /// with a 16-bit length (300 bytes).
    fn stream() -> Vec<u8> {
        let fragmented = stamped(2);
        let mut long = stamped(3);
        long.resize(300, b'-');
        [
            server_frame(true, opcode::BINARY, &stamped(0)),
            server_frame(true, opcode::TEXT, &stamped(1)),
            server_frame(false, opcode::BINARY, &fragmented[..10]),
            server_frame(true, opcode::PING, b"p"),
            server_frame(false, opcode::CONTINUATION, &fragmented[10..40]),
            server_frame(true, opcode::CONTINUATION, &fragmented[40..]),
            server_frame(true, opcode::BINARY, &long),
        ]
        .concat()
    }

    #[test]
    fn measured_deliveries_are_split_by_the_publishers_node() {
        // Subscriber 0 on URL 0; publisher 0 is connection 1 (URL 1), publisher 1 connection 2
        // (URL 0).
        let plan = Plan::from_run_args(&[
            "--url",
            "ws://127.0.0.1:9/ws",
            "--url",
            "ws://127.0.0.1:10/ws",
            "--subscribers",
            "1",
            "--publishers",
            "2",
        ])
        .expect("valid scenario");
        let mut receiver = Receiver::new(
            ConnectionSpec::of(&plan.scenario, 0),
            &plan.scenario,
            Upgraded::default(),
        );
        let mut stats = WorkerStats {
            interval: IntervalStats::new(),
            totals: RunTotals {
                nodes: Some(crate::stats::NodeTotals::new()),
                ..RunTotals::new(2)
            },
        };
        let window = Window {
            t0_ns: 0,
            measure_start_ns: 0,
            measure_end_ns: 10_000,
        };
        let message = |publisher: u32, seq: u64, intended_ns: u64| {
            let mut payload = vec![b'.'; 64];
            let stamp = Stamp {
                run_id: 0,
                publisher,
                seq,
                intended_ns,
                sent_ns: intended_ns,
            };
            stamp.write_to(&mut payload).expect("payload holds a stamp");
            payload
        };
        receiver.on_message(&message(0, 0, 1_000), 66, 2_000, Some(&window), &mut stats);
        receiver.on_message(&message(0, 0, 1_000), 66, 2_000, Some(&window), &mut stats);
        receiver.on_message(&message(1, 0, 1_500), 66, 2_000, Some(&window), &mut stats);
        receiver.on_message(&message(1, 1, 1_600), 66, 2_000, Some(&window), &mut stats);
        // Outside the window: delivered, not measured, in no class.
        receiver.on_message(
            &message(0, 1, 20_000),
            66,
            30_000,
            Some(&window),
            &mut stats,
        );
        let nodes = stats.totals.nodes.as_ref().expect("two URLs");
        assert_eq!((nodes.cross.delivered, nodes.same.delivered), (1, 2));
        assert_eq!(nodes.cross.latency.max(), 1_000);
        assert_eq!(nodes.same.latency.len(), 2);
        assert!(nodes.same.latency.max() <= 501);
        assert_eq!((stats.totals.duplicated, stats.interval.delivered), (1, 4));

        // One URL: no classifier and nothing recorded by class.
        let mut single = self::receiver();
        let mut stats = self::stats();
        single.on_message(&stamped(0), 66, 2_000, Some(&window), &mut stats);
        assert!(single.nodes.is_none() && stats.totals.nodes.is_none());
        assert_eq!(stats.totals.latency.len(), 1);
    }

    #[test]
    fn messages_and_fragments_are_read_at_every_cut_between_two_reads() {
        let wire = stream();
        for cut in 0..=wire.len() {
            let mut receiver = receiver();
            let mut stats = stats();
            receiver.take_bytes(&wire[..cut], 2_000, None, &mut stats, true);
            receiver.take_bytes(&wire[cut..], 2_000, None, &mut stats, true);
            assert_eq!(stats.interval.delivered, 4, "cut {cut}");
            assert_eq!(stats.totals.foreign, 0, "cut {cut}");
            assert_eq!(receiver.replies, vec![(opcode::PONG, b"p".to_vec())]);
            assert!(receiver.carry.is_empty() && receiver.fragments.is_none());
            assert_eq!(receiver.error, None);
        }
    }

    #[test]
    fn only_the_frame_that_straddles_two_reads_is_copied() {
        let frame = server_frame(true, opcode::BINARY, &stamped(0));
        let mut second_read = frame[5..].to_vec();
        for seq in 1..1000 {
            second_read.extend(server_frame(true, opcode::BINARY, &stamped(seq)));
        }
        second_read.extend_from_slice(&frame[..3]);
        let mut receiver = receiver();
        let mut stats = stats();
        receiver.take_bytes(&frame[..5], 2_000, None, &mut stats, true);
        assert_eq!(receiver.carry.len(), 5);
        receiver.take_bytes(&second_read, 2_000, None, &mut stats, true);
        assert_eq!(stats.interval.delivered, 1000);
        // What is kept is the next frame's first 3 bytes; the 66 KiB read was never copied.
        assert_eq!(receiver.carry.len(), 3);
        assert!(
            receiver.carry.capacity() < 1024,
            "{}",
            receiver.carry.capacity()
        );
    }

    #[test]
    fn reserved_bits_break_the_stream_with_a_clear_error() {
        let mut wire = Vec::new();
        Frame {
            rsv: 0b100,
            ..Frame::new(opcode::BINARY, &stamped(0))
        }
        .encode(&mut wire);
        let mut receiver = receiver();
        let mut stats = stats();
        receiver.take_bytes(&wire, 2_000, None, &mut stats, true);
        assert_eq!(
            receiver.error,
            Some(StreamError::Frame(FrameError::ReservedBits))
        );
        assert_eq!(stats.totals.protocol_errors, 1);
        assert_eq!(stats.interval.delivered, 0);
        assert_eq!(
            stats.totals.protocol_error_example.as_deref(),
            Some("malformed server frame: reserved bits set")
        );
    }

    /// A subscriber of the default scenario whose connection negotiated permessage-deflate.
    fn deflate_receiver() -> Receiver {
        let mut receiver = receiver();
        receiver.reconnected(
            Upgraded {
                leftover: Vec::new(),
                deflate: true,
            },
            0,
        );
        receiver
    }

    /// `payload` deflated as a permessage-deflate message (tail stripped).
    fn deflated(payload: &[u8]) -> Vec<u8> {
        let mut compressed = Vec::new();
        crate::client::Deflater::new().deflate(payload, &mut compressed);
        compressed
    }

    #[test]
    fn compressed_messages_are_inflated_before_their_stamp_is_read() {
        let mut long = stamped(0);
        long.resize(1000, b'.');
        let compressed = deflated(&long);
        let whole = Frame {
            rsv: 0b100,
            ..Frame::new(opcode::BINARY, &compressed)
        };
        let mut wire = Vec::new();
        whole.encode(&mut wire);
        let whole_len = wire.len() as u64;
        // Message 1 compressed in two fragments (RSV1 on the first only), message 2 plain.
        let mut second = stamped(1);
        second.resize(1000, b'.');
        let compressed = deflated(&second);
        let (head, tail) = compressed.split_at(compressed.len() / 2);
        Frame {
            rsv: 0b100,
            fin: false,
            ..Frame::new(opcode::BINARY, head)
        }
        .encode(&mut wire);
        wire.extend(server_frame(true, opcode::CONTINUATION, tail));
        wire.extend(server_frame(true, opcode::BINARY, &stamped(2)));
        let window = Window {
            t0_ns: 0,
            measure_start_ns: 0,
            measure_end_ns: 1_000_000,
        };
        for cut in [0, 1, 5, wire.len() / 2, wire.len() - 1] {
            let mut receiver = deflate_receiver();
            let mut stats = stats();
            receiver.take_bytes(&wire[..cut], 2_000, Some(&window), &mut stats, true);
            receiver.take_bytes(&wire[cut..], 2_000, Some(&window), &mut stats, true);
            assert_eq!(receiver.error, None, "cut {cut}");
            assert_eq!(stats.interval.delivered, 3, "cut {cut}");
            assert_eq!(stats.totals.delivered_bytes, 2064);
            assert_eq!(stats.totals.delivered_wire_bytes, wire.len() as u64);
            assert!(whole_len < 200, "1000 dots compress: {whole_len}");
        }
    }

    #[test]
    fn rsv1_is_refused_without_deflate_and_on_continuations_and_control_frames() {
        let rsv1 = |fin, op, payload: &[u8]| {
            let mut wire = Vec::new();
            Frame {
                rsv: 0b100,
                fin,
                ..Frame::new(op, payload)
            }
            .encode(&mut wire);
            wire
        };
        let compressed = deflated(&stamped(0));
        let reserved = Some(StreamError::Frame(FrameError::ReservedBits));
        let mut plain = receiver();
        plain.take_bytes(
            &rsv1(true, opcode::BINARY, &compressed),
            0,
            None,
            &mut stats(),
            true,
        );
        assert_eq!(plain.error, reserved);
        for wire in [
            rsv1(true, opcode::PING, b""),
            [
                server_frame(false, opcode::BINARY, b"x"),
                rsv1(true, opcode::CONTINUATION, b"y"),
            ]
            .concat(),
        ] {
            let mut receiver = deflate_receiver();
            receiver.take_bytes(&wire, 0, None, &mut stats(), true);
            assert_eq!(receiver.error, reserved);
        }
        // RSV2 stays refused even with deflate.
        let mut wire = Vec::new();
        Frame {
            rsv: 0b010,
            ..Frame::new(opcode::BINARY, b"x")
        }
        .encode(&mut wire);
        let mut receiver = deflate_receiver();
        receiver.take_bytes(&wire, 0, None, &mut stats(), true);
        assert_eq!(receiver.error, reserved);
        // Garbage with RSV1: the stream breaks with the inflater's reason.
        let mut receiver = deflate_receiver();
        let mut stats = stats();
        receiver.take_bytes(
            &rsv1(true, opcode::BINARY, &[0xff; 8]),
            0,
            None,
            &mut stats,
            true,
        );
        assert!(
            matches!(receiver.error, Some(StreamError::Inflate(_))),
            "{:?}",
            receiver.error
        );
        assert_eq!(stats.totals.protocol_errors, 1);
    }

    #[test]
    fn bad_fragment_sequences_and_masks_are_refused() {
        let masked = {
            let mut wire = Vec::new();
            Frame::new(opcode::BINARY, b"x")
                .masked([1, 2, 3, 4])
                .encode(&mut wire);
            wire
        };
        for (wire, error) in [
            (
                server_frame(true, opcode::CONTINUATION, b"x"),
                FrameError::ContinuationWithoutMessage,
            ),
            (
                [
                    server_frame(false, opcode::TEXT, b"x"),
                    server_frame(true, opcode::TEXT, b"y"),
                ]
                .concat(),
                FrameError::MessageInsideMessage,
            ),
            (
                server_frame(false, opcode::PING, b""),
                FrameError::FragmentedControl,
            ),
            (server_frame(true, 0x3, b""), FrameError::UnknownOpcode),
            (masked, FrameError::Masked),
        ] {
            let mut receiver = receiver();
            receiver.take_bytes(&wire, 2_000, None, &mut stats(), true);
            assert_eq!(receiver.error, Some(StreamError::Frame(error)));
        }
    }

    #[test]
    fn oversized_frames_and_messages_are_refused_before_buffering() {
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(MAX_SERVER_MESSAGE + 1).to_be_bytes());
        let mut receiver = receiver();
        receiver.take_bytes(&huge, 2_000, None, &mut stats(), true);
        assert_eq!(
            receiver.error,
            Some(StreamError::TooLarge(MAX_SERVER_MESSAGE + 1))
        );
        assert!(receiver.carry.is_empty());
    }
}
