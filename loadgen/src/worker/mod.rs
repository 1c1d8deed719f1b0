//! The worker threads: their connections, the publishers' open-loop schedule and pacer, the
//! receivers' accounting.

mod churn;
mod connection;
mod context;
mod handover;
mod pacer;
mod publisher;
mod receive_loop;
mod receiver;
mod schedule;
mod thread;
mod window;

pub use context::Shared;
pub use pacer::{favour_this_thread, Pacer};
pub use receiver::Receiver;
pub use thread::{run_worker, WorkerKind};
pub use window::Window;
