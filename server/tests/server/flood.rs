//! Bounded by construction: a client flooding a room as fast as TCP lets it is pushed back
//! (the server stops reading it) instead of growing the server's memory, and the room's
//! readers keep receiving and are not closed as slow consumers, even though each of them
//! stops reading for a moment (a hiccup: a GC pause, a busy event loop) while the flood goes
//! on. Their receive buffers are small, so the kernel absorbs little and the backlog is the
//! server's to hold: 0.1.0 queued it without limit between cores and up to --max-backlog per
//! reader, then closed the readers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::process::{rss_kib, spawn_server};
use crate::util::raw::{FrameSpec, RawClient, BINARY, TEXT};
use crate::util::{metrics, raise_fd_limit, BASE_ARGS};

/// Readers in the flooded room.
const READERS: usize = 100;
/// How long each reader stops reading at the start of the flood.
const HICCUP: Duration = Duration::from_secs(3);
/// How long the flooder sends.
const FLOOD: Duration = Duration::from_secs(6);
/// How long after the flood a reader may take to show what it was sent in the flood's second
/// half.
const STRAGGLER_GRACE: Duration = Duration::from_secs(3);
/// Most the server's RSS may grow under the flood (0.1.0 grew by hundreds of MiB).
const MAX_GROWTH_KIB: u64 = 128 << 10;
/// A fan-out budget the flood exhausts within the hiccup however slowly a loaded machine runs
/// this debug build (a release build exhausts the default 64 MiB the same way: see the flood
/// figures in the README).
const BUDGET: &str = "256KiB";

/// A reader that pauses for [`HICCUP`], then drains its socket as fast as it can, counting
/// bytes, noting a close.
fn spawn_reader(
    stream: crate::util::tls::Stream,
    received: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut stream = stream;
        tokio::time::sleep(HICCUP).await;
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        closed.store(true, Ordering::Relaxed);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_pushed_back_and_memory_stays_bounded() {
    raise_fd_limit();
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--fanout-budget", BUDGET]);
    let server = spawn_server(&args);
    let pid = server.child.id();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (stream, _) = RawClient::connect_with_small_rcvbuf(server.addr, "/ws/flooded")
            .await
            .into_parts();
        let received = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        spawn_reader(stream, Arc::clone(&received), Arc::clone(&closed));
        readers.push((received, closed));
    }
    let baseline = rss_kib(pid);

    let (mut flooder, _) = RawClient::connect(server.addr, "/ws/flooded")
        .await
        .into_parts();
    let frame = FrameSpec::new(BINARY, &[0x5a; 64]).encode();
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 1000)
        .collect();
    let flooding = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + FLOOD;
        while tokio::time::Instant::now() < until {
            // A write that blocks past the end is the server pushing back: stop there.
            // Pushed back, the write blocks past the end; or the server closed the flooder
            // with 1013 (it is the heavy publisher when the held bytes pass twice the budget,
            // which a loaded machine can reach while the readers hiccup). Both end the flood.
            match tokio::time::timeout_at(until, flooder.write_all(&burst)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        flooder
    });

    let mut peak = baseline;
    let mut halfway = None;
    let start = tokio::time::Instant::now();
    while !flooding.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
        if halfway.is_none() && start.elapsed() >= HICCUP + (FLOOD - HICCUP) / 2 {
            halfway = Some(counts(&readers));
        }
    }
    let _flooder = flooding.await.expect("flooder task");
    let halfway = halfway.expect("sampled halfway");
    // What the server sent during the flood's second half may reach a reader a little after
    // the flood: the readers' runtime shares 2 CPUs with the server and, in the full suite,
    // with the other tests, so one can go unscheduled for a second or more.
    let grace_end = tokio::time::Instant::now() + STRAGGLER_GRACE;
    let at_end = loop {
        let now = counts(&readers);
        // Settled: every reader moved since halfway or has as much as the most advanced one
        // (it had everything already: the flood ended early).
        let most = now.iter().copied().max().unwrap_or(0);
        let settled = halfway
            .iter()
            .zip(&now)
            .all(|(before, after)| after > before || *after == most);
        if settled || tokio::time::Instant::now() >= grace_end {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {} MiB under the flood (from {} MiB)",
        growth >> 10,
        baseline >> 10
    );
    let closed = readers
        .iter()
        .filter(|(_, closed)| closed.load(Ordering::Relaxed))
        .count();
    assert_eq!(closed, 0, "healthy readers were closed");
    // Stuck: no progress since halfway while behind the others. A reader that already had
    // everything at halfway is not (the flood can end early: a flooder closed with 1013).
    let most = at_end.iter().copied().max().unwrap_or(0);
    let stuck = halfway
        .iter()
        .zip(&at_end)
        .filter(|&(before, after)| after <= before && *after < most)
        .count();
    assert_eq!(
        stuck, 0,
        "readers behind the others that received nothing after the flood's halfway point"
    );
    let samples = metrics::scrape(server.addr).await;
    eprintln!(
        "flood: RSS {} -> peak {} MiB; readers got {} MiB; {} messages in; {} pauses",
        baseline >> 10,
        peak >> 10,
        at_end.iter().sum::<u64>() >> 20,
        metrics::total(&samples, "ringcast_messages_in_total"),
        metrics::total(&samples, "ringcast_publish_pauses_total")
    );
    assert!(
        metrics::total(&samples, "ringcast_publish_pauses_total") > 0.0,
        "the flooder was never paused"
    );
    assert_eq!(
        metrics::total(&samples, "ringcast_slow_consumer_closes_total"),
        0.0
    );
    assert!(
        metrics::total(&samples, "ringcast_overload_closes_total") <= 1.0,
        "only the flooder may be closed for overload"
    );
}

