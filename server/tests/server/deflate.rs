//! permessage-deflate (RFC 7692) as far as it is built (issue 20): the negotiation in the 101
//! and compressed client messages inflated under `--max-message`; frames to clients are still
//! plain, which the extension allows.

use crate::util::raw::{FrameSpec, RawClient, PING, TEXT};
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

#[tokio::test]
async fn a_compressed_message_reaches_plain_and_deflate_clients() {
    let server = start_server(&["--deflate", "on"]);
    let mut plain = ws::connect(server.addr, "/ws/deflate").await;
    let (mut raw, head) =
        RawClient::connect_with_headers(server.addr, "/ws/deflate", BROWSER_OFFER).await;
    assert!(head.contains(ACCEPTED), "{head}");
    raw.send(FrameSpec {
        rsv: RSV1,
        ..FrameSpec::new(TEXT, HELLO)
    })
    .await;
    assert_eq!(ws::next_text(&mut plain).await, "Hello");
    // The publisher is subscribed too; its copy is plain (RSV1 clear, which the raw client
    // checks) until the compressed fan-out is built.
    let echo = raw.next_data_frame().await;
    assert_eq!((echo.opcode, &echo.payload[..]), (TEXT, &b"Hello"[..]));
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
    // Off (the default): no extension, and RSV1 stays a protocol error.
    let server = start_server(&[]);
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
    // On, but the offer asks a window the server does not use, or does not parse.
    let server = start_server(&["--deflate", "on"]);
    for offer in [
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
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
