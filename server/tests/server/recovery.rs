//! Ordered rooms and recovery over real sockets: one order per room whichever cores the
//! publishers and subscribers are on; `?since=` and `?history=` answered with a first JSON
//! message (position, recovered, reset) and then exactly the room's messages; bad values 400;
//! a replay bigger than the backlog sent as it drains; a restart starts a new epoch.

use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Barrier;

use crate::util::process::spawn_server;
use crate::util::{metrics, start_server, ws, BASE_ARGS};

/// Reads `count` text messages.
async fn texts(client: &mut ws::Client, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        got.push(ws::next_text(client).await);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_on_both_cores_are_seen_in_one_order_by_every_subscriber() {
    const CLIENTS: usize = 8;
    const EACH: usize = 100;
    let server = start_server(&[]);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(ws::connect(server.addr, "/ws/ordered").await);
    }
    let per_core = metrics::connections_per_core(&metrics::scrape(server.addr).await);
    assert!(
        per_core.iter().all(|(_, count)| *count > 0.0),
        "clients on both cores: {per_core:?}"
    );
    // Every client publishes as fast as it can, all at once, and reads everything.
    let start = Arc::new(Barrier::new(CLIENTS));
    let runs = clients.into_iter().enumerate().map(|(id, mut client)| {
        let start = Arc::clone(&start);
        async move {
            start.wait().await;
            for seq in 0..EACH {
                ws::send_text(&mut client, &format!("{id}-{seq}")).await;
            }
            texts(&mut client, CLIENTS * EACH).await
        }
    });
    let seen = join_all(runs.map(tokio::spawn)).await;
    let seen: Vec<Vec<String>> = seen.into_iter().map(|run| run.expect("client")).collect();
    for (id, order) in seen.iter().enumerate() {
        assert_eq!(
            order, &seen[0],
            "client {id} saw another order than client 0"
        );
        let own: Vec<String> = order
            .iter()
            .filter(|text| text.starts_with(&format!("{id}-")))
            .cloned()
            .collect();
        let sent: Vec<String> = (0..EACH).map(|seq| format!("{id}-{seq}")).collect();
        assert_eq!(
            own, sent,
            "client {id}'s own messages in their sending order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_history_are_answered_position_recovered_or_reset() {
    let server = start_server(&[]);
    let mut publisher = ws::connect(server.addr, "/ws/rec").await;
    let mut watcher = ws::connect(server.addr, "/ws/rec?since=").await;
    let (said, epoch, offset) = ws::first_notice(&mut watcher).await;
    assert_eq!((said.as_str(), offset), ("position", 0));
    for i in 1..=3 {
        ws::send_text(&mut publisher, &format!("m{i}")).await;
    }
    assert_eq!(texts(&mut watcher, 3).await, ["m1", "m2", "m3"]);
    drop(watcher);
    for i in 4..=5 {
        ws::send_text(&mut publisher, &format!("m{i}")).await;
    }
    assert_eq!(
        texts(&mut publisher, 5).await.len(),
        5,
        "the publisher reads its own"
    );

    // Back after offset 3: 4 and 5 replayed, then live, nothing twice.
    let mut back = ws::connect(server.addr, &format!("/ws/rec?since={epoch}:3")).await;
    assert_eq!(
        ws::first_notice(&mut back).await,
        ("recovered".into(), epoch.clone(), 3)
    );
    ws::send_text(&mut publisher, "m6").await;
    assert_eq!(texts(&mut back, 3).await, ["m4", "m5", "m6"]);

    // The colon percent-encoded, as encodeURIComponent writes it.
    let mut encoded = ws::connect(server.addr, &format!("/ws/rec?since={epoch}%3A5")).await;
    assert_eq!(
        ws::first_notice(&mut encoded).await,
        ("recovered".into(), epoch.clone(), 5)
    );
    assert_eq!(texts(&mut encoded, 1).await, ["m6"]);

    // The last two kept messages first.
    let mut joiner = ws::connect(server.addr, "/ws/rec?history=2").await;
    assert_eq!(
        ws::first_notice(&mut joiner).await,
        ("recovered".into(), epoch.clone(), 4)
    );
    assert_eq!(texts(&mut joiner, 2).await, ["m5", "m6"]);

    // Positions this server cannot continue: reset, nothing replayed, live after it.
    for (last, gone) in [
        (6, "someotherepoch:3".to_owned()),
        (7, format!("{epoch}:999")),
    ] {
        let mut reset = ws::connect(server.addr, &format!("/ws/rec?since={gone}")).await;
        assert_eq!(
            ws::first_notice(&mut reset).await,
            ("reset".into(), epoch.clone(), last)
        );
        ws::send_text(&mut publisher, "live").await;
        assert_eq!(texts(&mut reset, 1).await, ["live"]);
    }

    // A client that asks nothing sees no first message.
    let mut plain = ws::connect(server.addr, "/ws/rec").await;
    ws::send_text(&mut publisher, "plain").await;
    assert_eq!(texts(&mut plain, 1).await, ["plain"]);

    let samples = metrics::scrape(server.addr).await;
    let outcome = |result: &str| {
        samples
            .iter()
            .filter(|s| s.name == "ringcast_recoveries_total" && s.label("result") == Some(result))
            .map(|s| s.value)
            .sum::<f64>()
    };
    assert_eq!(
        (outcome("position"), outcome("recovered"), outcome("reset")),
        (1.0, 3.0, 2.0)
    );
    assert_eq!(
        metrics::total(&samples, "ringcast_replayed_messages_total"),
        5.0
    );
    assert!(metrics::total(&samples, "ringcast_history_messages") >= 6.0);
}

#[tokio::test]
async fn malformed_since_and_history_values_are_400() {
    let server = start_server(&[]);
    for query in [
        "since=garbage",
        "since=abc:-1",
        "since=abc:",
        "since=:5",
        "since=abc:99999999999999999999999",
        "since=a%20b:1",
        "history=x",
        "history=-3",
        "history=2000000",
        "since=&history=3",
        "since=&since=",
    ] {
        let status = ws::refused_status(server.addr, &format!("/ws/bad?{query}"), None).await;
        assert_eq!(status, 400, "?{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_bigger_than_the_backlog_arrives_whole_as_the_client_reads() {
    // 300 messages of 1 KiB kept, a backlog of 8 KiB: the replay cannot be queued at once.
    let server = start_server(&["--max-backlog", "8KiB", "--max-message", "4KiB"]);
    let mut publisher = ws::connect(server.addr, "/ws/big").await;
    let body = "x".repeat(1000);
    for i in 0..300 {
        ws::send_text(&mut publisher, &format!("{i:04}{body}")).await;
        assert!(ws::next_text(&mut publisher)
            .await
            .starts_with(&format!("{i:04}")));
    }
    let mut late = ws::connect(server.addr, "/ws/big?history=300").await;
    let (said, _, offset) = ws::first_notice(&mut late).await;
    assert_eq!((said.as_str(), offset), ("recovered", 0));
    for i in 0..300 {
        let text = ws::next_text(&mut late).await;
        assert_eq!(&text[..4], format!("{i:04}"), "replayed in order");
    }
    ws::send_text(&mut publisher, "after").await;
    assert_eq!(ws::next_text(&mut late).await, "after", "then live");
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(
        metrics::total(&samples, "ringcast_slow_consumer_closes_total"),
        0.0
    );
}

#[tokio::test]
async fn history_is_bounded_by_count_and_a_restart_starts_a_new_epoch() {
    let args: Vec<&str> = BASE_ARGS
        .iter()
        .copied()
        .chain(["--history", "3"])
        .collect();
    let server = spawn_server(&args);
    let mut publisher = ws::connect(server.addr, "/ws/kept").await;
    for i in 1..=5 {
        ws::send_text(&mut publisher, &format!("m{i}")).await;
    }
    assert_eq!(texts(&mut publisher, 5).await.len(), 5);
    let mut joiner = ws::connect(server.addr, "/ws/kept?history=10").await;
    let (said, epoch, offset) = ws::first_notice(&mut joiner).await;
    assert_eq!((said.as_str(), offset), ("recovered", 2), "only 3..5 kept");
    assert_eq!(texts(&mut joiner, 3).await, ["m3", "m4", "m5"]);
    let mut too_old = ws::connect(server.addr, &format!("/ws/kept?since={epoch}:1")).await;
    assert_eq!(
        ws::first_notice(&mut too_old).await,
        ("reset".into(), epoch.clone(), 5)
    );
    drop((publisher, joiner, too_old));
    drop(server);

    let restarted = spawn_server(&args);
    let mut back = ws::connect(restarted.addr, &format!("/ws/kept?since={epoch}:5")).await;
    let (said, new_epoch, offset) = ws::first_notice(&mut back).await;
    assert_eq!((said.as_str(), offset), ("reset", 0));
    assert_ne!(new_epoch, epoch, "a restart loses the history: a new epoch");
}
