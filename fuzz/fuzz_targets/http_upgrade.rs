//! Fuzzes the HTTP phase and the upgrade into the WebSocket phase of a real in-process ringcast
//! (hyper http1 over tokio-uring: `server/src/http/` and `backend/uring.rs`, then the core's
//! reader, `input/`).
//!
//! One server (1 core, 127.0.0.1, port chosen by the OS) is started per fuzz process. Each input
//! is one loopback connection:
//! - byte 0, bit 0: write the bytes up to the end of the first request head (`\r\n\r\n`),
//!   wait for the response head, then write the rest (a real client's order: the frames come
//!   after the 101 and the core's reader reads them from the socket, since the HTTP adapter
//!   starts no read once the upgrade is accepted); clear: write everything at once (the frames
//!   arrive with the request, as bytes hyper read past it),
//! - byte 0, bit 1: close right after writing (RST if linger bit 2 is set too) instead of
//!   half-closing and reading the answer until the server closes,
//! - the rest: the bytes the client sends (an HTTP request head, maybe masked frames after).
//!
//! Checked: no panic on any server thread (libfuzzer-sys's panic hook aborts the process), the
//! answer is HTTP/1.x, frames after a 101 are well-formed server frames, and every 64 inputs the
//! server still answers `GET /healthz` and has released every connection and socket.

#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

/// Per-read timeout while waiting for the server.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest wait for the server to close after our half-close.
const ANSWER_DEADLINE: Duration = Duration::from_millis(500);
/// Health, connection and fd checks every this many inputs.
const CHECK_EVERY: u64 = 64;

/// The server (kept, never dropped, so it runs until the process ends and stays reachable for
/// LeakSanitizer), its address and the socket count right after it started.
struct Fixture {
    _server: ringcast::Server,
    addr: SocketAddr,
    baseline_sockets: usize,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static INPUTS: AtomicU64 = AtomicU64::new(0);

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        // libFuzzer's main is not Rust's: SIGPIPE is not ignored, and a write to a socket the
        // peer reset (by the server's core thread or by us) would kill the process.
        // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        // A panic on a server core thread ends the run as a crash: libfuzzer-sys's panic hook,
        // installed before the first input, is process-wide and aborts (checked by hand with a
        // panic injected into a core thread).
        let config = ringcast::Config::from_args([
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--max-message",
            "4KiB",
            "--max-backlog",
            "64KiB",
            "--max-connections",
            "256",
            "--header-timeout",
            "2s",
        ])
        .expect("fuzz server config");
        let server = ringcast::Server::start(config).expect("start ringcast (needs io_uring)");
        // Before any connection: the listener and the server's own sockets.
        let fixture = Fixture {
            addr: server.local_addr(),
            _server: server,
            baseline_sockets: open_sockets(),
        };
        check_health(&fixture);
        fixture
    })
}

