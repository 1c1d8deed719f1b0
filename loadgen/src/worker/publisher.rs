//! Open-loop publishing (wrk2's method): message k of publisher i is due at
//! t0 + (k + i/P) / rate (`schedule`). A late publisher sends everything already due at once,
//! each message keeping its own intended time; nothing is skipped or re-timed, so a stalled
//! server shows up as latency instead of hiding it.

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;

use super::context::WorkerContext;
use super::window::Window;
use crate::client::Writer;
use crate::client::{Payloads, Stamp};
use crate::clock::monotonic_ns;

/// Most messages put in one write when catching up (bounds the batch buffer).
const MAX_BATCH: u64 = 1024;

/// Runs publisher `id` on `writer` from the window's t0 until the measured window ends.
pub async fn publish(context: Rc<WorkerContext>, id: u32, writer: Arc<Writer>) {
    let shared = context.shared.clone();
    let mut window_rx = shared.window.clone();
    let window: Arc<Window> = match window_rx.wait_for(|w| w.is_some()).await {
        Ok(window) => match window.as_ref() {
            Some(window) => window.clone(),
            None => return,
        },
        Err(_) => return,
    };
    let schedule = window.schedule(&shared.scenario);
    let mut payloads = Payloads::new(shared.scenario.payload, shared.scenario.size, id);
    // The pacer thread notifies this at each due time (precise to tens of microseconds, where
    // tokio's timer would add up to 1 ms); a notification sent while we write is kept.
    let wakeup = Arc::new(Notify::new());
    shared.pacer.register(id, &schedule, wakeup.clone());
    let mut seq = 0u64;
    while schedule.due_ns(id, seq).is_some() {
        wakeup.notified().await;
        let mut side = writer.lock().await;
        let now = monotonic_ns();
        let first_seq = seq;
        {
            let mut stats = context.stats.borrow_mut();
            for _ in 0..MAX_BATCH {
                let Some(due) = schedule.due_ns(id, seq).filter(|&due| due <= now) else {
                    break;
                };
                let stamp = Stamp {
                    run_id: shared.run_id,
                    publisher: id,
                    seq,
                    intended_ns: due,
                    sent_ns: now,
                };
                let (opcode, payload) = payloads.stamped(&stamp);
                side.push_message(opcode, payload);
                let lag = now.saturating_sub(due).max(1);
                stats.interval.send_lag.saturating_record(lag);
                stats.interval.sent += 1;
                stats.totals.sent += 1;
                if window.measures(due) {
                    stats.totals.send_lag.saturating_record(lag);
                    if let Some(count) =
                        stats.totals.sent_measured_by_publisher.get_mut(id as usize)
                    {
                        *count += 1;
                    }
                    if let Some(first) = stats
                        .totals
                        .first_measured_seq_by_publisher
                        .get_mut(id as usize)
                    {
                        first.get_or_insert(seq);
                    }
                }
                seq += 1;
            }
        }
        if first_seq == seq {
            // A kept notification whose messages went out with the previous batch.
            continue;
        }
        if side.flush().await.is_err() {
            let mut stats = context.stats.borrow_mut();
            stats.totals.protocol_errors += 1;
            stats.interval.errors += 1;
            return;
        }
    }
}
