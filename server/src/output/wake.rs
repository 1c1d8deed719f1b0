//! A single-threaded wake-up signal for one waiting task (a core's flush task or reader).
//!
//! Used instead of `tokio::sync::Notify`, which takes a mutex to wake a waiter: delivering a
//! frame to an idle connection must stay lock-free. The signal is a flag plus the waiter's
//! `Waker`, stored once and reused while the same task waits (no clone per wake-up).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Wakes one task on the same thread; a wake-up that arrives while nobody waits is kept.
#[derive(Debug, Default)]
pub struct LocalWake {
    /// A wake-up is pending (set by `wake`, consumed by `wait`).
    pending: Cell<bool>,
    /// The waiting task's waker, kept between waits.
    waker: RefCell<Option<Waker>>,
}

impl LocalWake {
    /// Wakes the waiting task, or makes its next `wait` return at once.
    pub fn wake(&self) {
        if self.pending.replace(true) {
            return;
        }
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Waits for a wake-up (returns at once if one is pending).
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                return Poll::Ready(());
            }
            let mut stored = self.waker.borrow_mut();
            match stored.as_ref() {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *stored = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    /// Counts wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn wake_before_wait_is_kept_and_wake_while_waiting_wakes() {
        let signal = LocalWake::default();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);

        signal.wake();
        assert!(pin!(signal.wait()).poll(&mut cx).is_ready());

        let mut waiting = pin!(signal.wait());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        signal.wake();
        signal.wake();
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            1,
            "one wake-up per pending signal"
        );
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
    }
}
