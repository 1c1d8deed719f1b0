//! permessage-deflate (`--deflate`) and the chat-like payload (`--payload json`): the offer and
//! how loadgen judges the answers (also through a whole run against a server answering badly),
//! inflating what an independent compressor produced, the JSON payload's size, compressibility
//! and determinism, and a run against a server that declines the extension (ringcast today),
//! which goes on plain and says so. A run against a server that compresses (Python
//! `websockets`) is `scripts/check-loadgen-deflate.sh`: it needs a venv.

use flate2::{Compress, Compression, FlushCompress};
use loadgen::report::Report;
use loadgen::testing::{accepted, Inflater, PayloadKind, Payloads, Stamp, MIN_JSON_SIZE, OFFER};

use crate::util::{loadgen_run, scratch_dir};

#[test]
fn the_offer_asks_for_no_context_takeover_both_ways() {
    assert_eq!(
        OFFER,
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
    );
}

#[test]
fn answers_accepted_and_declined() {
    assert_eq!(accepted(&[]), Ok(false));
    for answer in [
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate;server_no_context_takeover",
        "PerMessage-Deflate; Server_No_Context_Takeover; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=\"15\"",
    ] {
        assert_eq!(accepted(&[answer]), Ok(true), "{answer}");
    }
}

#[test]
fn malformed_answers_are_errors_that_say_what_is_wrong() {
    for (answers, says) in [
        (
            &["x-webkit-deflate-frame"][..],
            "extension `x-webkit-deflate-frame` was not offered",
        ),
        (
            &["permessage-deflate; server_no_context_takeover, permessage-deflate"],
            "2 extensions in the response",
        ),
        (
            &[
                "permessage-deflate; server_no_context_takeover",
                "permessage-deflate",
            ],
            "2 extensions in the response",
        ),
        (
            &["permessage-deflate"],
            "server_no_context_takeover missing",
        ),
        (
            &["permessage-deflate; server_no_context_takeover; client_max_window_bits=10"],
            "client_max_window_bits answered",
        ),
        (
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=16"],
            "server_max_window_bits `16` is not 8 to 15",
        ),
        (
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits"],
            "server_max_window_bits without a value",
        ),
        (
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            "parameter `server_no_context_takeover` given twice",
        ),
        (
            &["permessage-deflate; server_no_context_takeover=1"],
            "parameter `server_no_context_takeover` takes no value",
        ),
        (
            &["permessage-deflate; server_no_context_takeover; mystery"],
            "unknown parameter `mystery`",
        ),
    ] {
        let error = accepted(answers).expect_err(answers[0]);
        assert!(error.contains(says), "{answers:?}: {error}");
    }
}

#[test]
fn inflates_what_python_zlib_compressed() {
    // zlib.compressobj(6, zlib.DEFLATED, -15): compress + flush(Z_SYNC_FLUSH), the trailing
    // 00 00 ff ff stripped, as RFC 7692 7.2.1 sends it.
    const PYTHON: &[u8] = &[
        0xaa, 0x56, 0x2a, 0x2d, 0x4e, 0x2d, 0x52, 0xb2, 0x52, 0x4a, 0xcc, 0xc9, 0x4c, 0x4e, 0x55,
        0xd2, 0x51, 0x2a, 0x49, 0xad, 0x28, 0x01, 0x72, 0x3d, 0x52, 0x73, 0x72, 0xf2, 0x15, 0xd2,
        0x8a, 0xf2, 0x73, 0x15, 0x02, 0x2a, 0x4b, 0x32, 0xf2, 0xf3, 0x14, 0xaa, 0x72, 0x32, 0x93,
        0x74, 0x14, 0x32, 0xc0, 0xe2, 0x89, 0xe9, 0x89, 0x99, 0x79, 0x30, 0x0e, 0x98, 0x54, 0x54,
        0xaa, 0x05, 0x00,
    ];
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    inflater
        .inflate(PYTHON, &mut out, 1 << 20)
        .expect("inflates");
    assert_eq!(
        out,
        br#"{"user":"alice","text":"Hello from Python zlib, hello again, hello hello!"}"#
    );
    // RFC 7692 7.2.3.1, "Hello"; the same inflater again (reset per message).
    inflater
        .inflate(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &mut out,
            1 << 20,
        )
        .expect("inflates");
    assert_eq!(out, b"Hello");
    // Cut short, or not deflate at all: an error, not a message.
    let error = inflater
        .inflate(&[0xff, 0xff, 0xff], &mut out, 1 << 20)
        .unwrap_err();
    assert!(error.starts_with("bad deflate data"), "{error}");
}

