//! One WebSocket connection after the upgrade, as the core's reader (`reader.rs`) reads it:
//! its decoder, inbound limits and an incomplete frame's tail.
//!
//! A ready socket is read once into the core's scratch buffer and decoded there in place
//! (`inbound.rs`): messages are published to the room, pongs and close replies routed into the
//! connection's own outbound queue. Only an incomplete frame's tail is copied into a buffer of
//! the connection's own, freed again once it is decoded: an idle connection holds no read
//! buffer and no read in flight. While the fan-out budget is exhausted (`memory.rs`) the
//! reader stops reading it, so TCP pushes back on a client that publishes faster than the
//! server can deliver. There is no writer task: the core's output backend (`uring_output.rs`,
//! `epoll_output.rs`) writes every connection's queue. The connection ends with
//! `shutdown(Both)`; the reader then calls [`Connection::finish`], which leaves the room and
//! releases the connection slot.

use std::rc::Rc;

use crate::backend::socket::ConnSocket;
use crate::core::CoreContext;
use crate::fanout::hub::Room;
use crate::http::UpgradeTicket;
use crate::input::rate::{InboundRate, PublishShare};
use crate::metrics::CoreMetrics;
use crate::output::subscriber::Subscriber;
use crate::ws::decode::{Decoded, FrameDecoder, Inbound};
use crate::ws::encode::{encode_pong, CloseCode};

/// Size of the core's read scratch buffer: the most one read takes.
pub const READ_SCRATCH: usize = 64 << 10;
/// Least spare room of a read into a connection's own buffer (which holds an incomplete
/// frame whose length is not known yet).
const TAIL_READ: usize = 4096;

/// What the HTTP phase hands to the WebSocket reader.
pub struct UpgradedIo {
    /// The socket.
    pub socket: ConnSocket,
    /// Bytes read from the socket that hyper did not consume.
    pub buffered: Vec<u8>,
}

/// One connection's reading state, kept by the core's reader.
pub struct Connection {
    /// The room this connection publishes to and receives from.
    room: Rc<Room>,
    /// Queue, close state and socket.
    subscriber: Rc<Subscriber>,
    /// Frame decoder (limits, fragments, UTF-8).
    decoder: FrameDecoder,
    /// --max-inbound-rate, if set.
    rate: Option<InboundRate>,
    /// This publisher's share of the fan-out budget.
    share: PublishShare,
    /// Bytes received and not decoded yet: an incomplete frame's start, or what a pause left.
    tail: Vec<u8>,
    /// Length of the incomplete frame in `tail`, when its header said.
    tail_frame_len: Option<usize>,
}

/// Starts the WebSocket phase of a subscriber that joined its room at upgrade: attaches the
/// socket and hands the connection to the core's reader. `early` holds bytes hyper read past
/// the request.
pub fn start(core: &CoreContext, io: UpgradedIo, early: &[u8], ticket: UpgradeTicket) {
    let UpgradeTicket { room, subscriber } = ticket;
    subscriber.attach_socket(io.socket);
    CoreMetrics::add(&core.hub.metrics().connections, 1);
    let config = &core.state.config;
    let now = core.hub.now();
    let mut tail = Vec::new();
    if !early.is_empty() || !io.buffered.is_empty() {
        tail.reserve_exact(early.len() + io.buffered.len());
        tail.extend_from_slice(early);
        tail.extend_from_slice(&io.buffered);
    }
    let connection = Connection {
        room,
        subscriber,
        decoder: FrameDecoder::new(config.max_message),
        rate: config
            .max_inbound_rate
            .map(|rate| InboundRate::new(rate, now)),
        share: PublishShare::new(now),
        tail,
        tail_frame_len: None,
    };
    if connection.subscriber.is_shut_down() {
        // Told to close during the handshake (graceful shutdown): nothing to read.
        connection.finish(core);
        return;
    }
    core.reader.add(core, connection);
}

/// What reading a connection led to, for the core's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read it again once it is readable.
    Wait,
    /// A message was published and the fan-out budget is exhausted: read no more until it has
    /// room.
    Pause,
    /// The client's close arrived, or the connection failed or ended: read no more.
    Done,
}

/// What the decode loop does after an event.
enum Flow {
    /// Go on decoding.
    Continue,
    /// A message was published; go on once the fan-out budget has room.
    Published,
    /// The client's close arrived, or the connection was closed; stop reading.
    Stop,
}

impl Connection {
    /// The connection's subscriber (queue, close state, socket).
    pub fn subscriber(&self) -> &Rc<Subscriber> {
        &self.subscriber
    }

    /// True when this publisher is over its fair share of the fan-out budget.
    pub fn is_heavy_publisher(&self) -> bool {
        self.share.is_heavy()
    }

    /// The connection has ended (its socket is shut down): leaves the room, releases the
    /// connection slot.
    pub fn finish(self, core: &CoreContext) {
        self.subscriber.shutdown_socket();
        core.hub.leave(&self.room, &self.subscriber);
        CoreMetrics::sub(&core.hub.metrics().connections, 1);
        core.connection_closed();
    }

    /// The socket is readable: reads once (into the core's scratch buffer, or into the tail of
    /// an incomplete frame) and handles the whole frames.
    pub fn read_ready(&mut self, core: &CoreContext) -> Step {
        if self.tail.is_empty() {
            return self.read_into_scratch(core);
        }
        let Some(socket) = self.subscriber.socket() else {
            return Step::Done;
        };
        // An incomplete frame waits: read its rest straight into the connection's buffer.
        let wanted = self
            .tail_frame_len
            .unwrap_or(0)
            .max(self.tail.len() + TAIL_READ);
        self.tail.reserve_exact(wanted - self.tail.len());
        let read = socket.recv_spare(&mut self.tail);
        if let Err(step) = self.received(core, read) {
            return step;
        }
        self.decode_held(core)
    }

