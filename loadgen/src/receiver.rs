//! The receiving side of every connection: read as much as the socket holds into the worker's
//! shared 64 KiB buffer, walk every frame in it, record latency and sequence state, answer
//! pings, and take part in the closing handshake.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::tcp::OwnedReadHalf;

use crate::clock::monotonic_ns;
use crate::frame::{parse_server_frame, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::payload::Stamp;
use crate::scenario::Scenario;
use crate::sequence::{Arrival, SequenceWindow};
use crate::stats::WorkerStats;
use crate::worker::{ConnectionSpec, Window, WorkerContext};
use crate::writer::{Writer, CLOSE_NORMAL};

/// How long to wait for the server's close reply (or EOF) after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Per-connection receive state.
pub struct Receiver {
    /// Role and room.
    spec: ConnectionSpec,
    /// Rooms in the run (publisher p is tracked at slot p / rooms).
    rooms: u64,
    /// This process's stamp id.
    run_id: u32,
    /// Sequence state per publisher of this room.
    sequences: Vec<SequenceWindow>,
    /// Bytes of an incomplete frame left from the previous read.
    carry: Vec<u8>,
    /// Control frames to send once the read buffer is released.
    replies: Vec<(u8, Vec<u8>)>,
    /// Close code the server sent, once it did.
    server_close: Option<u16>,
    /// The frame stream is broken (protocol error).
    broken: bool,
}

impl Receiver {
    /// State for connection `spec`; `leftover` are bytes read past the handshake.
    pub fn new(spec: ConnectionSpec, scenario: &Scenario, leftover: Vec<u8>) -> Receiver {
        let rooms = scenario.rooms.max(1);
        let publishers_here = scenario.publishers.div_ceil(rooms) as usize;
        Receiver {
            spec,
            rooms,
            run_id: 0,
            sequences: vec![SequenceWindow::default(); publishers_here],
            carry: leftover,
            replies: Vec::new(),
            server_close: None,
            broken: false,
        }
    }

    /// Parses every complete frame in `carry + data`, recording what counts; keeps the tail.
    fn take_bytes(
        &mut self,
        data: &[u8],
        now_ns: u64,
        window: Option<&Window>,
        stats: &mut WorkerStats,
        counting: bool,
    ) {
        if self.carry.is_empty() {
            let used = self.walk_frames(data, now_ns, window, stats, counting);
            self.carry.extend_from_slice(&data[used..]);
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(data);
            let used = self.walk_frames(&joined, now_ns, window, stats, counting);
            joined.drain(..used);
            self.carry = joined;
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
        while !self.broken && self.server_close.is_none() {
            match parse_server_frame(&buf[at..]) {
                Ok(Some((frame, used))) => {
                    at += used;
                    match frame.opcode {
                        OP_BINARY | OP_TEXT if counting => {
                            self.on_message(frame.payload, now_ns, window, stats)
                        }
                        OP_PING => self.replies.push((OP_PONG, frame.payload.to_vec())),
                        OP_CLOSE => {
                            let code = frame
                                .payload
                                .get(..2)
                                .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                            self.server_close = Some(code);
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    stats.totals.protocol_errors += 1;
                    stats.interval.errors += 1;
                    self.broken = true;
                }
            }
        }
        at
    }

    /// Accounts one data message received at `now_ns`.
    pub fn on_message(
        &mut self,
        payload: &[u8],
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
            if let Some(count) = totals
                .delivered_by_publisher
                .get_mut(stamp.publisher as usize)
            {
                *count += 1;
            }
        }
    }
}

/// Receives on one connection until the run stops (then closes) or the server goes away.
pub async fn receive(
    context: Rc<WorkerContext>,
    mut receiver: Receiver,
    read: OwnedReadHalf,
    writer: Rc<Writer>,
) {
    let shared = context.shared.clone();
    receiver.run_id = shared.run_id;
    let mut window_rx = shared.window.clone();
    let mut window: Option<Arc<Window>> = window_rx.borrow_and_update().clone();
    let mut stopping = false;
    let mut deadline = None;
    let mut eof = false;
    // Bytes that arrived with the handshake response are the first frames.
    if !receiver.carry.is_empty() {
        let leftover = std::mem::take(&mut receiver.carry);
        let mut stats = context.stats.borrow_mut();
        receiver.take_bytes(
            &leftover,
            monotonic_ns(),
            window.as_deref(),
            &mut stats,
            !receiver.spec.stalled,
        );
    }
    loop {
        if window.is_none() && window_rx.has_changed().unwrap_or(false) {
            window = window_rx.borrow_and_update().clone();
        }
        if !receiver.replies.is_empty() {
            let replies = std::mem::take(&mut receiver.replies);
            if writer.send(&replies).await.is_err() {
                break;
            }
        }
        if receiver.broken || eof || receiver.server_close.is_some() {
            break;
        }
        // Checked here and woken below: no other task of this thread runs in between, so the
        // signal cannot slip past.
        if !stopping && context.stopping.get() {
            stopping = true;
            // A stalled receiver first reads what piled up behind it: whether the server closed
            // it (1008, or EOF) is only seen at the end of that backlog, so it does not close
            // first; it reads until the server's close, EOF or the deadline.
            if !receiver.spec.stalled && writer.close(CLOSE_NORMAL).await.is_err() {
                break;
            }
            deadline = Some(tokio::time::Instant::now() + CLOSE_WAIT);
        }
        // After the stop check, so a stalled receiver reads again as soon as the run stops.
        let stalled_now = receiver.spec.stalled
            && !stopping
            && window
                .as_ref()
                .is_some_and(|w| monotonic_ns() >= w.measure_start_ns);
        tokio::select! {
            ready = read.readable(), if !stalled_now => {
                if ready.is_err() {
                    eof = true;
                    continue;
                }
                eof = drain_socket(&context, &mut receiver, &read, window.as_deref());
            }
            _ = context.stop_signal.notified(), if !stopping => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => break,
        }
    }
    finish(&context, &receiver, &writer, stopping, eof).await;
}

/// Reads until the socket would block, feeding every chunk to the frame walker. Returns true at
/// EOF or a read error.
fn drain_socket(
    context: &WorkerContext,
    receiver: &mut Receiver,
    read: &OwnedReadHalf,
    window: Option<&Window>,
) -> bool {
    let mut buffer = context.read_buffer.borrow_mut();
    let mut stats = context.stats.borrow_mut();
    let counting = !receiver.spec.stalled;
    loop {
        match read.try_read(&mut buffer) {
            Ok(0) => return true,
            Ok(read_bytes) => {
                // One clock read per buffer: every frame in it arrived by now.
                let now = monotonic_ns();
                receiver.take_bytes(&buffer[..read_bytes], now, window, &mut stats, counting);
                if read_bytes < buffer.len() || receiver.broken || receiver.server_close.is_some() {
                    return false;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Books how the connection ended and answers a server-initiated close.
async fn finish(
    context: &WorkerContext,
    receiver: &Receiver,
    writer: &Writer,
    stopping: bool,
    eof: bool,
) {
    let closed_by_server = !stopping && (eof || receiver.server_close.is_some() || receiver.broken);
    if let (Some(code), false) = (receiver.server_close, stopping) {
        // Echo the close (RFC 6455 5.5.1); the connection ends either way.
        let _ = writer.close(code).await;
    }
    let mut stats = context.stats.borrow_mut();
    if receiver.spec.stalled {
        // Stalled receivers never close first (see above): any close or EOF is the server's.
        let server_ended_it = eof || receiver.server_close.is_some() || receiver.broken;
        stats.totals.stalled_closed_by_server += u64::from(server_ended_it);
    } else if closed_by_server {
        stats.totals.disconnected += 1;
        stats.interval.errors += 1;
    }
}
