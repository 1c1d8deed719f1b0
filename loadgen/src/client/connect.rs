//! Opening one client connection: the socket and its options, connect from the source address,
//! the TLS handshake of a `wss://` URL, the WebSocket upgrade, all under the connect timeout,
//! each step timed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpSocket;

use super::failure::ConnectFailure;
use super::handshake::{upgrade, Upgraded};
use super::stream::Stream;
use super::target::Target;
use super::tls;
use crate::clock::monotonic_ns;

/// An open connection: its socket, how the upgrade went, how long each step took.
pub struct Opened {
    /// The socket (and TLS session).
    pub stream: Stream,
    /// How the upgrade went.
    pub upgraded: Upgraded,
    /// How long each step took.
    pub steps: ConnectSteps,
}

/// The steps of one successful connect, ns each.
#[derive(Debug, Clone, Copy)]
pub struct ConnectSteps {
    /// TCP connect.
    pub tcp_ns: u64,
    /// TLS handshake (`wss://` only).
    pub tls_ns: Option<u64>,
    /// WebSocket upgrade: request out, response head in.
    pub upgrade_ns: u64,
}

/// Nanoseconds since monotonic `since`, at least 1 (a histogram records no 0).
fn elapsed_ns(since: u64) -> u64 {
    monotonic_ns().saturating_sub(since).max(1)
}

/// Opens a TCP connection (optionally from `source`, with IP_BIND_ADDRESS_NO_PORT so the port is
/// picked per 4-tuple at connect time), sets TCP_NODELAY, makes the TLS handshake of a `wss://`
/// target and performs the WebSocket upgrade. Offers permessage-deflate when `deflate`.
pub async fn open(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
    key_seed: [u8; 16],
    deflate: bool,
) -> Result<Opened, ConnectFailure> {
    let begun = monotonic_ns();
    let socket = client_socket(target.addr, source).map_err(|e| ConnectFailure::from_io(&e))?;
    let mut tcp = socket
        .connect(target.addr)
        .await
        .map_err(|e| ConnectFailure::from_io(&e))?;
    let tcp_ns = elapsed_ns(begun);
    let Some(secure) = &target.tls else {
        let upgrade_begun = monotonic_ns();
        let upgraded = upgrade(&mut tcp, &target.host, path, key_seed, deflate).await?;
        return Ok(Opened {
            stream: Stream { tcp, tls: None },
            upgraded,
            steps: ConnectSteps {
                tcp_ns,
                tls_ns: None,
                upgrade_ns: elapsed_ns(upgrade_begun),
            },
        });
    };
    let tls_begun = monotonic_ns();
    let mut tls_stream = tls::handshake(&secure.config, &secure.name, tcp).await?;
    let tls_ns = elapsed_ns(tls_begun);
    let upgrade_begun = monotonic_ns();
    let upgraded = upgrade(&mut tls_stream, &target.host, path, key_seed, deflate).await?;
    let upgrade_ns = elapsed_ns(upgrade_begun);
    let (tcp, session) = tls::into_parts(tls_stream);
    Ok(Opened {
        stream: Stream {
            tcp,
            tls: Some(session),
        },
        upgraded,
        steps: ConnectSteps {
            tcp_ns,
            tls_ns: Some(tls_ns),
            upgrade_ns,
        },
    })
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
    deflate: bool,
    timeout: Duration,
) -> Result<Opened, ConnectFailure> {
    tokio::time::timeout(timeout, open(target, path, source, key_seed, deflate))
        .await
        .unwrap_or(Err(ConnectFailure::Timeout))
}
