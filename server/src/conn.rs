//! One WebSocket connection after the upgrade: a reader task and a writer task.
//!
//! The reader owns one adaptive read buffer, decodes frames in place (`inbound.rs`), publishes
//! messages to the room, and routes pongs and close replies into the connection's own outbound
//! queue. The writer is the only task that writes to the socket: it drains the queue into one
//! `writev` per batch and handles partial writes. Reads are never raced or cancelled (DESIGN 3):
//! each task owns its one in-flight operation, and the connection ends with `shutdown(Both)`,
//! which completes whatever is pending. When both tasks are done, [`Connection`]'s drop leaves
//! the room and releases the connection slot.

use std::io;
use std::rc::Rc;

use bytes::Bytes;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use crate::cores::CoreContext;
use crate::frame::{encode_message, encode_pong};
use crate::http::UpgradeTicket;
use crate::hub::Room;
use crate::inbound::{Decoded, FrameDecoder, Inbound};
use crate::metrics::CoreMetrics;
use crate::outbound::advance_batch;
use crate::subscriber::Subscriber;
use crate::uring_io::{PendingRead, UpgradedIo};

/// Most iovecs per `writev` (Linux IOV_MAX).
const MAX_IOV: usize = 1024;
/// Smallest read: an idle connection's whole read buffer. Small, because 10k idle connections
/// each keep one read in flight.
pub const IDLE_READ_BUFFER: usize = 512;
/// Largest read when the client keeps the buffer full.
const MAX_READ: usize = 64 << 10;
/// A batch vector that grew past this during a burst is released when the writer goes idle.
const IDLE_BATCH_CAPACITY: usize = 64;

/// Shared by the reader and writer tasks of one connection.
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
    /// Runs when both tasks have finished.
    fn drop(&mut self) {
        self.subscriber.shutdown_socket();
        self.core.hub.leave(&self.room, &self.subscriber);
        CoreMetrics::sub(&self.core.hub.metrics().connections, 1);
        self.core.connection_closed();
    }
}

/// Starts the WebSocket phase of a subscriber that joined its room at upgrade: attaches the
/// socket and spawns the reader and writer. `early` holds bytes hyper read past the request.
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
    tokio_uring::spawn(write_loop(Rc::clone(&connection)));
    tokio_uring::spawn(read_loop(connection, buffer, io.pending_read));
}

/// What the reader does after an event.
enum Flow {
    /// Keep reading.
    Continue,
    /// The client's close arrived; stop reading.
    Stop,
}

impl Connection {
    /// Acts on one decoded event.
    fn handle(&self, event: Inbound<'_>) -> Flow {
        let closing = self.subscriber.is_closing();
        match event {
            Inbound::Message { kind, payload } => {
                // After our close frame only the client's close matters (RFC 6455 5.5.1).
                if !closing {
                    let metrics = self.core.hub.metrics();
                    CoreMetrics::add(&metrics.messages_in, 1);
                    CoreMetrics::add(&metrics.bytes_in, payload.len() as u64);
                    self.core
                        .hub
                        .publish(&self.room, encode_message(kind, payload));
                }
            }
            Inbound::Ping(payload) => {
                if !closing && self.subscriber.offer(&encode_pong(payload)) {
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
}

/// Reads and decodes until the client closes, fails, or the socket is shut down.
async fn read_loop(
    connection: Rc<Connection>,
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
    }
    let mut decoder = FrameDecoder::new(connection.core.state.config.max_message);
    let mut read_size = IDLE_READ_BUFFER;
    loop {
        let mut start = 0;
        let frame_len = loop {
            match decoder.decode(&mut buffer[start..]) {
                Ok(Decoded::Event { event, consumed }) => {
                    let flow = connection.handle(event);
                    start += consumed;
                    if let Flow::Stop = flow {
                        return;
                    }
                }
                Ok(Decoded::Absorbed { consumed }) => start += consumed,
                Ok(Decoded::NeedMore { frame_len }) => break frame_len,
                Err(error) => {
                    tracing::debug!(
                        reason = error.reason,
                        code = error.code as u16,
                        "failing connection"
                    );
                    connection.subscriber.fail(error.code, error.reason);
                    return;
                }
            }
        };
        buffer.drain(..start);
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
                // EOF or error: the client is gone; make the writer stop too.
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

/// Drains the outbound queue into `writev` calls until the connection closes.
async fn write_loop(connection: Rc<Connection>) {
    let subscriber = &connection.subscriber;
    let metrics = connection.core.hub.metrics();
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        if subscriber.is_shut_down() {
            return;
        }
        let room_in_batch = MAX_IOV - batch.len();
        subscriber.take_batch(&mut batch, room_in_batch);
        if batch.is_empty() {
            if subscriber.is_closing() {
                // Everything queued, the close frame last, has been written.
                subscriber.close_frame_written();
                return;
            }
            if batch.capacity() > IDLE_BATCH_CAPACITY {
                batch = Vec::new();
            }
            subscriber.writer_wakeup().await;
            continue;
        }
        let (result, returned) = write_batch(&connection.stream, batch).await;
        batch = returned;
        match result {
            Ok(written) if written > 0 => {
                let frames = advance_batch(&mut batch, written);
                CoreMetrics::add(&metrics.writev_calls, 1);
                CoreMetrics::add(&metrics.frames_written, frames as u64);
                CoreMetrics::add(&metrics.bytes_out, written as u64);
            }
            _ => {
                subscriber.shutdown_socket();
                return;
            }
        }
    }
}

/// Writes a batch with one submission: a plain `write` for a single frame (tokio-uring's
/// `writev` allocates an iovec array per call, and at low rates most batches are one frame),
/// one `writev` otherwise. May write only part of the batch.
async fn write_batch(stream: &TcpStream, mut batch: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
    if batch.len() == 1 {
        if let Some(frame) = batch.pop() {
            let (result, frame) = stream.write(frame).submit().await;
            batch.push(frame);
            return (result, batch);
        }
    }
    stream.writev(batch).await
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
