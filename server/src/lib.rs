//! ringcast: a thread-per-core io_uring (or epoll) WebSocket broadcast server.
//!
//! Any text or binary message a client sends on `/ws/{room}` (`/ws` = room `default`) reaches
//! every client of the room, the sender included, unchanged and in the order the server
//! received it. Why it is built this way, with the measurements behind each decision:
//! `docs/ARCHITECTURE.md`.
//!
//! The map: one folder per concept, each layer importing only the layers below it.
//!
//! ```text
//! core/     one pinned thread per core: accept (--max-connections), mailbox,    core -> http
//!           keepalive sweep, graceful shutdown                                     |
//! http/     HTTP/1.1 (hyper): routes, /metrics, POST /publish, the upgrade         v
//! input/    the core's reader: admission, one epoll set and one scratch buffer,  input
//!           decoding, publishing, pauses, the end of a connection                  |
//! fanout/   rooms and the hub (encode once, fan out), each room's one order and  fanout
//!           kept messages on its home core, mail between cores, the broker         |
//! output/   a connection's write half (queue, close handshake), the flush list,  output
//!           the write drivers (io_uring ring, epoll sendmsg)                       |
//! ws/       RFC 6455 without sockets: encode, decode, close state,                ws
//!           permessage-deflate (RFC 7692)
//! below all: backend/ (runtime, accept, HTTP IO, the upgraded socket), budget.rs (what is
//!           held for delivery), metrics/, state.rs, config.rs, auth.rs, clock.rs
//! ```
//!
//! A message's path: `input/reader.rs` reads a ready socket into the core's scratch buffer ->
//! `input/connection.rs` decodes it (`ws/decode.rs`) -> `fanout/hub.rs` encodes it once, sends
//! one to the broker and has the room's home core order it (`fanout/stream.rs`), which pushes
//! a handle into every local subscriber's queue (`output/subscriber.rs`) and mails one to each
//! other core (`fanout/mail.rs`), which does the same -> the write driver (`output/uring.rs` or
//! `output/epoll.rs`) writes each listed connection's queue in one write.
//!
//! Where a connection closes: `output/subscriber.rs` (the close handshake: who starts it, the
//! close frame, the deadline, `shutdown(2)`, state in `ws/close.rs`); its triggers are a
//! protocol error or the client's close (`input/connection.rs`), a slow consumer (the queue),
//! the sweep (`core/keepalive.rs`: deadlines, idle, stalled writes), an overloaded publisher
//! (`input/reader.rs`) and graceful shutdown (`core/shutdown.rs`); the reader then drops the
//! connection (leaves its room, releases its slot).
//!
//! Close codes: 1000 normal, 1001 server shutting down or idle timeout, 1002 protocol error
//! (unmasked client frame, reserved bits, unknown opcode, control frame over 125 bytes, bad
//! continuation, bad close frame), 1007 invalid UTF-8 in a text message (also across fragments)
//! or close reason, 1008 slow consumer (outbound bytes over `--max-backlog`, or no write
//! progress for `--write-timeout`) or over `--max-inbound-rate`, 1009 message over
//! `--max-message`, 1011 internal error, 1013 a heavy publisher while the held bytes pass twice
//! the fan-out budget, or any publisher left unread for `--publish-timeout`.

mod auth;
mod backend;
mod budget;
mod clock;
mod config;
mod core;
mod fanout;
mod http;
mod input;
mod metrics;
mod output;
mod state;
mod tls;
mod ws;

#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

pub use crate::backend::IoChoice;
pub use crate::config::{raise_nofile_limit, Cli, Config, ConfigError, Switch};
pub use crate::tls::TlsFileError;

