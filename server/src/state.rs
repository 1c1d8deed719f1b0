//! State shared by all cores: the validated config, every core's metrics, the fan-out budget,
//! the IO backend, the broker's counters, the `--max-connections` and
//! `--max-connections-per-ip` counters and the stop flag.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// Open connections per client address, with --max-connections-per-ip.
    per_ip: Option<PerIpConnections>,
}

impl ServerState {
    /// State for `config.cores` cores on `backend`.
    pub fn new(config: Config, backend: Backend) -> Self {
        let metrics = (0..config.cores).map(|_| Arc::default()).collect();
        let budget = FanoutBudget::new(config.cores, config.fanout_budget);
        let broker_stats = config.broker.as_ref().map(|_| Arc::default());
        let per_ip = config.max_connections_per_ip.map(PerIpConnections::new);
        ServerState {
            config,
            metrics,
            budget,
            backend,
            broker_stats,
            open_connections: AtomicUsize::new(0),
            per_ip,
        }
    }

    /// Takes a connection slot for a client at `peer`, or says why not: --max-connections are
    /// open (HTTP 503), or --max-connections-per-ip from `peer`'s address (HTTP 429). Called
    /// at accept, so connections still in the HTTP phase are counted too; the slot moves into
    /// the WebSocket connection at upgrade.
    pub fn try_acquire_connection(
        self: &Arc<Self>,
        peer: IpAddr,
    ) -> Result<ConnectionPermit, Refused> {
        let limit = self.config.max_connections;
        self.open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .map_err(|_| Refused::Full)?;
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d: one address either way.
        let peer = peer.to_canonical();
        if let Some(per_ip) = &self.per_ip {
            if !per_ip.try_add(peer) {
                self.open_connections.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerIp);
            }
        }
        Ok(ConnectionPermit {
            state: Arc::clone(self),
            peer,
        })
    }

    /// Open connections across all cores (HTTP phase included).
    #[cfg(test)]
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Acquire)
    }
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// --max-connections are open.
    Full,
    /// --max-connections-per-ip are open from the client's address.
    PerIp,
}

/// One connection's slot under --max-connections (and --max-connections-per-ip), released on
/// drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    /// Where the slot is counted.
    state: Arc<ServerState>,
    /// The client's address, for --max-connections-per-ip.
    peer: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(per_ip) = &self.state.per_ip {
            per_ip.remove(self.peer);
        }
        self.state.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Shards of the per-address counts: cores accepting at once rarely wait for each other.
const PER_IP_SHARDS: usize = 64;

/// Open connections per client address, shared by every core. Touched only at accept and when
/// a connection's slot is released, never per message. An address has an entry only while it
/// has connections, so the map holds at most --max-connections entries.
#[derive(Debug)]
struct PerIpConnections {
    /// --max-connections-per-ip.
    limit: u32,
    /// Picks an address's shard (keyed per process, so addresses cannot be chosen to crowd one).
    hasher: RandomState,
    /// Open connections by address, in [`PER_IP_SHARDS`] shards.
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

impl PerIpConnections {
    /// Counts for `limit` connections per address.
    fn new(limit: u32) -> Self {
        PerIpConnections {
            limit,
            hasher: RandomState::new(),
            shards: (0..PER_IP_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The shard of `peer`, locked. (A panic while holding a lock leaves counts that are still
    /// whole numbers: poisoning is ignored.)
    fn shard(&self, peer: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        let index = self.hasher.hash_one(peer) as usize % PER_IP_SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more connection from `peer`, unless it has `limit` already.
    fn try_add(&self, peer: IpAddr) -> bool {
        let mut shard = self.shard(peer);
        let open = shard.entry(peer).or_insert(0);
        if *open >= self.limit {
            return false;
        }
        *open += 1;
        true
    }

    /// One connection from `peer` closed.
    fn remove(&self, peer: IpAddr) {
        let mut shard = self.shard(peer);
        if let Some(open) = shard.get_mut(&peer) {
            *open -= 1;
            if *open == 0 {
                shard.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_limit_and_are_released_on_drop() {
        let config = Config::from_args(["--max-connections", "2"]).unwrap();
        let state = Arc::new(ServerState::new(config, Backend::Epoll));
        let peer = IpAddr::from([127, 0, 0, 1]);
        let first = state.try_acquire_connection(peer).unwrap();
        let _second = state.try_acquire_connection(peer).unwrap();
        assert_eq!(
            state.try_acquire_connection(peer).err(),
            Some(Refused::Full)
        );
        drop(first);
        assert_eq!(state.open_connections(), 1);
        assert!(state.try_acquire_connection(peer).is_ok());
    }

    #[test]
    fn per_ip_permits_stop_at_the_limit_per_address_and_are_released_on_drop() {
        let config =
            Config::from_args(["--max-connections", "5", "--max-connections-per-ip", "2"]).unwrap();
        let state = Arc::new(ServerState::new(config, Backend::Epoll));
        let one = IpAddr::from([127, 0, 0, 1]);
        let first = state.try_acquire_connection(one).unwrap();
        let second = state.try_acquire_connection(one).unwrap();
        assert_eq!(
            state.try_acquire_connection(one).err(),
            Some(Refused::PerIp)
        );
        // The same address mapped into IPv6 (a dual-stack listener) is the same client.
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(
            state.try_acquire_connection(mapped).err(),
            Some(Refused::PerIp)
        );
        // A refusal gives back its --max-connections slot.
        assert_eq!(state.open_connections(), 2);
        let other = state
            .try_acquire_connection(IpAddr::from([127, 0, 0, 2]))
            .unwrap();
        drop(first);
        let third = state.try_acquire_connection(one).unwrap();
        // An address without connections leaves no entry behind.
        drop((second, third, other));
        let per_ip = state.per_ip.as_ref().unwrap();
        assert!(per_ip.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
