//! The reading side of WebSocket connections: the core's reader (`reader.rs`: admission at the
//! upgrade, one epoll set and one scratch buffer per core, pauses, the end of a connection),
//! one connection's read state (`connection.rs`: decoding, publishing, pongs, the client's
//! close) and its inbound rates (`rate.rs`).

mod connection;
mod rate;
mod reader;

pub use connection::{ReadContext, UpgradeTicket};
pub use reader::{read_loop, Reader};
