//! Integration tests of the ringcast server over real sockets on OS-picked ports: an
//! in-process `Server` for most behaviours, the real binary for signals, CLI errors and a
//! seccomp-blocked io_uring. One test binary (one link step) with a `util` module.
//!
//! No test asserts timing or speed; waits are bounded by `util::WAIT` only so that a broken
//! server fails a test instead of hanging it.

mod util;

mod auth;
mod broadcast;
mod broker;
mod cli;
mod control;
mod deflate;
mod fanout;
mod flood;
mod http;
mod keepalive;
mod lifecycle;
mod metrics;
mod protocol;
mod publish;
mod recovery;
mod slow_consumer;
mod tls;
