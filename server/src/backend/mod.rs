//! The IO backends, and the seam every layer above them uses the same way on both.
//!
//! A backend provides a core's runtime, its listener and the HTTP phase's IO
//! ([`Backend::run_core`], [`Listener`], [`HttpSocket`]: `uring.rs`, `epoll.rs`), and hands an
//! upgraded connection over as a [`ConnSocket`] (`socket.rs`) that the core's reader reads and
//! the output path writes. The output path's write drivers are the other backend-specific part
//! (`output/uring.rs`, `output/epoll.rs`).
//!
//! - **io_uring**: tokio-uring's runtime per core; accept and the HTTP phase on tokio-uring's
//!   operations; WebSocket writes as SEND/WRITEVs on a second ring of the core.
//! - **epoll**: a plain tokio current-thread runtime per core, for hosts where io_uring is
//!   blocked (Docker's default seccomp profile, gVisor, `kernel.io_uring_disabled`); accept and
//!   HTTP on tokio's sockets; WebSocket writes as nonblocking `sendmsg(2)` calls.

mod epoll;
mod ring;
mod socket;
mod uring;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

pub use ring::CoreRing;
pub use socket::{cvt, ConnSocket};

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
    /// tokio runtime, epoll readiness and `sendmsg`.
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

    /// Runs a core on the calling thread: builds this backend's runtime, registers `listener`
    /// with it and runs `core` until it returns (or tells `core` why the runtime failed).
    pub fn run_core(self, listener: std::net::TcpListener, core: impl CoreMain) {
        match self {
            Backend::Uring => uring::run_core(listener, core),
            Backend::Epoll => epoll::run_core(listener, core),
        }
    }
}

/// Sets up (and drops) a small ring: fails as the cores' rings would.
fn probe_io_uring() -> io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// What a core runs once its backend's runtime is up.
#[allow(async_fn_in_trait)]
pub trait CoreMain {
    /// Serves on `listener` (registered with the runtime, or why it could not be) until the
    /// core stops.
    async fn serve<L: Listener>(self, listener: io::Result<L>);

    /// The backend's runtime could not be built: the core never ran.
    fn runtime_failed(self, error: io::Error);
}

/// A listening socket of one core. (Its futures need no `Send` bound: every task of a core
/// runs on the core's thread.)
#[allow(async_fn_in_trait)]
pub trait Listener: AsRawFd + 'static {
    /// An accepted connection.
    type Stream: HttpSocket;
    /// Waits for the next connection; returns it with the client's address.
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
}

/// An accepted connection's socket as the HTTP phase uses it.
#[allow(async_fn_in_trait)]
pub trait HttpSocket: Sized + 'static {
    /// What hyper reads and writes through.
    type Io: AsyncRead + AsyncWrite + Unpin + 'static;

    /// The adapter hyper is given, and its writes: the one it may leave in flight when hyper
    /// returns, and how long a write has waited. Once `upgraded` is set the adapter reads no
    /// more: hyper only has the 101 to flush, and the bytes after the request are the
    /// WebSocket reader's.
    fn http_io(socket: &Rc<Self>, upgraded: Rc<Cell<bool>>) -> (Self::Io, WriteSlot);

    /// Ends the HTTP phase after the 101 response was flushed: the socket, for the WebSocket
    /// reader, with whatever the adapter read past the request.
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

/// What the HTTP phase hands to the WebSocket phase.
pub struct UpgradedIo {
    /// The socket.
    pub socket: ConnSocket,
    /// Bytes read from the socket that hyper did not consume.
    pub buffered: Vec<u8>,
}

/// An in-flight write of a whole buffer.
type PendingWrite = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// The HTTP adapter's writes, shared with the HTTP phase's owner (`http::serve`).
#[derive(Default)]
pub struct HttpWrites {
    /// A write accepted from hyper and not yet completed: hyper may finish with an error (a
    /// 400 or 431 it just queued) before the write completed, and the owner lets it complete
    /// before closing. (On epoll writes complete at once: it stays empty.)
    pending: RefCell<Option<PendingWrite>>,
    /// Since when the adapter has been waiting for the kernel to take bytes, counted from the
    /// last progress; None while nothing waits. A client that pipelines requests and never
    /// reads would otherwise hold its connection (and its `--max-connections` slot) forever:
    /// the owner closes the connection once this is older than `--write-timeout`.
    waiting_since: Cell<Option<Instant>>,
}

/// The [`HttpWrites`] of one connection, shared by its adapter and its owner.
pub type WriteSlot = Rc<HttpWrites>;

impl HttpWrites {
    /// A write is waiting for the kernel (keeps the moment of the last progress if it was
    /// already waiting).
    fn waiting(&self) {
        if self.waiting_since.get().is_none() {
            self.waiting_since.set(Some(Instant::now()));
        }
    }

    /// The kernel took bytes; `still_waiting`: the rest of the write waits from now on.
    fn progressed(&self, still_waiting: bool) {
        self.waiting_since.set(still_waiting.then(Instant::now));
    }

    /// Resolves once a write has waited `timeout` without progress (never while nothing
    /// waits). One timer per connection, re-armed at most once per `timeout`.
    pub async fn stalled(&self, timeout: Duration) {
        loop {
            let deadline = match self.waiting_since.get() {
                Some(since) if since.elapsed() >= timeout => return,
                Some(since) => since + timeout,
                // A write that starts waiting during this sleep is judged at the next turn,
                // `timeout` after it started waiting.
                None => Instant::now() + timeout,
            };
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// Waits for a write hyper left in flight (its last answer) to complete.
    pub async fn finish(&self) {
        let pending = self.pending.borrow_mut().take();
        if let Some(write) = pending {
            // A failed write means the client is gone; there is nothing left to deliver.
            let _ = write.await;
        }
    }
}
