//! Fuzzes the TLS path of a real in-process ringcast: the TLS session state machine
//! (`server/src/tls/`, rustls' unbuffered API), the HTTP phase behind it (hyper over
//! `tls/http_io.rs`) and the upgrade into the WebSocket phase (`input/connection.rs`
//! `read_tls`, `output/sealed.rs`).
//!
//! One server (1 core, 127.0.0.1, port chosen by the OS, `--tls-cert`/`--tls-key` from a
//! throwaway CA that `scripts/tls-cert.sh` makes once per process in a temporary directory,
//! removed once the server has read it) is started per fuzz process. Each input is one
//! loopback connection; byte 0 chooses how it is made:
//! - bits 0-1, the kind:
//!   - 0: no handshake by us: the rest is written raw to the TLS port (garbage, partial or
//!     real ClientHellos, plaintext HTTP, records); the server may answer only with TLS records
//!     (a ServerHello, an alert), then must close or wait;
//!   - 1: a real handshake by a rustls client trusting the test CA, then the rest sent as
//!     plaintext through it (an HTTP request head, maybe masked frames after), as
//!     `http_upgrade` sends it over TCP;
//!   - 2: a real handshake, the bytes up to the end of the first request head (`\r\n\r\n`)
//!     sent through it, then the rest written raw into the TCP stream (corrupt records after
//!     the upgrade, or in the HTTP phase if there is no head);
//!   - 3: a real handshake, then everything written raw (corrupt records in the HTTP phase);
//! - bit 2: the client offers TLS 1.2 only (else TLS 1.3 only);
//! - bit 3: wait for the response head before writing what follows the first request head
//!   (a real client's order; kind 0: write the first half, wait one read, write the rest);
//! - bit 4: close right after writing (RST if bit 5 is set too) instead of sending
//!   close_notify, half-closing and reading the answer until the server closes;
//! - bits 6-7, the client's ALPN offer: 0 none (and the server named by its IP address, so no
//!   SNI), 1 `http/1.1`, 2 `h2` only (the server must refuse the handshake), 3 `h2, http/1.1`.
//!
//! Checked: no panic on any server thread (libfuzzer-sys's panic hook aborts the process);
//! handshakes a server must accept succeed and never negotiate `h2`; raw answers are well-formed
//! TLS records starting with a handshake or an alert; plaintext answers are HTTP/1.x and frames
//! after a 101 are well-formed server frames; and every 64 inputs the server still answers
//! `GET /healthz` over TLS and has released every connection and socket.
//!
//! The server handles a connection on its own thread, after the input that made it may have
//! returned: a server panic can be saved as the crash of a later input. If a saved crash does
//! not reproduce alone, replay the corpus it came from (`-runs=0 DIR`) or run each input of it
//! a few times in a row (`tls_upgrade FILE FILE FILE`).

#![no_main]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::{
    check_answer, check_health, connect, find, open_sockets, read_answer, read_head,
    set_linger_zero, ANSWER_DEADLINE, CHECK_EVERY,
};

/// Longest wait for a handshake the server must accept (it is not the fuzzed part: a slow one
/// means a server that stopped answering).
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// A finished client handshake over loopback TCP.
type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The server (kept, never dropped), its address, the socket count right after it started and
/// the client configs, indexed by `mode >> 2 & 1` (TLS 1.2) and `mode >> 6` (ALPN offer).
struct Fixture {
    _server: ringcast::Server,
    addr: SocketAddr,
    baseline_sockets: usize,
    clients: [[Arc<ClientConfig>; 4]; 2],
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static INPUTS: AtomicU64 = AtomicU64::new(0);

/// ALPN offer 2: the server serves http/1.1 only and must refuse the handshake.
const ALPN_H2_ONLY: usize = 2;

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        common::ignore_sigpipe();
        let dir = make_cert_dir();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let mut args: Vec<OsString> = [
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
        ]
        .map(OsString::from)
        .into();
        args.extend([
            OsString::from("--tls-cert"),
            cert.into_os_string(),
            OsString::from("--tls-key"),
            key.into_os_string(),
        ]);
        let config = ringcast::Config::from_args(args)
        .expect("fuzz server config");
        let server = ringcast::Server::start(config).expect("start ringcast (needs io_uring)");
        let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).expect("read the test CA");
        // The server has read its pair (a reload would re-read it, but nothing sends SIGHUP).
        let _ = std::fs::remove_dir_all(&dir);
        let mut roots = RootCertStore::empty();
        roots.add(ca).expect("trust the test CA");
        let roots = Arc::new(roots);
        let fixture = Fixture {
            addr: server.local_addr(),
            _server: server,
            baseline_sockets: open_sockets(),
            clients: [false, true].map(|tls12| {
                [0, 1, 2, 3].map(|alpn| client_config(Arc::clone(&roots), tls12, alpn))
            }),
        };
        health(&fixture);
        fixture
    })
}

