//! ringcast: a thread-per-core io_uring (or epoll) WebSocket broadcast server.
//!
//! Any text or binary message a client sends on `/ws/{room}` (`/ws` = room `default`) reaches
//! every client of the room, the sender included, unchanged and in the order the server
//! received it.
//!
//! ```text
//! IO backend (--io): io_uring or epoll, and the seam between them   backend.rs
//! accept (per core, SO_REUSEPORT), --max-connections from accept   cores.rs
//!   -> HTTP/1.1 (hyper), 400/431/503                               http.rs
//!        over io_uring / epoll                                     uring_io.rs, epoll_io.rs
//!   -> upgrade: the core's reader (one task and one epoll set for
//!      all its connections): one recv into the core's scratch
//!      buffer per ready socket, decodes frames in place            reader.rs, conn.rs,
//!                                                                  socket.rs, inbound.rs
//!   -> publish(room, payload): encode once                         frame.rs, hub.rs
//!        -> local subscribers' queues: an Rc handle each           subscriber.rs, outbound.rs
//!           (a connection with nothing in flight is listed)        flush.rs
//!        -> other cores' mailboxes (one Bytes clone per core)
//!   -> flush task per core: one SEND/WRITEV per listed connection,
//!      all in one submission on the core's output ring             uring_output.rs
//!      (epoll: one nonblocking sendmsg per listed connection)      epoll_output.rs
//! fan-out budget: what is held for delivery, publisher pushback    memory.rs
//! close handshake state of a connection (one packed value)        close_state.rs
//! keepalive, stalled writes, close deadlines: one sweep per core   keepalive.rs
//! inbound rate limit                                               rate_limit.rs
//! counters and /metrics                                            metrics.rs
//! publish token and JWT checks; POST /publish/{room}               auth.rs, publish.rs
//! several nodes (--broker): Redis pub/sub links, the envelope        broker.rs,
//!   (publish link: bounded queue, pipelined; subscribe link: rooms    broker_publish.rs,
//!   with local members, frames into the cores' mailboxes)             broker_subscribe.rs,
//!                                                                     broker_envelope.rs
//! ```
//!
//! The data path, and why it is built this way (measured: see the README's Benchmarks):
//! - No task and no wake-up per delivery. tokio-uring 0.5 exposes no raw submission entries,
//!   so each of its writes is a future with a slab entry whose completion wakes the writing
//!   task: with a writer task per connection that was two wake-ups, two polls and ~10 atomic
//!   operations per delivery, the top of the profile. Instead a delivery pushes a core-local
//!   `Rc` handle (no atomic) and lists the connection; one flush task per core drains the list
//!   into one SEND (one frame) or WRITEV per connection on a ring of its own (the `io-uring`
//!   crate, set up SINGLE_ISSUER | COOP_TASKRUN: measured 12-13% less CPU per delivery) and
//!   submits them all at once; completions arrive through an eventfd that tokio's reactor (inside
//!   tokio-uring's runtime) watches. tokio-uring stays the runtime for accept, HTTP and
//!   timers.
//! - Writes name the socket by fd. Registered files (the ring's file table, `Fixed(index)`)
//!   were tried and measured: no difference in CPU per delivery, because the cost `fget` showed
//!   in the profile (~4%) is the first touch of the socket's `struct file`, which moved to
//!   `sock_from_file` (results/reader-fixed-files-vs-uws-2026-12-02-vm).
//! - One write in flight per connection keeps order; what arrives meanwhile goes into the next
//!   write, so a lagging connection's frames leave in one syscall.
//! - The output path's sans-IO half (`outbound.rs`, `flush.rs`: queues, budgets, iovecs,
//!   partial writes, the list) is unit-tested and benchmarked without sockets; the IO half is
//!   `uring_output.rs` or `epoll_output.rs`, behind `Subscriber::start_write` /
//!   `Subscriber::finish_write`.
//! - No read buffer, task or reactor registration per idle connection (`reader.rs`): every
//!   upgraded socket of a core is in one epoll set of the core, which is registered once with
//!   tokio's reactor (on both backends); one reader task per core reads each ready socket
//!   once into one scratch buffer per core, and only an incomplete frame's tail is copied into
//!   the connection. A reader task per connection cost ~640 bytes of task and ~256 of
//!   readiness registration each (measured: 1.6 KiB per idle connection then, 0.8 KiB now).
//!   A tokio-uring read would pin an owned buffer per connection for as long as the client is
//!   silent (an older design: 512 bytes each), and tokio-uring 0.5 has no provided-buffer
//!   rings; multishot poll on the output ring would work only on io_uring, where the epoll set
//!   serves both backends the same. In a broadcast server the reads are the rare side
//!   (publishers only), so one `epoll_wait` per reader turn costs little against the writes.
//!   The HTTP phase's IO adapter starts no read once the upgrade is accepted, so none is left
//!   in flight for the connection's life.
//!
//! Close codes: 1000 normal, 1001 server shutting down or idle timeout, 1002 protocol error
//! (unmasked client frame, reserved bits, unknown opcode, control frame over 125 bytes, bad
//! continuation, bad close frame), 1007 invalid UTF-8 in a text message (also across fragments)
//! or close reason, 1008 slow consumer (outbound bytes over `--max-backlog`, or no write
//! progress for `--write-timeout`) or over `--max-inbound-rate`, 1009 message over
//! `--max-message`, 1011 internal error, 1013 a heavy publisher while the held bytes pass twice
//! the fan-out budget, or any publisher left unread for `--publish-timeout`.

