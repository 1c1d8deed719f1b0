//! The core's write driver, one per backend: it takes the connections the flush list collects
//! and writes each one's queued frames in one write (`uring.rs`: SEND/WRITEVs on a ring of its
//! own; `epoll.rs`: nonblocking `sendmsg` calls).

use std::io;
use std::rc::Rc;
use std::sync::Arc;

use super::epoll::{self, EpollDriver};
use super::subscriber::CoreOutput;
use super::uring::{self, UringDriver};
use crate::backend::Backend;
use crate::clock::CoarseClock;
use crate::metrics::CoreMetrics;

/// The writer of every connection's frames on one core.
#[derive(Debug)]
pub enum WriteDriver {
    /// io_uring backend: the core's output ring.
    Uring(Rc<UringDriver>),
    /// epoll backend: nonblocking sends.
    Epoll(Rc<EpollDriver>),
}

impl WriteDriver {
    /// Sets up `backend`'s driver and spawns its flush task on the current (core's) runtime,
    /// writing what `core_output`'s flush list collects and counting into `metrics`.
    pub fn start(
        backend: Backend,
        core_output: &Rc<CoreOutput>,
        metrics: &Arc<CoreMetrics>,
        clock: &Rc<CoarseClock>,
    ) -> io::Result<Self> {
        let (core_output, metrics, clock) = (
            Rc::clone(core_output),
            Arc::clone(metrics),
            Rc::clone(clock),
        );
        Ok(match backend {
            Backend::Uring => {
                let driver = Rc::new(UringDriver::new()?);
                let task = uring::flush_loop(Rc::clone(&driver), core_output, metrics, clock);
                tokio::task::spawn_local(task);
                WriteDriver::Uring(driver)
            }
            Backend::Epoll => {
                let driver = Rc::new(EpollDriver::default());
                let task = epoll::flush_loop(Rc::clone(&driver), core_output, metrics, clock);
                tokio::task::spawn_local(task);
                WriteDriver::Epoll(driver)
            }
        })
    }

    /// Writes started and not completed yet (the shutdown drain waits for them).
    pub fn in_flight(&self) -> usize {
        match self {
            WriteDriver::Uring(driver) => driver.in_flight(),
            WriteDriver::Epoll(driver) => driver.in_flight(),
        }
    }
}
