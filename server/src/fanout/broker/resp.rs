//! The subscribe link's connection: RESP2 over a socket, read into one bounded buffer.
//!
//! The link reads Redis itself rather than through the `redis` crate's `PubSub`, which puts
//! every message that arrives while it waits for a reply (to SUBSCRIBE, UNSUBSCRIBE, PING) in
//! an unbounded queue, outside the fan-out budget, and reads a value of any size before anyone
//! can judge it. Here a value is parsed only once it is whole, in the order it came, so the
//! link hands a message that came before a reply to the cores like any other; a read that
//! times out in the middle of a value keeps what it read, and the next read goes on from there.
//! The buffer holds at most one value of at most `limit` bytes; a message whose payload would
//! not fit is reported as [`Value::TooLong`] and its bytes are dropped as they arrive.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{CONNECT_TIMEOUT, REPLY_TIMEOUT};

/// The buffer's first size, and the size it shrinks back to after a large value.
const FIRST_BUFFER: usize = 16 * 1024;
/// Most elements of an array: pub/sub replies have three or four.
const MAX_ELEMENTS: i64 = 16;

/// One value from Redis, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `+OK`, `+PONG`.
    Simple(&'a [u8]),
    /// `-ERR ...`: Redis refused a command.
    Error(&'a [u8]),
    /// `:3`.
    Integer(i64),
    /// `$5 hello` (`None`: the null string).
    Bulk(Option<&'a [u8]>),
    /// A string, last in a top-level array, that would take the value over the limit: not
    /// read (its bytes are dropped as they arrive).
    TooLong,
    /// `*3 ...` (a null array is empty).
    Array(Vec<Value<'a>>),
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// More bytes are needed.
    Incomplete,
    /// A whole value, the bytes it took, and how many bytes that follow them belong to its
    /// [`Value::TooLong`] string (to be dropped).
    Whole {
        /// The value.
        value: Value<'a>,
        /// Its bytes at the start of the buffer.
        used: usize,
        /// Bytes after those to drop.
        discard: usize,
    },
}

/// Parses the value at the start of `buffer`, which may take at most `limit` bytes.
pub fn parse(buffer: &[u8], limit: usize) -> io::Result<Parsed<'_>> {
    let mut parser = Parser {
        buffer,
        at: 0,
        limit,
        discard: 0,
    };
    Ok(match parser.value(false, 0)? {
        None => Parsed::Incomplete,
        Some(value) => Parsed::Whole {
            value,
            used: parser.at,
            discard: parser.discard,
        },
    })
}

/// The state of one [`parse`].
struct Parser<'a> {
    /// What was read.
    buffer: &'a [u8],
    /// Where the next element starts.
    at: usize,
    /// Most bytes of the value.
    limit: usize,
    /// Bytes of a [`Value::TooLong`] string (and its CRLF) after `at`.
    discard: usize,
}

impl<'a> Parser<'a> {
    /// One value at `at` (`None`: incomplete); `may_skip`: a string too long may be skipped.
    fn value(&mut self, may_skip: bool, depth: usize) -> io::Result<Option<Value<'a>>> {
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        let Some((&kind, rest)) = line.split_first() else {
            return Err(invalid("an empty line"));
        };
        match kind {
            b'+' => Ok(Some(Value::Simple(rest))),
            b'-' => Ok(Some(Value::Error(rest))),
            b':' => Ok(Some(Value::Integer(number(rest)?))),
            b'$' => self.bulk(number(rest)?, may_skip),
            b'*' => {
                let count = number(rest)?;
                if count < 0 {
                    return Ok(Some(Value::Array(Vec::new())));
                }
                if depth > 0 || count > MAX_ELEMENTS {
                    return Err(invalid("an array unlike any pub/sub reply"));
                }
                let mut items = Vec::with_capacity(count as usize);
                for index in 0..count {
                    let Some(item) = self.value(index + 1 == count, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                }
                Ok(Some(Value::Array(items)))
            }
            _ => Err(invalid("an unknown type")),
        }
    }

    /// The string of `len` bytes at `at`.
    fn bulk(&mut self, len: i64, may_skip: bool) -> io::Result<Option<Value<'a>>> {
        let Ok(len) = usize::try_from(len) else {
            return Ok(Some(Value::Bulk(None)));
        };
        let end = self.at.saturating_add(len);
        if end.saturating_add(2) > self.limit {
            if !may_skip {
                return Err(invalid("a string over the limit"));
            }
            self.discard = len.saturating_add(2);
            return Ok(Some(Value::TooLong));
        }
        if self.buffer.len() < end + 2 {
            return Ok(None);
        }
        if &self.buffer[end..end + 2] != b"\r\n" {
            return Err(invalid("a string longer than it said"));
        }
        let bytes = &self.buffer[self.at..end];
        self.at = end + 2;
        Ok(Some(Value::Bulk(Some(bytes))))
    }

    /// The line at `at`, without its CRLF (`None`: incomplete).
    fn line(&mut self) -> io::Result<Option<&'a [u8]>> {
        let rest = &self.buffer[self.at..];
        match rest.windows(2).position(|pair| pair == b"\r\n") {
            Some(len) if self.at + len + 2 <= self.limit => {
                self.at += len + 2;
                Ok(Some(&rest[..len]))
            }
            None if self.buffer.len() < self.limit => Ok(None),
            _ => Err(invalid("a line over the limit")),
        }
    }
}

