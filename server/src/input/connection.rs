//! One WebSocket connection after the upgrade, as the core's reader (`reader.rs`) reads it (the
//! read half; the write half is `output::Subscriber`): its decoder, inbound limits and an
//! incomplete frame's tail.
//!
//! What the socket delivers lands in a buffer of the core's (a receive buffer of the ring on
//! io_uring, the scratch buffer on epoll) and is decoded there in place (`ws::FrameDecoder`):
//! messages are published to the room, pongs and close replies routed into the connection's
//! own outbound queue. Only an incomplete frame's tail is copied into a buffer of the
//! connection's own, freed again once it is decoded: an idle connection holds no read buffer. While the fan-out budget is exhausted the reader stops
//! reading it ([`Step::Pause`]), so TCP pushes back on a client that publishes faster than the
//! server can deliver. The connection ends with `shutdown(Both)`; the reader then calls
//! [`Connection::finish`], which leaves the room and releases the connection slot.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::rate::{FairShare, InboundRate};
use crate::budget::FanoutBudget;
use crate::clock::CoarseClock;
use crate::fanout::{Hub, Room};
use crate::metrics::CoreMetrics;
use crate::output::{CoreOutput, Subscriber};
use crate::tls::Received;
use crate::ws::{encode_pong, encoded_len, ClientEvent, CloseCode, Decoded, FrameDecoder};

/// Least spare room of a read into a connection's own buffer (which holds an incomplete
/// frame whose length is not known yet); also the least a read into the scratch buffer asks
/// for.
const TAIL_READ: usize = 4096;
/// Longest header of a client frame (masked, 64-bit length).
const MAX_CLIENT_HEADER: usize = 14;

/// What reading a connection uses of its core: the hub it publishes to, the core's output
/// lists (a new subscriber reports to them), the fan-out budget, the core's metrics and clock,
/// and the settings.
#[derive(Debug)]
pub struct ReadContext {
    /// Rooms and fan-out of this core.
    pub hub: Rc<Hub>,
    /// This core's ledger, flush list and ended list.
    pub core_output: Rc<CoreOutput>,
    /// The process-wide fan-out budget (publishers pause when it is exhausted).
    pub budget: Arc<FanoutBudget>,
    /// This core's metrics.
    pub metrics: Arc<CoreMetrics>,
    /// This core's coarse clock.
    pub clock: Rc<CoarseClock>,
    /// `--max-message`.
    pub max_message: usize,
    /// `--max-inbound-rate`.
    pub max_inbound_rate: Option<u32>,
    /// `--max-backlog` of a new connection.
    pub max_backlog: usize,
    /// `--publish-timeout`.
    pub publish_timeout: Duration,
}

/// A subscriber that joined its room at the upgrade (before the 101 went out, so it misses
/// nothing published after the handshake), waiting for its socket; its frames wait in its
/// queue until the socket is attached.
#[derive(Debug)]
pub struct UpgradeTicket {
    /// The room joined.
    pub room: Rc<Room>,
    /// The new connection's queue and close state (holds its --max-connections permit).
    pub subscriber: Rc<Subscriber>,
    /// permessage-deflate was negotiated: the client may send compressed messages.
    pub deflate: bool,
}

/// One connection's reading state, kept by the core's reader.
pub struct Connection {
    /// The room this connection publishes to and receives from.
    room: Rc<Room>,
    /// Queue, close state and socket.
    subscriber: Rc<Subscriber>,
    /// Frame decoder (limits, fragments, UTF-8).
    decoder: FrameDecoder,
    /// --max-inbound-rate, if set (out of line: unset by default, and then a connection holds
    /// a pointer's worth here, not the bucket).
    rate: Option<Box<InboundRate>>,
    /// This publisher's bytes against its fair share of the fan-out budget.
    share: FairShare,
    /// Bytes received and not decoded yet: an incomplete frame's start, or what a pause left.
    tail: Vec<u8>,
    /// Length of the incomplete frame in `tail`, when its header said.
    tail_frame_len: Option<usize>,
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

impl Connection {
    /// The reading state of a subscriber whose socket was just attached; `held` is what was
    /// read past the upgrade request (decoded first).
    pub fn new(ticket: UpgradeTicket, held: Vec<u8>, cx: &ReadContext) -> Self {
        let UpgradeTicket {
            room,
            subscriber,
            deflate,
        } = ticket;
        let now = cx.clock.now();
        Connection {
            room,
            subscriber,
            decoder: FrameDecoder::new(cx.max_message).with_deflate(deflate),
            rate: cx
                .max_inbound_rate
                .map(|rate| Box::new(InboundRate::new(rate, now))),
            share: FairShare::new(now),
            tail: held,
            tail_frame_len: None,
        }
    }

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
    pub fn finish(self, cx: &ReadContext) {
        self.subscriber.shutdown_socket();
        cx.hub.leave(&self.room, &self.subscriber);
        CoreMetrics::sub(&cx.metrics.connections, 1);
    }