/// A fresh directory with the test CA, the server's chain and key (`scripts/tls-cert.sh`).
fn make_cert_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringcast-tls-fuzz-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tls-cert.sh");
    let status = Command::new(&script)
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|err| panic!("run {}: {err}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    dir
}

fn client_config(roots: Arc<RootCertStore>, tls12: bool, alpn: usize) -> Arc<ClientConfig> {
    // The server's provider (see server/src/tls/mod.rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let version = if tls12 {
        &rustls::version::TLS12
    } else {
        &rustls::version::TLS13
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match alpn {
        0 => vec![],
        1 => vec![b"http/1.1".to_vec()],
        ALPN_H2_ONLY => vec![b"h2".to_vec()],
        _ => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Arc::new(config)
}

/// A client handshake with `config` on a new connection; the error if it failed.
fn handshake(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    by_ip: bool,
) -> Result<TlsStream, String> {
    let name = if by_ip {
        ServerName::from(addr.ip())
    } else {
        ServerName::try_from("localhost").unwrap()
    };
    let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut sock = connect(addr);
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    while conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err("handshake timed out".into());
        }
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    let alpn = conn.alpn_protocol();
    assert!(
        alpn.is_none() || alpn == Some(&b"http/1.1"[..]),
        "server negotiated ALPN {:?}",
        alpn.map(String::from_utf8_lossy)
    );
    Ok(StreamOwned::new(conn, sock))
}

/// The shared check (`common::check_health`) over TLS (1.3, ALPN http/1.1).
fn health(fixture: &Fixture) {
    check_health(
        || handshake(fixture.addr, &fixture.clients[0][1], false).expect("health handshake"),
        fixture.baseline_sockets,
    );
}

/// Checks what the server wrote to a client that never finished a handshake: TLS records
/// (known content type, a TLS version, a length within the limit), the first a handshake or an
/// alert. The last record may be cut off.
fn check_records(answer: &[u8]) {
    let mut records = answer;
    let mut first = true;
    while let [kind, major, minor, len_hi, len_lo, rest @ ..] = records {
        if first {
            assert!(
                matches!(kind, 21 | 22),
                "first record type {kind} (answer {:?})",
                &answer[..answer.len().min(32)]
            );
            first = false;
        }
        assert!(matches!(kind, 20..=23), "record type {kind}");
        assert!(
            *major == 3 && *minor <= 4,
            "record version {major}.{minor} (answer {:?})",
            &answer[..answer.len().min(32)]
        );
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        assert!(len <= (1 << 14) + 2048, "record length {len}");
        if rest.len() < len {
            return;
        }
        records = &rest[len..];
    }
    // Fewer than 5 bytes left: a cut-off header, or a plaintext answer such as "HTTP/" that
    // is too short to tell; anything longer went through the loop.
    assert!(
        records.is_empty() || !first,
        "answer is not TLS: {:?}",
        String::from_utf8_lossy(answer)
    );
}

