//! Control frames a client sends are charged like messages: the pongs a ping flood makes the
//! server hold count at what they really take against `--max-backlog`, and pings and pongs
//! count toward `--max-inbound-rate`.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::util::process::{rss_kib, spawn_server};
use crate::util::raw::{FrameSpec, Next, RawClient, CLOSE, PING, PONG};
use crate::util::{metrics, start_server, BASE_ARGS};

/// Four clients that send 95,000 empty pings each and never read (small receive buffers, so
/// the kernel absorbs few pongs): each pong is charged what it holds (its boxes and buffer,
/// ~170 B), so each client is a slow consumer long before the 95,000th pong and the server's
/// memory grows by about `--max-backlog` per client. (Charged 10 B each, 95,000 pongs fitted
/// in the default 1 MiB backlog: no close, and RSS grew by ~38 MiB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_is_a_slow_consumer_at_its_backlog() {
    const CLIENTS: usize = 4;
    const PINGS: usize = 95_000;
    let server = spawn_server(&BASE_ARGS);
    let pid = server.child.id();
    let ping = FrameSpec::new(PING, b"").encode();
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * PINGS)
        .collect();
    let baseline = rss_kib(pid);
    let mut flooders = Vec::new();
    for _ in 0..CLIENTS {
        let (mut stream, _) = RawClient::connect_with_small_rcvbuf(server.addr, "/ws/pings")
            .await
            .into_parts();
        let burst = burst.clone();
        flooders.push(tokio::spawn(async move {
            // The server closes the connection once it is a slow consumer; the rest of the
            // burst may then fail to send.
            let _ = stream.write_all(&burst).await;
            stream
        }));
    }
    let mut streams = Vec::new();
    for flooder in flooders {
        streams.push(flooder.await.expect("flooder task"));
    }
    // Every ping sent has been read once the server answered the slow consumers or read them
    // all: wait until the closes are counted (or the bounded wait ends).
    let deadline = tokio::time::Instant::now() + crate::util::WAIT;
    let closes = loop {
        let samples = metrics::scrape(server.addr).await;
        let closes = metrics::total(&samples, "ringcast_slow_consumer_closes_total");
        if closes >= CLIENTS as f64 || tokio::time::Instant::now() >= deadline {
            break closes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let growth = rss_kib(pid).saturating_sub(baseline);
    eprintln!("ping flood: {closes} slow-consumer closes, RSS +{growth} KiB");
    assert_eq!(
        closes, CLIENTS as f64,
        "every ping flooder is a slow consumer at its --max-backlog"
    );
    assert!(
        growth < 16 << 10,
        "RSS grew by {growth} KiB for {CLIENTS} clients with a 1 MiB backlog each"
    );
    drop(streams);
}

/// With `--max-inbound-rate 10`, a burst of pings is closed with 1008 like a burst of
/// messages, and answered with at most the burst's worth of pongs; so is a burst of
/// unsolicited pongs.
#[tokio::test]
async fn pings_and_pongs_count_toward_the_inbound_rate() {
    let server = start_server(&["--max-inbound-rate", "10"]);
    for opcode in [PING, PONG] {
        let mut client = RawClient::connect(server.addr, "/ws/rate").await;
        let frame = FrameSpec::new(opcode, b"x").encode();
        let burst: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 200)
            .collect();
        client.send_bytes(&burst).await;
        let mut pongs = 0;
        let code = loop {
            match client.next().await {
                Next::Frame(frame) if frame.opcode == CLOSE => break frame.close_code(),
                Next::Frame(frame) if frame.opcode == PONG => pongs += 1,
                Next::Frame(_) => {}
                Next::Closed => break None,
            }
        };
        assert_eq!(code, Some(1008), "opcode {opcode}: closed for its rate");
        assert!(pongs <= 10, "opcode {opcode}: {pongs} pongs for 200 frames");
    }
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(
        metrics::total(&samples, "ringcast_rate_limit_closes_total"),
        2.0
    );
}
