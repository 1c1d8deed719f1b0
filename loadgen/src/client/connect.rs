//! Opening one client connection: the socket and its options, connect from the source address,
//! the WebSocket upgrade, all under the connect timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

use super::failure::ConnectFailure;
use super::handshake::Upgraded;
use super::target::Target;

/// Opens a TCP connection (optionally from `source`, with IP_BIND_ADDRESS_NO_PORT so the port is
/// picked per 4-tuple at connect time), sets TCP_NODELAY and performs the WebSocket upgrade.
/// Offers permessage-deflate when `deflate`. Returns the stream and how the upgrade went.
pub async fn open(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
    key_seed: [u8; 16],
    deflate: bool,
) -> Result<(TcpStream, Upgraded), ConnectFailure> {
    let socket = client_socket(target.addr, source).map_err(|e| ConnectFailure::from_io(&e))?;
    let mut stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| ConnectFailure::from_io(&e))?;
    let upgraded =
        super::handshake::upgrade(&mut stream, &target.host, path, key_seed, deflate).await?;
    Ok((stream, upgraded))
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
) -> Result<(TcpStream, Upgraded), ConnectFailure> {
    tokio::time::timeout(timeout, open(target, path, source, key_seed, deflate))
        .await
        .unwrap_or(Err(ConnectFailure::Timeout))
}
