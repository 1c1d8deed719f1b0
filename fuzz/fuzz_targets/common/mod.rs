//! What the fuzz targets that drive a real in-process ringcast share (`http_upgrade`,
//! `tls_upgrade`): reading the server's answer, checking it, and the periodic check that the
//! server still answers and has released every connection and socket. Generic over the stream,
//! so the same code runs over plain TCP and over a rustls client connection.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Per-read timeout while waiting for the server.
pub const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest wait for the server to close after our half-close.
pub const ANSWER_DEADLINE: Duration = Duration::from_millis(500);
/// Health, connection and fd checks every this many inputs.
pub const CHECK_EVERY: u64 = 64;

/// libFuzzer's main is not Rust's: SIGPIPE is not ignored, and a write to a socket the peer
/// reset (by the server's core thread or by us) would kill the process. Call once, before the
/// first connection.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Open sockets of this process (server and fuzzer; other descriptors come and go with
/// libFuzzer, e.g. the pipes to the sanitizer's symbolizer).
pub fn open_sockets() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// A loopback TCP connection to the fuzzed server, reads timing out after [`READ_TIMEOUT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the fuzzed server");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Makes the next close of `stream` a reset (RST) instead of a FIN.
pub fn set_linger_zero(stream: &TcpStream) {
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

/// Reads until EOF, a reset (or a TLS error), or `deadline`; true if the server closed.
pub fn read_answer(stream: &mut impl Read, answer: &mut Vec<u8>, deadline: Instant) -> bool {
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
pub fn read_head(stream: &mut impl Read, answer: &mut Vec<u8>, deadline: Instant) {
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

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` on a fresh connection from `connect` and reads the answer until the server
/// closes (5 s at most); None if it did not close in time.
fn request<S: Read + Write>(connect: &impl Fn() -> S, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = connect();
    stream.write_all(request).expect("write a check request");
    stream.flush().expect("flush a check request");
    let mut answer = Vec::new();
    let closed = read_answer(
        &mut stream,
        &mut answer,
        Instant::now() + Duration::from_secs(5),
    );
    closed.then_some(answer)
}

/// `GET /healthz` answers 200, no WebSocket connection is left, and no socket leaked
/// (`baseline_sockets`: the process's sockets right after the server started). `connect` opens
/// a connection the server speaks HTTP on (plain TCP, or a finished TLS handshake).
pub fn check_health<S: Read + Write>(connect: impl Fn() -> S, baseline_sockets: usize) {
    let answer = request(
        &connect,
        b"GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
    );
    assert!(
        answer.as_ref().is_some_and(|answer| {
            answer.starts_with(b"HTTP/1.1 200 OK\r\n") && answer.ends_with(b"\r\n\r\nok\n")
        }),
        "GET /healthz failed: {:?}",
        answer.as_deref().map(String::from_utf8_lossy)
    );
    // Connections end asynchronously on the server's core: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let connections = websocket_connections(&connect);
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
        if sockets <= baseline_sockets {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {sockets} sockets open (baseline {baseline_sockets})"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sum of `ringcast_connections` over the cores, from /metrics.
fn websocket_connections<S: Read + Write>(connect: &impl Fn() -> S) -> u64 {
    let answer = request(
        connect,
        b"GET /metrics HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
    )
    .expect("GET /metrics did not finish");
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
pub fn check_answer(answer: &[u8]) {
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
