//! One WebSocket connection after the upgrade: its reader task.
//!
//! The reader owns one adaptive read buffer, decodes frames in place (`inbound.rs`), publishes
//! messages to the room, and routes pongs and close replies into the connection's own outbound
//! queue. While the fan-out budget is exhausted (`memory.rs`) it stops reading, so TCP pushes
//! back on a client that publishes faster than the server can deliver; one kept waiting for
//! `--publish-timeout` is closed with 1013. There is no writer task: the core's output backend
//! (`uring_output.rs`) writes every connection's queue. Reads are never raced or cancelled
//! (DESIGN 3), and the connection ends with `shutdown(Both)`, which completes whatever is
//! pending; the reader task lives until then, and [`Connection`]'s drop leaves the room and
//! releases the connection slot.

use std::rc::Rc;
use std::time::Instant;

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use crate::cores::CoreContext;
use crate::frame::{encode_pong, CloseCode};
use crate::http::UpgradeTicket;
use crate::hub::Room;
use crate::inbound::{Decoded, FrameDecoder, Inbound};
use crate::memory::wait_for_room;
use crate::metrics::CoreMetrics;
use crate::rate_limit::{InboundRate, PublishShare};
use crate::subscriber::Subscriber;
use crate::uring_io::{PendingRead, UpgradedIo};

/// Smallest read: an idle connection's whole read buffer. Small, because 10k idle connections
/// each keep one read in flight.
pub const IDLE_READ_BUFFER: usize = 512;
/// Buffer of the read hyper leaves in flight at the upgrade. That read outlives the HTTP phase
/// and, for a client that never sends (a pure subscriber, the most common client of a
/// broadcast server), stays in flight for the connection's whole life, so it is smaller still;
/// a client that does send gets [`IDLE_READ_BUFFER`]-sized reads after it.
pub const FIRST_READ_BUFFER: usize = 64;
/// Largest read when the client keeps the buffer full.
const MAX_READ: usize = 64 << 10;
/// One connection, owned by its reader task.
struct Connection {
    /// This core (hub, config, metrics).
    core: Rc<CoreContext>,
    /// The room this connection publishes to and receives from.
    room: Rc<Room>,
    /// Queue and close state.
    subscriber: Rc<Subscriber>,
    /// The socket.
    stream: Rc<TcpStream>,
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
    subscriber.attach_socket(Rc::clone(&io.stream));
    CoreMetrics::add(&core.hub.metrics().connections, 1);
    let connection = Rc::new(Connection {
        core,
        room,
        subscriber,
        stream: io.stream,
    });
    let mut buffer = Vec::new();
    if !early.is_empty() || !io.buffered.is_empty() {
        buffer.reserve_exact(IDLE_READ_BUFFER.max(early.len() + io.buffered.len()));
        buffer.extend_from_slice(early);
        buffer.extend_from_slice(&io.buffered);
    }
    tokio_uring::spawn(serve(connection, buffer, io.pending_read));
}

