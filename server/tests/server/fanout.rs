//! Thread-per-core fan-out: 1,000 clients spread over a `--cores 2` server all receive every
//! message of several publishers, in each publisher's order.

use futures_util::{stream, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{metrics, raise_fd_limit, start_server, ws};

/// Clients in the room (the publishers are among them).
const CLIENTS: usize = 1_000;
/// Clients that also publish.
const PUBLISHERS: usize = 4;
/// Messages each publisher sends.
const MESSAGES_PER_PUBLISHER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_on_two_cores_receive_every_message_in_publisher_order() {
    raise_fd_limit();
    let server = start_server(&["--cores", "2", "--max-connections", "5000"]);
    let addr = server.addr;

    let clients: Vec<ws::Client> = stream::iter(0..CLIENTS)
        .map(|_| ws::connect(addr, "/ws/fanout"))
        .buffer_unordered(64)
        .collect()
        .await;

    // Both cores must hold clients, or this would not test cross-core delivery.
    let samples = metrics::scrape(addr).await;
    let per_core = metrics::connections_per_core(&samples);
    assert_eq!(
        per_core.len(),
        2,
        "expected connection gauges for 2 cores, got {per_core:?}"
    );
    assert!(
        per_core.iter().all(|&(_, n)| n > 0.0),
        "a core has no clients: {per_core:?}"
    );
    let total: f64 = per_core.iter().map(|&(_, n)| n).sum();
    assert_eq!(
        total, CLIENTS as f64,
        "connections per core {per_core:?} do not add up"
    );

    let mut readers = Vec::with_capacity(CLIENTS);
    let mut publishers = Vec::with_capacity(PUBLISHERS);
    for (index, client) in clients.into_iter().enumerate() {
        let (sink, stream) = client.split();
        if index < PUBLISHERS {
            publishers.push((index, sink));
        }
        readers.push(tokio::spawn(receive_all(index, stream)));
    }
    let publishing = publishers.into_iter().map(|(publisher, mut sink)| {
        tokio::spawn(async move {
            for seq in 0..MESSAGES_PER_PUBLISHER {
                sink.send(Message::text(format!("{publisher} {seq}")))
                    .await
                    .expect("publish");
            }
            sink // kept open until every reader is done
        })
    });
    let sinks: Vec<_> = futures_util::future::join_all(publishing).await;
    for reader in readers {
        reader.await.expect("reader task panicked");
    }
    drop(sinks);
}

/// Reads `PUBLISHERS * MESSAGES_PER_PUBLISHER` messages and checks that each publisher's
/// sequence numbers arrive complete and in order.
async fn receive_all(client: usize, mut stream: futures_util::stream::SplitStream<ws::Client>) {
    let mut next_seq = [0usize; PUBLISHERS];
    for _ in 0..PUBLISHERS * MESSAGES_PER_PUBLISHER {
        let text = loop {
            let message = tokio::time::timeout(crate::util::WAIT, stream.next())
                .await
                .unwrap_or_else(|_| panic!("client {client}: missing messages, got {next_seq:?}"))
                .unwrap_or_else(|| panic!("client {client}: connection ended"))
                .unwrap_or_else(|err| panic!("client {client}: {err}"));
            match message {
                Message::Text(text) => break text,
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("client {client}: unexpected {other:?}"),
            }
        };
        let (publisher, seq) = text
            .split_once(' ')
            .and_then(|(p, s)| Some((p.parse::<usize>().ok()?, s.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("client {client}: not a test message: {text}"));
        assert!(
            publisher < PUBLISHERS,
            "client {client}: unknown publisher in {text}"
        );
        assert_eq!(
            seq, next_seq[publisher],
            "client {client}: publisher {publisher} out of order"
        );
        next_seq[publisher] += 1;
    }
}