/// Open sockets of this process (server and fuzzer; other descriptors come and go with
/// libFuzzer, e.g. the pipes to the sanitizer's symbolizer).
fn open_sockets() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the fuzzed server");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Reads until EOF, a reset, or `deadline`; true if the server closed.
fn read_answer(stream: &mut TcpStream, answer: &mut Vec<u8>, deadline: Instant) -> bool {
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

/// Reads until the end of the response head (or the server closes, or the deadline).
fn read_head(stream: &mut TcpStream, answer: &mut Vec<u8>, deadline: Instant) {
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline && find(answer, b"\r\n\r\n").is_none() {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `GET /healthz` answers 200, no WebSocket connection is left, and no socket leaked.
fn check_health(fixture: &Fixture) {
    let mut stream = connect(fixture.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
        .expect("write /healthz");
    let mut answer = Vec::new();
    let closed = read_answer(
        &mut stream,
        &mut answer,
        Instant::now() + Duration::from_secs(5),
    );
    assert!(
        closed && answer.starts_with(b"HTTP/1.1 200 OK\r\n") && answer.ends_with(b"\r\n\r\nok\n"),
        "GET /healthz failed: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(stream);
    // Connections end asynchronously on the server's core: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let connections = websocket_connections(fixture.addr);
        if connections == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {connections} WebSocket connections still counted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    loop {
        let sockets = open_sockets();
        if sockets <= fixture.baseline_sockets {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {sockets} sockets open (baseline {})",
            fixture.baseline_sockets
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sum of `ringcast_connections` over the cores, from /metrics.
fn websocket_connections(addr: SocketAddr) -> u64 {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
        .expect("write /metrics");
    let mut answer = Vec::new();
    let closed = read_answer(
        &mut stream,
        &mut answer,
        Instant::now() + Duration::from_secs(5),
    );
    assert!(closed, "GET /metrics did not finish");
    let text = String::from_utf8_lossy(&answer);
    let values: Vec<u64> = text
        .lines()
        .filter(|line| line.starts_with("ringcast_connections{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        !values.is_empty(),
        "no ringcast_connections in /metrics: {text}"
    );
    values.iter().sum()
}

/// Checks the server's bytes: an HTTP/1.x response and, after a 101, well-formed server frames
/// (unmasked, known opcode, no reserved bits, UTF-8 text, close payload empty or a code plus
/// UTF-8). The last frame may be cut off: the server stops writing when the client goes away.
fn check_answer(answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    assert!(
        answer.starts_with(b"HTTP/1."),
        "answer is not HTTP: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(64)])
    );
    if !answer.starts_with(b"HTTP/1.1 101 ") {
        return;
    }
    let Some(head_end) = find(answer, b"\r\n\r\n") else {
        return;
    };
    let mut frames = &answer[head_end + 4..];
    while let [first, second, rest @ ..] = frames {
        assert_eq!(first & 0x70, 0, "server frame with reserved bits");
        assert!(*first & 0x80 != 0, "server frames are never fragmented");
        let opcode = first & 0x0F;
        assert!(
            matches!(opcode, 1 | 2 | 8 | 9 | 10),
            "server frame opcode {opcode}"
        );
        assert_eq!(second & 0x80, 0, "masked server frame");
        let (len, rest) = match second & 0x7F {
            126 if rest.len() >= 2 => (
                usize::from(u16::from_be_bytes([rest[0], rest[1]])),
                &rest[2..],
            ),
            127 if rest.len() >= 8 => {
                let len = u64::from_be_bytes(rest[..8].try_into().unwrap());
                (usize::try_from(len).unwrap_or(usize::MAX), &rest[8..])
            }
            126 | 127 => return,
            short => (usize::from(short), rest),
        };
        if rest.len() < len {
            return;
        }
        let payload = &rest[..len];
        match opcode {
            1 => assert!(
                std::str::from_utf8(payload).is_ok(),
                "server text not UTF-8"
            ),
            8 => {
                assert_ne!(len, 1, "one-byte server close payload");
                if len >= 2 {
                    assert!(
                        std::str::from_utf8(&payload[2..]).is_ok(),
                        "server close reason not UTF-8"
                    );
                }
            }
            _ => {}
        }
        frames = &rest[len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let wait_for_head = mode & 1 != 0;
    let abrupt = mode & 2 != 0;
    let reset = mode & 4 != 0;

    let mut stream = connect(fixture.addr);
    let mut answer = Vec::new();
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let split = match find(bytes, b"\r\n\r\n") {
        Some(end) if wait_for_head => end + 4,
        _ => bytes.len(),
    };
    // Write errors (the server may close early: a bad request, a 1002) are part of the game.
    let mut written = stream.write_all(&bytes[..split]).is_ok();
    if written && split < bytes.len() {
        read_head(&mut stream, &mut answer, deadline);
        written = stream.write_all(&bytes[split..]).is_ok();
    }
    if abrupt {
        if reset {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a correctly sized option value.
            unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    std::ptr::addr_of!(linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    } else {
        if written {
            let _ = stream.shutdown(Shutdown::Write);
        }
        read_answer(&mut stream, &mut answer, deadline);
    }
    // Closed before the health check, which counts sockets.
    drop(stream);
    check_answer(&answer);

    if INPUTS.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY == CHECK_EVERY - 1 {
        check_health(fixture);
    }
});