/// The reader task: reads until the client is done, then waits until the output side has
/// finished (the close handshake's last frame written, or a deadline) and the socket is shut
/// down, then drops the connection.
async fn serve(connection: Rc<Connection>, buffer: Vec<u8>, pending_read: Option<PendingRead>) {
    read_loop(&connection, buffer, pending_read).await;
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

/// Reads and decodes until the client closes, fails, or the socket is shut down.
async fn read_loop(
    connection: &Connection,
    mut buffer: Vec<u8>,
    pending_read: Option<PendingRead>,
) {
    if let Some(pending) = pending_read {
        // A read hyper started is still in flight: its buffer (sized small at upgrade) becomes
        // ours, so an idle connection holds one buffer, not two.
        match pending.await {
            (Ok(n), bytes) if n > 0 && buffer.is_empty() => buffer = bytes,
            (Ok(n), bytes) if n > 0 => buffer.extend_from_slice(&bytes[..n]),
            _ => {
                connection.subscriber.shutdown_socket();
                return;
            }
        }
        // Whatever the client sent first (often the answer to the first ping) counts.
        connection.subscriber.touch(connection.core.hub.now());
    }
    let config = &connection.core.state.config;
    let mut decoder = FrameDecoder::new(config.max_message);
    let mut rate = config
        .max_inbound_rate
        .map(|rate| InboundRate::new(rate, connection.core.hub.now()));
    let memory = std::sync::Arc::clone(connection.core.hub.memory());
    let mut share = PublishShare::new(connection.core.hub.now());
    let mut read_size = IDLE_READ_BUFFER;
    loop {
        let mut start = 0;
        let next = loop {
            match decoder.decode(&mut buffer[start..]) {
                Ok(Decoded::Event { event, consumed }) => {
                    let flow = connection.handle(event, &mut rate, &mut share);
                    start += consumed;
                    match flow {
                        Flow::Stop => break Next::Stop,
                        Flow::Published if memory.must_pause(share.is_heavy()) => {
                            break Next::Pause
                        }
                        Flow::Published | Flow::Continue => {}
                    }
                }
                Ok(Decoded::Absorbed { consumed }) => start += consumed,
                Ok(Decoded::NeedMore { frame_len }) => break Next::Read(frame_len),
                Err(error) => {
                    tracing::debug!(
                        reason = error.reason,
                        code = error.code as u16,
                        "failing connection"
                    );
                    connection.subscriber.fail(error.code, error.reason);
                    break Next::Stop;
                }
            }
        };
        buffer.drain(..start);
        let frame_len = match next {
            Next::Read(frame_len) => frame_len,
            Next::Stop => return,
            Next::Pause => {
                if !connection.wait_for_budget(share.is_heavy()).await {
                    return;
                }
                continue;
            }
        };
        buffer = sized_for_next_read(buffer, frame_len, read_size);
        let filled = buffer.len();
        let spare = buffer.capacity() - filled;
        let (result, slice) = connection.stream.read(buffer.slice(filled..)).await;
        buffer = slice.into_inner();
        match result {
            Ok(n) if n > 0 => {
                connection.subscriber.touch(connection.core.hub.now());
                read_size = next_read_size(read_size, n, spare);
            }
            _ => {
                // EOF or error: the client is gone.
                connection.subscriber.shutdown_socket();
                return;
            }
        }
    }
}

/// Makes room for the next read: the whole pending frame if its length is known, at least
/// `read_size` spare bytes, and gives back a large buffer once it is empty.
fn sized_for_next_read(mut buffer: Vec<u8>, frame_len: Option<usize>, read_size: usize) -> Vec<u8> {
    if buffer.is_empty() && buffer.capacity() > 2 * read_size {
        buffer = Vec::with_capacity(read_size);
    }
    let wanted = frame_len.unwrap_or(0).max(buffer.len() + read_size);
    if wanted > buffer.capacity() {
        buffer.reserve_exact(wanted - buffer.len());
    }
    buffer
}

/// Adapts the read size: double it while reads fill the buffer, halve it when they use little.
fn next_read_size(read_size: usize, read: usize, spare: usize) -> usize {
    if read == spare {
        (read_size * 2).min(MAX_READ)
    } else if read < read_size / 4 {
        (read_size / 2).max(IDLE_READ_BUFFER)
    } else {
        read_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_adapts_within_bounds() {
        assert_eq!(
            next_read_size(IDLE_READ_BUFFER, IDLE_READ_BUFFER, IDLE_READ_BUFFER),
            2 * IDLE_READ_BUFFER
        );
        assert_eq!(next_read_size(MAX_READ, MAX_READ, MAX_READ), MAX_READ);
        assert_eq!(next_read_size(4096, 10, 4096), 2048);
        assert_eq!(
            next_read_size(IDLE_READ_BUFFER, 1, IDLE_READ_BUFFER),
            IDLE_READ_BUFFER
        );
        assert_eq!(next_read_size(4096, 2000, 4096), 4096);
    }

    #[test]
    fn buffer_makes_room_for_a_known_frame_and_shrinks_when_empty() {
        let buffer = sized_for_next_read(vec![1, 2, 3], Some(100_000), IDLE_READ_BUFFER);
        assert!(buffer.capacity() >= 100_000);
        assert_eq!(buffer, [1, 2, 3]);
        let big_empty = Vec::with_capacity(1 << 20);
        let buffer = sized_for_next_read(big_empty, None, IDLE_READ_BUFFER);
        assert!(buffer.capacity() < 4 * IDLE_READ_BUFFER);
        assert!(buffer.capacity() >= IDLE_READ_BUFFER);
    }
}
