//! A real `redis-server` for the broker tests: on a free loopback port, no persistence, killed
//! on drop; it can be stopped and started again on the same port.
//!
//! The binary is `$RINGCAST_REDIS_SERVER` or `redis-server` on PATH. `scripts/test.sh` (the
//! README's test command) installs it where it is missing; without it these tests fail and say
//! so, they are not skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// A running (or stopped) redis-server.
pub struct Redis {
    /// The server while it runs.
    child: Option<Child>,
    /// Its port, kept across restarts.
    pub port: u16,
}

impl Redis {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("pick a free port")
            .port();
        let mut redis = Redis { child: None, port };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to its clients, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let binary =
            std::env::var("RINGCAST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start `{binary}` ({err}): the broker tests need a Redis server. \
                     Install it (`apt-get install -y redis-server`, or run scripts/test.sh, \
                     which does) or point RINGCAST_REDIS_SERVER at one"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a raw command (RESP) and returns the first reply bytes.
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to redis");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).expect("send to redis");
        let mut reply = vec![0; 512];
        let read = stream.read(&mut reply).expect("read from redis");
        reply.truncate(read);
        reply
    }

    /// True when it answers PING.
    fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy on a free loopback port in front of a Redis, standing for a slow or distant
/// one: every chunk a client sends waits `delay` before it goes on, and every chunk Redis
/// sends goes on in two halves `delay` apart, so a reply arrives late and in pieces. Its
/// threads end with the test process.
pub struct SlowProxy {
    /// Where clients connect.
    pub port: u16,
}

impl SlowProxy {
    /// Starts one in front of `redis`.
    pub fn start(redis: &Redis, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let upstream = SocketAddr::from(([127, 0, 0, 1], redis.port));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(client_reader), Ok(server_reader)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || relay(client_reader, server, delay, false));
                std::thread::spawn(move || relay(server_reader, client, delay, true));
            }
        });
        SlowProxy { port }
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Copies `from` to `to`, each chunk after `delay` (`split`: its first half at once, the rest
/// after `delay`), until either side closes; then closes both.
fn relay(mut from: TcpStream, mut to: TcpStream, delay: Duration, split: bool) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        let (first, rest) = if split {
            chunk.split_at(read / 2)
        } else {
            (&[][..], chunk)
        };
        let sent = to.write_all(first).is_ok() && {
            std::thread::sleep(delay);
            to.write_all(rest).is_ok()
        };
        if !sent {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}
