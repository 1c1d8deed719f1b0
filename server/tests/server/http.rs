//! The HTTP side (hyper): the chat page, health and metrics, and every refusal status —
//! 426 plain GET /ws, 404, 400 bad room, 403 foreign Origin, 503 when full — plus the
//! header-read timeout against slowloris clients, and the hand-over to the WebSocket phase
//! (an upgrade with a body is refused; a frame sent with the request is not lost).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::util::raw::{FrameSpec, Next, RawClient, TEXT};
use crate::util::{http, metrics, start_server, tls, ws, WAIT};

/// The page the server must serve at `/` (it embeds this same file).
const CHAT_PAGE: &str = include_str!("../../static/index.html");

#[tokio::test]
async fn root_serves_the_chat_page() {
    let server = start_server(&[]);
    let response = http::get(server.addr, "/", &[]).await;
    assert_eq!(response.status, 200);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "content-type {content_type:?}"
    );
    assert_eq!(
        response.body_text(),
        CHAT_PAGE,
        "GET / is not server/static/index.html"
    );
}

#[tokio::test]
async fn healthz_is_ok() {
    let server = start_server(&[]);
    assert_eq!(http::get(server.addr, "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn metrics_count_connections_and_messages() {
    let server = start_server(&[]);
    let before = metrics::scrape(server.addr).await;
    let mut client = ws::connect(server.addr, "/ws/metrics").await;
    ws::send_text(&mut client, "counted").await;
    assert_eq!(ws::next_text(&mut client).await, "counted");
    // Writes are counted when their completions are processed, which may be just after the
    // client has the bytes: scrape until the echo's write is counted (bounded by WAIT).
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let after = metrics::scrape(server.addr).await;
        let written = metrics::total(&after, "ringcast_frames_written_total")
            - metrics::total(&before, "ringcast_frames_written_total");
        if written >= 1.0 || tokio::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let open: f64 = metrics::connections_per_core(&after)
        .iter()
        .map(|c| c.1)
        .sum();
    assert_eq!(open, 1.0, "open connections gauge with one client");
    let grew = |name: &str| metrics::total(&after, name) - metrics::total(&before, name);
    assert_eq!(
        grew("ringcast_messages_in_total"),
        1.0,
        "messages in after one message"
    );
    assert_eq!(
        grew("ringcast_bytes_in_total"),
        "counted".len() as f64,
        "payload bytes in"
    );
    assert!(
        grew("ringcast_frames_written_total") >= 1.0,
        "no frame counted as written"
    );
}

#[tokio::test]
async fn plain_get_on_ws_is_426() {
    let server = start_server(&[]);
    for path in ["/ws", "/ws/room"] {
        let response = http::get(server.addr, path, &[]).await;
        assert_eq!(response.status, 426, "plain GET {path}");
    }
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = start_server(&[]);
    for path in ["/nope", "/wsx", "/healthzz", "/index.html.bak"] {
        assert_eq!(
            http::get(server.addr, path, &[]).await.status,
            404,
            "GET {path}"
        );
    }
}

#[tokio::test]
async fn bad_room_name_is_400() {
    let server = start_server(&[]);
    let too_long = format!("/ws/{}", "r".repeat(65));
    for path in [
        "/ws/bad%20room",
        "/ws/semi;colon",
        "/ws/%C3%A9",
        "/ws/a$b",
        too_long.as_str(),
    ] {
        assert_eq!(
            ws::refused_status(server.addr, path, None).await,
            400,
            "upgrade to {path}"
        );
    }
    // The longest valid name and every allowed character pass.
    let longest = format!("/ws/{}", "r".repeat(64));
    for path in [longest.as_str(), "/ws/Az09_.-"] {
        drop(ws::connect(server.addr, path).await);
    }
}

#[tokio::test]
async fn foreign_origin_is_403() {
    let server = start_server(&["--allowed-origin", "http://chat.example"]);
    let status = ws::refused_status(server.addr, "/ws/o", Some("http://evil.example")).await;
    assert_eq!(status, 403);
    // The allowed origin passes.
    ws::try_connect(server.addr, "/ws/o", Some("http://chat.example"))
        .await
        .expect("allowed origin refused");
}

#[tokio::test]
async fn same_host_origin_is_allowed_by_default() {
    // What a browser sends from the chat page served by this same server.
    let server = start_server(&[]);
    let origin = format!("http://{}", server.addr);
    ws::try_connect(server.addr, "/ws/o", Some(&origin))
        .await
        .expect("the chat page's own origin is refused with the default configuration");
}

#[tokio::test]
async fn connections_are_503_at_max_connections_and_accepted_again_after_a_close() {
    let server = start_server(&["--max-connections", "2"]);
    let first = ws::connect(server.addr, "/ws/full").await;
    let _second = ws::connect(server.addr, "/ws/full").await;
    if tls::enabled() {
        // Over TLS the server closes before the handshake instead of answering 503.
        assert!(ws::try_connect(server.addr, "/ws/full", None)
            .await
            .is_err());
        assert!(tls::try_connect(server.addr).await.is_err());
    } else {
        assert_eq!(ws::refused_status(server.addr, "/ws/full", None).await, 503);
        // The limit counts every connection from accept, plain HTTP included.
        assert_eq!(http::get(server.addr, "/healthz", &[]).await.status, 503);
    }

    // Once a client leaves, its slot is free again (the server learns of the close
    // asynchronously, so retry for a bounded time).
    let mut first = first;
    futures_util::SinkExt::close(&mut first)
        .await
        .expect("close");
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ws::try_connect(server.addr, "/ws/full", None).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => panic!("slot not freed after a client closed: {err}"),
        }
    }
}

