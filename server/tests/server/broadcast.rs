//! Chat-room broadcast: a message reaches every client of its room (the sender included),
//! unchanged and with its kind (text/binary), and no client of another room.

use tokio_tungstenite::tungstenite::Message;

use crate::util::{start_server, ws};

#[tokio::test]
async fn sender_receives_its_own_message() {
    let server = start_server(&[]);
    let mut alice = ws::connect(server.addr, "/ws/solo").await;
    ws::send_text(&mut alice, "hello me").await;
    assert_eq!(ws::next_text(&mut alice).await, "hello me");
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = start_server(&[]);
    let mut a1 = ws::connect(server.addr, "/ws/room-a").await;
    let mut a2 = ws::connect(server.addr, "/ws/room-a").await;
    let mut b1 = ws::connect(server.addr, "/ws/room-b").await;

    ws::send_text(&mut a1, "for room a").await;
    assert_eq!(ws::next_text(&mut a1).await, "for room a");
    assert_eq!(ws::next_text(&mut a2).await, "for room a");

    // b1 sends a marker to its own room after room a's message went out everywhere: if room a's
    // message had leaked to b1, b1 would read it before its own marker.
    ws::send_text(&mut b1, "for room b").await;
    assert_eq!(
        ws::next_text(&mut b1).await,
        "for room b",
        "room a's message leaked into room b"
    );

    // And the other way round: a2's next message is a1's next one, not b1's.
    ws::send_text(&mut a1, "second for a").await;
    assert_eq!(
        ws::next_text(&mut a2).await,
        "second for a",
        "room b's message leaked into room a"
    );
}

#[tokio::test]
async fn plain_ws_path_is_the_default_room() {
    let server = start_server(&[]);
    let mut plain = ws::connect(server.addr, "/ws").await;
    let mut named = ws::connect(server.addr, "/ws/default").await;
    ws::send_text(&mut plain, "via /ws").await;
    assert_eq!(ws::next_text(&mut named).await, "via /ws");
    ws::send_text(&mut named, "via /ws/default").await;
    assert_eq!(ws::next_text(&mut plain).await, "via /ws");
    assert_eq!(ws::next_text(&mut plain).await, "via /ws/default");
}

/// Payload sizes on both sides of the frame-header length encodings (7-bit, 16-bit, 64-bit).
const SIZES: [usize; 7] = [0, 1, 125, 126, 65_535, 65_536, 200_000];

/// A --max-message above the largest of `SIZES` (4 bytes per char at most), and a backlog
/// that holds such a message (the server requires that).
const MAX_MESSAGE: &str = "1MiB";
const MAX_BACKLOG: &str = "4MiB";

#[tokio::test]
async fn binary_messages_arrive_unchanged_and_binary() {
    let server = start_server(&["--max-message", MAX_MESSAGE, "--max-backlog", MAX_BACKLOG]);
    let mut sender = ws::connect(server.addr, "/ws/bin").await;
    let mut receiver = ws::connect(server.addr, "/ws/bin").await;
    for size in SIZES {
        // Every byte value, in a pattern that shifts with the size so messages differ.
        let payload: Vec<u8> = (0..size).map(|i| ((i * 7 + size) % 256) as u8).collect();
        ws::send(&mut sender, Message::binary(payload.clone())).await;
        for client in [&mut receiver, &mut sender] {
            match ws::next_data(client).await {
                Message::Binary(got) => {
                    assert!(got[..] == payload[..], "binary payload of {size} B changed")
                }
                other => panic!("binary message of {size} B arrived as {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn text_messages_arrive_unchanged_and_text() {
    let server = start_server(&["--max-message", MAX_MESSAGE, "--max-backlog", MAX_BACKLOG]);
    let mut sender = ws::connect(server.addr, "/ws/text").await;
    let mut receiver = ws::connect(server.addr, "/ws/text").await;
    for size in SIZES {
        // Multi-byte characters included: "ringcast — 環 🎉 ".
        let text: String = "ringcast — 環 🎉 ".chars().cycle().take(size).collect();
        ws::send_text(&mut sender, &text).await;
        assert_eq!(
            ws::next_text(&mut receiver).await,
            text,
            "text of {size} chars changed"
        );
        assert_eq!(
            ws::next_text(&mut sender).await,
            text,
            "sender's copy of {size} chars changed"
        );
    }
}

#[tokio::test]
async fn messages_keep_the_order_the_server_received_them_in() {
    let server = start_server(&[]);
    let mut sender = ws::connect(server.addr, "/ws/order").await;
    let mut receiver = ws::connect(server.addr, "/ws/order").await;
    for i in 0..200 {
        ws::send_text(&mut sender, &format!("m{i}")).await;
    }
    for i in 0..200 {
        assert_eq!(ws::next_text(&mut receiver).await, format!("m{i}"));
    }
}
