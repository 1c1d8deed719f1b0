//! Rooms and fan-out: on a core, between cores, between nodes.

pub mod broker;
pub mod hub;
