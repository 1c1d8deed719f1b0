//! `--churn` and `--recover`: against the real ringcast (no recovery yet: what churn loses is
//! counted exactly), and against a small server in this test that keeps issue 19's recovery
//! contract (or breaks it on purpose), so the client side is checked without the real one:
//! `since=` built from offsets counted, first messages read and counted, replays timed.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use loadgen::report::Report;
use ringcast_proto::{apply_mask, opcode, Frame, Header, Role};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::util::{loadgen_run, scratch_dir};

/// 20 subscribers and one publisher at 50 msg/s for 3 s; each subscriber leaves every second
/// for 300 ms.
const CHURNED: &[&str] = &[
    "--subscribers",
    "20",
    "--publishers",
    "1",
    "--rate",
    "50",
    "--duration",
    "3s",
    "--warmup",
    "500ms",
    "--drain",
    "1s",
    "--threads",
    "2",
    "--churn",
    "1s:300ms",
];

/// The delivery figures must balance: lost is counted from what each receiver got, not as
/// expected - delivered, so this checks the accounting.
fn assert_balanced(report: &Report, stdout: &str) {
    let r = &report.results;
    assert_eq!(r.delivered + r.lost, r.expected, "{stdout}");
    assert_eq!(r.expected, r.sent_measured * 21, "{stdout}");
    assert_eq!(
        r.delivery_rate,
        Some(r.delivered as f64 / r.expected as f64)
    );
}

#[test]
fn churn_without_recovery_loses_what_was_sent_while_away() {
    let config = ringcast::Config::from_args(["--listen", "127.0.0.1:0", "--cores", "2"])
        .expect("valid config");
    let server = ringcast::Server::start(config).expect("server starts");
    let url = format!("ws://{}/ws/churn", server.local_addr());
    let out = scratch_dir("churn-ringcast");
    let output = loadgen_run(&url, CHURNED, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    assert_balanced(&report, &stdout);
    let churn = r.churn.as_ref().expect("a churn section");
    // Every subscriber leaves two or three times (phase in [0, 1 s), back before the end).
    assert!(churn.left >= 40, "{stdout}");
    assert_eq!(churn.reconnected, churn.left);
    // ~15 messages missed per departure; the publisher (a receiver too) misses none.
    assert!(r.lost >= churn.left * 5, "{stdout}");
    assert_eq!((r.duplicated, r.reordered), (0, 0), "{stdout}");
    assert_eq!(churn.first_messages, Default::default());
    assert!(stdout.contains("churn                  left"), "{stdout}");

    // The same without churn loses nothing, and has no churn section.
    let calm = scratch_dir("churn-ringcast-calm");
    let output = loadgen_run(&url, &CHURNED[..CHURNED.len() - 2], &calm);
    let report = Report::read(&calm.join("report.json")).expect("report written");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_balanced(&report, &stdout);
    assert_eq!(
        (report.results.lost, report.results.delivery_rate),
        (0, Some(1.0))
    );
    assert!(report.results.churn.is_none());
    server.shutdown();
}

#[test]
fn bad_churn_values_are_usage_errors() {
    for (value, says) in [
        ("15s", "EVERY:DOWNTIME"),
        ("2s:2s", "shorter than EVERY"),
        ("0s:0s", "positive"),
        ("1s:soon", "DOWNTIME"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["run", "--url", "ws://127.0.0.1:9/ws", "--churn", value])
            .output()
            .expect("loadgen runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("--churn") && stderr.contains(says),
            "{stderr}"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--url", "ws://127.0.0.1:9/ws", "--subscribers", "0"])
        .args(["--churn", "1s:100ms"])
        .output()
        .expect("loadgen runs");
    assert_eq!(output.status.code(), Some(2));
}

/// How the test server answers `since=`.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// Issue 19's contract: position, recovered (with the replay) or reset.
    Contract,
    /// Every `since=EPOCH:OFFSET` is answered `reset`: nothing replayed.
    AlwaysReset,
    /// A first message without an offset.
    Malformed,
    /// No first message at all (a server without recovery).
    Plain,
}

/// One room of the test server: its epoch, every message (offset n is `history[n - 1]`) and
/// the connections that receive it.
struct Room {
    epoch: String,
    history: Vec<Vec<u8>>,
    members: HashMap<u64, UnboundedSender<Vec<u8>>>,
}

/// A broadcast server with recovery, small enough to trust: one lock per room orders the
/// messages, and a joining connection's first message and replay are queued under the same
/// lock, so nothing is missed or doubled between replay and live.
struct TestServer {
    url: String,
    /// The `since` values asked for, in order.
    asked: Arc<Mutex<Vec<String>>>,
}

fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    Frame::new(op, payload).encode(&mut wire);
    wire
}

fn start_test_server(answer: Answer) -> TestServer {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("ws://{}/ws/recover", std_listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let room = Arc::new(Mutex::new(Room {
        epoch: "epoch:1/x".to_string(),
        history: Vec::new(),
        members: HashMap::new(),
    }));
    let asked_by_server = asked.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            let mut next_id = 0u64;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                next_id += 1;
                tokio::spawn(serve(
                    stream,
                    next_id,
                    room.clone(),
                    asked_by_server.clone(),
                    answer,
                ));
            }
        });
    });
    TestServer { url, asked }
}

