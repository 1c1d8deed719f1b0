//! One pinned thread per core: its own runtime (tokio-uring's, or plain tokio's on the epoll
//! backend), SO_REUSEPORT listener, hub and mailbox. Nothing is shared between cores on the hot
//! path except the encoded frames and the fan-out budget's counters.

pub mod keepalive;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use tokio::task::spawn_local;

use crate::backend::{Backend, HttpSocket, Listener};
use crate::budget::wait_for_room;
use crate::fanout::hub::{Hub, Mail};
use crate::http;
use crate::input::connection::READ_SCRATCH;
use crate::input::reader::{self, CoreReader};
use crate::output::epoll::{self as epoll_output, EpollOutput};
use crate::output::uring::{self as uring_output, UringOutput};
use crate::state::ServerState;
use crate::ws::encode::CloseCode;

/// Submission queue entries per core ring.
const RING_ENTRIES: u32 = 4096;
/// Completion queue entries: generous, a broadcast completes one writev per subscriber at once.
const COMPLETION_ENTRIES: u32 = 8 * RING_ENTRIES;
/// Pause after accept fails for lack of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// After the grace period, how long tasks get to observe the final shutdown(Both).
const FINAL_DRAIN: Duration = Duration::from_millis(200);
/// Environment variable naming a core that panics before it reports ready: lets the tests
/// check that start fails instead of hanging. Never set in production.
pub const FAIL_CORE_ENV: &str = "RINGCAST_TEST_FAIL_CORE";
/// Answer to a connection accepted beyond --max-connections, before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

/// The writer of every connection's frames on one core.
#[derive(Debug)]
pub enum Output {
    /// io_uring backend: the core's output ring.
    Uring(Rc<UringOutput>),
    /// epoll backend: nonblocking sends.
    Epoll(Rc<EpollOutput>),
}

impl Output {
    /// Writes started and not completed yet.
    fn in_flight(&self) -> usize {
        match self {
            Output::Uring(output) => output.in_flight(),
            Output::Epoll(output) => output.in_flight(),
        }
    }
}

/// Everything a core's tasks share.
#[derive(Debug)]
pub struct CoreContext {
    /// Core number.
    pub index: usize,
    /// Rooms and cross-core fan-out of this core.
    pub hub: Hub,
    /// What writes every connection's frames.
    pub output: Output,
    /// Reads every WebSocket connection of this core.
    pub reader: CoreReader,
    /// Every read of a WebSocket connection on this core lands here first (`conn.rs`).
    pub read_scratch: RefCell<Box<[u8]>>,
    /// Config, metrics, connection limit.
    pub state: Arc<ServerState>,
    /// Set once graceful shutdown began: no new connections or upgrades.
    shutting_down: Cell<bool>,
    /// Signalled whenever a WebSocket connection of this core ends (shutdown drain waits on it).
    connection_gone: Notify,
}

impl CoreContext {
    /// True once graceful shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Called when a WebSocket connection has fully ended.
    pub fn connection_closed(&self) {
        self.connection_gone.notify_one();
    }
}

/// Everything one core thread needs, moved into it.
pub struct CoreSetup {
    /// Core number (index into metrics).
    pub index: usize,
    /// CPU to pin the thread to, if known.
    pub cpu: Option<core_affinity::CoreId>,
    /// This core's bound, listening SO_REUSEPORT socket.
    pub listener: std::net::TcpListener,
    /// Shared state.
    pub state: Arc<ServerState>,
    /// Other cores' mailboxes.
    pub peers: Vec<UnboundedSender<Mail>>,
    /// This core's mailbox.
    pub mailbox: UnboundedReceiver<Mail>,
    /// Reports once accepting, or why not.
    pub ready: ReadyReport,
    /// The IO backend to run.
    pub backend: Backend,
}

/// A core's one report to `Server::start`: Ok once it accepts, or the error. Dropped without a
/// report (the thread panicked before it was ready), it reports that instead, so start never
/// waits for a core that is gone.
pub struct ReadyReport {
    /// The reporting core.
    core: usize,
    /// Where reports go; None once reported.
    sender: Option<SyncSender<(usize, io::Result<()>)>>,
}

impl ReadyReport {
    /// The report of core `core`.
    pub fn new(core: usize, sender: SyncSender<(usize, io::Result<()>)>) -> Self {
        ReadyReport {
            core,
            sender: Some(sender),
        }
    }

    /// Sends the report (the first one counts).
    pub fn send(&mut self, result: io::Result<()>) {
        if let Some(sender) = self.sender.take() {
            // start() stopped waiting only if it already failed; nothing to tell then.
            let _ = sender.send((self.core, result));
        }
    }
}

impl Drop for ReadyReport {
    fn drop(&mut self) {
        self.send(Err(io::Error::other(
            "the core thread exited before it was ready",
        )));
    }
}

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

/// Body of a core thread: pin, build the ring, serve until shutdown.
pub fn run_core(setup: CoreSetup) {
    if std::env::var(FAIL_CORE_ENV).is_ok_and(|core| core == setup.index.to_string()) {
        panic!("core {} told to fail by {FAIL_CORE_ENV}", setup.index);
    }
    if let Some(cpu) = setup.cpu {
        if !core_affinity::set_for_current(cpu) {
            tracing::warn!(
                core = setup.index,
                cpu = cpu.id,
                "could not pin core thread"
            );
        }
    }
    match setup.backend {
        Backend::Uring => run_uring_core(setup),
        Backend::Epoll => run_epoll_core(setup),
    }
}

