//! The WebSocket protocol: frames encoded, decoded, and the close handshake's state.

pub mod close;
pub mod decode;
pub mod encode;
