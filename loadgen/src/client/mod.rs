//! One WebSocket client connection: opening it, writing its frames, the stamp it carries.

mod connect;
mod handshake;
mod stamp;
mod writer;

pub use connect::{open_with_timeout, parse_source_pool, preflight, raise_fd_limit, Target};
pub use stamp::{Stamp, STAMP_LEN};
pub use writer::{Writer, CLOSE_NORMAL};
