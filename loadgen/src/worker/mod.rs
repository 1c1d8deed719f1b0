//! The worker threads: their connections, the publishers' open-loop schedule and pacer, the
//! receivers' accounting.

pub mod pacer;
pub mod publisher;
pub mod receiver;
pub mod schedule;
pub mod sequence;
pub mod thread;

pub use thread::{ConnectionSpec, Window};
