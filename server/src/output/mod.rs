//! The writing side of WebSocket connections.

pub mod epoll;
pub mod flush;
pub mod queue;
pub mod subscriber;
pub mod uring;
pub mod wake;