/// Bytes each reader has received so far.
fn counts(readers: &[(Arc<AtomicU64>, Arc<AtomicBool>)]) -> Vec<u64> {
    readers
        .iter()
        .map(|(received, _)| received.load(Ordering::Relaxed))
        .collect()
}

/// A publisher the server stops reading because the fan-out budget stays exhausted (a slow
/// reader of the room holds it: it reads, so it is not stalled, but far slower than the
/// publisher sends) is closed with 1013 once --publish-timeout passes, and the slow reader is
/// left alone.
#[tokio::test]
async fn a_publisher_paused_past_the_publish_timeout_is_closed_with_1013() {
    let mut args = BASE_ARGS.to_vec();
    // The slow reader may hold far more than the budget: it is not a slow consumer here, and
    // it makes write progress within every --write-timeout.
    args.extend([
        "--fanout-budget",
        BUDGET,
        "--publish-timeout",
        "1s",
        "--write-timeout",
        "900ms",
        "--max-backlog",
        "64MiB",
    ]);
    let server = spawn_server(&args);
    let (mut slow, _) = RawClient::connect_with_small_rcvbuf(server.addr, "/ws/held")
        .await
        .into_parts();
    // 4 KiB every 50 ms (80 KiB/s): the server's writes to it progress, its queue does not
    // shrink below the budget in the test's time.
    let slow_reader = tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        loop {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let mut publisher = RawClient::connect(server.addr, "/ws/held").await;

    // 4 MiB of messages: far more than the budget and the kernel's buffers on the way to the
    // slow reader. The server stops reading them, so the write may not complete.
    let frame = FrameSpec::new(BINARY, &[0x5a; 16 << 10]).encode();
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 256)
        .collect();
    publisher
        .send_bytes_within(&burst, Duration::from_secs(3))
        .await;
    assert_eq!(
        publisher.expect_close_code().await,
        1013,
        "the paused publisher is closed with 1013"
    );

    let samples = metrics::scrape(server.addr).await;
    assert!(metrics::total(&samples, "ringcast_publish_pauses_total") >= 1.0);
    assert_eq!(
        metrics::total(&samples, "ringcast_overload_closes_total"),
        1.0,
        "only the publisher is closed for overload"
    );
    assert_eq!(
        metrics::total(&samples, "ringcast_slow_consumer_closes_total"),
        0.0,
        "the slow reader holding the budget is not closed"
    );
    assert!(
        !slow_reader.is_finished(),
        "the slow reader is still connected"
    );
    slow_reader.abort();
}

/// A flood of empty messages costs the budget a frame and a handle per reader each: it is a
/// heavy publisher like a flood of large ones, so it is the one paused at the budget, and a
/// light publisher of another room goes on. (Counted by payload bytes, it was never heavy:
/// the held bytes reached twice the budget, where every publisher waits, and room B's messages
/// took seconds, until --write-timeout closed the stalled readers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_message_flood_is_heavy_and_other_rooms_go_on() {
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--fanout-budget", "1MiB", "--publish-timeout", "30s"]);
    let server = spawn_server(&args);
    // Readers of room A that never read: what the flood sends them stays held.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let (stream, _) = RawClient::connect_with_small_rcvbuf(server.addr, "/ws/a")
            .await
            .into_parts();
        stalled.push(stream);
    }
    // First the readers' kernel buffers are filled with large messages, until the server
    // pushes back: from then on what room A is sent stays in the fan-out budget.
    let (mut filler, _) = RawClient::connect(server.addr, "/ws/a").await.into_parts();
    let large = FrameSpec::new(BINARY, &[0x5a; 32 << 10]).encode();
    while tokio::time::timeout(Duration::from_secs(1), filler.write_all(&large))
        .await
        .is_ok_and(|written| written.is_ok())
    {}
    let (mut flooder, _) = RawClient::connect(server.addr, "/ws/a").await.into_parts();
    let empty = FrameSpec::new(BINARY, b"").encode();
    let burst: Vec<u8> = empty
        .iter()
        .copied()
        .cycle()
        .take(empty.len() * 10_000)
        .collect();
    let flooding = tokio::spawn(async move {
        // Pushed back, a write blocks: the flood goes on as fast as the server reads it.
        while flooder.write_all(&burst).await.is_ok() {}
    });
    // Until the flood has filled the budget and been paused.
    let deadline = tokio::time::Instant::now() + crate::util::WAIT;
    loop {
        let samples = metrics::scrape(server.addr).await;
        if metrics::total(&samples, "ringcast_publish_pauses_total") > 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood was never paused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Room B's publisher gets each of its messages back (it reads its own room) while the
    // flood goes on; a paused room B would not get one within the wait.
    let mut publisher = RawClient::connect(server.addr, "/ws/b").await;
    for seq in 0..20u32 {
        let text = format!("b{seq}");
        publisher.send(FrameSpec::new(TEXT, text.as_bytes())).await;
        let echoed = tokio::time::timeout(Duration::from_secs(2), publisher.next_data_frame())
            .await
            .unwrap_or_else(|_| panic!("room B's message {seq} waited behind room A's flood"));
        assert_eq!(echoed.payload, text.as_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flooding.abort();
}
