//! What to connect to: a `ws://` URL resolved into a `Target` (with the room in its path), and
//! the `--src` pool of local source addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

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
}
