//! The reading side of WebSocket connections: the core's reader (`reader.rs`: admission at the
//! upgrade, receives on a ring of the core's (`recv_ring.rs`, io_uring) or its epoll set
//! (`epoll_set.rs`), pauses, the end of a connection),
//! one connection's read state (`connection.rs`: decoding, publishing, pongs, the client's
//! close) and its inbound rates (`rate.rs`).

mod connection;
mod epoll_set;
mod rate;
mod reader;
mod recv_ring;

pub use connection::{ReadContext, UpgradeTicket};
pub use reader::{read_loop, Reader};
