//! The preflight that refuses a run this host cannot open: file descriptors and the
//! source-address x ephemeral-port pool.

use anyhow::{bail, Context};

/// File descriptors kept free for the runtime, output files and /proc reads.
const FD_HEADROOM: u64 = 64;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    // Asking for the most there is gets the hard limit (rlimit caps the request at it).
    rlimit::increase_nofile_limit(rlimit::INFINITY).context("raising RLIMIT_NOFILE")
}

/// Number of ephemeral ports the kernel hands out (net.ipv4.ip_local_port_range).
pub fn ephemeral_port_count() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
            let (low, high) = (parts.next()??, parts.next()??);
            high.checked_sub(low).map(|n| n + 1)
        })
        .unwrap_or(28_232)
}

/// Refuses a run the fd limit or the source-address x port pool cannot reach.
pub fn preflight(
    connections: u64,
    fd_limit: u64,
    sources: usize,
    destinations: usize,
) -> anyhow::Result<()> {
    if connections + FD_HEADROOM > fd_limit {
        bail!(
            "{connections} connections need about {} file descriptors but the limit is {fd_limit} \
             (raise `ulimit -n` / the hard RLIMIT_NOFILE, or run several loadgen processes and `loadgen merge`)",
            connections + FD_HEADROOM
        );
    }
    let ports = ephemeral_port_count();
    let capacity = ports * sources.max(1) as u64 * destinations.max(1) as u64;
    if connections > capacity {
        bail!(
            "{connections} connections exceed {} source address(es) x {ports} ephemeral ports x {} \
             destination(s) = {capacity}; add addresses with --src 127.0.0.1-127.0.0.8 or widen \
             net.ipv4.ip_local_port_range",
            sources.max(1),
            destinations.max(1)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_refuses_what_cannot_be_reached() {
        assert!(preflight(1000, 20_000, 1, 1).is_ok());
        assert!(preflight(19_990, 20_000, 1, 1).is_err());
        assert!(preflight(10_000_000, u64::MAX, 1, 1).is_err());
    }
}
