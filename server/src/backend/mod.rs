//! The IO backends and what each provides. Everything above this seam (HTTP routes, hub,
//! queues, budgets, keepalive, close state) is the same on both.
//!
//! - **io_uring** (`uring_io.rs`, `uring_output.rs`): tokio-uring's runtime per core; accept
//!   and the HTTP phase on tokio-uring's operations; WebSocket writes as SEND/WRITEVs on a second
//!   ring of the core.
//! - **epoll** (`epoll_io.rs`, `epoll_output.rs`): a plain tokio current-thread runtime per
//!   core, for hosts where io_uring is blocked (Docker's default seccomp profile, gVisor,
//!   `kernel.io_uring_disabled`); accept and HTTP on tokio's sockets; WebSocket writes as
//!   nonblocking `writev(2)` calls in the same flush step.
//!
//! Both read WebSocket frames the same way (`reader.rs`: the core's epoll set of every
//! connection, then one read into the core's scratch buffer) and take their writes from the
//! same flush list through `Subscriber::start_write` / `Subscriber::finish_write`.

pub mod epoll;
pub mod socket;
pub mod uring;

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::uring::WriteSlot;
use crate::input::connection::UpgradedIo;

/// `--io`: which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring or fail to start.
    Uring,
    /// epoll, even where io_uring works.
    Epoll,
}

/// The backend a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// tokio-uring runtime, io_uring output ring.
    Uring,
    /// tokio runtime, epoll readiness and `writev`.
    Epoll,
}

impl Backend {
    /// The name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }

    /// Picks the backend for `choice`: with `auto`, io_uring unless the kernel refuses to set
    /// up a ring (then the error says why epoll runs). `uring` fails with that error.
    pub fn select(choice: IoChoice) -> Result<(Backend, Option<io::Error>), io::Error> {
        match choice {
            IoChoice::Epoll => Ok((Backend::Epoll, None)),
            IoChoice::Uring => probe_io_uring().map(|()| (Backend::Uring, None)),
            IoChoice::Auto => match probe_io_uring() {
                Ok(()) => Ok((Backend::Uring, None)),
                Err(error) => Ok((Backend::Epoll, Some(error))),
            },
        }
    }
}

/// Sets up (and drops) a small ring: fails as the cores' rings would.
fn probe_io_uring() -> io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// A listening socket of one core. (Its futures need no `Send` bound: every task of a core
/// runs on the core's thread.)
#[allow(async_fn_in_trait)]
pub trait Listener: AsRawFd + 'static {
    /// An accepted connection.
    type Stream: HttpSocket;
    /// Waits for the next connection.
    async fn accept(&self) -> io::Result<Self::Stream>;
}

/// An accepted connection's socket as the HTTP phase uses it.
#[allow(async_fn_in_trait)]
pub trait HttpSocket: Sized + 'static {
    /// What hyper reads and writes through.
    type Io: AsyncRead + AsyncWrite + Unpin + 'static;

    /// The adapter hyper is given, and the slot holding a write it may leave in flight when it
    /// returns. Once `upgraded` is set the adapter reads no more: hyper only has the 101 to
    /// flush, and the bytes after the request are the WebSocket reader's.
    fn http_io(socket: &Rc<Self>, upgraded: Rc<Cell<bool>>) -> (Self::Io, WriteSlot);

    /// Ends the HTTP phase after the 101 response was flushed: the socket, registered for the
    /// WebSocket reader, with whatever the adapter read past the request.
    fn into_upgraded(io: Self::Io, socket: Rc<Self>) -> io::Result<UpgradedIo>;

    /// Reads and discards (lingering close); Ok(0) at end of stream.
    async fn read_discard(&self, buf: &mut Vec<u8>) -> io::Result<usize>;

    /// Writes all of `bytes` (the canned 503).
    async fn write_all(&self, bytes: &'static [u8]) -> io::Result<()>;

    /// `shutdown(2)`.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;

    /// TCP_NODELAY: latency over coalescing, the output path already batches per connection.
    fn set_nodelay(&self) -> io::Result<()>;
}
