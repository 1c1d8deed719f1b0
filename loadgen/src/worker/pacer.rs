//! Precise send timing: one dedicated thread that wakes each publisher task at its due times,
//! since tokio's 1 ms timer wheel would add up to 1 ms of send lag. It sleeps on a futex with
//! an absolute deadline, spins the last microseconds, and wakes the task through a `Notify`,
//! whose one kept permit makes a publisher still writing send everything due by then.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::schedule::Schedule;
use crate::clock::monotonic_ns;

/// The last stretch before a due time is spun instead of slept: a futex wakeup on a loaded VM
/// takes tens of microseconds, a spin of this length costs ~1% of a core at 1,000 msg/s.
const SPIN_NS: u64 = 20_000;

/// One pending wakeup. Field order is the heap order: earliest due first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Alarm {
    /// When the message falls due (monotonic ns).
    due_ns: u64,
    /// The publisher to wake.
    publisher: u32,
    /// The message's sequence number (the next alarm is for `seq + 1`).
    seq: u64,
}

/// What the pacer thread and the registering publishers share.
struct Queue {
    /// Pending wakeups, earliest first.
    alarms: BinaryHeap<Reverse<Alarm>>,
    /// Each publisher's wakeup handle, by publisher id (`None` until it registers).
    publishers: Vec<Option<Arc<Notify>>>,
    /// Set at the end of the run: the pacer thread returns.
    stopped: bool,
}

/// The wakeup service for every publisher of the run.
pub struct Pacer {
    /// Guarded by one mutex: taken by the pacer thread once per message and by each publisher
    /// once, at registration.
    queue: Mutex<Queue>,
    /// Signals registrations and the stop to the pacer thread.
    changed: Condvar,
}

impl Pacer {
    /// A pacer for `publishers` publishers.
    pub fn new(publishers: usize) -> Pacer {
        Pacer {
            queue: Mutex::new(Queue {
                alarms: BinaryHeap::new(),
                publishers: vec![None; publishers],
                stopped: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Registers `publisher`: `wakeup` is notified at each of its due times from `schedule`.
    pub fn register(&self, publisher: u32, schedule: &Schedule, wakeup: Arc<Notify>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = queue.publishers.get_mut(publisher as usize) else {
            return;
        };
        *slot = Some(wakeup);
        if let Some(due_ns) = schedule.due_ns(publisher, 0) {
            queue.alarms.push(Reverse(Alarm {
                due_ns,
                publisher,
                seq: 0,
            }));
        }
        self.changed.notify_one();
    }

    /// Makes `run` return.
    pub fn stop(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopped = true;
        self.changed.notify_one();
    }

    /// The pacer thread's loop: wake each publisher at its due times until `stop`.
    pub fn run(&self, schedule: Schedule) {
        cut_timer_slack();
        favour_this_thread();
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while !queue.stopped {
            let Some(&Reverse(alarm)) = queue.alarms.peek() else {
                queue = self
                    .changed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let now = monotonic_ns();
            if alarm.due_ns > now + SPIN_NS {
                // Woken early by a registration, the wait starts over with the new earliest.
                let sleep = Duration::from_nanos(alarm.due_ns - now - SPIN_NS);
                queue = self
                    .changed
                    .wait_timeout(queue, sleep)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            while monotonic_ns() < alarm.due_ns {
                std::hint::spin_loop();
            }
            queue.alarms.pop();
            if let Some(Some(wakeup)) = queue.publishers.get(alarm.publisher as usize) {
                wakeup.notify_one();
            }
            let seq = alarm.seq + 1;
            if let Some(due_ns) = schedule.due_ns(alarm.publisher, seq) {
                queue.alarms.push(Reverse(Alarm {
                    due_ns,
                    publisher: alarm.publisher,
                    seq,
                }));
            }
        }
    }
}

/// Nice value of the pacer and publisher threads when real-time scheduling is not allowed.
/// A send is due at an instant; on a busy host the scheduler would otherwise let the woken
/// thread wait behind receivers and the server for milliseconds, which is send lag the server
/// did not cause.
const PUBLISHING_NICE: libc::c_int = -10;

/// Makes the calling thread preempt receivers when it wakes: SCHED_FIFO at the lowest real-time
/// priority (needs CAP_SYS_NICE, e.g. root), else `PUBLISHING_NICE`, else nothing. Best effort:
/// without either only the precision suffers, and the send lag shows it. Real-time is safe
/// here: the pacer sleeps between sends and spins at most a few tens of microseconds, and the
/// kernel's real-time throttling leaves other threads at least 5% of each core.
pub fn favour_this_thread() {
    let lowest_fifo = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler(0, ..) changes only the calling thread's policy and reports
    // failure through its return value; the param pointer is valid for the call. gettid has
    // no preconditions; setpriority with PRIO_PROCESS and a thread id changes that one thread's
    // nice value, and its failure is ignored on purpose (see above).
    unsafe {
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &lowest_fifo) != 0 {
            let thread = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, PUBLISHING_NICE);
        }
    }
}

/// Sets this thread's timer slack to 1 ns (default 50 us), so its timed waits end on time.
fn cut_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument and only changes this
    // thread's timer slack; a failure leaves the default slack, which is merely less precise.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_each_publisher_at_every_due_time_in_order() {
        let t0 = monotonic_ns() + 5_000_000;
        let schedule = Schedule {
            t0_ns: t0,
            end_ns: t0 + 50_000_000,
            rate: 100.0,
            publishers: 2,
        };
        let pacer = Arc::new(Pacer::new(2));
        let wakeups = [Arc::new(Notify::new()), Arc::new(Notify::new())];
        for (id, wakeup) in wakeups.iter().enumerate() {
            pacer.register(id as u32, &schedule, wakeup.clone());
        }
        let thread = {
            let pacer = pacer.clone();
            std::thread::spawn(move || pacer.run(schedule))
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        // Publisher 1 is due at t0 + 5 ms, 15 ms, ... 45 ms. A slow test thread may find two
        // wakeups folded into one permit, so the i-th wakeup is only known to come at or after
        // the i-th due time.
        let woken_at: Vec<u64> = runtime.block_on(async {
            let mut times = Vec::new();
            let patience = Duration::from_millis(200);
            while tokio::time::timeout(patience, wakeups[1].notified())
                .await
                .is_ok()
            {
                times.push(monotonic_ns());
            }
            times
        });
        pacer.stop();
        thread.join().expect("pacer thread");
        assert!((1..=5).contains(&woken_at.len()), "{woken_at:?}");
        assert!(woken_at[woken_at.len() - 1] >= schedule.due_ns(1, 4).unwrap_or(u64::MAX));
        for (seq, woken) in woken_at.iter().enumerate() {
            let due = schedule.due_ns(1, seq as u64).expect("in window");
            assert!(
                *woken >= due,
                "message {seq} woken {} ns early",
                due - woken
            );
        }
    }
}