#[tokio::test]
async fn slowloris_connection_is_closed_by_the_header_timeout() {
    let server = start_server(&["--header-timeout", "500ms"]);
    let mut slow = tls::connect(server.addr).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial request");
    slow.flush().await.expect("flush");
    // Never finish the headers: the server must end the connection (a 408 first is fine).
    let mut sink = Vec::new();
    let ended = timeout(WAIT, slow.read_to_end(&mut sink)).await;
    assert!(
        ended.is_ok(),
        "the server kept a connection with unfinished headers for {WAIT:?}"
    );
    let text = String::from_utf8_lossy(&sink);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "the unfinished request was answered: {text}"
    );
    // A normal client is unaffected.
    assert_eq!(http::get(server.addr, "/healthz", &[]).await.status, 200);
}

/// Whether `status` (from [`status_line_for`] or [`healthz_status_from`]) is the refusal of a
/// server at a connection limit: `code` in plaintext, the connection closed before the TLS
/// handshake (no status line) over TLS.
fn refused_at_limit(status: &str, code: &str) -> bool {
    if tls::enabled() {
        status.is_empty()
    } else {
        status.starts_with(&format!("HTTP/1.1 {code}"))
    }
}

/// Sends `request` while reading the answer (the server may answer before it read it all),
/// returns the status line (empty when a TLS handshake failed: see [`refused_at_limit`]).
async fn status_line_for(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    let Ok(stream) = tls::try_connect(addr).await else {
        return String::new();
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let sending = tokio::spawn(async move {
        // The server stops reading once it has answered; a failed write is expected then.
        let _ = writer.write_all(&request).await;
        let _ = writer.flush().await;
        writer
    });
    let mut answer = Vec::new();
    let read = timeout(WAIT, reader.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    sending.abort();
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_megabyte_of_headers_gets_431() {
    let server = start_server(&[]);
    let mut request = b"GET /ws/big HTTP/1.1\r\nHost: x\r\n".to_vec();
    while request.len() < 1 << 20 {
        request
            .extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let status = status_line_for(server.addr, request).await;
    assert!(status.starts_with("HTTP/1.1 431"), "got {status:?}");
    assert_eq!(http::get(server.addr, "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn headers_just_over_max_header_size_get_431_and_under_it_pass() {
    let server = start_server(&["--max-header-size", "8KiB"]);
    let with_header = |len: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(len)
        )
        .into_bytes()
    };
    let status = status_line_for(server.addr, with_header(7 << 10)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "got {status:?}");
    let status = status_line_for(server.addr, with_header(9 << 10)).await;
    assert!(status.starts_with("HTTP/1.1 431"), "got {status:?}");
}

#[tokio::test]
async fn garbage_gets_400() {
    let server = start_server(&[]);
    // 5 KB of bytes that are no HTTP request (a fixed pseudo-random sequence).
    let mut state = 0x2545_f491_u32;
    let garbage: Vec<u8> = (0..5000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    let status = status_line_for(server.addr, garbage).await;
    assert!(status.starts_with("HTTP/1.1 400"), "got {status:?}");
    let status = status_line_for(server.addr, b"HELLO\r\n\r\n".to_vec()).await;
    assert!(status.starts_with("HTTP/1.1 400"), "got {status:?}");
}

#[tokio::test]
async fn connections_still_in_the_http_phase_count_against_max_connections() {
    let server = start_server(&["--max-connections", "2"]);
    // Two clients that connect and send nothing hold both slots.
    let _silent_a = TcpStream::connect(server.addr).await.expect("connect");
    let _silent_b = TcpStream::connect(server.addr).await.expect("connect");
    // Accept order is not connect order across the listen queue: give the server a moment.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = status_line_for(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    )
    .await;
    assert!(refused_at_limit(&status, "503"), "got {status:?}");
    drop(_silent_a);
    let deadline = tokio::time::Instant::now() + WAIT;
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    while !status_line_for(server.addr, healthz.to_vec())
        .await
        .starts_with("HTTP/1.1 200")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot not freed after a silent client left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_upgrade_request_with_a_body_gets_400() {
    let server = start_server(&[]);
    let request = b"GET /ws/body HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello"
        .to_vec();
    // The connection stays open for another request (keep-alive): read the status line only.
    let mut stream = tls::connect(server.addr).await;
    stream.write_all(&request).await.expect("write request");
    stream.flush().await.expect("flush request");
    let mut answer = Vec::new();
    while !answer.contains(&b'\n') {
        let mut chunk = [0u8; 512];
        let read = timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("no answer")
            .expect("read answer");
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&chunk[..read]);
    }
    let status = String::from_utf8_lossy(&answer);
    assert!(status.starts_with("HTTP/1.1 400"), "got {status:?}");
}

#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_not_lost() {
    let server = start_server(&[]);
    let first = FrameSpec::new(TEXT, b"sent with the request").encode();
    let mut client = RawClient::connect_sending(server.addr, "/ws/eager", &first).await;
    match client.next().await {
        Next::Frame(frame) => {
            assert_eq!(frame.opcode, TEXT);
            assert_eq!(frame.payload, b"sent with the request");
        }
        Next::Closed => panic!("closed instead of echoing the first frame"),
    }
}

/// Connects with a small receive buffer, sends `requests` pipelined `GET /` and never reads:
/// the server's answers (8 KiB pages) soon fill every buffer between it and this client.
async fn pipeline_and_never_read(addr: std::net::SocketAddr, requests: usize) -> tls::Stream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(addr).await.expect("connect");
    let mut stream = tls::wrap(stream, addr).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(requests);
    // The requests fit in the socket buffers; the server reads them only as it answers.
    timeout(WAIT, async {
        stream.write_all(&request).await?;
        stream.flush().await
    })
    .await
    .expect("the pipelined requests did not fit the socket buffers")
    .expect("write requests");
    stream
}

#[tokio::test]
async fn pipelining_clients_that_never_read_lose_their_slots_after_the_write_timeout() {
    let server = start_server(&[
        "--max-connections",
        "3",
        "--header-timeout",
        "2s",
        "--write-timeout",
        "2s",
    ]);
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(pipeline_and_never_read(server.addr, 1000).await);
    }
    // Accept order is not connect order across the listen queue: give the server a moment.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let status = status_line_for(server.addr, healthz.to_vec()).await;
    assert!(refused_at_limit(&status, "503"), "got {status:?}");
    // No write progress for --write-timeout: the holders are closed and their slots free.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = status_line_for(server.addr, healthz.to_vec()).await;
        if status.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients that never read still hold every slot after {WAIT:?} ({status:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for mut holder in holders {
        // Once closed, the holder reads what the kernel still had for it, then the end (or a
        // reset for the requests the server left unread).
        let mut sink = Vec::new();
        let ended = timeout(WAIT, holder.read_to_end(&mut sink)).await;
        assert!(ended.is_ok(), "a stalled pipelining client was not closed");
    }
}

/// The whole answer to `GET path` from a client bound to `source` (a loopback address).
async fn get_from(source: [u8; 4], addr: std::net::SocketAddr, path: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .expect("bind the client to a loopback address");
    let stream = socket.connect(addr).await.expect("connect");
    let mut stream = if tls::enabled() {
        // Closed before the handshake at the per-IP limit: no answer (see refused_at_limit).
        match tls::handshake(&tls::test_pair().connector(), stream, addr).await {
            Ok(stream) => stream,
            Err(_) => return String::new(),
        }
    } else {
        tls::Stream::Plain(stream)
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    stream.flush().await.expect("flush request");
    let mut answer = Vec::new();
    let read = timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status line `GET /healthz` gets from a client bound to `source`.
async fn healthz_status_from(source: [u8; 4], addr: std::net::SocketAddr) -> String {
    let answer = get_from(source, addr, "/healthz").await;
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn connections_beyond_max_connections_per_ip_get_429_while_other_addresses_get_in() {
    let server = start_server(&["--max-connections-per-ip", "2"]);
    let first = ws::connect(server.addr, "/ws/per-ip").await;
    let _second = ws::connect(server.addr, "/ws/per-ip").await;
    // A third from 127.0.0.1 is refused; one from 127.0.0.2 is another client.
    let status = healthz_status_from([127, 0, 0, 1], server.addr).await;
    assert!(refused_at_limit(&status, "429"), "got {status:?}");
    let status = healthz_status_from([127, 0, 0, 2], server.addr).await;
    assert!(status.starts_with("HTTP/1.1 200"), "got {status:?}");

    // Once a client leaves, its address has a slot again (the server learns of the close
    // asynchronously, so retry for a bounded time).
    let mut first = first;
    futures_util::SinkExt::close(&mut first)
        .await
        .expect("close");
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = healthz_status_from([127, 0, 0, 1], server.addr).await;
        if status.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot of 127.0.0.1 not freed after its client closed ({status:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Scraped from 127.0.0.2: 127.0.0.1's last request may still hold its slot while its
    // connection closes lingering.
    let page = get_from([127, 0, 0, 2], server.addr, "/metrics").await;
    let refused: f64 = page
        .lines()
        .filter(|line| line.starts_with("ringcast_connections_refused_per_ip_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // At least the one above (the retries may have been refused too).
    assert!(refused >= 1.0, "refusals not counted in {page}");
}

/// Sends an upgrade request for `/ws/hs` (`version` is the HTTP version, the header lines
/// follow the Upgrade and Connection ones) and returns the answer's head, lower-cased.
async fn upgrade_answer_head(
    addr: std::net::SocketAddr,
    http_version: &str,
    headers: &str,
) -> String {
    let request = format!(
        "GET /ws/hs {http_version}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         {headers}\r\n"
    );
    let mut stream = tls::connect(addr).await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    stream.flush().await.expect("flush request");
    let mut answer = Vec::new();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let read = timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("no answer")
            .expect("read answer");
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

#[tokio::test]
async fn handshakes_follow_rfc_6455_on_version_key_and_http_version() {
    let server = start_server(&[]);
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    // An unknown version: 426 naming the version spoken (RFC 6455 4.2.2).
    let head = upgrade_answer_head(
        server.addr,
        "HTTP/1.1",
        &format!("{KEY}Sec-WebSocket-Version: 8\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 426"), "version 8: {head}");
    assert!(
        head.contains("\r\nsec-websocket-version: 13\r\n"),
        "version 8: {head}"
    );
    // A key that is not base64 of 16 bytes: 400.
    for key in [
        "dGhlIHNhbXBsZSBub25jZQ",
        "c2hvcnQ=",
        "dGhlIHNhbXBsZSBub25jZSE=",
        "not base64 at all!!!!!==",
    ] {
        let headers = format!("Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n");
        let head = upgrade_answer_head(server.addr, "HTTP/1.1", &headers).await;
        assert!(head.starts_with("http/1.1 400"), "key {key:?}: {head}");
    }
    // An HTTP/1.0 upgrade: 400.
    let headers = format!("{KEY}Sec-WebSocket-Version: 13\r\n");
    let head = upgrade_answer_head(server.addr, "HTTP/1.0", &headers).await;
    assert!(head.contains(" 400 "), "HTTP/1.0: {head}");
    // The same request over HTTP/1.1 is accepted.
    let head = upgrade_answer_head(server.addr, "HTTP/1.1", &headers).await;
    assert!(head.starts_with("http/1.1 101"), "valid upgrade: {head}");
}
