//! Keepalive and stall detection without per-connection timers: one sweep task per core.
//!
//! Every tick it refreshes the core's coarse clock and, for each connection:
//! - shuts down a connection whose close deadline passed (slow consumers that never take their
//!   close, clients that never answer ours);
//! - closes with 1008 a connection that holds output the kernel has taken nothing of for
//!   `--write-timeout` (a stalled reader: gorilla/websocket's write deadline);
//! - pings a client once it has been silent for `--ping-interval`, measured from its own last
//!   frame (gorilla: ping at 54 s, pong wait 60 s), and again every interval while it stays
//!   silent; any frame it sends, the pong included, restarts its schedule;
//! - closes with 1001 a client silent for `--idle-timeout`, so a client has
//!   `idle - ping - one tick` to answer the first ping.
//!
//! A connection whose reader the server paused (fan-out budget) is not judged idle: the
//! silence is the server's.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::budget::LocalFrame;
use crate::clock::CoarseClock;
use crate::config::Config;
use crate::fanout::Hub;
use crate::metrics::CoreMetrics;
use crate::output::Subscriber;
use crate::ws::{keepalive_ping, CloseCode};

/// Longest sweep period (deadline resolution).
const MAX_TICK: Duration = Duration::from_millis(250);

/// What the sweep did to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing to do.
    Fine,
    /// Pinged.
    Pinged,
    /// Ping refused by the budget: closed as a slow consumer.
    SlowOnPing,
    /// Closed for silence.
    Idle,
    /// Closed for a write that made no progress.
    WriteStalled,
}

/// The keepalive settings of a core.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// --ping-interval.
    ping_interval: Duration,
    /// --idle-timeout.
    idle_timeout: Duration,
    /// --write-timeout.
    write_timeout: Duration,
}

impl Schedule {
    /// The schedule `config` asks for.
    pub fn of(config: &Config) -> Self {
        Schedule {
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
        }
    }

    /// Judges one connection at `now` and acts on it (`ping`: the core's keepalive ping).
    fn sweep(&self, subscriber: &Rc<Subscriber>, ping: &LocalFrame, now: Instant) -> Verdict {
        if let Some(deadline) = subscriber.close_deadline() {
            if now >= deadline {
                subscriber.shutdown_socket();
            }
            return Verdict::Fine;
        }
        let stall_cutoff = now.checked_sub(self.write_timeout);
        if stall_cutoff.is_some_and(|cutoff| subscriber.write_stalled_since(cutoff)) {
            subscriber.close(CloseCode::SlowConsumer, "write timeout");
            return Verdict::WriteStalled;
        }
        if subscriber.is_reading_paused() {
            return Verdict::Fine;
        }
        let silent = now.saturating_duration_since(subscriber.last_inbound());
        if silent >= self.idle_timeout {
            subscriber.close(CloseCode::GoingAway, "idle timeout");
            return Verdict::Idle;
        }
        let ping_due = silent >= self.ping_interval
            && subscriber
                .last_ping()
                .is_none_or(|pinged| now.saturating_duration_since(pinged) >= self.ping_interval);
        if !ping_due {
            return Verdict::Fine;
        }
        subscriber.pinged(now);
        if subscriber.offer(ping) {
            Verdict::SlowOnPing
        } else {
            Verdict::Pinged
        }
    }
}

/// Runs the sweep of `hub`'s connections until the runtime ends: sets `clock` every tick and
/// counts into `metrics`.
pub async fn sweep_loop(
    hub: Rc<Hub>,
    clock: Rc<CoarseClock>,
    metrics: Arc<CoreMetrics>,
    schedule: Schedule,
) {
    let ping = Rc::new(keepalive_ping());
    let mut ticker = tokio::time::interval(schedule.ping_interval.min(MAX_TICK));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        clock.set(now);
        hub.expire_history(now);
        let mut charged_bytes = 0u64;
        let (mut slow, mut idle, mut stalled) = (0u64, 0u64, 0u64);
        hub.for_each_subscriber(|subscriber| {
            charged_bytes += subscriber.charged_bytes() as u64;
            match schedule.sweep(subscriber, &ping, now) {
                Verdict::Fine | Verdict::Pinged => {}
                Verdict::SlowOnPing => slow += 1,
                Verdict::Idle => idle += 1,
                Verdict::WriteStalled => stalled += 1,
            }
        });
        metrics
            .queued_bytes
            .store(charged_bytes, std::sync::atomic::Ordering::Relaxed);
        CoreMetrics::add(&metrics.slow_consumer_closes, slow);
        CoreMetrics::add(&metrics.idle_closes, idle);
        CoreMetrics::add(&metrics.write_timeout_closes, stalled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testing::detached;
    use crate::ws::{encode_message, MessageKind};

    const SCHEDULE: Schedule = Schedule {
        ping_interval: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(4),
        write_timeout: Duration::from_secs(10),
    };

    fn ping() -> LocalFrame {
        Rc::new(keepalive_ping())
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_client_that_answers_every_ping_is_never_idle() {
        let start = Instant::now();
        let subscriber = detached(1 << 20);
        subscriber.touch(start);
        let mut pings = 0;
        // Sweep every 250 ms for 100 s; the kernel takes each ping at once, the client answers
        // it 400 ms later.
        let mut answer_at = None;
        for tick in 0..400 {
            let now = at(start, tick * 250);
            if answer_at.is_some_and(|due| now >= due) {
                subscriber.touch(now);
                answer_at = None;
            }
            match SCHEDULE.sweep(&subscriber, &ping(), now) {
                Verdict::Pinged => {
                    pings += 1;
                    answer_at = Some(now + Duration::from_millis(400));
                    subscriber.finish_write(Ok(2), now);
                }
                Verdict::Fine => {}
                other => panic!("unexpected {other:?} at tick {tick}"),
            }
        }
        assert!(pings >= 40, "pinged about every 2.4 s: {pings}");
        assert!(!subscriber.is_closing());
    }

    #[test]
    fn a_silent_client_is_pinged_each_interval_then_closed_at_the_idle_timeout() {
        let start = Instant::now();
        let subscriber = detached(1 << 20);
        subscriber.touch(start);
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 1_750)),
            Verdict::Fine
        );
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 2_000)),
            Verdict::Pinged
        );
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 3_750)),
            Verdict::Fine
        );
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 4_000)),
            Verdict::Idle
        );
        assert!(subscriber.is_closing());
    }

    #[test]
    fn a_paused_reader_is_not_idle() {
        let start = Instant::now();
        let subscriber = detached(1 << 20);
        subscriber.touch(start);
        subscriber.set_reading_paused(true);
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 9_000)),
            Verdict::Fine
        );
    }

    #[test]
    fn a_write_without_progress_is_closed_after_the_write_timeout() {
        let start = Instant::now();
        let subscriber = detached(1 << 20);
        subscriber.touch(start);
        subscriber.offer(&Rc::new(encode_message(MessageKind::Binary, b"x")));
        subscriber.touch(at(start, 9_000));
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 9_000)),
            Verdict::Fine
        );
        assert_eq!(
            SCHEDULE.sweep(&subscriber, &ping(), at(start, 10_250)),
            Verdict::WriteStalled
        );
    }
}