/// One connection: the upgrade, the first message and replay, then frames both ways.
async fn serve(
    mut stream: tokio::net::TcpStream,
    id: u64,
    room: Arc<Mutex<Room>>,
    asked: Arc<Mutex<Vec<String>>>,
    answer: Answer,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf.split_off(head_end);
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let since = target
        .split_once('?')
        .and_then(|(_, query)| query.split('&').find_map(|p| p.strip_prefix("since=")))
        .map(str::to_string);
    let (tx, mut rx) = unbounded_channel::<Vec<u8>>();
    {
        let mut room = room.lock().unwrap();
        let head = room.history.len() as u64;
        if let Some(since) = &since {
            asked.lock().unwrap().push(since.clone());
            let text = |kind: &str, offset: u64| {
                format!(
                    r#"{{"ringcast":"{kind}","epoch":"{}","offset":{offset}}}"#,
                    room.epoch
                )
            };
            // The client percent-encodes the epoch; this one has ':' and '/' in it.
            let asked_for = since
                .rsplit_once(':')
                .map(|(epoch, offset)| (epoch.replace("%3A", ":").replace("%2F", "/"), offset));
            let first = match (answer, asked_for) {
                (Answer::Plain, _) => None,
                (Answer::Malformed, _) => Some(r#"{"ringcast":"position","epoch":"e"}"#.into()),
                (_, None) => Some(text("position", head)),
                (Answer::Contract, Some((epoch, offset))) => match offset.parse::<u64>() {
                    Ok(offset) if epoch == room.epoch && offset <= head => {
                        let _ = tx.send(server_frame(
                            opcode::TEXT,
                            text("recovered", offset).as_bytes(),
                        ));
                        for message in &room.history[offset as usize..] {
                            let _ = tx.send(server_frame(opcode::BINARY, message));
                        }
                        None
                    }
                    _ => Some(text("reset", head)),
                },
                (Answer::AlwaysReset, Some(_)) => Some(text("reset", head)),
            };
            if let Some(first) = first {
                let _ = tx.send(server_frame(opcode::TEXT, first.as_bytes()));
            }
        }
        room.members.insert(id, tx.clone());
    }
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if write.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    'reading: loop {
        while let Ok(Some(header)) = Header::decode(&rest, Role::Client) {
            let Some(len) = header.frame_len().filter(|&len| len <= rest.len()) else {
                break;
            };
            let mask = header.mask_key(&rest).expect("clients mask");
            let mut payload = rest[header.header_len..len].to_vec();
            apply_mask(&mut payload, mask);
            rest.drain(..len);
            match header.opcode {
                opcode::BINARY | opcode::TEXT => {
                    let mut room = room.lock().unwrap();
                    room.history.push(payload.clone());
                    for member in room.members.values() {
                        let _ = member.send(server_frame(opcode::BINARY, &payload));
                    }
                }
                opcode::CLOSE => {
                    let _ = tx.send(server_frame(opcode::CLOSE, &payload));
                    break 'reading;
                }
                _ => {}
            }
        }
        match read.read(&mut chunk).await {
            Ok(n) if n > 0 => rest.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    room.lock().unwrap().members.remove(&id);
    drop(tx);
    let _ = writer.await;
}

#[test]
fn recovery_over_churn_delivers_everything_once_and_in_order() {
    let server = start_test_server(Answer::Contract);
    let out = scratch_dir("recover-contract");
    let thresholds = [
        "--recover",
        "--threshold",
        "lost==0",
        "--threshold",
        "duplicated==0",
        "--threshold",
        "out_of_order==0",
        "--threshold",
        "delivery_rate>=1",
        "--threshold",
        "first_replay_p99<1s",
    ];
    let output = loadgen_run(&server.url, &[CHURNED, &thresholds].concat(), &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_balanced(&report, &stdout);
    let churn = report.results.churn.as_ref().expect("a churn section");
    assert!(churn.left >= 40, "{stdout}");
    let first = churn.first_messages;
    // Each subscriber learned its position once, and every return was a recovery (the
    // publisher asks for nothing).
    assert_eq!(
        (first.position, first.recovered),
        (20, churn.left),
        "{stdout}"
    );
    assert_eq!((first.reset, first.none, first.malformed), (0, 0, 0));
    // Away 300 ms at 50 msg/s: every recovery replays, and each is timed.
    assert_eq!(churn.first_replay_ns.count, churn.left);
    assert!(churn.first_replay_ns.p50 > Some(0));
    assert_eq!(report.histogram("first_replay").unwrap().len(), churn.left);
    // The first connections asked with an empty `since=`, the others with the epoch
    // (percent-encoded) and an offset.
    let asked = server.asked.lock().unwrap().clone();
    assert_eq!(asked.iter().filter(|s| s.is_empty()).count(), 20);
    assert!(asked
        .iter()
        .filter(|s| !s.is_empty())
        .all(|s| s.starts_with("epoch%3A1%2Fx:")));
}

#[test]
fn a_reset_replays_nothing_and_is_counted() {
    let server = start_test_server(Answer::AlwaysReset);
    let out = scratch_dir("recover-reset");
    let output = loadgen_run(&server.url, &[CHURNED, &["--recover"]].concat(), &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_balanced(&report, &stdout);
    let r = &report.results;
    let churn = r.churn.as_ref().expect("a churn section");
    assert_eq!(
        (churn.first_messages.position, churn.first_messages.reset),
        (20, churn.left)
    );
    assert!(
        r.lost > 0 && r.duplicated == 0 && r.reordered == 0,
        "{stdout}"
    );
    assert_eq!(churn.first_replay_ns.count, 0);
}

#[test]
fn a_server_without_a_first_message_is_read_as_plain() {
    let server = start_test_server(Answer::Plain);
    let out = scratch_dir("recover-plain");
    let output = loadgen_run(&server.url, &[CHURNED, &["--recover"]].concat(), &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_balanced(&report, &stdout);
    let churn = report.results.churn.as_ref().expect("a churn section");
    // No position known: every connection asked with an empty `since=`, and every first
    // message was data, counted `none`. A connection that came back in the window's last
    // moments may have had no message before the end, so it has no first message to count.
    let first = &churn.first_messages;
    assert_eq!(
        (
            first.position,
            first.recovered,
            first.reset,
            first.malformed
        ),
        (0, 0, 0, 0)
    );
    assert!(
        (20..=20 + churn.reconnected).contains(&first.none)
            && first.none + 3 >= 20 + churn.reconnected,
        "{first:?}, {} reconnected",
        churn.reconnected
    );
    assert!(server.asked.lock().unwrap().iter().all(|s| s.is_empty()));
    assert!(report.results.lost > 0);
}

#[test]
fn a_malformed_first_message_is_counted_and_makes_the_run_invalid() {
    let server = start_test_server(Answer::Malformed);
    let out = scratch_dir("recover-malformed");
    let calm = &CHURNED[..CHURNED.len() - 2];
    let output = loadgen_run(&server.url, &[calm, &["--recover"]].concat(), &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    let churn = r.churn.as_ref().expect("--recover alone has the section");
    assert_eq!(churn.first_messages.malformed, 20);
    assert!(
        r.invalid_reasons
            .iter()
            .any(|reason| reason.contains("20 first messages broke the recovery contract")),
        "{:?}",
        r.invalid_reasons
    );
    // The stream after it is read as usual.
    assert_eq!((r.lost, r.delivered), (0, r.expected), "{stdout}");
}