/// Raw deflate of `payload` at zlib's default level, sync flush, tail stripped: what a server
/// with no context takeover sends.
fn deflated_len(payload: &[u8]) -> usize {
    let mut stream = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    stream
        .compress_vec(payload, &mut out, FlushCompress::Sync)
        .expect("compresses");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.len() - 4
}

/// Publisher 0's first `count` JSON payloads of `size` bytes, stamped as a run would.
fn json_payloads(size: usize, count: u64) -> Vec<Vec<u8>> {
    let mut payloads = Payloads::new(PayloadKind::Json, size, 0);
    (0..count)
        .map(|seq| {
            let stamp = Stamp {
                run_id: 0x1234_5678,
                publisher: 0,
                seq,
                intended_ns: 5_000_000_000 + seq * 50_000_000,
                sent_ns: 5_000_000_000 + seq * 50_000_000 + 12_345,
            };
            let (_, payload) = payloads.stamped(&stamp);
            assert_eq!(Stamp::read_from(payload), Some(stamp));
            payload.to_vec()
        })
        .collect()
}

#[test]
fn json_payloads_are_exact_deterministic_and_compress_like_chat() {
    for size in [MIN_JSON_SIZE, 200, 1024, 16 * 1024] {
        for payload in json_payloads(size, 20) {
            assert_eq!(payload.len(), size);
            let text = std::str::from_utf8(&payload).expect("text");
            assert!(
                text.starts_with("{\"rclg\":\"") && text.ends_with("\"}]}"),
                "{text}"
            );
        }
    }
    assert_eq!(json_payloads(1024, 20), json_payloads(1024, 20));
    let payloads = json_payloads(1024, 32);
    let wire: usize = payloads.iter().map(|p| deflated_len(p)).sum();
    let ratio = (1024 * payloads.len()) as f64 / wire as f64;
    assert!(
        (1.5..=6.0).contains(&ratio),
        "1 KiB JSON compresses {ratio:.2}x"
    );
    eprintln!("1 KiB JSON compresses {ratio:.2}x");
}

/// Starts ringcast, which does not negotiate permessage-deflate, on an OS-picked port.
/// A ringcast with permessage-deflate `deflate` (`on` or `off`).
fn start_server(deflate: &str) -> ringcast::Server {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--deflate",
        deflate,
    ];
    let config = ringcast::Config::from_args(args.iter()).expect("valid config");
    ringcast::Server::start(config).expect("server starts")
}

/// `loadgen --deflate --payload json` against `url`: 20 subscribers, 1 publisher, 1 KiB at
/// 50 msg/s for a second, with `thresholds`; the report is written to `out`.
fn deflate_run(url: &str, thresholds: &[&str], out: &std::path::Path) -> std::process::Output {
    let mut args = vec![
        "--subscribers",
        "20",
        "--publishers",
        "1",
        "--rate",
        "50",
        "--size",
        "1KiB",
        "--payload",
        "json",
        "--deflate",
        "--duration",
        "1s",
        "--warmup",
        "500ms",
        "--drain",
        "500ms",
        "--threshold",
        "lost==0",
    ];
    for threshold in thresholds {
        args.extend(["--threshold", threshold]);
    }
    loadgen_run(url, &args, out)
}

