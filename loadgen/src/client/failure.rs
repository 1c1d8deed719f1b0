//! Why a connection could not be opened: what `connect` and `handshake` return, classified
//! into the keys report.json counts failures by.

use std::fmt;

/// Why one connection could not be opened; the keys of `results.connections.failures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// ECONNREFUSED: nothing listens, or the backlog overflowed with RST.
    Refused,
    /// Connect plus handshake took longer than `--connect-timeout`.
    Timeout,
    /// The server answered the upgrade with this HTTP status instead of 101.
    Status(u16),
    /// EADDRNOTAVAIL: the source address ran out of ephemeral ports.
    AddrExhausted,
    /// The TLS handshake failed (`wss://`), with the reason.
    Tls(String),
    /// Anything else, with the reason.
    Other(String),
}

impl ConnectFailure {
    /// Classifies a socket error.
    pub fn from_io(error: &std::io::Error) -> ConnectFailure {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => ConnectFailure::Refused,
            Some(libc::EADDRNOTAVAIL) => ConnectFailure::AddrExhausted,
            Some(libc::ETIMEDOUT) => ConnectFailure::Timeout,
            _ => ConnectFailure::Other(error.to_string()),
        }
    }

    /// Stable key used in reports: `refused`, `timeout`, `status_503`, `addr_exhausted`, `tls`,
    /// `other`.
    pub fn key(&self) -> String {
        match self {
            ConnectFailure::Refused => "refused".into(),
            ConnectFailure::Timeout => "timeout".into(),
            ConnectFailure::Status(code) => format!("status_{code}"),
            ConnectFailure::AddrExhausted => "addr_exhausted".into(),
            ConnectFailure::Tls(_) => "tls".into(),
            ConnectFailure::Other(_) => "other".into(),
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Tls(reason) => write!(f, "tls ({reason})"),
            ConnectFailure::Other(reason) => write!(f, "other ({reason})"),
            simple => f.write_str(&simple.key()),
        }
    }
}
