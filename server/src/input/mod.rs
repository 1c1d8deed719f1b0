//! The reading side of WebSocket connections.

pub mod connection;
pub mod rate;
pub mod reader;
