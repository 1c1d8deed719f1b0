//! The worker threads: their connections, the publishers' open-loop schedule and pacer, the
//! receivers' accounting.

mod pacer;
mod publisher;
mod receive_loop;
mod receiver;
mod schedule;
mod sequence;
mod thread;

pub use pacer::{favour_this_thread, Pacer};
pub use receiver::Receiver;
pub use thread::{run_worker, ConnectionSpec, Shared, Window, WorkerKind};