#[test]
fn ringcast_with_deflate_compresses_every_delivery_once_negotiated() {
    let server = start_server("on");
    let url = format!("ws://{}/ws/deflate-on", server.local_addr());
    let out = scratch_dir("deflate-on");
    let output = deflate_run(&url, &["compression_ratio>1.5"], &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("permessage-deflate on 21 of 21 connections"),
        "{stdout}"
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    let wire = r.wire.as_ref().expect("wire section");
    assert_eq!(wire.payload_bytes, r.delivered * 1024);
    assert!(wire.wire_bytes * 3 < r.delivered * 1024 * 2, "{wire:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_server_that_declines_is_run_plain_and_the_report_says_so() {
    let server = start_server("off");
    let url = format!("ws://{}/ws/deflate-declined", server.local_addr());
    let out = scratch_dir("deflate-declined");
    let thresholds = ["compression_ratio<1", "wire_bytes_per_delivery==1028"];
    let output = deflate_run(&url, &thresholds, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("permessage-deflate on 0 of 21 connections"),
        "{stdout}"
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert!(report.scenario.deflate);
    assert_eq!(report.scenario.payload, PayloadKind::Json);
    let r = &report.results;
    let wire = r.wire.as_ref().expect("wire section");
    assert!(wire.deflate_offered);
    assert_eq!(wire.deflate_connections, 0);
    assert_eq!(wire.payload_bytes, r.delivered * 1024);
    // Plain 1 KiB frames: payload plus a 4-byte header (16-bit length) each.
    assert_eq!(wire.wire_bytes, r.delivered * 1028);
    assert_eq!(wire.wire_bytes_per_delivery, Some(1028.0));
    let ratio = wire.compression_ratio.expect("delivered");
    assert!((ratio - 1024.0 / 1028.0).abs() < 1e-9, "{ratio}");
    let _ = std::fs::remove_dir_all(&out);
}

/// A server that completes the upgrade with `extensions` as its Sec-WebSocket-Extensions
/// answer, then holds the connection; returns its address and the request heads it read.
fn answering_server(
    extensions: &'static str,
) -> (std::net::SocketAddr, std::sync::mpsc::Receiver<String>) {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("address");
    let (heads, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let key = head
                .lines()
                .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or_default()
                .to_string();
            let mut sha = Sha1::new();
            sha.update(key.as_bytes());
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
            let _ = write!(
                stream,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n"
            );
            let _ = heads.send(head);
            held.push(stream);
        }
    });
    (addr, received)
}

#[test]
fn a_malformed_answer_fails_the_connections_with_the_reason() {
    let (addr, heads) = answering_server("permessage-deflate; client_max_window_bits=12");
    let out = scratch_dir("deflate-malformed");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--url", &format!("ws://{addr}/ws"), "--deflate"])
        .args([
            "--subscribers",
            "3",
            "--publishers",
            "0",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // No connection can succeed: the run stops at once, saying why.
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(
            "bad Sec-WebSocket-Extensions: client_max_window_bits answered, loadgen did not offer it"
        ),
        "{stdout}"
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_eq!(report.results.connections.failures.get("other"), Some(&3));
    let head = heads.recv().expect("a request");
    assert!(
        head.contains(&format!("Sec-WebSocket-Extensions: {OFFER}\r\n")),
        "{head}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn an_extension_answered_without_the_offer_fails_the_connections() {
    let (addr, heads) = answering_server("permessage-deflate; server_no_context_takeover");
    let out = scratch_dir("deflate-unoffered");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--url", &format!("ws://{addr}/ws")])
        .args([
            "--subscribers",
            "2",
            "--publishers",
            "0",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("Sec-WebSocket-Extensions answered, none offered"),
        "{stdout}"
    );
    assert!(!heads
        .recv()
        .expect("a request")
        .contains("Sec-WebSocket-Extensions"));
    let _ = std::fs::remove_dir_all(&out);
}
