//! Client frames the server must reassemble or refuse: fragmentation with an interleaved ping,
//! the message-size limit, masking, UTF-8, reserved bits and opcodes, control-frame size —
//! each refusal with its RFC 6455 close code (see SERVER_API: 1002, 1007, 1009).

use crate::util::raw::{FrameSpec, Next, RawClient, BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use crate::util::{start_server, ws};

/// `--max-message` for the limit tests (bytes).
const LIMIT: usize = 1024;

#[tokio::test]
async fn fragmented_text_with_ping_between_is_reassembled() {
    let server = start_server(&[]);
    let mut listener = ws::connect(server.addr, "/ws/frag").await;
    let mut raw = RawClient::connect(server.addr, "/ws/frag").await;

    raw.send(FrameSpec::new(TEXT, "Hello, ".as_bytes()).not_final())
        .await;
    raw.send(FrameSpec::new(PING, b"between fragments")).await;
    raw.send(FrameSpec::new(CONTINUATION, "fragmented ".as_bytes()).not_final())
        .await;
    raw.send(FrameSpec::new(CONTINUATION, "wörld 🌍".as_bytes()))
        .await;

    assert_eq!(
        ws::next_text(&mut listener).await,
        "Hello, fragmented wörld 🌍"
    );

    // The sender gets the pong for its ping (same payload) and the whole message as one frame.
    let mut got_pong = false;
    let message = loop {
        match raw.next().await {
            Next::Frame(f) if f.opcode == PONG => {
                assert_eq!(f.payload, b"between fragments", "pong payload");
                got_pong = true;
            }
            Next::Frame(f) => break f,
            Next::Closed => panic!("connection closed"),
        }
    };
    assert!(got_pong, "no pong before the reassembled message");
    // Unmasked, no reserved bits: the raw client refuses anything else.
    assert!(message.fin && message.opcode == TEXT, "{message:?}");
    assert_eq!(message.payload, "Hello, fragmented wörld 🌍".as_bytes());
}

#[tokio::test]
async fn fragmented_binary_is_reassembled() {
    let server = start_server(&[]);
    let mut raw = RawClient::connect(server.addr, "/ws/fragbin").await;
    raw.send(FrameSpec::new(BINARY, &[0, 1, 2]).not_final())
        .await;
    raw.send(FrameSpec::new(CONTINUATION, &[3, 4, 255])).await;
    let frame = raw.next_data_frame().await;
    assert!(frame.fin && frame.opcode == BINARY, "{frame:?}");
    assert_eq!(frame.payload, [0, 1, 2, 3, 4, 255]);
}

/// Starts a server with `--max-message LIMIT`, sends `frames` from a raw client and returns
/// the close code the server answered with.
async fn close_code_after(frames: &[FrameSpec<'_>]) -> u16 {
    let server = start_server(&["--max-message", &LIMIT.to_string()]);
    let mut raw = RawClient::connect(server.addr, "/ws/proto").await;
    for frame in frames {
        raw.send_bytes(&frame.encode()).await;
    }
    raw.expect_close_code().await
}

#[tokio::test]
async fn message_at_the_limit_passes() {
    let server = start_server(&["--max-message", &LIMIT.to_string()]);
    let mut raw = RawClient::connect(server.addr, "/ws/limit").await;
    raw.send(FrameSpec::new(BINARY, &[7; LIMIT])).await;
    assert_eq!(raw.next_data_frame().await.payload.len(), LIMIT);
}

#[tokio::test]
async fn single_frame_over_max_message_closes_1009() {
    let code = close_code_after(&[FrameSpec::new(BINARY, &[7; LIMIT + 1])]).await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn reassembled_total_over_max_message_closes_1009() {
    // Each fragment is under the limit; only their sum is over it.
    let part = [b'x'; LIMIT / 2];
    let code = close_code_after(&[
        FrameSpec::new(TEXT, &part).not_final(),
        FrameSpec::new(CONTINUATION, &part).not_final(),
        FrameSpec::new(CONTINUATION, b"over"),
    ])
    .await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn unmasked_client_frame_closes_1002() {
    let code = close_code_after(&[FrameSpec {
        masked: false,
        ..FrameSpec::new(TEXT, b"no mask")
    }])
    .await;
    assert_eq!(code, 1002);
}

#[tokio::test]
async fn invalid_utf8_text_closes_1007() {
    let code = close_code_after(&[FrameSpec::new(TEXT, b"bad \xff\xfe utf-8")]).await;
    assert_eq!(code, 1007);
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_1007() {
    // "\xE2\x82" is a valid but incomplete prefix of a 3-byte sequence; the next fragment
    // continues it with '(' which is not a continuation byte. Neither fragment alone is
    // invalid as a prefix; the message is.
    let code = close_code_after(&[
        FrameSpec::new(TEXT, b"euro \xE2\x82").not_final(),
        FrameSpec::new(CONTINUATION, b"(oops"),
    ])
    .await;
    assert_eq!(code, 1007);
}

#[tokio::test]
async fn reserved_bits_close_1002() {
    for rsv in [0b100, 0b010, 0b001] {
        let code = close_code_after(&[FrameSpec {
            rsv,
            ..FrameSpec::new(TEXT, b"rsv set")
        }])
        .await;
        assert_eq!(code, 1002, "RSV bits {rsv:03b}");
    }
}

#[tokio::test]
async fn unknown_opcodes_close_1002() {
    // 0x3-0x7 are reserved data opcodes, 0xB-0xF reserved control opcodes.
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        let code = close_code_after(&[FrameSpec::new(opcode, b"?")]).await;
        assert_eq!(code, 1002, "opcode {opcode:#x}");
    }
}

#[tokio::test]
async fn control_frames_over_125_bytes_close_1002() {
    // Ping, and close (Autobahn 7.3.6: a close with a 126-byte payload must get 1002, not 1000).
    let mut close_payload = 1000u16.to_be_bytes().to_vec();
    close_payload.extend_from_slice(&[b'r'; 124]);
    for (opcode, payload) in [(PING, vec![b'p'; 126]), (CLOSE, close_payload)] {
        let code = close_code_after(&[FrameSpec::new(opcode, &payload)]).await;
        assert_eq!(
            code,
            1002,
            "control opcode {opcode:#x} with {} B",
            payload.len()
        );
    }
}

#[tokio::test]
async fn continuation_without_a_started_message_closes_1002() {
    let code = close_code_after(&[FrameSpec::new(CONTINUATION, b"orphan")]).await;
    assert_eq!(code, 1002);
}

#[tokio::test]
async fn client_close_is_echoed_with_its_code() {
    let code = close_code_after(&[FrameSpec::new(CLOSE, &1000u16.to_be_bytes())]).await;
    assert_eq!(code, 1000);
}