use crate::backend::Backend;
use crate::core::{bind_listener, ensure_port_free, run_core, CoreSetup, ReadyReport};
use crate::fanout::{Broker, BrokerThreads, Mail, Mailboxes};
use crate::state::ServerState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--io uring` and the kernel refused io_uring.
    #[error(
        "io_uring is unavailable ({error}). `--io uring` needs io_uring (Linux 5.11 or newer); \
         `--io auto` (the default) or `--io epoll` runs on epoll instead. Likely causes: the sysctl kernel.io_uring_disabled is 1 or 2 (run \
         `sysctl -w kernel.io_uring_disabled=0` as root), or a container seccomp profile blocks \
         io_uring_setup (Docker's default does: run the container with a profile that allows \
         io_uring_setup, io_uring_enter and io_uring_register, e.g. \
         `--security-opt seccomp=unconfined`)"
    )]
    IoUringUnavailable {
        /// The error io_uring_setup returned (in the message, not a `source`, so it is printed
        /// once).
        error: io::Error,
    },
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// The broker's link threads could not be started.
    #[error("cannot start the broker links: {error}")]
    Broker {
        /// The OS error.
        error: io::Error,
    },
    /// A core thread could not be started or its runtime failed to build.
    #[error("cannot start core {core}: {error}")]
    Core {
        /// Core number.
        core: usize,
        /// The OS error.
        error: io::Error,
    },
}

/// A running server: one pinned thread per core.
#[derive(Debug)]
pub struct Server {
    /// The address every core listens on.
    local_addr: SocketAddr,
    /// Mailboxes of the cores (for shutdown).
    mailboxes: Vec<UnboundedSender<Mail>>,
    /// Core threads, joined on shutdown.
    threads: Vec<JoinHandle<()>>,
    /// The broker's link threads, with `--broker`.
    broker: Option<BrokerThreads>,
    /// The TLS config, with `--tls-cert` (its pair is reloaded on SIGHUP).
    tls: Option<Arc<tls::TlsAcceptor>>,
}

/// Faults a test can inject at start; nothing in a production build.
#[derive(Debug, Default)]
struct Faults {
    /// The core that panics before it reports ready.
    #[cfg(any(test, feature = "testing"))]
    fail_core: Option<usize>,
}

impl Server {
    /// Binds every core's SO_REUSEPORT listener (port 0 => OS picks one port, then all cores bind
    /// that same port), starts the pinned core threads, returns once all of them are accepting.
    pub fn start(config: Config) -> Result<Server, StartError> {
        Server::launch(config, Faults::default())
    }

    /// [`Server::start`] with `faults` injected.
    #[cfg_attr(not(any(test, feature = "testing")), allow(unused_variables))]
    fn launch(config: Config, faults: Faults) -> Result<Server, StartError> {
        if let Err(err) = config::raise_nofile_limit() {
            tracing::warn!(%err, "could not raise the open-file limit");
        }
        let (backend, fallback) =
            Backend::select(config.io).map_err(|error| StartError::IoUringUnavailable { error })?;
        if let Some(why) = fallback {
            tracing::warn!(
                "io_uring is unavailable ({why}): running on the epoll backend (--io epoll); \
                 see the README's \"IO backends\" for how to allow io_uring"
            );
        }
        let listeners = bind_all(&config)?;
        let local_addr = listeners[0]
            .local_addr()
            .map_err(|error| StartError::Bind {
                addr: config.listen,
                error,
            })?;
        let cores = config.cores;
        let state = Arc::new(ServerState::new(config, backend));
        let (mailboxes, receivers): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| unbounded_channel()).unzip();
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(cores);
        let mut server = Server {
            local_addr,
            mailboxes: mailboxes.clone(),
            threads: Vec::with_capacity(cores),
            broker: None,
            tls: state.config.tls.clone(),
        };
        if let (Some(broker), Some(stats)) = (&state.config.broker, &state.broker_stats) {
            let budget = Arc::clone(&state.budget);
            let every_core = Mailboxes::new(mailboxes.clone(), Arc::clone(&budget));
            let threads = Broker::start(
                broker,
                Arc::clone(stats),
                every_core,
                budget,
                state.config.max_message,
                state.config.history_ttl,
            )
            .map_err(|error| StartError::Broker { error })?;
            server.broker = Some(threads);
        }
        let broker = server.broker.as_ref().map(|threads| threads.broker());
        for (index, (listener, mailbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let setup = CoreSetup {
                index,
                cpu: (!cpus.is_empty()).then(|| cpus[index % cpus.len()]),
                listener,
                state: Arc::clone(&state),
                cores: mailboxes.clone(),
                mailbox,
                broker: broker.cloned(),
                ready: ReadyReport::new(index, ready_tx.clone()),
                #[cfg(any(test, feature = "testing"))]
                fail_before_ready: faults.fail_core == Some(index),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ringcast-core-{index}"))
                .spawn(move || run_core(setup))
                .map_err(|error| StartError::Core { core: index, error })?;
            server.threads.push(thread);
        }
        drop(ready_tx);
        for _ in 0..cores {
            let (core, error) = match ready_rx.recv() {
                Ok((_, Ok(()))) => continue,
                Ok((core, Err(error))) => (core, error),
                // Unreachable: every core reports, even one that panicked (ReadyReport's drop).
                Err(_) => (0, io::Error::other("a core thread exited during start")),
            };
            // Dropping `server` stops the cores that did start.
            return Err(StartError::Core { core, error });
        }
        let config = &state.config;
        tracing::info!(
            addr = %local_addr,
            cores,
            io = %backend.name(),
            max_message = config.max_message,
            max_backlog = config.max_backlog,
            fanout_budget = config.fanout_budget,
            max_connections = config.max_connections,
            "listening"
        );
        Ok(server)
    }

    /// The address every core listens on.
    /// Reads `--tls-cert` and `--tls-key` again: new handshakes get the new pair, open
    /// connections keep theirs; on error the pair being served stays. None without TLS.
    pub fn reload_tls(&self) -> Option<Result<(), TlsFileError>> {
        self.tls.as_ref().map(|tls| tls.store().reload())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Graceful shutdown: stop accepting, close 1001 to every client, wait at most
    /// shutdown_grace, join the core threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Sends every core the shutdown mail and joins the threads (idempotent).
    fn stop(&mut self) {
        for mailbox in self.mailboxes.drain(..) {
            let _ = mailbox.send(Mail::Shutdown);
        }
        // After the cores' shutdown mail: a link waiting on a stalled Redis (up to the
        // broker's reply timeout) does not hold up their goodbyes to clients.
        if let Some(mut broker) = self.broker.take() {
            broker.stop();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a core thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds one listener per core on the same address (the first picks the port if it is 0).
fn bind_all(config: &Config) -> Result<Vec<std::net::TcpListener>, StartError> {
    let bind = |addr: SocketAddr| {
        bind_listener(addr, config.backlog).map_err(|error| StartError::Bind { addr, error })
    };
    if config.listen.port() != 0 {
        ensure_port_free(config.listen).map_err(|error| StartError::Bind {
            addr: config.listen,
            error,
        })?;
    }
    let first = bind(config.listen)?;
    let addr = first.local_addr().map_err(|error| StartError::Bind {
        addr: config.listen,
        error,
    })?;
    let mut listeners = vec![first];
    for _ in 1..config.cores {
        listeners.push(bind(addr)?);
    }
    Ok(listeners)
}
