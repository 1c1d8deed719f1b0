//! Start and graceful shutdown: a core that dies before it is ready makes `Server::start` fail
//! instead of hanging; `Server::shutdown` and SIGTERM to the real binary close every client
//! with 1001, stop accepting, and the binary exits 0.

use ringcast::Config;
use tokio::net::TcpStream;

use crate::util::process::spawn_server;
use crate::util::{start_server, ws, BASE_ARGS, WAIT};

#[test]
fn a_core_that_dies_at_start_makes_start_fail_instead_of_hanging() {
    let config = Config::from_args(["--listen", "127.0.0.1:0", "--cores", "2"]).expect("config");
    let (report, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = ringcast::testing::start_with_failing_core(config, 1);
        let _ = report.send(result.map(drop).map_err(|error| error.to_string()));
    });
    let result = started
        .recv_timeout(WAIT)
        .expect("Server::start did not return");
    let error = result.expect_err("start succeeded with a dead core");
    assert!(
        error.contains("cannot start core 1"),
        "the failing core is not named: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_client_with_1001_and_stops_accepting() {
    let server = start_server(&["--cores", "2"]);
    let addr = server.addr;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(ws::connect(addr, "/ws/bye").await);
    }
    let shutdown = tokio::spawn(server.shutdown());
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(ws::expect_close_code(client).await, 1001, "client {i}");
    }
    shutdown.await.expect("shutdown task");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let server = spawn_server(&BASE_ARGS);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(ws::connect(server.addr, "/ws/bye").await);
    }
    // The binary is a real server: a message goes round before we stop it.
    ws::send_text(&mut clients[0], "before").await;
    for client in clients.iter_mut() {
        assert_eq!(ws::next_text(client).await, "before");
    }
    server.signal(libc::SIGTERM);
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(ws::expect_close_code(client).await, 1001, "client {i}");
    }
    let (status, stderr) = tokio::task::spawn_blocking(move || server.wait())
        .await
        .expect("wait");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; stderr: {stderr:#?}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "panic in stderr: {stderr:#?}"
    );
}
