//! One WebSocket client connection: opening it, writing its frames, the stamp it carries.

pub mod connect;
pub mod handshake;
pub mod stamp;
pub mod writer;
