//! One WebSocket connection after the upgrade: its reader task.
//!
//! The reader waits for the socket to be readable, reads into the core's scratch buffer,
//! decodes frames in place (`inbound.rs`), publishes messages to the room, and routes pongs and
//! close replies into the connection's own outbound queue. Only an incomplete frame's tail is
//! copied into a buffer of the connection's own, freed again once it is decoded: an idle
//! connection holds no read buffer and no read in flight. While the fan-out budget is exhausted (`memory.rs`) it stops reading, so TCP pushes
//! back on a client that publishes faster than the server can deliver; one kept waiting for
//! `--publish-timeout` is closed with 1013. There is no writer task: the core's output backend
//! (`uring_output.rs`, `epoll_output.rs`) writes every connection's queue. The connection ends
//! with `shutdown(Both)`, which ends the reader's wait for readiness and any write in flight;
//! the reader task lives until then, and [`Connection`]'s drop leaves the room and
//! releases the connection slot.

use std::rc::Rc;
use std::time::Instant;

use crate::cores::CoreContext;
use crate::frame::{encode_pong, CloseCode};
use crate::http::UpgradeTicket;
use crate::hub::Room;
use crate::inbound::{Decoded, FrameDecoder, Inbound};
use crate::memory::wait_for_room;
use crate::memory::FanoutMemory;
use crate::metrics::CoreMetrics;
use crate::rate_limit::{InboundRate, PublishShare};
use crate::socket::{ConnSocket, ReadReady};
use crate::subscriber::Subscriber;

/// Size of the core's read scratch buffer: the most one read takes.
pub const READ_SCRATCH: usize = 64 << 10;
/// Least spare room of a read into a connection's own buffer (which holds an incomplete
/// frame whose length is not known yet).
const TAIL_READ: usize = 4096;

/// What the HTTP phase hands to the WebSocket reader.
pub struct UpgradedIo {
    /// The socket, registered for readiness.
    pub socket: ConnSocket,
    /// Bytes read from the socket that hyper did not consume.
    pub buffered: Vec<u8>,
}
/// One connection, owned by its reader task.
struct Connection {
    /// This core (hub, config, metrics).
    core: Rc<CoreContext>,
    /// The room this connection publishes to and receives from.
    room: Rc<Room>,
    /// Queue, close state and socket.
    subscriber: Rc<Subscriber>,
}

impl Drop for Connection {
    /// Runs when the reader task has finished (after the socket was shut down).
    fn drop(&mut self) {
        self.subscriber.shutdown_socket();
        self.core.hub.leave(&self.room, &self.subscriber);
        CoreMetrics::sub(&self.core.hub.metrics().connections, 1);
        self.core.connection_closed();
    }
}

/// Starts the WebSocket phase of a subscriber that joined its room at upgrade: attaches the
/// socket and spawns the reader. `early` holds bytes hyper read past the request.
pub fn start(core: Rc<CoreContext>, io: UpgradedIo, early: &[u8], ticket: UpgradeTicket) {
    let UpgradeTicket { room, subscriber } = ticket;
    subscriber.attach_socket(io.socket);
    CoreMetrics::add(&core.hub.metrics().connections, 1);
    // Owned by the task's future (no allocation of its own).
    let connection = Connection {
        core,
        room,
        subscriber,
    };
    let mut buffer = Vec::new();
    if !early.is_empty() || !io.buffered.is_empty() {
        buffer.reserve_exact(early.len() + io.buffered.len());
        buffer.extend_from_slice(early);
        buffer.extend_from_slice(&io.buffered);
    }
    tokio::task::spawn_local(serve(connection, buffer));
}

/// The reader task: reads until the client is done, then waits until the output side has
/// finished (the close handshake's last frame written, or a deadline) and the socket is shut
/// down, then drops the connection.
async fn serve(connection: Connection, buffer: Vec<u8>) {
    read_loop(&connection, buffer).await;
    connection.subscriber.shut_down().await;
}

/// What the reader does after an event.
enum Flow {
    /// Keep reading.
    Continue,
    /// A message was published; keep reading once the fan-out budget has room.
    Published,
    /// The client's close arrived, or the connection was closed; stop reading.
    Stop,
}

