//! One pinned thread per core: its own runtime (the IO backend's), SO_REUSEPORT listener and
//! accept loop (`accept.rs`), its hub, reader, write driver and HTTP service, its keepalive
//! sweep (`keepalive.rs`), its mailbox, and its graceful shutdown (`shutdown.rs`). Nothing is
//! shared between cores on the hot path except the encoded frames and the fan-out budget's
//! counters.

mod accept;
mod keepalive;
mod shutdown;

use std::io;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::spawn_local;

pub use accept::{bind_listener, ensure_port_free};

use crate::backend::{CoreMain, Listener};
use crate::budget::CoreLedger;
use crate::clock::CoarseClock;
use crate::fanout::{Broker, Hub, Mail, Mailboxes, Streams};
use crate::http::HttpService;
use crate::input::{read_loop, ReadContext, Reader};
use crate::output::{CoreOutput, WriteDriver};
use crate::state::ServerState;
use crate::ws::Compressors;

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
    /// Every core's mailbox, this one's included, by index.
    pub cores: Vec<UnboundedSender<Mail>>,
    /// This core's mailbox.
    pub mailbox: UnboundedReceiver<Mail>,
    /// The other nodes, with `--broker`.
    pub broker: Option<Arc<Broker>>,
    /// Reports once accepting, or why not.
    pub ready: ReadyReport,
    /// Panic before reporting ready (tests check that start then fails instead of hanging).
    #[cfg(any(test, feature = "testing"))]
    pub fail_before_ready: bool,
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

/// Body of a core thread: pin, build the backend's runtime, serve until shutdown.
pub fn run_core(setup: CoreSetup) {
    #[cfg(any(test, feature = "testing"))]
    if setup.fail_before_ready {
        panic!("core {} told to fail before it is ready", setup.index);
    }
    let CoreSetup {
        index,
        cpu,
        listener,
        state,
        cores,
        mailbox,
        broker,
        ready,
        ..
    } = setup;
    if let Some(cpu) = cpu {
        if !core_affinity::set_for_current(cpu) {
            tracing::warn!(core = index, cpu = cpu.id, "could not pin core thread");
        }
    }
    // Every event logged on this thread (every task of the core) names the core.
    let _span = tracing::info_span!("core", index).entered();
    let backend = state.backend;
    let core = Core {
        index,
        state,
        cores,
        mailbox,
        broker,
        ready,
    };
    backend.run_core(listener, core);
}

/// A core inside its runtime.
struct Core {
    /// Core number.
    index: usize,
    /// Shared state.
    state: Arc<ServerState>,
    /// Every core's mailbox, by index.
    cores: Vec<UnboundedSender<Mail>>,
    /// This core's mailbox.
    mailbox: UnboundedReceiver<Mail>,
    /// The other nodes, with `--broker`.
    broker: Option<Arc<Broker>>,
    /// Reports once accepting, or why not.
    ready: ReadyReport,
}

impl CoreMain for Core {
    /// Builds the core's parts, spawns its tasks (accept loop, keepalive sweep, reader, write
    /// driver), takes mail until told to shut down, then drains.
    async fn serve<L: Listener>(self, listener: io::Result<L>) {
        let Core {
            index,
            state,
            cores,
            mut mailbox,
            broker,
            mut ready,
        } = self;
        let budget = &state.budget;
        let metrics = Arc::clone(&state.metrics[index]);
        let clock = Rc::new(CoarseClock::new());
        let core_output = Rc::new(CoreOutput::new(CoreLedger::new(index, Arc::clone(budget))));
        let config = &state.config;
        let streams = Streams::new(
            index,
            config.cores,
            config.history,
            config.history_ttl,
            config.history_budget,
            Arc::clone(&metrics),
        );
        let hub = Rc::new(Hub::new(
            index,
            Rc::clone(&core_output),
            Mailboxes::new(cores, Arc::clone(budget)),
            streams,
            broker,
            Arc::clone(&metrics),
            Rc::clone(&clock),
            config
                .deflate
                .map(|deflate| Compressors::new(deflate.level, deflate.min_size)),
        ));
        let read_context = ReadContext {
            hub: Rc::clone(&hub),
            core_output: Rc::clone(&core_output),
            budget: Arc::clone(budget),
            metrics: Arc::clone(&metrics),
            clock: Rc::clone(&clock),
            max_message: config.max_message,
            max_inbound_rate: config.max_inbound_rate,
            max_backlog: config.max_backlog,
            publish_timeout: config.publish_timeout,
        };
        let parts = listener.and_then(|listener| {
            let writer = WriteDriver::start(state.backend, &core_output, &metrics, &clock)?;
            Ok((listener, writer, Reader::new(read_context, state.backend)?))
        });
        let (listener, writer, reader) = match parts {
            Ok(parts) => parts,
            Err(err) => {
                ready.send(Err(err));
                return;
            }
        };
        let reader = Rc::new(reader);
        let http = Rc::new(HttpService::new(
            Arc::clone(&state),
            Arc::clone(&metrics),
            Rc::clone(&hub),
            Rc::clone(&reader),
        ));
        let listener = Rc::new(listener);
        spawn_local(accept::accept_loop(
            Rc::clone(&listener),
            Arc::clone(&state),
            Rc::clone(&http),
            Arc::clone(&metrics),
        ));
        let schedule = keepalive::Schedule::of(config);
        spawn_local(keepalive::sweep_loop(
            Rc::clone(&hub),
            Rc::clone(&clock),
            Arc::clone(&metrics),
            schedule,
        ));
        spawn_local(read_loop(Rc::clone(&reader)));
        ready.send(Ok(()));
        spawn_local(catch_up_loop(Rc::clone(&hub), Rc::clone(&core_output)));
        while let Some(mail) = mailbox.recv().await {
            if matches!(mail, Mail::Shutdown) {
                break;
            }
            // Taken at once, whatever this core's queues hold: a core that waited for its
            // stalled readers to drain would hold back its healthy ones too. The publishers'
            // pause at the budget bounds what mail can add.
            hub.take(mail);
        }
        http.shut_down();
        // SAFETY: the fd belongs to `listener`, which this function keeps alive; shutdown(2) on
        // a listening socket makes the pending accept complete with an error, ending the
        // accept loop.
        unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
        shutdown::drain(&hub, &reader, &writer, config.shutdown_grace).await;
    }

    fn runtime_failed(mut self, error: io::Error) {
        self.ready.send(Err(error));
    }
}

/// Recovering clients whose replay ran out while the room went on ask its home core again.
async fn catch_up_loop(hub: Rc<Hub>, core_output: Rc<CoreOutput>) {
    loop {
        core_output.catching_up.listed().await;
        for subscriber in core_output.catching_up.take() {
            hub.catch_up(&subscriber);
        }
    }
}