/// A core on tokio-uring's runtime.
fn run_uring_core(setup: CoreSetup) {
    let mut completion = tokio_uring::uring_builder();
    completion.setup_cqsize(COMPLETION_ENTRIES);
    let runtime = match tokio_uring::Runtime::new(
        tokio_uring::builder()
            .entries(RING_ENTRIES)
            .uring_builder(&completion),
    ) {
        Ok(runtime) => runtime,
        Err(err) => {
            let mut ready = setup.ready;
            ready.send(Err(err));
            return;
        }
    };
    runtime.block_on(async {
        let output = UringOutput::new().map(|output| Output::Uring(Rc::new(output)));
        let listener = |std| Ok(tokio_uring::net::TcpListener::from_std(std));
        serve_core(setup, listener, output).await;
    });
}

/// A core on a plain tokio current-thread runtime (epoll).
fn run_epoll_core(setup: CoreSetup) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let mut ready = setup.ready;
            ready.send(Err(err));
            return;
        }
    };
    let output = Ok(Output::Epoll(Rc::new(EpollOutput::default())));
    tokio::task::LocalSet::new().block_on(
        &runtime,
        serve_core(setup, tokio::net::TcpListener::from_std, output),
    );
}

/// The core's main task: accept loop, keepalive sweep, flush task, mailbox, then graceful
/// drain. `listen` registers the core's listener with the runtime; `output` is the backend's
/// writer (or why it could not be set up).
async fn serve_core<L: Listener>(
    setup: CoreSetup,
    listen: impl FnOnce(std::net::TcpListener) -> io::Result<L>,
    output: io::Result<Output>,
) {
    let CoreSetup {
        index,
        listener,
        state,
        peers,
        mut mailbox,
        mut ready,
        ..
    } = setup;
    let parts = output.and_then(|output| Ok((output, listen(listener)?, CoreReader::new()?)));
    let (output, listener, reader) = match parts {
        Ok(parts) => parts,
        Err(err) => {
            ready.send(Err(err));
            return;
        }
    };
    let metrics = Arc::clone(&state.metrics);
    let memory = Arc::clone(&state.memory);
    let core = Rc::new(CoreContext {
        index,
        output,
        reader,
        read_scratch: RefCell::new(vec![0; READ_SCRATCH].into_boxed_slice()),
        hub: Hub::new(index, peers, metrics, memory).with_broker(state.broker.get().cloned()),
        state,
        shutting_down: Cell::new(false),
        connection_gone: Notify::new(),
    });
    let listener = Rc::new(listener);
    spawn_local(accept_loop(Rc::clone(&core), Rc::clone(&listener)));
    spawn_local(keepalive::sweep_loop(Rc::clone(&core)));
    spawn_local(reader::read_loop(Rc::clone(&core)));
    match &core.output {
        Output::Uring(output) => spawn_local(uring_output::flush_loop(
            Rc::clone(&core),
            Rc::clone(output),
        )),
        Output::Epoll(output) => spawn_local(epoll_output::flush_loop(
            Rc::clone(&core),
            Rc::clone(output),
        )),
    };
    ready.send(Ok(()));
    while let Some(mail) = mailbox.recv().await {
        match mail {
            Mail::Broadcast { room, frame } => {
                // Take mail only while this core's writers are within their share of the
                // budget: this is what bounds the hand-off (publishers stop once the mail
                // waiting here fills the budget).
                let memory = core.hub.memory();
                let has_room = || memory.core_has_room(index) || core.state.is_stopping();
                wait_for_room(has_room, None).await;
                core.hub.deliver_from_peer(&room, frame);
            }
            Mail::Shutdown => break,
        }
    }
    core.shutting_down.set(true);
    // SAFETY: the fd belongs to `listener`, which this function keeps alive; shutdown(2) on a
    // listening socket makes the pending accept complete with an error, ending accept_loop.
    unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
    drain(&core).await;
}

/// Accepts connections until shutdown and hands each to the HTTP phase.
async fn accept_loop<L: Listener>(core: Rc<CoreContext>, listener: Rc<L>) {
    // Log the first failure of a streak only (EMFILE under a connection flood repeats).
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if core.is_shutting_down() {
                    return;
                }
                failing = false;
                let Some(permit) = core.state.try_acquire_connection() else {
                    spawn_local(refuse(stream));
                    continue;
                };
                let _ = stream.set_nodelay();
                spawn_local(http::serve(Rc::clone(&core), stream, permit));
            }
            Err(_) if core.is_shutting_down() => return,
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

/// Answers a connection over --max-connections with 503 and closes it. Its request is not
/// read: the answer goes out at once and the socket is shut down after it.
async fn refuse(stream: impl HttpSocket) {
    let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Graceful shutdown of one core: close 1001 to every client, wait until they are gone or the
/// grace period ends, then shut down whatever is left.
async fn drain(core: &CoreContext) {
    let grace = core.state.config.shutdown_grace;
    let deadline = Instant::now() + grace;
    core.hub.for_each_subscriber(|subscriber| {
        subscriber.close_within(CloseCode::GoingAway, "server shutting down", grace);
    });
    wait_for_connections(core, deadline).await;
    core.hub
        .for_each_subscriber(|subscriber| subscriber.shutdown_socket());
    let final_deadline = Instant::now() + FINAL_DRAIN;
    wait_for_connections(core, final_deadline).await;
    // Writes still in flight point into frames this core is about to free: let the kernel
    // complete them (their sockets are shut down, so they fail at once).
    wait_for_room(|| core.output.in_flight() == 0, Some(final_deadline)).await;
}

/// Waits until this core has no WebSocket connection left or `deadline` passes.
async fn wait_for_connections(core: &CoreContext, deadline: Instant) {
    while core.hub.subscriber_count() > 0 {
        let gone = core.connection_gone.notified();
        if tokio::time::timeout_at(deadline.into(), gone)
            .await
            .is_err()
        {
            return;
        }
    }
}