/// Where the decode loop stopped.
enum Next {
    /// The buffer holds no whole frame: read more (the pending frame's size, if known).
    Read(Option<usize>),
    /// The fan-out budget is exhausted: wait before decoding or reading more.
    Pause,
    /// The connection is done reading.
    Stop,
}

impl Connection {
    /// Acts on one decoded event.
    fn handle(
        &self,
        event: Inbound<'_>,
        rate: &mut Option<InboundRate>,
        share: &mut PublishShare,
    ) -> Flow {
        let closing = self.subscriber.is_closing();
        match event {
            Inbound::Message { kind, payload } => {
                // After our close frame only the client's close matters (RFC 6455 5.5.1).
                if closing {
                    return Flow::Continue;
                }
                let hub = &self.core.hub;
                if let Some(rate) = rate {
                    if !rate.allow(hub.now()) {
                        CoreMetrics::add(&hub.metrics().rate_limit_closes, 1);
                        self.subscriber
                            .close(CloseCode::SlowConsumer, "inbound rate limit");
                        return Flow::Continue;
                    }
                }
                let metrics = hub.metrics();
                CoreMetrics::add(&metrics.messages_in, 1);
                CoreMetrics::add(&metrics.bytes_in, payload.len() as u64);
                share.published(payload.len(), hub.now());
                hub.publish_message(&self.room, kind, payload);
                return Flow::Published;
            }
            Inbound::Ping(payload) => {
                if !closing && self.subscriber.offer(&Rc::new(encode_pong(payload))) {
                    CoreMetrics::add(&self.core.hub.metrics().slow_consumer_closes, 1);
                }
            }
            Inbound::Pong => {}
            Inbound::Close(payload) => {
                self.subscriber.close_received(payload);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Waits (not reading) until the fan-out budget has room for this publisher (`heavy`: over
    /// its fair share). Returns false, and closes the connection with 1013, when the budget
    /// stayed exhausted for --publish-timeout, or at once for a heavy publisher when the held
    /// bytes pass twice the budget: then every light publisher waits too, and the heavy one is
    /// what blocks the other rooms.
    async fn wait_for_budget(&self, heavy: bool) -> bool {
        let hub = &self.core.hub;
        let memory = hub.memory();
        let config = &self.core.state.config;
        CoreMetrics::add(&hub.metrics().publish_pauses, 1);
        self.subscriber.set_reading_paused(true);
        let deadline = Instant::now() + config.publish_timeout;
        let blocking_others = || heavy && memory.must_pause(false);
        let has_room =
            || !memory.must_pause(heavy) || blocking_others() || self.subscriber.is_shut_down();
        let resumed = wait_for_room(has_room, Some(deadline)).await && !blocking_others();
        self.subscriber.set_reading_paused(false);
        // Waiting was the server's doing, not the client's silence.
        self.subscriber.touch(hub.now());
        if !resumed {
            CoreMetrics::add(&hub.metrics().overload_closes, 1);
            self.subscriber.fail(
                CloseCode::TryAgainLater,
                "server overloaded, try again later",
            );
        }
        resumed
    }
}

/// The reader's decoding state.
struct ReadState {
    /// Frame decoder (limits, fragments, UTF-8).
    decoder: FrameDecoder,
    /// --max-inbound-rate, if set.
    rate: Option<InboundRate>,
    /// This publisher's share of the fan-out budget.
    share: PublishShare,
    /// The fan-out budget.
    memory: std::sync::Arc<FanoutMemory>,
}

impl Connection {
    /// Decodes and handles the whole frames at the start of `data`: returns the bytes consumed
    /// and why it stopped.
    fn decode(&self, state: &mut ReadState, data: &mut [u8]) -> (usize, Next) {
        let mut start = 0;
        loop {
            match state.decoder.decode(&mut data[start..]) {
                Ok(Decoded::Event { event, consumed }) => {
                    let flow = self.handle(event, &mut state.rate, &mut state.share);
                    start += consumed;
                    match flow {
                        Flow::Stop => return (start, Next::Stop),
                        Flow::Published if state.memory.must_pause(state.share.is_heavy()) => {
                            return (start, Next::Pause)
                        }
                        Flow::Published | Flow::Continue => {}
                    }
                }
                Ok(Decoded::Absorbed { consumed }) => start += consumed,
                Ok(Decoded::NeedMore { frame_len }) => return (start, Next::Read(frame_len)),
                Err(error) => {
                    tracing::debug!(
                        reason = error.reason,
                        code = error.code as u16,
                        "failing connection"
                    );
                    self.subscriber.fail(error.code, error.reason);
                    return (start, Next::Stop);
                }
            }
        }
    }

    /// Reads what is readable into the core's scratch buffer and decodes it there; keeps only
    /// an incomplete frame's tail, in `tail` (empty before). None: nothing was readable after
    /// all; Some(None): end of stream or error.
    fn read_into_scratch(
        &self,
        ready: &mut ReadReady<'_>,
        state: &mut ReadState,
        tail: &mut Vec<u8>,
    ) -> Option<Option<Next>> {
        let mut scratch = self.core.read_scratch.borrow_mut();
        let read = match ready.recv(&mut scratch) {
            Ok(None) => return None,
            Ok(Some(read)) if read > 0 => read,
            _ => return Some(None),
        };
        self.subscriber.touch(self.core.hub.now());
        let (consumed, next) = self.decode(state, &mut scratch[..read]);
        if !matches!(next, Next::Stop) {
            let rest = &scratch[consumed..read];
            let frame_len = match next {
                Next::Read(frame_len) => frame_len.unwrap_or(0),
                _ => 0,
            };
            tail.reserve_exact(rest.len().max(frame_len));
            tail.extend_from_slice(rest);
        }
        Some(Some(next))
    }
}

/// Reads and decodes until the client closes, fails, or the socket is shut down. `tail` holds
/// bytes already received (and not decoded yet).
async fn read_loop(connection: &Connection, mut tail: Vec<u8>) {
    let Some(socket) = connection.subscriber.socket() else {
        return;
    };
    let config = &connection.core.state.config;
    let now = connection.core.hub.now();
    let mut state = ReadState {
        decoder: FrameDecoder::new(config.max_message),
        rate: config
            .max_inbound_rate
            .map(|rate| InboundRate::new(rate, now)),
        share: PublishShare::new(now),
        memory: std::sync::Arc::clone(connection.core.hub.memory()),
    };
    loop {
        let next = if tail.is_empty() {
            None
        } else {
            let (consumed, next) = connection.decode(&mut state, &mut tail);
            tail.drain(..consumed);
            if tail.is_empty() {
                // Give the buffer back: an idle connection holds none.
                tail = Vec::new();
            }
            Some(next)
        };
        let next = match next {
            Some(next) => next,
            None => {
                let Ok(mut ready) = socket.readable().await else {
                    connection.subscriber.shutdown_socket();
                    return;
                };
                match connection.read_into_scratch(&mut ready, &mut state, &mut tail) {
                    None => continue,
                    Some(None) => {
                        // EOF or error: the client is gone.
                        connection.subscriber.shutdown_socket();
                        return;
                    }
                    Some(Some(next)) => next,
                }
            }
        };
        // Length of the incomplete frame in `tail`, when its header said.
        let frame_len = match next {
            Next::Read(len) => len,
            Next::Stop => return,
            Next::Pause => {
                // Boxed: a pause is rare, and its state would otherwise make every idle
                // connection's task bigger.
                let heavy = state.share.is_heavy();
                if !Box::pin(connection.wait_for_budget(heavy)).await {
                    return;
                }
                continue;
            }
        };
        if tail.is_empty() {
            continue;
        }
        // An incomplete frame waits: read its rest straight into the connection's buffer.
        let Ok(mut ready) = socket.readable().await else {
            connection.subscriber.shutdown_socket();
            return;
        };
        let wanted = frame_len.unwrap_or(0).max(tail.len() + TAIL_READ);
        tail.reserve_exact(wanted - tail.len());
        match ready.recv_spare(&mut tail) {
            Ok(None) => {}
            Ok(Some(read)) if read > 0 => connection.subscriber.touch(connection.core.hub.now()),
            _ => {
                connection.subscriber.shutdown_socket();
                return;
            }
        }
    }
}