pub mod auth;
pub mod backend;
pub mod budget;
pub mod config;
pub mod core;
pub mod fanout;
pub mod http;
pub mod input;
pub mod metrics;
pub mod output;
pub mod state;
pub mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

pub use crate::backend::{Backend, IoChoice};
pub use crate::config::{Cli, Config, ConfigError};
pub use crate::fanout::broker::{Broker, BrokerThreads};
pub use crate::fanout::hub::{Hub, Room};
pub use crate::output::queue::{BacklogExceeded, OutboundQueue};
pub use crate::output::subscriber::Subscriber;
pub use crate::ws::encode::{encode_message, CloseCode, MessageKind};

use crate::core::{bind_listener, ensure_port_free, run_core, CoreSetup, ReadyReport};
use crate::fanout::hub::Mail;
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
    /// Shared state (its stop flag ends a core's wait for budget).
    state: Arc<ServerState>,
    /// Core threads, joined on shutdown.
    threads: Vec<JoinHandle<()>>,
    /// The broker's link threads, with `--broker`.
    broker: Option<BrokerThreads>,
}

impl Server {
    /// Binds every core's SO_REUSEPORT listener (port 0 => OS picks one port, then all cores bind
    /// that same port), starts the pinned core threads, returns once all of them are accepting.
    pub fn start(config: Config) -> Result<Server, StartError> {
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
        let state = Arc::new(ServerState::new(config));
        let _ = state.backend.set(backend.name()); // Unset until now, so this cannot fail.
        let (mailboxes, receivers): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| unbounded_channel()).unzip();
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(cores);
        let mut server = Server {
            local_addr,
            mailboxes: mailboxes.clone(),
            state: Arc::clone(&state),
            threads: Vec::with_capacity(cores),
            broker: None,
        };
        if let Some(broker) = &state.config.broker {
            let memory = Arc::clone(&state.memory);
            let threads =
                Broker::start(broker, state.config.max_message, mailboxes.clone(), memory)
                    .map_err(|error| StartError::Broker { error })?;
            let _ = state.broker.set(Arc::clone(threads.broker())); // Unset until now.
            server.broker = Some(threads);
        }
        for (index, (listener, mailbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let peers = mailboxes
                .iter()
                .enumerate()
                .filter(|&(peer, _)| peer != index)
                .map(|(_, sender)| sender.clone())
                .collect();
            let setup = CoreSetup {
                index,
                cpu: (!cpus.is_empty()).then(|| cpus[index % cpus.len()]),
                listener,
                state: Arc::clone(&state),
                peers,
                mailbox,
                ready: ReadyReport::new(index, ready_tx.clone()),
                backend,
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
        self.state.stop();
        if let Some(mut broker) = self.broker.take() {
            broker.stop();
        }
        for mailbox in self.mailboxes.drain(..) {
            let _ = mailbox.send(Mail::Shutdown);
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
