//! The publish link: sends the messages the cores queued for the other nodes to Redis.
//!
//! Whatever has queued while the previous round trip was under way goes out as one pipeline
//! of PUBLISH commands (at most [`MAX_BATCH`]), so the link keeps up with the cores by batching
//! rather than by a round trip per message. One connection and one queue keep every
//! publisher's order. When the connection fails, the batch in flight and whatever waits in the
//! queue are dropped (and counted): delivery across nodes is at most once. The link pings
//! Redis when idle, and also before its next batch when the subscribe link lost its connection
//! (Redis may have restarted, and the next batch would be lost on a dead connection); the ping
//! failing is this link's own failure, so a subscribe link that fails alone leaves this
//! connection alone.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use super::reconnect::Reconnect;
use super::{envelope, Broker, Outgoing, CONNECT_TIMEOUT, IDLE_PING, POLL, REPLY_TIMEOUT};
use crate::metrics::{BrokerLink, DropReason};

/// Most messages in one pipeline.
const MAX_BATCH: usize = 256;

/// Runs the link until the server stops.
pub fn run(broker: &Broker, client: &redis::Client, queue: &Receiver<Outgoing>) {
    let mut reconnect = Reconnect::new(BrokerLink::Publish);
    let mut envelope = Vec::new();
    let mut link: Option<redis::Connection> = None;
    let mut last_heard = Instant::now();
    while !broker.is_stopping() {
        let connection = match &mut link {
            Some(connection) => connection,
            None => match connect(client) {
                Ok(connection) => {
                    // A check asked for before this connection was made is moot.
                    broker.take_publish_check();
                    reconnect.connected(broker);
                    last_heard = Instant::now();
                    link.insert(connection)
                }
                Err(error) => {
                    reconnect.failed(broker, &error);
                    drop_queued(broker, queue);
                    continue;
                }
            },
        };
        let sent = if broker.take_publish_check() {
            redis::cmd("PING").exec(connection)
        } else {
            match queue.recv_timeout(POLL) {
                Ok(first) => send_batch(broker, connection, first, queue, &mut envelope),
                Err(RecvTimeoutError::Timeout) if last_heard.elapsed() >= IDLE_PING => {
                    redis::cmd("PING").exec(connection)
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        match sent {
            Ok(()) => last_heard = Instant::now(),
            Err(error) => {
                link = None;
                reconnect.failed(broker, &error);
                drop_queued(broker, queue);
            }
        }
    }
}

/// A connection whose round trips are bounded by [`REPLY_TIMEOUT`] (a timed-out reply fails
/// the link, so the connection is never used again with a reply half read).
fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let connection = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    connection.set_read_timeout(Some(REPLY_TIMEOUT))?;
    connection.set_write_timeout(Some(REPLY_TIMEOUT))?;
    Ok(connection)
}

/// Sends `first` and whatever else has queued (up to [`MAX_BATCH`]) as one pipeline; a batch
/// that fails is dropped (counted).
fn send_batch(
    broker: &Broker,
    connection: &mut redis::Connection,
    first: Outgoing,
    queue: &Receiver<Outgoing>,
    envelope: &mut Vec<u8>,
) -> redis::RedisResult<()> {
    let mut pipeline = redis::pipe();
    let mut batch = 0u64;
    let mut channel = String::new();
    for outgoing in std::iter::once(first).chain(queue.try_iter().take(MAX_BATCH - 1)) {
        envelope::seal(envelope, broker.node_id(), &outgoing.frame);
        broker.write_channel(&mut channel, &outgoing.room);
        pipeline
            .cmd("PUBLISH")
            .arg(channel.as_str())
            .arg(envelope.as_slice())
            .ignore();
        batch += 1;
    }
    match pipeline.exec(connection) {
        Ok(()) => {
            broker.stats.published.fetch_add(batch, Ordering::Relaxed);
            Ok(())
        }
        Err(error) => {
            broker.stats.drop_messages(DropReason::LinkDown, batch);
            Err(error)
        }
    }
}

/// Drops (and counts) what waits in the queue while the link is down.
fn drop_queued(broker: &Broker, queue: &Receiver<Outgoing>) {
    let lost = queue.try_iter().count();
    broker
        .stats
        .drop_messages(DropReason::LinkDown, lost as u64);
}
