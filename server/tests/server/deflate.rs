//! permessage-deflate (RFC 7692): the negotiation in the 101, a room's messages compressed
//! once for its deflate clients (plain for the others), and compressed client messages
//! inflated under `--max-message`.

use flate2::{Decompress, FlushDecompress};

use crate::util::metrics::{scrape, total};
use crate::util::raw::{FrameSpec, RawClient, ServerFrame, PING, TEXT};
use crate::util::{start_server, ws};

/// What Chrome, Safari and the npm `ws` client offer.
const BROWSER_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
/// The acceptance, lowercased as `connect_with_headers` returns the head.
const ACCEPTED: &str = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; \
                        client_no_context_takeover\r\n";
/// "Hello" compressed (RFC 7692 7.2.3.1).
const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// RSV1 in `FrameSpec::rsv`'s numbering.
const RSV1: u8 = 0b100;

/// A 1 KiB chat-like JSON text: what compresses as chat does.
fn chat_json() -> String {
    let line = r#"{"user":"ada","text":"see you at the standup, bring the release notes","ts":"2026-12-06T13:40:55Z"}"#;
    let mut text = format!("[{line}");
    while text.len() < 1000 {
        text.push(',');
        text.push_str(line);
    }
    text.push(']');
    text
}

/// The message of a compressed frame, inflated as a client with a `window_bits` window does.
fn inflate(frame: &ServerFrame, window_bits: u8) -> Vec<u8> {
    assert!(frame.rsv1 && frame.fin, "a compressed message in one frame");
    let mut data = frame.payload.clone();
    data.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 16);
    Decompress::new_with_window_bits(false, window_bits)
        .decompress_vec(&data, &mut out, FlushDecompress::Sync)
        .expect("valid deflate data");
    out
}

#[tokio::test]
async fn a_room_s_message_is_compressed_for_deflate_clients_and_plain_for_the_others() {
    let server = start_server(&["--deflate", "on"]);
    let mut plain = ws::connect(server.addr, "/ws/deflate").await;
    let (mut raw, head) =
        RawClient::connect_with_headers(server.addr, "/ws/deflate", BROWSER_OFFER).await;
    assert!(head.contains(ACCEPTED), "{head}");
    let small_window =
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
    let (mut windowed, head) =
        RawClient::connect_with_headers(server.addr, "/ws/deflate", small_window).await;
    assert!(head.contains("server_max_window_bits=10\r\n"), "{head}");
    // A short compressed message from a client: inflated, and plain to everyone (under
    // --deflate-min-size); the raw clients check every frame's reserved bits.
    raw.send(FrameSpec {
        rsv: RSV1,
        ..FrameSpec::new(TEXT, HELLO)
    })
    .await;
    assert_eq!(ws::next_text(&mut plain).await, "Hello");
    for client in [&mut raw, &mut windowed] {
        let echo = client.next_data_frame().await;
        assert!(!echo.rsv1);
        assert_eq!((echo.opcode, &echo.payload[..]), (TEXT, &b"Hello"[..]));
    }
    // A 1 KiB chat message from a plain client: compressed once, for the smallest window in
    // the room, which both deflate clients inflate; plain to the plain client.
    let message = chat_json();
    ws::send_text(&mut plain, &message).await;
    assert_eq!(ws::next_text(&mut plain).await, message);
    let compressed = raw.next_data_frame().await;
    assert_eq!(compressed.opcode, TEXT);
    assert!(
        compressed.payload.len() * 3 < message.len(),
        "{}",
        compressed.payload.len()
    );
    assert_eq!(inflate(&compressed, 15), message.as_bytes());
    let same = windowed.next_data_frame().await;
    assert_eq!(same.payload, compressed.payload, "one frame for both");
    assert_eq!(inflate(&same, 10), message.as_bytes());
    let samples = scrape(server.addr).await;
    assert_eq!(total(&samples, "ringcast_deflate_deliveries_total"), 2.0);
    assert_eq!(
        total(&samples, "ringcast_deflate_out_compressed_bytes_total"),
        // The frame: a 16-bit length past 125 bytes.
        (compressed.payload.len() + if compressed.payload.len() < 126 { 2 } else { 4 }) as f64,
        "compressed once"
    );
    assert_eq!(
        total(&samples, "ringcast_deflate_in_inflated_bytes_total"),
        5.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_asked_an_8_bit_window_gets_plain_frames() {
    // zlib makes no raw stream with an 8-bit window: the offer is agreed to and honoured by
    // never compressing for that client.
    let server = start_server(&["--deflate", "on"]);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n";
    let (mut raw, head) = RawClient::connect_with_headers(server.addr, "/ws/eight", offer).await;
    assert!(head.contains("server_max_window_bits=8\r\n"), "{head}");
    let message = chat_json();
    raw.send(FrameSpec::new(TEXT, message.as_bytes())).await;
    let echo = raw.next_data_frame().await;
    assert!(!echo.rsv1);
    assert_eq!(echo.payload, message.as_bytes());
    server.shutdown().await;
}

#[tokio::test]
async fn compressed_input_is_bounded_and_rsv1_checked() {
    let server = start_server(&["--deflate", "on", "--max-message", "4"]);
    // "Hello" is 5 bytes inflated: past the limit, 1009.
    let (mut raw, _) = RawClient::connect_with_headers(server.addr, "/ws/d", BROWSER_OFFER).await;
    raw.send(FrameSpec {
        rsv: RSV1,
        ..FrameSpec::new(TEXT, HELLO)
    })
    .await;
    assert_eq!(raw.expect_close_code().await, 1009);
    // RSV1 on a control frame: 1002.
    let (mut raw, _) = RawClient::connect_with_headers(server.addr, "/ws/d", BROWSER_OFFER).await;
    raw.send(FrameSpec {
        rsv: RSV1,
        ..FrameSpec::new(PING, b"")
    })
    .await;
    assert_eq!(raw.expect_close_code().await, 1002);
    // Data that does not inflate (a block of the reserved type 3), within the limit: 1007.
    let (mut raw, _) = RawClient::connect_with_headers(server.addr, "/ws/d", BROWSER_OFFER).await;
    raw.send(FrameSpec {
        rsv: RSV1,
        ..FrameSpec::new(TEXT, &[0xff; 3])
    })
    .await;
    assert_eq!(raw.expect_close_code().await, 1007);
    server.shutdown().await;
}

#[tokio::test]
async fn declined_offers_still_upgrade_without_the_extension() {
    // Off: no extension, and RSV1 stays a protocol error.
    let server = start_server(&["--deflate", "off"]);
    let (mut raw, head) =
        RawClient::connect_with_headers(server.addr, "/ws/d", BROWSER_OFFER).await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    raw.send(FrameSpec {
        rsv: RSV1,
        ..FrameSpec::new(TEXT, HELLO)
    })
    .await;
    assert_eq!(raw.expect_close_code().await, 1002);
    server.shutdown().await;
    // On, but the offer asks a window no server can use, or does not parse.
    let server = start_server(&["--deflate", "on"]);
    for offer in [
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"\r\n",
    ] {
        let (_raw, head) = RawClient::connect_with_headers(server.addr, "/ws/d", offer).await;
        assert!(
            !head.contains("sec-websocket-extensions"),
            "{offer}: {head}"
        );
    }
    server.shutdown().await;
}
