//! Keepalive: with a short `--ping-interval`/`--idle-timeout` the server pings its clients,
//! closes one that never answers, and keeps one that does (tungstenite answers pings).

use crate::util::raw::{FrameSpec, Next, RawClient, PING, PONG};
use crate::util::{metrics, start_server, ws};

#[tokio::test]
async fn silent_client_is_closed_while_answering_client_stays() {
    let server = start_server(&["--ping-interval", "200ms", "--idle-timeout", "1s"]);
    let mut silent = RawClient::connect(server.addr, "/ws/keepalive").await;
    let mut answering = ws::connect(server.addr, "/ws/keepalive").await;
    // The answering client must keep reading to see (and answer) pings while we wait.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let answering_task = tokio::spawn(async move {
        tokio::select! {
            _ = &mut done_rx => {}
            message = ws::next_data(&mut answering) => panic!("unexpected message {message:?}"),
        }
        answering
    });

    // The silent client reads everything but never answers: it must see pings, then be closed.
    let mut pings = 0;
    loop {
        match silent.next().await {
            Next::Frame(frame) if frame.opcode == PING => pings += 1,
            Next::Frame(frame) if frame.opcode == PONG => {}
            Next::Frame(frame) if frame.opcode == crate::util::raw::CLOSE => break,
            Next::Frame(frame) => panic!("unexpected frame {frame:?}"),
            Next::Closed => break,
        }
    }
    assert!(
        pings > 0,
        "the server closed the silent client without ever pinging it"
    );
    // Give the answering client another full idle timeout in which it must only answer pings.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let samples = metrics::scrape(server.addr).await;
    assert_eq!(
        metrics::total(&samples, "ringcast_idle_closes_total"),
        1.0,
        "idle closes"
    );

    // The answering client outlived the silent one's timeout and still works.
    done_tx.send(()).expect("answering task alive");
    let mut answering = answering_task.await.expect("answering client task");
    ws::send_text(&mut answering, "still here").await;
    assert_eq!(ws::next_text(&mut answering).await, "still here");
}

#[tokio::test]
async fn a_silent_client_answering_pings_late_stays_open_for_ten_idle_timeouts() {
    // A pure subscriber that sends nothing but answers each ping 400 ms late.
    let idle = std::time::Duration::from_secs(2);
    let server = start_server(&["--ping-interval", "1s", "--idle-timeout", "2s"]);
    let mut client = RawClient::connect(server.addr, "/ws/late").await;
    let until = tokio::time::Instant::now() + 10 * idle;
    let mut pings = 0;
    while tokio::time::Instant::now() < until {
        let remaining = until - tokio::time::Instant::now();
        let Ok(next) = tokio::time::timeout(remaining, client.next()).await else {
            break;
        };
        match next {
            Next::Frame(frame) if frame.opcode == PING => {
                pings += 1;
                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                client.send(FrameSpec::new(PONG, &frame.payload)).await;
            }
            Next::Frame(frame) => panic!(
                "unexpected frame after {pings} pings: {frame:?} (close code {:?})",
                frame.close_code()
            ),
            Next::Closed => panic!("closed after {pings} pings"),
        }
    }
    assert!(pings >= 8, "pinged about once per 1.4 s, got {pings}");
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(metrics::total(&samples, "ringcast_idle_closes_total"), 0.0);
}
