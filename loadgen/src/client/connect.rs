//! Opening client connections: target URLs, source-address pool, socket options, connect with
//! timeout, handshake, failure classification, and the preflight that refuses impossible runs.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// File descriptors kept free for the runtime, output files and /proc reads.
const FD_HEADROOM: u64 = 64;

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

    /// Stable key used in reports: `refused`, `timeout`, `status_503`, `addr_exhausted`, `other`.
    pub fn key(&self) -> String {
        match self {
            ConnectFailure::Refused => "refused".into(),
            ConnectFailure::Timeout => "timeout".into(),
            ConnectFailure::Status(code) => format!("status_{code}"),
            ConnectFailure::AddrExhausted => "addr_exhausted".into(),
            ConnectFailure::Other(_) => "other".into(),
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Other(reason) => write!(f, "other ({reason})"),
            simple => f.write_str(&simple.key()),
        }
    }
}

/// One server endpoint to connect to, parsed from a `ws://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address to connect to.
    pub addr: SocketAddr,
    /// Host header value (`host:port` as written in the URL).
    pub host: String,
    /// Request path, possibly holding `{room}`.
    pub path: String,
}

impl Target {
    /// Parses and resolves a `ws://host[:port]/path` URL.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("ws://") else {
            bail!("`{url}`: only ws:// URLs are supported (no TLS)");
        };
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            bail!("`{url}` has no host");
        }
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve `{host}` in `{url}`"))?
            .next()
            .with_context(|| format!("`{host}` resolves to no address"))?;
        Ok(Target {
            addr,
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// The request path for room `room` out of `rooms`: `{room}` is replaced by the room name
    /// when present; otherwise, with several rooms, `-{room}` is appended to the last segment.
    pub fn path_for_room(&self, room: usize, rooms: usize) -> String {
        if self.path.contains("{room}") {
            self.path.replace("{room}", &room.to_string())
        } else if rooms > 1 {
            format!("{}-{room}", self.path.trim_end_matches('/'))
        } else {
            self.path.clone()
        }
    }
}

/// Parses `--src`: `127.0.0.1-127.0.0.8` (IPv4 range) or a comma list of addresses.
pub fn parse_source_pool(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    if let Some((first, last)) = text.split_once('-') {
        let first: std::net::Ipv4Addr = first.trim().parse().context("--src range start")?;
        let last: std::net::Ipv4Addr = last.trim().parse().context("--src range end")?;
        let (first, last) = (u32::from(first), u32::from(last));
        if last < first || last - first > 65_535 {
            bail!("--src range `{text}` is empty or too large");
        }
        return Ok((first..=last).map(|a| IpAddr::V4(a.into())).collect());
    }
    text.split(',')
        .map(|part| {
            part.trim()
                .parse()
                .with_context(|| format!("--src address `{part}`"))
        })
        .collect()
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    // Asking for the most there is gets the hard limit (rlimit caps the request at it).
    rlimit::increase_nofile_limit(rlimit::INFINITY).context("raising RLIMIT_NOFILE")
}

/// Number of ephemeral ports the kernel hands out (net.ipv4.ip_local_port_range).
pub fn ephemeral_port_count() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
            let (low, high) = (parts.next()??, parts.next()??);
            high.checked_sub(low).map(|n| n + 1)
        })
        .unwrap_or(28_232)
}

/// Refuses a run the fd limit or the source-address x port pool cannot reach.
pub fn preflight(
    connections: u64,
    fd_limit: u64,
    sources: usize,
    destinations: usize,
) -> anyhow::Result<()> {
    if connections + FD_HEADROOM > fd_limit {
        bail!(
            "{connections} connections need about {} file descriptors but the limit is {fd_limit} \
             (raise `ulimit -n` / the hard RLIMIT_NOFILE, or run several loadgen processes and `loadgen merge`)",
            connections + FD_HEADROOM
        );
    }
    let ports = ephemeral_port_count();
    let capacity = ports * sources.max(1) as u64 * destinations.max(1) as u64;
    if connections > capacity {
        bail!(
            "{connections} connections exceed {} source address(es) x {ports} ephemeral ports x {} \
             destination(s) = {capacity}; add addresses with --src 127.0.0.1-127.0.0.8 or widen \
             net.ipv4.ip_local_port_range",
            sources.max(1),
            destinations.max(1)
        );
    }
    Ok(())
}

/// Opens a TCP connection (optionally from `source`, with IP_BIND_ADDRESS_NO_PORT so the port is
/// picked per 4-tuple at connect time), sets TCP_NODELAY and performs the WebSocket upgrade.
/// Returns the stream and the bytes already read past the handshake.
pub async fn open(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
    key_seed: [u8; 16],
) -> Result<(TcpStream, Vec<u8>), ConnectFailure> {
    let socket = client_socket(target.addr, source).map_err(|e| ConnectFailure::from_io(&e))?;
    let mut stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| ConnectFailure::from_io(&e))?;
    let leftover = super::handshake::upgrade(&mut stream, &target.host, path, key_seed).await?;
    Ok((stream, leftover))
}

/// Builds the unconnected, non-blocking client socket with our options.
fn client_socket(dest: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpSocket> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(source) = source {
        if source.is_ipv4() {
            set_bind_address_no_port(&socket)?;
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    Ok(TcpSocket::from_std_stream(socket.into()))
}

/// IP_BIND_ADDRESS_NO_PORT: defer the port choice to connect(), so one source address serves
/// the full port range per destination instead of per address (socket2 does not expose it).
fn set_bind_address_no_port(socket: &Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: the fd is a valid open socket owned by `socket`; the option value points to a
    // c_int that lives across the call, and its size is passed correctly.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &enable as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `open` under a deadline, mapping the elapsed deadline to `ConnectFailure::Timeout`.
pub async fn open_with_timeout(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
    key_seed: [u8; 16],
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), ConnectFailure> {
    tokio::time::timeout(timeout, open(target, path, source, key_seed))
        .await
        .unwrap_or(Err(ConnectFailure::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_go_into_the_path() {
        let target = Target::parse("ws://127.0.0.1:9/ws/bench").unwrap();
        assert_eq!(target.path_for_room(3, 4), "/ws/bench-3");
        assert_eq!(target.path_for_room(0, 1), "/ws/bench");
        let placed = Target::parse("ws://127.0.0.1:9/ws/{room}/x").unwrap();
        assert_eq!(placed.path_for_room(2, 4), "/ws/2/x");
        assert!(Target::parse("wss://127.0.0.1/ws").is_err());
    }

    #[test]
    fn source_pool_parses_ranges_and_lists() {
        assert_eq!(parse_source_pool("127.0.0.1-127.0.0.8").unwrap().len(), 8);
        assert_eq!(parse_source_pool("127.0.0.1,127.0.0.2").unwrap().len(), 2);
        assert!(parse_source_pool("127.0.0.9-127.0.0.1").is_err());
    }

    #[test]
    fn preflight_refuses_what_cannot_be_reached() {
        assert!(preflight(1000, 20_000, 1, 1).is_ok());
        assert!(preflight(19_990, 20_000, 1, 1).is_err());
        assert!(preflight(10_000_000, u64::MAX, 1, 1).is_err());
    }
}
