//! The publish link: numbers the messages the cores queued in Redis and publishes them.
//!
//! Each message goes through [`SEQUENCE`], a Lua script Redis runs atomically: it gives the
//! message its room's next offset (making the room's epoch if it has none) and publishes it in
//! an envelope that carries both (`envelope.rs`). So Redis orders every room, and every node,
//! this one too, delivers what comes back on its subscribe link: the same order, offsets and
//! epochs on every node. The script is loaded once per connection and called by its hash
//! (EVALSHA); a Redis that forgot it (SCRIPT FLUSH) answers NOSCRIPT, and the link loads it
//! again. Called without a frame, the script tells where a room stands (its epoch, made if it
//! has none, and last offset): the answer to a home core that has clients to tell and has not
//! heard the room from Redis yet ([`Outgoing::Anchor`]), mailed to it.
//!
//! Whatever has queued while the previous round trip was under way goes out as one pipeline
//! (at most [`MAX_BATCH`] messages), so the link keeps up with the cores by batching rather
//! than by a round trip per message. One connection and one queue keep every publisher's
//! order. When the connection fails, the batch in flight and whatever waits in the queue are
//! dropped (and counted): delivery across nodes is at most once. The link pings Redis when
//! idle, and also before its next batch when the subscribe link lost its connection (Redis may
//! have restarted, and the next batch would be lost on a dead connection); the ping failing is
//! this link's own failure, so a subscribe link that fails alone leaves this connection alone.

use std::collections::hash_map::RandomState;
use std::fmt::Write;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reconnect::Reconnect;
use super::{Broker, Outgoing, CONNECT_TIMEOUT, IDLE_PING, POLL, REPLY_TIMEOUT};
use crate::fanout::mail::Mailboxes;
use crate::fanout::stream::Position;
use crate::metrics::{BrokerLink, DropReason};

/// Most messages in one pipeline.
const MAX_BATCH: usize = 256;

/// Numbers one message of a room and publishes it (`envelope.rs` for what it writes), or,
/// without a frame, tells where the room stands ({epoch, last offset}: an anchor).
/// KEYS[1]: the room's sequence, a hash (`e`: the epoch, `o`: the last offset), which expires
/// `--history-ttl` after the room's last message (or anchor), so a room silent for longer
/// starts a new epoch as on one node; KEYS[2]: the room's channel. ARGV: an epoch for a room
/// that has none (random per call), the expiry in milliseconds, the frame (none: an anchor).
const SEQUENCE: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if not ARGV[3] then
  return {epoch, tonumber(redis.call('HGET', KEYS[1], 'o') or '0')}
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('PUBLISH', KEYS[2], 'rc2' .. epoch .. ':' .. tostring(offset) .. '\n' .. ARGV[3])
return offset
";

