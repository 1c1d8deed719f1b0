//! One WebSocket client connection: opening it, writing its frames, the stamp it carries.

mod connect;
mod failure;
mod handshake;
mod preflight;
mod stamp;
mod target;
mod writer;

pub use connect::open_with_timeout;
pub use preflight::{preflight, raise_fd_limit};
pub use stamp::{Stamp, STAMP_LEN};
pub use target::{parse_source_pool, Target};
pub use writer::{Writer, CLOSE_NORMAL};
