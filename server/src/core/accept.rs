//! A core's listening socket and its accept loop: `--max-connections` and
//! `--max-connections-per-ip` are counted from accept, and every accepted connection goes to
//! the HTTP phase.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::task::spawn_local;

use crate::backend::{HttpSocket, Listener};
use crate::http::{self, HttpService};
use crate::metrics::CoreMetrics;
use crate::state::{Refused, ServerState};

/// Pause after accept fails for lack of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Fails with EADDRINUSE if anything already listens on `addr`, including another ringcast:
/// SO_REUSEPORT would otherwise let a second server share the port and split its clients.
/// A socket without SO_REUSEPORT cannot bind a port that any listener holds.
pub fn ensure_port_free(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// Binds one SO_REUSEPORT listening socket with a real listen backlog.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Accepts connections until shutdown and hands each to the HTTP phase (or, over
/// --max-connections or --max-connections-per-ip, answers 503 or 429).
pub async fn accept_loop<L: Listener>(
    listener: Rc<L>,
    state: Arc<ServerState>,
    http: Rc<HttpService>,
    metrics: Arc<CoreMetrics>,
) {
    // Log the first failure of a streak only (EMFILE under a connection flood repeats).
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if http.is_shutting_down() {
                    return;
                }
                failing = false;
                let permit = match state.try_acquire_connection(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refused) => {
                        if refused == Refused::PerIp {
                            CoreMetrics::add(&metrics.connections_refused_per_ip, 1);
                        }
                        spawn_local(http::refuse(Rc::clone(&http), stream, refused));
                        continue;
                    }
                };
                let _ = stream.set_nodelay();
                spawn_local(http::serve(Rc::clone(&http), stream, permit));
            }
            Err(_) if http.is_shutting_down() => return,
            Err(err) => {
                if !failing {
                    tracing::warn!(%err, "accept failed; retrying");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
