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

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

use common::{
    check_answer, check_health, connect, find, open_sockets, read_answer, read_head,
    set_linger_zero, ANSWER_DEADLINE, CHECK_EVERY,
};

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
        common::ignore_sigpipe();
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
        health(&fixture);
        fixture
    })
}

/// The shared check (`common::check_health`) over plain TCP.
fn health(fixture: &Fixture) {
    check_health(|| connect(fixture.addr), fixture.baseline_sockets);
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
            set_linger_zero(&stream);
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
        health(fixture);
    }
});
