//! State shared by all cores: the validated config, every core's metrics, the fan-out budget,
//! the IO backend, the broker's counters, the `--max-connections` counter and the stop flag.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backend::Backend;
use crate::budget::FanoutBudget;
use crate::config::Config;
use crate::metrics::{BrokerStats, CoreMetrics};

/// Read-mostly state every core holds an `Arc` of.
#[derive(Debug)]
pub struct ServerState {
    /// Validated settings.
    pub config: Config,
    /// One metrics block per core, indexed by core number; core `i` writes `metrics[i]` only.
    pub metrics: Box<[Arc<CoreMetrics>]>,
    /// Bytes held for delivery across cores, against --fanout-budget.
    pub budget: Arc<FanoutBudget>,
    /// The IO backend serving connections (`ringcast_build_info`'s label).
    pub backend: Backend,
    /// The broker links' counters and states, with `--broker` (`/metrics`, `/readyz`).
    pub broker_stats: Option<Arc<BrokerStats>>,
    /// Open connections across all cores, from accept (compared to --max-connections).
    open_connections: AtomicUsize,
}

impl ServerState {
    /// State for `config.cores` cores on `backend`.
    pub fn new(config: Config, backend: Backend) -> Self {
        let metrics = (0..config.cores).map(|_| Arc::default()).collect();
        let budget = FanoutBudget::new(config.cores, config.fanout_budget);
        let broker_stats = config.broker.as_ref().map(|_| Arc::default());
        ServerState {
            config,
            metrics,
            budget,
            backend,
            broker_stats,
            open_connections: AtomicUsize::new(0),
        }
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

    /// Open connections across all cores (HTTP phase included).
    #[cfg(test)]
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
        let state = Arc::new(ServerState::new(config, Backend::Epoll));
        let first = state.try_acquire_connection().unwrap();
        let _second = state.try_acquire_connection().unwrap();
        assert!(state.try_acquire_connection().is_none());
        drop(first);
        assert_eq!(state.open_connections(), 1);
        assert!(state.try_acquire_connection().is_some());
    }
}
