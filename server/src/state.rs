//! State shared by all cores: the validated config, every core's metrics, the fan-out budget,
//! the `--max-connections` counter and the stop flag.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::budget::FanoutMemory;
use crate::config::Config;
use crate::fanout::broker::Broker;
use crate::metrics::CoreMetrics;

/// Read-mostly state every core holds an `Arc` of.
#[derive(Debug)]
pub struct ServerState {
    /// Validated settings.
    pub config: Config,
    /// One metrics block per core, indexed by core number.
    pub metrics: Arc<[CoreMetrics]>,
    /// Bytes held for delivery across cores, against --fanout-budget.
    pub memory: Arc<FanoutMemory>,
    /// Open connections across all cores, from accept (compared to --max-connections).
    open_connections: AtomicUsize,
    /// Set when the server is told to stop, so a core waiting for budget stops waiting.
    stopping: AtomicBool,
    /// The IO backend serving connections ("io_uring" or "epoll"), set once at start; read by
    /// `ringcast_build_info`.
    pub backend: OnceLock<&'static str>,
    /// The link to the other nodes (`--broker`), set once at start before the cores run.
    pub broker: OnceLock<Arc<Broker>>,
}

impl ServerState {
    /// State for `config.cores` cores.
    pub fn new(config: Config) -> Self {
        let metrics = (0..config.cores).map(|_| CoreMetrics::default()).collect();
        let memory = FanoutMemory::new(config.cores, config.fanout_budget);
        ServerState {
            config,
            metrics,
            memory,
            open_connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            backend: OnceLock::new(),
            broker: OnceLock::new(),
        }
    }

    /// Marks the server as stopping.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// True once the server was told to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Takes a connection slot, or None when --max-connections are open (HTTP 503). Called at
    /// accept, so connections still in the HTTP phase are counted too; the slot moves into the
    /// WebSocket connection at upgrade.
    pub fn try_acquire_connection(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let limit = self.config.max_connections;
        self.open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()
            .map(|_| ConnectionPermit {
                state: Arc::clone(self),
            })
    }

    /// The backend's name, "unknown" before start set it.
    pub fn backend(&self) -> &'static str {
        self.backend.get().copied().unwrap_or("unknown")
    }

    /// Open connections across all cores (HTTP phase included).
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Acquire)
    }
}

/// One connection's slot under --max-connections, released on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    /// Where the slot is counted.
    state: Arc<ServerState>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.state.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_limit_and_are_released_on_drop() {
        let config = Config::from_args(["--max-connections", "2"]).unwrap();
        let state = Arc::new(ServerState::new(config));
        let first = state.try_acquire_connection().unwrap();
        let _second = state.try_acquire_connection().unwrap();
        assert!(state.try_acquire_connection().is_none());
        drop(first);
        assert_eq!(state.open_connections(), 1);
        assert!(state.try_acquire_connection().is_some());
    }
}
