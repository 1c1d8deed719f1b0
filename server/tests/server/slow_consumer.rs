//! Slow consumers: a client that never reads is closed once its outbound backlog exceeds
//! `--max-backlog` and is counted, while a fast client of the same room still gets every
//! message in order.

use crate::util::raw::{Next, RawClient, CLOSE};
use crate::util::{metrics, start_server, ws};

/// Per-connection outbound budget for the test (bytes).
const BACKLOG: usize = 64 * 1024;
/// Messages published and their size: 16 MiB in all, far more than the stalled client's
/// socket buffers (a few MiB at most on loopback) plus its backlog, so it must overflow.
const MESSAGES: usize = 1_024;
const MESSAGE_SIZE: usize = 16 * 1024;

/// Name of the counter of connections closed for exceeding the backlog.
const SLOW_CONSUMER_COUNTER: &str = "ringcast_slow_consumer_closes_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_closed_and_counted_while_fast_client_gets_everything() {
    let server = start_server(&[
        "--max-backlog",
        &BACKLOG.to_string(),
        "--max-message",
        "32KiB",
    ]);
    let mut stalled = RawClient::connect_with_small_rcvbuf(server.addr, "/ws/slow").await;
    let mut fast = ws::connect(server.addr, "/ws/slow").await;
    let mut publisher = ws::connect(server.addr, "/ws/slow").await;

    // Lockstep: each message is read by the fast client and by the publisher (its own copy)
    // before the next is sent, so only the stalled client ever falls behind.
    for seq in 0..MESSAGES {
        let mut text = format!("{seq:08} ");
        text.extend(std::iter::repeat_n('s', MESSAGE_SIZE - text.len()));
        ws::send_text(&mut publisher, &text).await;
        let got = ws::next_text(&mut fast).await;
        assert_eq!(
            &got[..8],
            &format!("{seq:08}")[..],
            "the fast client lost or reordered a message"
        );
        assert_eq!(got.len(), MESSAGE_SIZE);
        assert_eq!(
            &ws::next_text(&mut publisher).await[..8],
            &format!("{seq:08}")[..]
        );
    }

    // Now read what the stalled client was sent: the server must have ended its connection
    // (close 1008 if a close frame fits, or just the TCP end) before it got everything.
    let mut delivered = 0usize;
    let close_code = loop {
        match stalled.next().await {
            Next::Frame(frame) if frame.opcode == CLOSE => break frame.close_code(),
            Next::Frame(_) => delivered += 1,
            Next::Closed => break None,
        }
    };
    assert!(
        delivered < MESSAGES,
        "the stalled client got all {MESSAGES} messages: it was never cut off"
    );
    if let Some(code) = close_code {
        assert_eq!(code, 1008, "slow-consumer close code");
    }

    let counted = metrics::total(&metrics::scrape(server.addr).await, SLOW_CONSUMER_COUNTER);
    assert_eq!(
        counted, 1.0,
        "{SLOW_CONSUMER_COUNTER} after one slow consumer"
    );
}
