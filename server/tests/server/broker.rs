//! Several nodes through a real Redis (`--broker`): a message reaches the room's clients on
//! every node, once, in each publisher's order; rooms stay apart across nodes; a Redis that
//! dies leaves local rooms working and `/readyz` at 503, and cross-node delivery resumes by
//! itself once Redis is back; a Redis that answers late and in pieces is waited for, and a
//! link that fails alone leaves the other connected; what another publisher puts on a room's
//! channel that is not a valid envelope reaches nobody; a node without `--broker` has none of
//! it. Recovery: every node has the same epoch and offsets for a room, a client recovers on
//! another node than the one it left, and while Redis is away a position is `reset`; a Redis
//! that forgot the sequencing script gets it again on the same connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use crate::util::redis::{Redis, SlowProxy};
use crate::util::{http, metrics, start_server, ws, TestServer, WAIT};

/// A node of a cluster on `redis`, with `extra` arguments.
fn node(redis: &Redis, extra: &[&str]) -> TestServer {
    let url = redis.url();
    let mut args = vec!["--broker", url.as_str()];
    args.extend_from_slice(extra);
    start_server(&args)
}

/// Waits until the node's broker links are up and it is subscribed to `rooms` channels.
async fn wait_subscribed(addr: SocketAddr, rooms: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let samples = metrics::scrape(addr).await;
        let up = metrics::total(&samples, "ringcast_broker_up");
        let subscribed = metrics::total(&samples, "ringcast_broker_subscriptions");
        if up == 1.0 && subscribed == rooms {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {addr}: broker up {up}, {subscribed} subscriptions, expected {rooms}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the node's metric `name` (summed over its series) reaches `expected`, and
/// fails if it passes it.
async fn wait_total(addr: SocketAddr, name: &str, expected: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let total = metrics::total(&metrics::scrape(addr).await, name);
        if total >= expected {
            assert_eq!(total, expected, "node {addr}: {name}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {addr}: {name} is {total}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `GET /readyz` answers `status`.
async fn wait_ready_status(addr: SocketAddr, status: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = http::get(addr, "/readyz", &[]).await;
        if response.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {addr}: /readyz stayed {} ({}), expected {status}",
            response.status,
            response.body_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_client_of_the_room_on_every_node_gets_each_message_once_in_order() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut on_a = ws::connect(a.addr, "/ws/chat").await;
    let mut on_b = [
        ws::connect(b.addr, "/ws/chat").await,
        ws::connect(b.addr, "/ws/chat").await,
    ];
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;

    // Two publishers, one per node, interleaved: each one's order must hold everywhere.
    const EACH: usize = 40;
    for i in 0..EACH {
        ws::send_text(&mut on_a, &format!("a{i}")).await;
        ws::send_text(&mut on_b[0], &format!("b{i}")).await;
    }
    let mut receivers: Vec<_> = std::iter::once(&mut on_a).chain(on_b.iter_mut()).collect();
    for (index, receiver) in receivers.iter_mut().enumerate() {
        let (mut from_a, mut from_b) = (0, 0);
        for _ in 0..2 * EACH {
            let text = ws::next_text(receiver).await;
            let (counter, publisher) = match text.as_bytes()[0] {
                b'a' => (&mut from_a, "a"),
                _ => (&mut from_b, "b"),
            };
            assert_eq!(text, format!("{publisher}{counter}"), "receiver {index}");
            *counter += 1;
        }
    }
    // No duplicate behind them: the next message anyone gets is this marker.
    ws::send_text(&mut on_b[1], "marker").await;
    for receiver in std::iter::once(&mut on_a).chain(on_b.iter_mut()) {
        assert_eq!(
            ws::next_text(receiver).await,
            "marker",
            "a duplicate arrived"
        );
    }
    // The publish link counts after its round trip, which may end after b's clients read.
    wait_total(a.addr, "ringcast_broker_messages_out_total", EACH as f64).await;
    // Every message comes back from Redis, a's own too: Redis orders them all.
    wait_total(
        a.addr,
        "ringcast_broker_messages_in_total",
        2.0 * EACH as f64 + 1.0,
    )
    .await;
}

#[tokio::test]
async fn rooms_are_isolated_across_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut sender = ws::connect(a.addr, "/ws/red").await;
    let mut red_on_b = ws::connect(b.addr, "/ws/red").await;
    let mut blue_on_b = ws::connect(b.addr, "/ws/blue").await;
    wait_subscribed(b.addr, 2.0).await;

    ws::send_text(&mut sender, "for red").await;
    assert_eq!(ws::next_text(&mut red_on_b).await, "for red");
    // If red's message had leaked into blue, blue would read it before its own.
    ws::send_text(&mut blue_on_b, "for blue").await;
    assert_eq!(ws::next_text(&mut blue_on_b).await, "for blue");
    // A node subscribes only to rooms it has members of: node a has only red; b unsubscribes
    // from blue once its last member left.
    wait_subscribed(a.addr, 1.0).await;
    drop(blue_on_b);
    wait_subscribed(b.addr, 1.0).await;
}

#[tokio::test]
async fn local_rooms_work_while_redis_is_down_and_nodes_reconnect_when_it_is_back() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut first_on_a = ws::connect(a.addr, "/ws/chat").await;
    let mut second_on_a = ws::connect(a.addr, "/ws/chat").await;
    let mut on_b = ws::connect(b.addr, "/ws/chat").await;
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    wait_ready_status(a.addr, 200).await;

    redis.kill();
    wait_ready_status(a.addr, 503).await;
    wait_ready_status(b.addr, 503).await;
    assert_eq!(http::get(a.addr, "/healthz", &[]).await.status, 200);
    for i in 0..20 {
        ws::send_text(&mut first_on_a, &format!("local {i}")).await;
    }
    for receiver in [&mut first_on_a, &mut second_on_a] {
        for i in 0..20 {
            assert_eq!(ws::next_text(receiver).await, format!("local {i}"));
        }
    }

    redis.restart();
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    wait_ready_status(a.addr, 200).await;
    ws::send_text(&mut first_on_a, "across again").await;
    // What was sent during the outage is not replayed: b's next message is this one.
    assert_eq!(ws::next_text(&mut on_b).await, "across again");
    ws::send_text(&mut on_b, "and back").await;
    assert_eq!(ws::next_text(&mut second_on_a).await, "across again");
    assert_eq!(ws::next_text(&mut second_on_a).await, "and back");
    let samples = metrics::scrape(a.addr).await;
    assert!(metrics::total(&samples, "ringcast_broker_reconnects_total") >= 2.0);
    assert!(metrics::total(&samples, "ringcast_broker_dropped_total") >= 1.0);
}

/// The node's `ringcast_broker_reconnects_total` of `link`.
async fn reconnects(addr: SocketAddr, link: &str) -> f64 {
    let samples = metrics::scrape(addr).await;
    let sample = samples
        .iter()
        .find(|s| s.name == "ringcast_broker_reconnects_total" && s.label("link") == Some(link));
    sample.map_or_else(
        || panic!("node {addr}: no reconnects of {link}"),
        |s| s.value,
    )
}

#[tokio::test]
async fn nodes_behind_a_slow_redis_come_up_and_deliver_across_without_reconnecting() {
    let redis = Redis::start();
    // Every command reaches Redis 60 ms late and every reply arrives in two pieces 60 ms
    // apart: longer than the links' 25 ms poll, so a wait ends in the middle of a reply.
    let proxy = SlowProxy::start(&redis, Duration::from_millis(60));
    let url = proxy.url();
    let (a, b) = (
        start_server(&["--broker", &url]),
        start_server(&["--broker", &url]),
    );
    let mut on_a = ws::connect(a.addr, "/ws/slow").await;
    let mut on_b = ws::connect(b.addr, "/ws/slow").await;
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    wait_ready_status(a.addr, 200).await;
    wait_ready_status(b.addr, 200).await;

    // Messages of several sizes, each read in pieces: every one arrives whole, in order.
    let texts: Vec<String> = (0..8)
        .map(|i| format!("{i}:{}", "x".repeat(i * 4000)))
        .collect();
    for text in &texts {
        ws::send_text(&mut on_a, text).await;
    }
    for text in &texts {
        assert_eq!(&ws::next_text(&mut on_b).await, text);
        assert_eq!(&ws::next_text(&mut on_a).await, text, "local delivery");
    }
    ws::send_text(&mut on_b, "and back").await;
    assert_eq!(ws::next_text(&mut on_a).await, "and back");
    for node in [a.addr, b.addr] {
        let samples = metrics::scrape(node).await;
        assert_eq!(
            metrics::total(&samples, "ringcast_broker_reconnects_total"),
            0.0,
            "node {node}"
        );
    }
}

#[tokio::test]
async fn a_subscribe_link_that_fails_alone_leaves_the_publish_link_connected() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut on_a = ws::connect(a.addr, "/ws/chat").await;
    let mut on_b = ws::connect(b.addr, "/ws/chat").await;
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;

    // Redis drops only the subscribers (as its pub/sub output buffer limit does).
    let killed = redis.command(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]);
    assert_eq!(killed, b":2\r\n");
    for node in [a.addr, b.addr] {
        let deadline = Instant::now() + WAIT;
        while reconnects(node, "subscribe").await < 1.0 {
            assert!(
                Instant::now() < deadline,
                "node {node}: subscribe link not back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_subscribed(node, 1.0).await;
    }
    ws::send_text(&mut on_a, "after").await;
    assert_eq!(ws::next_text(&mut on_b).await, "after");
    ws::send_text(&mut on_b, "and back").await;
    assert_eq!(ws::next_text(&mut on_a).await, "after");
    assert_eq!(ws::next_text(&mut on_a).await, "and back");
    for node in [a.addr, b.addr] {
        assert_eq!(reconnects(node, "publish").await, 0.0, "node {node}");
        assert_eq!(reconnects(node, "subscribe").await, 1.0, "node {node}");
    }
}

#[tokio::test]
async fn every_message_crosses_the_broker_or_is_counted_as_dropped() {
    let redis = Redis::start();
    // A queue of one: a burst overflows it (how much depends on the link's pace).
    let a = node(&redis, &["--broker-queue", "1"]);
    let mut publisher = ws::connect(a.addr, "/ws/burst").await;
    let mut member = ws::connect(a.addr, "/ws/burst").await;
    wait_subscribed(a.addr, 1.0).await;
    const SENT: usize = 300;
    for i in 0..SENT {
        ws::send_text(&mut publisher, &format!("m{i}")).await;
    }
    let deadline = Instant::now() + WAIT;
    let out = loop {
        let samples = metrics::scrape(a.addr).await;
        let out = metrics::total(&samples, "ringcast_broker_messages_out_total");
        let dropped = metrics::total(&samples, "ringcast_broker_dropped_total");
        if out + dropped == SENT as f64 {
            break out as usize;
        }
        assert!(
            Instant::now() < deadline,
            "{out} sent + {dropped} dropped of {SENT}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(out < SENT, "the burst overflowed the queue");
    // Local clients get what Redis ordered, in the publisher's order; a message the queue had
    // no room for reaches no node (ordering it here alone would put it out of order).
    let mut last = None;
    for _ in 0..out {
        let text = ws::next_text(&mut member).await;
        let index: usize = text[1..].parse().expect("m{index}");
        assert!(last < Some(index), "{text} after m{last:?}");
        last = Some(index);
    }
    ws::send_text(&mut publisher, "marker").await;
    assert_eq!(
        ws::next_text(&mut member).await,
        "marker",
        "nothing else came"
    );
}

#[tokio::test]
async fn a_redis_that_forgot_the_script_gets_it_again_without_a_reconnection() {
    let redis = Redis::start();
    let a = node(&redis, &[]);
    let mut client = ws::connect(a.addr, "/ws/flush").await;
    wait_subscribed(a.addr, 1.0).await;
    ws::send_text(&mut client, "before").await;
    assert_eq!(ws::next_text(&mut client).await, "before");
    assert_eq!(redis.command(&[b"SCRIPT", b"FLUSH"]), b"+OK\r\n");
    // The batch that meets NOSCRIPT is dropped (counted); the link loads the script again.
    ws::send_text(&mut client, "lost").await;
    wait_total(a.addr, "ringcast_broker_dropped_total", 1.0).await;
    // Through Redis again (not ordered here alone, as while a link is down), on the same
    // connection.
    wait_ready_status(a.addr, 200).await;
    ws::send_text(&mut client, "after").await;
    assert_eq!(ws::next_text(&mut client).await, "after");
    wait_total(a.addr, "ringcast_broker_messages_out_total", 2.0).await;
    assert_eq!(reconnects(a.addr, "publish").await, 0.0);
}

#[tokio::test]
async fn http_publish_reaches_the_other_nodes() {
    let redis = Redis::start();
    const TOKEN: &str = "test-publish-token-0123456789";
    let a = node(&redis, &["--publish-token", TOKEN]);
    let b = node(&redis, &[]);
    let mut on_b = ws::connect(b.addr, "/ws/news").await;
    wait_subscribed(b.addr, 1.0).await;
    let auth = format!("Authorization: Bearer {TOKEN}");
    let headers = ["Content-Type: text/plain; charset=utf-8", auth.as_str()];
    // Node a has no member of the room: the message still goes to the other nodes.
    let response = http::post(a.addr, "/publish/news", &headers, b"extra").await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(ws::next_text(&mut on_b).await, "extra");
}

#[tokio::test]
async fn what_is_not_a_valid_envelope_reaches_no_client() {
    let redis = Redis::start();
    let a = node(&redis, &["--max-message", "16"]);
    let mut client = ws::connect(a.addr, "/ws/chat").await;
    wait_subscribed(a.addr, 1.0).await;
    let channel = b"ringcast:chat".as_slice();
    let mut envelope = b"rc2e1:1\n".to_vec();
    let bad_text = [0x81, 0x02, 0xff, 0xfe];
    let ok = [0x81, 0x02, b'o', b'k'];
    let too_long = [&envelope[..], &[0x82, 17], &[0; 17]].concat();
    // Far over --max-message: dropped as it arrives, never buffered whole.
    let far_too_long = [&envelope[..], &[0x82, 126, 0x0f, 0xa0], &[0; 4000]].concat();
    let payloads: [&[u8]; 6] = [
        b"hello",
        &[&envelope[..], &bad_text].concat(),
        &too_long,
        b"rc2",
        &[b"rc2e\"1:1\n".as_slice(), &ok].concat(),
        &far_too_long,
    ];
    for payload in payloads {
        redis.command(&[b"PUBLISH", channel, payload]);
    }
    envelope.extend_from_slice(&ok);
    assert_eq!(redis.command(&[b"PUBLISH", channel, &envelope]), b":1\r\n");
    assert_eq!(ws::next_data(&mut client).await, Message::text("ok"));
    let samples = metrics::scrape(a.addr).await;
    let invalid = samples
        .iter()
        .find(|s| s.name == "ringcast_broker_dropped_total" && s.label("reason") == Some("invalid"))
        .map(|s| s.value);
    assert_eq!(invalid, Some(6.0));
    assert_eq!(
        metrics::total(&samples, "ringcast_broker_reconnects_total"),
        0.0
    );
}

#[tokio::test]
async fn a_node_without_a_broker_has_no_broker() {
    let server = start_server(&[]);
    let samples = metrics::scrape(server.addr).await;
    assert!(samples
        .iter()
        .all(|s| !s.name.starts_with("ringcast_broker")));
    let response = http::get(server.addr, "/readyz", &[]).await;
    assert_eq!(
        (response.status, response.body_text()),
        (200, "ready\n".to_owned())
    );
}

/// Reads `count` text messages.
async fn texts(client: &mut ws::Client, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        got.push(ws::next_text(client).await);
    }
    got
}

/// Messages `first..=last` as the publishers below send them.
fn numbered(first: u64, last: u64) -> Vec<String> {
    (first..=last).map(|i| format!("m{i}")).collect()
}

/// Recovery with several nodes: Redis numbers the room, so both nodes tell the same epoch
/// and offsets; a client that leaves node b comes back on node a with its position and gets
/// exactly what it missed, then live messages, with no gap and no duplicate.
#[tokio::test]
async fn a_client_recovers_on_another_node_than_the_one_it_left() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut publisher = ws::connect(a.addr, "/ws/rec").await;
    let mut stays_on_b = ws::connect(b.addr, "/ws/rec").await;
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    // A room nobody published in yet: b asks Redis where it stands (before its links were
    // up, b could only have told a position of its own).
    let mut on_b = ws::connect(b.addr, "/ws/rec?since=").await;
    let (said, epoch, offset) = ws::first_notice(&mut on_b).await;
    assert_eq!((said.as_str(), offset), ("position", 0));
    for i in 1..=3 {
        ws::send_text(&mut publisher, &format!("m{i}")).await;
    }
    assert_eq!(texts(&mut on_b, 3).await, numbered(1, 3));
    drop(on_b);
    for i in 4..=8 {
        ws::send_text(&mut publisher, &format!("m{i}")).await;
    }
    assert_eq!(texts(&mut publisher, 8).await, numbered(1, 8));
    assert_eq!(texts(&mut stays_on_b, 8).await, numbered(1, 8));
    for node in [a.addr, b.addr] {
        let mut asker = ws::connect(node, "/ws/rec?since=").await;
        assert_eq!(
            ws::first_notice(&mut asker).await,
            ("position".into(), epoch.clone(), 8),
            "node {node}: the same epoch and offset"
        );
    }
    let mut back = ws::connect(a.addr, &format!("/ws/rec?since={epoch}:3")).await;
    assert_eq!(
        ws::first_notice(&mut back).await,
        ("recovered".into(), epoch.clone(), 3)
    );
    ws::send_text(&mut publisher, "m9").await;
    assert_eq!(
        texts(&mut back, 6).await,
        numbered(4, 9),
        "replayed, then live"
    );
    ws::send_text(&mut publisher, "marker").await;
    assert_eq!(ws::next_text(&mut back).await, "marker", "nothing twice");
    // And the other way round: a client of a recovers on b (which got 1..9 from Redis).
    let mut on_b = ws::connect(b.addr, &format!("/ws/rec?since={epoch}:7")).await;
    assert_eq!(
        ws::first_notice(&mut on_b).await,
        ("recovered".into(), epoch.clone(), 7)
    );
    assert_eq!(
        texts(&mut on_b, 3).await,
        ["m8", "m9", "marker"].map(String::from)
    );
}

/// While Redis is away a position is not continued (what other nodes publish meanwhile never
/// reaches this node): `reset`, never a gap; once it is back with its state lost, the room
/// starts a new epoch on every node.
#[tokio::test]
async fn a_position_is_reset_while_redis_is_away() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut publisher = ws::connect(a.addr, "/ws/rec").await;
    let mut on_b = ws::connect(b.addr, "/ws/rec").await;
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    ws::send_text(&mut publisher, "m1").await;
    assert_eq!(ws::next_text(&mut on_b).await, "m1");
    assert_eq!(ws::next_text(&mut publisher).await, "m1");
    let mut watcher = ws::connect(a.addr, "/ws/rec?since=").await;
    let (_, epoch, offset) = ws::first_notice(&mut watcher).await;
    assert_eq!(offset, 1);

    redis.kill();
    wait_ready_status(a.addr, 503).await;
    let mut cut_off = ws::connect(a.addr, &format!("/ws/rec?since={epoch}:1")).await;
    let (said, _, _) = ws::first_notice(&mut cut_off).await;
    assert_eq!(said, "reset", "while Redis is away");
    // Local rooms keep working meanwhile, in an epoch of this node's own: the client that
    // counted Redis's offsets is told to reconnect (1013) before it could miscount.
    ws::send_text(&mut publisher, "alone").await;
    assert_eq!(ws::next_text(&mut publisher).await, "alone");
    assert_eq!(ws::close_code_before_any_data(&mut watcher).await, 1013);

    redis.restart();
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    ws::send_text(&mut publisher, "after").await;
    assert_eq!(ws::next_text(&mut on_b).await, "after");
    assert_eq!(ws::next_text(&mut publisher).await, "after");
    let mut told = Vec::new();
    for node in [a.addr, b.addr] {
        let mut after = ws::connect(node, &format!("/ws/rec?since={epoch}:1")).await;
        let (said, new_epoch, offset) = ws::first_notice(&mut after).await;
        assert_eq!(said, "reset", "node {node}: Redis lost its state");
        assert_ne!(new_epoch, epoch, "node {node}: a new epoch");
        told.push((new_epoch, offset));
    }
    assert_eq!(
        told[0], told[1],
        "the same new epoch and offset on both nodes"
    );
}

/// A node that stopped following a room (its last member left, so it unsubscribed) asks Redis
/// where the room stands before answering a client that comes back: if nothing happened
/// meanwhile it recovers the client from what it kept; if it missed messages it says `reset`
/// (never a gap), while the node that heard everything recovers the client.
#[tokio::test]
async fn a_node_that_stopped_following_a_room_asks_redis_before_answering() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let mut publisher = ws::connect(a.addr, "/ws/hole").await;
    let mut on_b = ws::connect(b.addr, "/ws/hole").await;
    wait_subscribed(a.addr, 1.0).await;
    wait_subscribed(b.addr, 1.0).await;
    ws::send_text(&mut publisher, "m1").await;
    assert_eq!(ws::next_text(&mut on_b).await, "m1");
    assert_eq!(ws::next_text(&mut publisher).await, "m1");
    let mut asker = ws::connect(a.addr, "/ws/hole?since=").await;
    let (_, epoch, offset) = ws::first_notice(&mut asker).await;
    assert_eq!(offset, 1);

    // b's last member leaves and comes back with nothing published meanwhile: b still
    // serves what it kept.
    drop(on_b);
    wait_subscribed(b.addr, 0.0).await;
    let mut back_on_b = ws::connect(b.addr, &format!("/ws/hole?since={epoch}:0")).await;
    assert_eq!(
        ws::first_notice(&mut back_on_b).await,
        ("recovered".into(), epoch.clone(), 0)
    );
    assert_eq!(ws::next_text(&mut back_on_b).await, "m1");

    // Now b misses m2 and m3 while it has no member.
    drop(back_on_b);
    wait_subscribed(b.addr, 0.0).await;
    for text in ["m2", "m3"] {
        ws::send_text(&mut publisher, text).await;
        assert_eq!(ws::next_text(&mut publisher).await, text);
    }
    let mut again_on_b = ws::connect(b.addr, &format!("/ws/hole?since={epoch}:1")).await;
    assert_eq!(
        ws::first_notice(&mut again_on_b).await,
        ("reset".into(), epoch.clone(), 3)
    );
    ws::send_text(&mut publisher, "m4").await;
    assert_eq!(ws::next_text(&mut again_on_b).await, "m4", "live from 4");
    let mut on_a = ws::connect(a.addr, &format!("/ws/hole?since={epoch}:1")).await;
    assert_eq!(
        ws::first_notice(&mut on_a).await,
        ("recovered".into(), epoch.clone(), 1)
    );
    assert_eq!(texts(&mut on_a, 3).await, numbered(2, 4));
}
