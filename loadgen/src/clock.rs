//! The one clock every stamp uses: CLOCK_MONOTONIC in nanoseconds.
//!
//! CLOCK_MONOTONIC (not `std::time::Instant`, whose epoch is private) is shared by every process
//! on the host, so several loadgen processes of one run agree on stamps; `merge` relies on it.

use std::time::{Duration, SystemTime};

/// Nanoseconds since the host's monotonic epoch (boot, roughly).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Converts a monotonic stamp into wall-clock time (for log headers), using the current offset
/// between the two clocks.
pub fn monotonic_to_system(ns: u64) -> SystemTime {
    let now_mono = monotonic_ns();
    let now_wall = SystemTime::now();
    if ns <= now_mono {
        now_wall - Duration::from_nanos(now_mono - ns)
    } else {
        now_wall + Duration::from_nanos(ns - now_mono)
    }
}

/// The tokio instant at which the monotonic clock reads `ns` (tokio's clock is also monotonic).
pub fn tokio_instant_at(ns: u64) -> tokio::time::Instant {
    let now_mono = monotonic_ns();
    let now = tokio::time::Instant::now();
    now + Duration::from_nanos(ns.saturating_sub(now_mono))
}