    /// The socket is readable (epoll backend): reads once (into `scratch`, the core's buffer,
    /// or into the tail of an incomplete frame) and handles the whole frames.
    pub fn read_ready(&mut self, cx: &ReadContext, scratch: &mut [u8]) -> Step {
        let Some(socket) = self.subscriber.socket() else {
            return Step::Done;
        };
        if self.tail.is_empty() || self.subscriber.is_tls() {
            let scratch = read_limit(cx, scratch);
            return match self.count_read(cx, socket.recv(scratch)) {
                Ok(read) => self.received(cx, &mut scratch[..read], true),
                Err(step) => step,
            };
        }
        // An incomplete frame waits: read its rest straight into the connection's buffer.
        let wanted = self
            .tail_frame_len
            .unwrap_or(0)
            .max(self.tail.len() + TAIL_READ);
        self.tail.reserve_exact(wanted - self.tail.len());
        let read = socket.recv_spare(&mut self.tail);
        if let Err(step) = self.count_read(cx, read) {
            return step;
        }
        self.decode_held(cx)
    }

    /// What a read gave: the bytes read (the client spoke: keepalive is told), or what the
    /// reader does when there were none (wait; or, at end of stream or on an error, the client
    /// is gone: the socket is shut down and reading is done).
    fn count_read(
        &self,
        cx: &ReadContext,
        read: std::io::Result<Option<usize>>,
    ) -> Result<usize, Step> {
        match read {
            Ok(None) => Err(Step::Wait),
            Ok(Some(read)) if read > 0 => {
                self.subscriber.touch(cx.clock.now());
                Ok(read)
            }
            _ => {
                self.subscriber.shutdown_socket();
                Err(Step::Done)
            }
        }
    }