    /// What a read gave: the bytes read (the client spoke: keepalive is told), or what the
    /// reader does when there were none (wait; or, at end of stream or on an error, the client
    /// is gone: the socket is shut down and reading is done).
    fn received(
        &self,
        core: &CoreContext,
        read: std::io::Result<Option<usize>>,
    ) -> Result<usize, Step> {
        match read {
            Ok(None) => Err(Step::Wait),
            Ok(Some(read)) if read > 0 => {
                self.subscriber.touch(core.hub.now());
                Ok(read)
            }
            _ => {
                self.subscriber.shutdown_socket();
                Err(Step::Done)
            }
        }
    }

    /// Decodes and handles the whole frames the connection already holds (bytes hyper read
    /// past the request, what a pause left, or a completed tail).
    pub fn decode_held(&mut self, core: &CoreContext) -> Step {
        if self.tail.is_empty() {
            return Step::Wait;
        }
        let mut tail = std::mem::take(&mut self.tail);
        let (consumed, step) = self.decode(core, &mut tail);
        tail.drain(..consumed);
        if !tail.is_empty() {
            self.tail = tail;
        }
        // Else the buffer is dropped: an idle connection holds none.
        step
    }

    /// Reads what is readable into the core's scratch buffer and decodes it there; keeps only
    /// an incomplete frame's tail (the connection's tail is empty before).
    fn read_into_scratch(&mut self, core: &CoreContext) -> Step {
        let Some(socket) = self.subscriber.socket() else {
            return Step::Done;
        };
        let mut scratch = core.read_scratch.borrow_mut();
        let read = match self.received(core, socket.recv(&mut scratch)) {
            Ok(read) => read,
            Err(step) => return step,
        };
        let (consumed, step) = self.decode(core, &mut scratch[..read]);
        if step != Step::Done {
            let rest = &scratch[consumed..read];
            let frame_len = match step {
                Step::Wait => self.tail_frame_len.unwrap_or(0),
                _ => 0,
            };
            if !rest.is_empty() {
                self.tail.reserve_exact(rest.len().max(frame_len));
                self.tail.extend_from_slice(rest);
            }
        }
        step
    }

    /// Decodes and handles the whole frames at the start of `data`: returns the bytes consumed
    /// and what the reader does next (Wait: `data` holds no whole frame any more, and
    /// `tail_frame_len` the incomplete one's length if known).
    fn decode(&mut self, core: &CoreContext, data: &mut [u8]) -> (usize, Step) {
        let memory = core.hub.memory();
        let mut start = 0;
        loop {
            match self.decoder.decode(&mut data[start..]) {
                Ok(Decoded::Event { event, consumed }) => {
                    let flow = handle(
                        core,
                        &self.room,
                        &self.subscriber,
                        event,
                        &mut self.rate,
                        &mut self.share,
                    );
                    start += consumed;
                    match flow {
                        Flow::Stop => return (start, Step::Done),
                        Flow::Published if memory.must_pause(self.share.is_heavy()) => {
                            return (start, Step::Pause)
                        }
                        Flow::Published | Flow::Continue => {}
                    }
                }
                Ok(Decoded::Absorbed { consumed }) => start += consumed,
                Ok(Decoded::NeedMore { frame_len }) => {
                    self.tail_frame_len = frame_len;
                    return (start, Step::Wait);
                }
                Err(error) => {
                    tracing::debug!(
                        reason = error.reason,
                        code = error.code as u16,
                        "failing connection"
                    );
                    self.subscriber.fail(error.code, error.reason);
                    return (start, Step::Done);
                }
            }
        }
    }
}

/// Acts on one decoded event of `subscriber`'s connection to `room`. (A function of the
/// fields, not a method: the decoder borrows the connection's buffer meanwhile.)
fn handle(
    core: &CoreContext,
    room: &Rc<Room>,
    subscriber: &Rc<Subscriber>,
    event: Inbound<'_>,
    rate: &mut Option<InboundRate>,
    share: &mut PublishShare,
) -> Flow {
    let closing = subscriber.is_closing();
    let hub = &core.hub;
    match event {
        Inbound::Message { kind, payload } => {
            // After our close frame only the client's close matters (RFC 6455 5.5.1).
            if closing {
                return Flow::Continue;
            }
            if let Some(rate) = rate {
                if !rate.allow(hub.now()) {
                    CoreMetrics::add(&hub.metrics().rate_limit_closes, 1);
                    subscriber.close(CloseCode::SlowConsumer, "inbound rate limit");
                    return Flow::Continue;
                }
            }
            let metrics = hub.metrics();
            CoreMetrics::add(&metrics.messages_in, 1);
            CoreMetrics::add(&metrics.bytes_in, payload.len() as u64);
            share.published(payload.len(), hub.now());
            hub.publish_message(room, kind, payload);
            return Flow::Published;
        }
        Inbound::Ping(payload) => {
            if !closing && subscriber.offer(&Rc::new(encode_pong(payload))) {
                CoreMetrics::add(&hub.metrics().slow_consumer_closes, 1);
            }
        }
        Inbound::Pong => {}
        Inbound::Close(payload) => {
            subscriber.close_received(payload);
            return Flow::Stop;
        }
    }
    Flow::Continue
}
