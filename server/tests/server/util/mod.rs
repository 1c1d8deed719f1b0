//! Shared helpers for the integration tests: an in-process server on an OS-picked port,
//! WebSocket clients (tokio-tungstenite), a raw frame-level client for malformed traffic,
//! plain HTTP requests, /metrics parsing, the real `ringcast` binary as a child process and a
//! real redis-server.

pub mod http;
pub mod metrics;
pub mod process;
pub mod raw;
pub mod redis;
pub mod tls;
pub mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use ringcast::{Config, Server};

/// Upper bound for any single wait on the server (a reply, a close, an exit). It only turns a
/// hang into a failure with a message; no test asserts how fast anything is.
pub const WAIT: Duration = Duration::from_secs(10);

/// Arguments every test server starts with: loopback, an OS-picked port, 2 cores (so
/// cross-core paths run) and a short shutdown grace.
pub const BASE_ARGS: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--cores",
    "2",
    "--shutdown-grace",
    "2s",
];

/// A server started in this process, shut down when dropped.
pub struct TestServer {
    /// The running server; `None` once `shutdown` consumed it.
    server: Option<Server>,
    /// The address every core listens on (port picked by the OS).
    pub addr: SocketAddr,
}

/// Starts a server with `BASE_ARGS` plus `extra` command-line arguments (a flag in `extra`
/// replaces the same flag of `BASE_ARGS`: clap refuses repeated flags); over TLS when
/// `RINGCAST_TEST_TLS=1` (see [`tls`]).
pub fn start_server(extra: &[&str]) -> TestServer {
    // A test that chose its own pair keeps it.
    let tls_args = if extra.contains(&"--tls-cert") {
        Vec::new()
    } else {
        tls::server_args()
    };
    let mut args: Vec<&str> = BASE_ARGS
        .chunks(2)
        .filter(|pair| !extra.contains(&pair[0]))
        .flatten()
        .copied()
        .collect();
    args.extend_from_slice(extra);
    args.extend(tls_args.iter().map(String::as_str));
    let config = Config::from_args(args.iter().copied())
        .unwrap_or_else(|err| panic!("Config::from_args({args:?}) refused: {err}"));
    let server = Server::start(config).unwrap_or_else(|err| panic!("Server::start: {err}"));
    let addr = server.local_addr();
    TestServer {
        server: Some(server),
        addr,
    }
}

impl TestServer {
    /// Runs the graceful shutdown (it blocks until the core threads joined) off the async
    /// runtime, so clients in this test keep being driven meanwhile.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.shutdown())
                .await
                .expect("Server::shutdown panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// Raises this process's open-file soft limit to the hard limit (tests with many clients hold
/// both ends of every connection in one process), as the server does at start.
pub fn raise_fd_limit() {
    ringcast::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
}
