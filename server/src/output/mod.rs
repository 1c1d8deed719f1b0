//! The writing side of WebSocket connections: what each connection must still send, and the
//! core's write driver that sends it.
//!
//! - `subscriber.rs`: one connection's write half (queue, keepalive clocks, close handshake),
//!   the core's flush list beside it, and the list of connections whose socket was shut down;
//! - `queue.rs`: the outbound queue and its `--max-backlog` budget (sans-IO);
//! - `replay.rs`: a recovering connection's kept frames still to send;
//! - `sealed.rs`: a TLS connection's output, sealed into records when its write starts;
//! - `flush.rs`: the flush step both drivers share, and its tally for the metrics;
//! - `driver.rs`, `uring.rs`, `epoll.rs`: the write driver of each IO backend.

mod driver;
mod epoll;
mod flush;
mod queue;
mod replay;
mod sealed;
mod subscriber;
mod uring;
mod wake;

pub use driver::WriteDriver;
#[cfg(any(test, feature = "testing"))]
pub use flush::{flush_now, Sent};
pub use replay::Replay;
#[cfg(any(test, feature = "testing"))]
pub use subscriber::testing;
pub use subscriber::{ConnectionKey, CoreOutput, Subscriber};
