//! What to connect to: a `ws://` or `wss://` URL resolved into a `Target` (with the room in its path), and
//! the `--src` pool of local source addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

/// The scheme of a URL served over TLS.
pub const TLS_SCHEME: &str = "wss://";

/// One server endpoint to connect to, parsed from a `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address to connect to.
    pub addr: SocketAddr,
    /// Host header value (`host:port` as written in the URL).
    pub host: String,
    /// Request path, possibly holding `{room}`.
    pub path: String,
    /// `wss://`: how to make the TLS handshake.
    pub tls: Option<TlsTarget>,
}

/// The TLS side of a `wss://` target.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// The name the server's certificate must carry.
    pub name: ServerName<'static>,
    /// The run's client configuration.
    pub config: Arc<ClientConfig>,
}

impl Target {
    /// Parses and resolves a `ws://host[:port]/path` or `wss://host[:port]/path` URL; a
    /// `wss://` one connects with `tls`, the run's TLS configuration.
    pub fn parse(url: &str, tls: &Arc<ClientConfig>) -> anyhow::Result<Target> {
        let (rest, secure, default_port) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false, 80)
        } else if let Some(rest) = url.strip_prefix(TLS_SCHEME) {
            (rest, true, 443)
        } else {
            bail!("`{url}`: only ws:// and wss:// URLs are supported");
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
            format!("{host}:{default_port}")
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
            tls: secure
                .then(|| {
                    Ok::<_, anyhow::Error>(TlsTarget {
                        name: super::tls::server_name(host)?,
                        config: tls.clone(),
                    })
                })
                .transpose()
                .with_context(|| format!("`{url}`"))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> anyhow::Result<Target> {
        Target::parse(url, &super::super::tls::client_config(None, false).unwrap())
    }

    #[test]
    fn rooms_go_into_the_path() {
        let target = parse("ws://127.0.0.1:9/ws/bench").unwrap();
        assert_eq!(target.path_for_room(3, 4), "/ws/bench-3");
        assert_eq!(target.path_for_room(0, 1), "/ws/bench");
        let placed = parse("ws://127.0.0.1:9/ws/{room}/x").unwrap();
        assert_eq!(placed.path_for_room(2, 4), "/ws/2/x");
        assert!(parse("ws://127.0.0.1:9/ws").unwrap().tls.is_none());
        let secure = parse("wss://localhost/ws").unwrap();
        assert_eq!(secure.addr.port(), 443);
        assert!(secure.tls.is_some());
        assert!(parse("http://127.0.0.1/ws").is_err());
    }

    #[test]
    fn source_pool_parses_ranges_and_lists() {
        assert_eq!(parse_source_pool("127.0.0.1-127.0.0.8").unwrap().len(), 8);
        assert_eq!(parse_source_pool("127.0.0.1,127.0.0.2").unwrap().len(), 2);
        assert!(parse_source_pool("127.0.0.9-127.0.0.1").is_err());
    }
}