    /// Takes bytes read from the socket into a buffer of the core's (`data`, which the decoder
    /// may unmask in place) and, with `decode`, handles the whole frames: only an incomplete
    /// frame's tail is copied into the connection. Without `decode` (a paused publisher) the
    /// bytes are kept for [`Connection::decode_held`] and the answer is [`Step::Pause`]. On a
    /// TLS connection `data` is ciphertext, decrypted into the connection's buffer first.
    pub fn received(&mut self, cx: &ReadContext, data: &mut [u8], decode: bool) -> Step {
        if self.subscriber.is_tls() {
            return self.received_tls(cx, data, decode);
        }
        if !decode || !self.tail.is_empty() {
            self.tail.extend_from_slice(data);
            return if decode {
                self.decode_held(cx)
            } else {
                Step::Pause
            };
        }
        let (consumed, step) = self.decode(cx, data);
        if step != Step::Done {
            let rest = &data[consumed..];
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

    /// [`Connection::received`] on a TLS connection.
    fn received_tls(&mut self, cx: &ReadContext, data: &mut [u8], decode: bool) -> Step {
        match self.subscriber.receive_tls(data, &mut self.tail) {
            Some(Ok(Received::Open)) if decode => self.decode_held(cx),
            Some(Ok(Received::Open)) => Step::Pause,
            // close_notify: what came before it is the client's last (handled even while
            // paused: the stream ends here); then the stream ends.
            Some(Ok(Received::Closed)) => {
                let step = self.decode_held(cx);
                if step != Step::Done {
                    self.subscriber.shutdown_socket();
                }
                Step::Done
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "bad TLS from a client; closing the connection");
                self.subscriber.shutdown_socket();
                Step::Done
            }
            None => Step::Done,
        }
    }

    /// Decodes and handles the whole frames the connection already holds (bytes hyper read
    /// past the request, what a pause left, or a completed tail).
    pub fn decode_held(&mut self, cx: &ReadContext) -> Step {
        if self.tail.is_empty() {
            return Step::Wait;
        }
        let mut tail = std::mem::take(&mut self.tail);
        let (consumed, step) = self.decode(cx, &mut tail);
        tail.drain(..consumed);
        if !tail.is_empty() {
            self.tail = tail;
        }
        // Else the buffer is dropped: an idle connection holds none.
        step
    }

    /// Decodes and handles the whole frames at the start of `data`: returns the bytes consumed
    /// and what the reader does next (Wait: `data` holds no whole frame any more, and
    /// `tail_frame_len` the incomplete one's length if known).
    fn decode(&mut self, cx: &ReadContext, data: &mut [u8]) -> (usize, Step) {
        let mut start = 0;
        loop {
            match self.decoder.decode(&mut data[start..]) {
                Ok(Decoded::Event { event, consumed }) => {
                    let next = handle(
                        cx,
                        &self.room,
                        &self.subscriber,
                        event,
                        &mut self.rate,
                        &mut self.share,
                    );
                    start += consumed;
                    if let Some(step) = next {
                        return (start, step);
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

/// The part of the scratch buffer one read may fill: at most one largest frame. What a pause
/// leaves unread is copied into the connection, so this bounds what a paused publisher holds
/// by --max-message (not by the scratch buffer's 64 KiB).
fn read_limit<'s>(cx: &ReadContext, scratch: &'s mut [u8]) -> &'s mut [u8] {
    let limit = scratch
        .len()
        .min(cx.max_message.max(TAIL_READ) + MAX_CLIENT_HEADER);
    &mut scratch[..limit]
}

/// Acts on one decoded event of `subscriber`'s connection to `room`: None to go on decoding,
/// or what the reader does next (the client's close arrived: done; a message was published
/// and the fan-out budget is exhausted: pause). (A function of the fields, not a method: the
/// decoder borrows the connection's buffer meanwhile.)
fn handle(
    cx: &ReadContext,
    room: &Rc<Room>,
    subscriber: &Rc<Subscriber>,
    event: ClientEvent<'_>,
    rate: &mut Option<Box<InboundRate>>,
    share: &mut FairShare,
) -> Option<Step> {
    let closing = subscriber.is_closing();
    let metrics = &cx.metrics;
    let now = cx.clock.now();
    // Every frame but the close counts toward --max-inbound-rate: a ping costs a pong, and an
    // unsolicited pong a read and a decode, like a message.
    if !closing && !matches!(event, ClientEvent::Close(_)) {
        if let Some(rate) = rate {
            if !rate.allow(now) {
                CoreMetrics::add(&metrics.rate_limit_closes, 1);
                subscriber.close(CloseCode::SlowConsumer, "inbound rate limit");
                return None;
            }
        }
    }
    match event {
        ClientEvent::Message {
            kind,
            payload,
            compressed_len,
        } => {
            // After our close frame only the client's close matters (RFC 6455 5.5.1).
            if closing {
                return None;
            }
            CoreMetrics::add(&metrics.messages_in, 1);
            CoreMetrics::add(&metrics.bytes_in, payload.len() as u64);
            if compressed_len > 0 {
                metrics.count_inflated(compressed_len, payload.len());
            }
            // The share counts what the message makes the server hold, not its payload alone:
            // an empty message still costs a frame and a handle per subscriber (on every core).
            let cost = cx.budget.frame_cost(encoded_len(payload.len()))
                + cx.hub.fanout_estimate(room.member_count());
            share.published(cost, now);
            cx.hub.publish(room, kind, payload);
            if cx.budget.must_pause(share.is_heavy()) {
                return Some(Step::Pause);
            }
        }
        ClientEvent::Ping(payload) => {
            // The pong is tracked by the fan-out budget and charged to the connection's
            // --max-backlog at what it really holds (`output/queue.rs`).
            let pong = Rc::new(cx.budget.track(encode_pong(payload)));
            if !closing && subscriber.offer(&pong) {
                CoreMetrics::add(&metrics.slow_consumer_closes, 1);
            }
        }
        ClientEvent::Pong => {}
        ClientEvent::Close(payload) => {
            subscriber.close_received(payload);
            return Some(Step::Done);
        }
    }
    None
}
