//! The process's own resources, read from `/proc/self` at scrape time (the open fds at most
//! once a second).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// utime + stime of `/proc/self/stat`, in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Resident pages of `/proc/self/statm`, in bytes.
pub fn process_resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// How long a count of `/proc/self/fd` is reused. Listing it costs about 0.6 µs per open fd
/// (12-15 ms at 20,000 connections) on the core thread that answers the scrape, where its
/// WebSockets wait meanwhile; a client pipelining `/metrics` would make a core pay that back to
/// back. Prometheus scrapes every few seconds: a count up to a second old is as good.
const OPEN_FDS_MAX_AGE: Duration = Duration::from_secs(1);

/// The last count of `/proc/self/fd` and when it was taken, shared by every core (the fds are
/// the process's).
static OPEN_FDS: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// Open file descriptors: entries of `/proc/self/fd`, counted at most once per
/// [`OPEN_FDS_MAX_AGE`].
pub fn process_open_fds() -> Option<u64> {
    reuse_recent(&OPEN_FDS, Instant::now(), count_open_fds)
}

/// Entries of `/proc/self/fd`, less the one listing them.
fn count_open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some((entries as u64).saturating_sub(1))
}

/// The value in `cache` if it is younger than [`OPEN_FDS_MAX_AGE`] at `now`, else `count()`,
/// kept for later. Holding the lock while counting makes a core that scrapes meanwhile wait
/// for this count instead of taking its own.
fn reuse_recent(
    cache: &Mutex<Option<(Instant, u64)>>,
    now: Instant,
    count: impl FnOnce() -> Option<u64>,
) -> Option<u64> {
    // A panic while counting leaves the last good value: poisoning is ignored.
    let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((taken, value)) = *cached {
        if now.saturating_duration_since(taken) < OPEN_FDS_MAX_AGE {
            return Some(value);
        }
    }
    let value = count()?;
    *cached = Some((now, value));
    Some(value)
}

/// The soft RLIMIT_NOFILE.
pub fn process_max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read() {
        assert!(process_cpu_seconds().is_some());
        assert!(process_resident_bytes().unwrap() > 0);
        assert!(process_open_fds().unwrap() >= 3);
    }

    #[test]
    fn open_fds_are_counted_at_most_once_per_max_age() {
        let cache = Mutex::new(None);
        let start = Instant::now();
        let counts = std::cell::Cell::new(0);
        let count = || {
            counts.set(counts.get() + 1);
            Some(counts.get())
        };
        assert_eq!(reuse_recent(&cache, start, count), Some(1));
        let soon = start + OPEN_FDS_MAX_AGE - Duration::from_millis(1);
        assert_eq!(reuse_recent(&cache, soon, count), Some(1), "counted again");
        let later = start + OPEN_FDS_MAX_AGE;
        assert_eq!(
            reuse_recent(&cache, later, count),
            Some(2),
            "not counted again"
        );
        // A failed count keeps nothing new.
        let much_later = later + OPEN_FDS_MAX_AGE;
        assert_eq!(reuse_recent(&cache, much_later, || None), None);
        assert_eq!(reuse_recent(&cache, much_later, count), Some(3));
    }
}
