//! Keepalive without per-connection timers: one sweep task per core.
//!
//! Every tick it refreshes the core's coarse clock, shuts down connections whose close deadline
//! passed (slow consumers that never take their close, clients that never answer ours), closes
//! with 1001 connections silent for --idle-timeout, and, every --ping-interval, pings those with
//! no inbound traffic for a ping interval.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cores::CoreContext;
use crate::frame::{keepalive_ping, CloseCode};
use crate::metrics::CoreMetrics;

/// Longest sweep period (deadline resolution).
const MAX_TICK: Duration = Duration::from_millis(250);

/// Runs the sweep until the runtime ends.
pub async fn sweep_loop(core: Rc<CoreContext>) {
    let ping_interval = core.state.config.ping_interval;
    let idle_timeout = core.state.config.idle_timeout;
    let mut ticker = tokio::time::interval(ping_interval.min(MAX_TICK));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ping = keepalive_ping();
    let mut next_ping = Instant::now() + ping_interval;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        core.hub.set_now(now);
        let ping_round = now >= next_ping;
        if ping_round {
            next_ping = now + ping_interval;
        }
        let mut queued_bytes = 0u64;
        let mut slow = 0u64;
        let mut idle = 0u64;
        core.hub.for_each_subscriber(|subscriber| {
            queued_bytes += subscriber.queued_bytes() as u64;
            if let Some(deadline) = subscriber.close_deadline() {
                if now >= deadline {
                    subscriber.shutdown_socket();
                }
                return;
            }
            let silent = now.saturating_duration_since(subscriber.last_inbound());
            if silent >= idle_timeout {
                subscriber.close(CloseCode::GoingAway, "idle timeout");
                idle += 1;
            } else if ping_round && silent >= ping_interval {
                slow += u64::from(subscriber.offer(&ping));
            }
        });
        let metrics = core.hub.metrics();
        metrics
            .queued_bytes
            .store(queued_bytes, std::sync::atomic::Ordering::Relaxed);
        CoreMetrics::add(&metrics.slow_consumer_closes, slow);
        CoreMetrics::add(&metrics.idle_closes, idle);
    }
}