/// A decimal number of a RESP header.
fn number(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| invalid("not a number"))
}

/// A reply that breaks the protocol: the link fails (and the connection is not used again).
fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Redis sent {what}"))
}

/// The socket.
enum Stream {
    /// `redis://HOST:PORT`.
    Tcp(TcpStream),
    /// `unix:///PATH`.
    Unix(UnixStream),
}

/// One connection to Redis: the socket and the bytes read from it not yet taken.
pub struct Wire {
    /// The socket.
    stream: Stream,
    /// Bytes read; `buffer[..filled]` hold data.
    buffer: Vec<u8>,
    /// Bytes of `buffer` that hold data.
    filled: usize,
    /// Bytes of the value [`Wire::next`] returned last, removed at the next call.
    used: usize,
    /// Bytes of a [`Value::TooLong`] string still to drop.
    discard: usize,
    /// Most bytes of one value.
    limit: usize,
    /// The socket's read timeout now (set only when it changes).
    read_timeout: Option<Duration>,
    /// When the last bytes came.
    last_read: Instant,
}

impl Wire {
    /// Connects to `info`'s address and authenticates if it has a password, each within
    /// [`CONNECT_TIMEOUT`] and [`REPLY_TIMEOUT`]; values may take at most `limit` bytes.
    pub fn connect(info: &redis::ConnectionInfo, limit: usize) -> io::Result<Wire> {
        let stream = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => Stream::Tcp(connect_tcp(host, *port)?),
            redis::ConnectionAddr::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "only redis:// and unix:// brokers are supported",
                ))
            }
        };
        let mut wire = Wire::new(stream, limit)?;
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => wire.send(&[b"AUTH", user.as_bytes(), password.as_bytes()])?,
                None => wire.send(&[b"AUTH", password.as_bytes()])?,
            }
            match wire.next(REPLY_TIMEOUT)? {
                Some(Value::Simple(_)) => {}
                Some(Value::Error(error)) => return Err(refused("AUTH", error)),
                Some(_) => return Err(invalid("an unexpected reply to AUTH")),
                None => return Err(late("AUTH")),
            }
        }
        Ok(wire)
    }

    /// A connection on `stream`; values may take at most `limit` bytes.
    fn new(stream: Stream, limit: usize) -> io::Result<Wire> {
        match &stream {
            Stream::Tcp(socket) => socket.set_write_timeout(Some(REPLY_TIMEOUT))?,
            Stream::Unix(socket) => socket.set_write_timeout(Some(REPLY_TIMEOUT))?,
        }
        Ok(Wire {
            stream,
            buffer: vec![0; FIRST_BUFFER.min(limit)],
            filled: 0,
            used: 0,
            discard: 0,
            limit,
            read_timeout: None,
            last_read: Instant::now(),
        })
    }

    /// How long since bytes last came.
    pub fn quiet_for(&self) -> Duration {
        self.last_read.elapsed()
    }

    /// Sends one command.
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut command = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            command.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            command.extend_from_slice(arg);
            command.extend_from_slice(b"\r\n");
        }
        match &mut self.stream {
            Stream::Tcp(socket) => socket.write_all(&command),
            Stream::Unix(socket) => socket.write_all(&command),
        }
    }

    /// The next value, or `None` if no read brought one whole within `wait` (what came is kept
    /// for the next call).
    pub fn next(&mut self, wait: Duration) -> io::Result<Option<Value<'_>>> {
        self.consume();
        loop {
            if self.discard == 0 {
                match parse(&self.buffer[..self.filled], self.limit)? {
                    Parsed::Incomplete => {}
                    Parsed::Whole { used, discard, .. } => {
                        (self.used, self.discard) = (used, discard);
                        break;
                    }
                }
            }
            if !self.fill(wait)? {
                return Ok(None);
            }
            self.consume();
        }
        // Parsed again to hand out the value: a value borrowed in the loop would keep the
        // buffer borrowed across the reads.
        match parse(&self.buffer[..self.filled], self.limit)? {
            Parsed::Whole { value, .. } => Ok(Some(value)),
            Parsed::Incomplete => Err(invalid("a value that came apart")),
        }
    }

    /// Removes the last value's bytes, and what arrived of a [`Value::TooLong`] string.
    fn consume(&mut self) {
        let mut start = std::mem::take(&mut self.used);
        let dropped = self.discard.min(self.filled - start);
        self.discard -= dropped;
        start += dropped;
        self.buffer.copy_within(start..self.filled, 0);
        self.filled -= start;
        if self.buffer.len() > FIRST_BUFFER && self.filled <= FIRST_BUFFER {
            self.buffer.truncate(FIRST_BUFFER);
            self.buffer.shrink_to_fit();
        }
    }

    /// Reads once, waiting at most `wait` (false: nothing came). A full buffer grows up to
    /// `limit`, which holds any value [`parse`] accepts.
    fn fill(&mut self, wait: Duration) -> io::Result<bool> {
        if self.filled == self.buffer.len() {
            let grown = (self.buffer.len() * 2).max(FIRST_BUFFER).min(self.limit);
            if grown <= self.buffer.len() {
                return Err(invalid("a value over the limit"));
            }
            self.buffer.resize(grown, 0);
        }
        if self.read_timeout != Some(wait) {
            match &self.stream {
                Stream::Tcp(socket) => socket.set_read_timeout(Some(wait))?,
                Stream::Unix(socket) => socket.set_read_timeout(Some(wait))?,
            }
            self.read_timeout = Some(wait);
        }
        let into = &mut self.buffer[self.filled..];
        let read = match &mut self.stream {
            Stream::Tcp(socket) => socket.read(into),
            Stream::Unix(socket) => socket.read(into),
        };
        match read {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            )),
            Ok(read) => {
                self.filled += read;
                self.last_read = Instant::now();
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

/// Connects to the first address of `host` that answers within [`CONNECT_TIMEOUT`].
fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the broker's host has no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(socket) => {
                socket.set_nodelay(true)?;
                return Ok(socket);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Redis answered `command` with `error`.
pub fn refused(command: &str, error: &[u8]) -> io::Error {
    io::Error::other(format!(
        "Redis refused {command}: {}",
        String::from_utf8_lossy(error)
    ))
}

/// Redis did not answer `command` within [`REPLY_TIMEOUT`].
pub fn late(command: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "Redis did not answer {command} within {} s",
            REPLY_TIMEOUT.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `message` on `channel` carrying `payload`, as Redis sends it.
    fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
        let mut bytes = format!(
            "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n",
            channel.len(),
            payload.len()
        )
        .into_bytes();
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(b"\r\n");
        bytes
    }

    #[test]
    fn a_value_is_parsed_only_once_whole_and_every_prefix_is_incomplete() {
        let bytes = [message("ringcast:a", b"hello"), b"+PONG\r\n".to_vec()].concat();
        let first = bytes.len() - 7;
        for end in 0..first {
            assert_eq!(parse(&bytes[..end], 1024).unwrap(), Parsed::Incomplete);
        }
        let expected = Value::Array(vec![
            Value::Bulk(Some(b"message")),
            Value::Bulk(Some(b"ringcast:a")),
            Value::Bulk(Some(b"hello")),
        ]);
        assert_eq!(
            parse(&bytes, 1024).unwrap(),
            Parsed::Whole {
                value: expected,
                used: first,
                discard: 0
            }
        );
        assert_eq!(
            parse(&bytes[first..], 1024).unwrap(),
            Parsed::Whole {
                value: Value::Simple(b"PONG"),
                used: 7,
                discard: 0
            }
        );
    }

    #[test]
    fn a_payload_over_the_limit_is_skipped_without_being_buffered() {
        let bytes = message("c", &[7; 100]);
        let Parsed::Whole {
            value,
            used,
            discard,
        } = parse(&bytes[..30], 64).unwrap()
        else {
            panic!("the header alone is enough");
        };
        assert_eq!(
            value,
            Value::Array(vec![
                Value::Bulk(Some(b"message")),
                Value::Bulk(Some(b"c")),
                Value::TooLong,
            ])
        );
        assert_eq!(used + discard, bytes.len());
    }

    /// A wire on one end of a socket pair, and the other end (standing for Redis).
    fn wire(limit: usize) -> (Wire, UnixStream) {
        let (ours, redis) = UnixStream::pair().expect("socket pair");
        (Wire::new(Stream::Unix(ours), limit).expect("wire"), redis)
    }

    #[test]
    fn a_value_that_comes_in_pieces_across_timeouts_arrives_whole() {
        let (mut wire, mut redis) = wire(1024);
        let bytes = [message("ringcast:a", b"hello"), b"+PONG\r\n".to_vec()].concat();
        let wait = Duration::from_millis(5);
        for piece in bytes[..30].chunks(7) {
            redis.write_all(piece).unwrap();
            assert_eq!(wire.next(wait).unwrap(), None, "not whole yet");
        }
        redis.write_all(&bytes[30..]).unwrap();
        let Some(Value::Array(items)) = wire.next(wait).unwrap() else {
            panic!("the message");
        };
        assert_eq!(items[2], Value::Bulk(Some(b"hello")));
        assert_eq!(wire.next(wait).unwrap(), Some(Value::Simple(b"PONG")));
        assert_eq!(wire.next(wait).unwrap(), None);
    }

    #[test]
    fn a_payload_over_the_limit_is_dropped_as_it_arrives() {
        let limit = 64;
        let (mut wire, mut redis) = wire(limit);
        let big = message("c", &[7; 100_000]);
        let writer = std::thread::spawn(move || {
            redis.write_all(&big).unwrap();
            redis.write_all(b"+PONG\r\n").unwrap();
            redis
        });
        let wait = Duration::from_secs(5);
        let Some(Value::Array(items)) = wire.next(wait).unwrap() else {
            panic!("the message");
        };
        assert_eq!(items[2], Value::TooLong);
        assert_eq!(wire.next(wait).unwrap(), Some(Value::Simple(b"PONG")));
        assert!(
            wire.buffer.len() <= limit,
            "held {} bytes",
            wire.buffer.len()
        );
        drop(writer.join());
    }

    #[test]
    fn what_is_not_a_pub_sub_reply_is_refused() {
        let cases: [&[u8]; 6] = [
            b"?x\r\n",
            b"$abc\r\n",
            b"$3\r\nabcd\r\n",
            b"*99\r\n",
            b"*1\r\n*1\r\n:1\r\n",
            // A string over the limit that is not the last element.
            b"*2\r\n$100\r\n",
        ];
        for bytes in cases {
            assert!(parse(bytes, 64).is_err(), "{bytes:?}");
        }
        assert!(parse(&[b'+'; 64], 64).is_err(), "a line without its end");
    }
}