/// Kind 0: `bytes` written raw, no handshake by us.
fn raw(fixture: &Fixture, bytes: &[u8], split: bool, abrupt: bool, reset: bool) {
    let mut stream = connect(fixture.addr);
    let mut answer = Vec::new();
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let half = if split { bytes.len() / 2 } else { bytes.len() };
    let mut written = stream.write_all(&bytes[..half]).is_ok();
    if written && half < bytes.len() {
        let mut chunk = [0u8; 4096];
        if let Ok(n) = stream.read(&mut chunk) {
            answer.extend_from_slice(&chunk[..n]);
        }
        written = stream.write_all(&bytes[half..]).is_ok();
    }
    finish_raw(&mut stream, &mut answer, deadline, written, abrupt, reset);
    drop(stream);
    check_records(&answer);
}

fn finish_raw(
    stream: &mut TcpStream,
    answer: &mut Vec<u8>,
    deadline: Instant,
    written: bool,
    abrupt: bool,
    reset: bool,
) {
    if abrupt {
        if reset {
            set_linger_zero(stream);
        }
    } else {
        if written {
            let _ = stream.shutdown(Shutdown::Write);
        }
        read_answer(stream, answer, deadline);
    }
}

/// Kinds 1-3: a handshake, `bytes[..split]` sent through it, then (after the response head if
/// `wait`) the rest, through it or (`rest_raw`) raw into the TCP stream.
#[allow(clippy::too_many_arguments)]
fn over_tls(
    fixture: &Fixture,
    mode: u8,
    bytes: &[u8],
    split: usize,
    rest_raw: bool,
    wait: bool,
    abrupt: bool,
    reset: bool,
) {
    let alpn = usize::from(mode >> 6);
    let tls12 = usize::from((mode >> 2) & 1);
    let stream = handshake(fixture.addr, &fixture.clients[tls12][alpn], alpn == 0);
    let mut stream = match stream {
        Ok(stream) => {
            assert_ne!(alpn, ALPN_H2_ONLY, "handshake with an h2-only offer succeeded");
            stream
        }
        Err(_) if alpn == ALPN_H2_ONLY => return,
        Err(err) => panic!("handshake (mode {mode:#04x}) failed: {err}"),
    };
    let mut answer = Vec::new();
    let deadline = Instant::now() + ANSWER_DEADLINE;
    // Write errors (the server may close early: a bad request, a 1002, a bad record) are part
    // of the game.
    let mut written = stream
        .write_all(&bytes[..split])
        .and_then(|()| stream.flush())
        .is_ok();
    if written && split < bytes.len() {
        if wait {
            read_head(&mut stream, &mut answer, deadline);
        }
        written = if rest_raw {
            stream.sock.write_all(&bytes[split..]).is_ok()
        } else {
            stream
                .write_all(&bytes[split..])
                .and_then(|()| stream.flush())
                .is_ok()
        };
    }
    if abrupt {
        if reset {
            set_linger_zero(&stream.sock);
        }
    } else {
        if written {
            stream.conn.send_close_notify();
            let _ = stream.flush();
            let _ = stream.sock.shutdown(Shutdown::Write);
        }
        read_answer(&mut stream, &mut answer, deadline);
    }
    // Closed before the health check, which counts sockets.
    drop(stream);
    check_answer(&answer);
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let wait = mode & 8 != 0;
    let abrupt = mode & 16 != 0;
    let reset = mode & 32 != 0;
    let head_end = find(bytes, b"\r\n\r\n").map(|end| end + 4);

    match mode & 3 {
        0 => raw(fixture, bytes, wait, abrupt, reset),
        1 => {
            let split = match head_end {
                Some(end) if wait => end,
                _ => bytes.len(),
            };
            over_tls(fixture, mode, bytes, split, false, wait, abrupt, reset);
        }
        2 => {
            let split = head_end.unwrap_or(bytes.len());
            over_tls(fixture, mode, bytes, split, true, wait, abrupt, reset);
        }
        // Nothing to wait for: the server answers no request before the raw bytes.
        _ => over_tls(fixture, mode, bytes, 0, true, false, abrupt, reset),
    }

    if INPUTS.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY == CHECK_EVERY - 1 {
        health(fixture);
    }
});
