//! Rooms and fan-out: on a core (`hub.rs`, `room.rs`), each room's one order and kept messages
//! on its home core (`stream.rs`), between cores (`mail.rs`), between nodes (`broker/`, with
//! `--broker`).

mod broker;
mod hub;
mod mail;
mod room;
mod stream;

pub use broker::{Broker, BrokerThreads};
#[cfg(any(test, feature = "testing"))]
pub use hub::testing;
pub use hub::Hub;
pub use mail::{Mail, Mailboxes};
pub use room::{is_valid_room, Room, DEFAULT_ROOM};
#[cfg(any(test, feature = "testing"))]
pub use stream::home_core;
pub use stream::{Since, Streams};