/// Runs the link until the server stops; anchors are mailed to the rooms' home cores in
/// `cores`.
pub fn run(broker: &Broker, client: &redis::Client, queue: &Receiver<Outgoing>, cores: &Mailboxes) {
    let mut reconnect = Reconnect::new(BrokerLink::Publish);
    let mut sequencer = Sequencer::new(broker.history_ttl);
    let mut link: Option<redis::Connection> = None;
    let mut last_heard = Instant::now();
    while !broker.is_stopping() {
        let connection = match &mut link {
            Some(connection) => connection,
            None => match connect(client) {
                Ok((connection, hash)) => {
                    sequencer.hash = hash;
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
                Ok(first) => sequencer.send_batch(broker, connection, first, queue, cores),
                Err(RecvTimeoutError::Timeout) if last_heard.elapsed() >= IDLE_PING => {
                    redis::cmd("PING").exec(connection)
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        match sent {
            Ok(()) => last_heard = Instant::now(),
            // Redis forgot the script (the batch was dropped, counted): load it again.
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                tracing::info!("Redis forgot the sequencing script: loading it again");
                match load(connection) {
                    Ok(hash) => sequencer.hash = hash,
                    Err(error) => {
                        link = None;
                        reconnect.failed(broker, &error);
                        drop_queued(broker, queue);
                    }
                }
            }
            Err(error) => {
                link = None;
                reconnect.failed(broker, &error);
                drop_queued(broker, queue);
            }
        }
    }
}

/// A connection whose round trips are bounded by [`REPLY_TIMEOUT`] (a timed-out reply fails
/// the link, so the connection is never used again with a reply half read), with the script
/// loaded (its hash).
fn connect(client: &redis::Client) -> redis::RedisResult<(redis::Connection, String)> {
    let mut connection = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    connection.set_read_timeout(Some(REPLY_TIMEOUT))?;
    connection.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let hash = load(&mut connection)?;
    Ok((connection, hash))
}

/// Loads [`SEQUENCE`] into Redis; its hash, which EVALSHA names.
fn load(connection: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SEQUENCE)
        .query(connection)
}

/// What the link reuses from one batch to the next.
struct Sequencer {
    /// The SHA1 of [`SEQUENCE`] (what EVALSHA names), as Redis gave it on loading.
    hash: String,
    /// `--history-ttl` in milliseconds: how long Redis keeps a silent room's epoch.
    ttl_ms: u64,
    /// Epochs for rooms that have none: random per process, then a counter.
    epoch_seed: u64,
    /// Epochs offered so far.
    offered: u64,
    /// The channel (and key) of the message being added.
    channel: String,
    /// Its epoch candidate.
    epoch: String,
}

impl Sequencer {
    /// Expiring silent rooms' epochs after `ttl`.
    fn new(ttl: Duration) -> Self {
        Sequencer {
            hash: String::new(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
            epoch_seed: RandomState::new().hash_one(std::process::id()),
            offered: 0,
            channel: String::new(),
            epoch: String::new(),
        }
    }

    /// Sends `first` and whatever else has queued (up to [`MAX_BATCH`]) as one pipeline of
    /// script calls, and mails the anchors' answers to the rooms' home cores; a batch that
    /// fails is dropped (its messages counted).
    fn send_batch(
        &mut self,
        broker: &Broker,
        connection: &mut redis::Connection,
        first: Outgoing,
        queue: &Receiver<Outgoing>,
        cores: &Mailboxes,
    ) -> redis::RedisResult<()> {
        let mut pipeline = redis::pipe();
        let mut batch = 0u64;
        let mut anchors = Vec::new();
        for outgoing in std::iter::once(first).chain(queue.try_iter().take(MAX_BATCH - 1)) {
            let (room, frame) = match &outgoing {
                Outgoing::Message { room, frame } => (room, Some(frame)),
                Outgoing::Anchor(room) => (room, None),
            };
            broker.write_channel(&mut self.channel, room);
            self.offered += 1;
            self.epoch.clear();
            let epoch = self.epoch_seed ^ self.offered.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            write!(self.epoch, "{epoch:016x}").expect("a String takes any write");
            let call = pipeline
                .cmd("EVALSHA")
                .arg(self.hash.as_str())
                .arg(2)
                .arg(self.channel.as_str())
                .arg(self.channel.as_str())
                .arg(self.epoch.as_str())
                .arg(self.ttl_ms);
            match frame {
                Some(frame) => {
                    call.arg(&frame[..]).ignore();
                    batch += 1;
                }
                None => anchors.push(Arc::clone(room)),
            }
        }
        match pipeline.query::<Vec<(String, u64)>>(connection) {
            Ok(positions) => {
                broker.stats.published.fetch_add(batch, Ordering::Relaxed);
                for (room, (epoch, offset)) in anchors.iter().zip(positions) {
                    let position = Position {
                        epoch: Arc::from(epoch),
                        offset,
                    };
                    cores.anchor(room, position);
                }
                Ok(())
            }
            Err(error) => {
                broker.stats.drop_messages(DropReason::LinkDown, batch);
                Err(error)
            }
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
