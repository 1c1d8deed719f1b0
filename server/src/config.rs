//! Command line (clap, every option also from a `RINGCAST_*` environment variable) turned into
//! one validated [`Config`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use ringcast_units::parse_size;

use crate::auth::{Expected, JwtAuth, Secret, MIN_PUBLISH_TOKEN};
use crate::backend::IoChoice;
use crate::budget::FRAME_HANDLE_BYTES;
use crate::tls::{TlsAcceptor, TlsFileError, TlsFiles};

/// File descriptors kept free for listeners, io_uring rings, eventfds, logs and HTTP-only
/// connections when deriving the default `--max-connections` from RLIMIT_NOFILE.
const FD_HEADROOM: u64 = 128;
/// Upper bound for the derived `--max-connections` when RLIMIT_NOFILE is unlimited.
const MAX_DERIVED_CONNECTIONS: u64 = 1 << 20;
/// Largest server frame header: a message of `--max-message` bytes needs this much more room in
/// the outbound budget (plus its handle, [`FRAME_HANDLE_BYTES`]).
const MAX_FRAME_HEADER: usize = 10;
/// Most messages `--history` may keep per room.
const MAX_HISTORY: i64 = 1_000_000;
/// hyper's smallest accepted read buffer (`http1::Builder::max_buf_size` panics below it).
const MIN_HEADER_SIZE: usize = 8 << 10;

/// ringcast: a thread-per-core io_uring WebSocket broadcast server.
///
/// Every text or binary message a client sends on /ws/{room} (/ws = room "default") is
/// delivered unchanged to every client of that room, the sender included.
///
/// Sizes take 64, 64KiB, 1MiB; durations 30s, 500ms, 2m or bare seconds, each at most 24h.
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about)]
pub struct Cli {
    /// Address to listen on (every core binds it with SO_REUSEPORT).
    #[arg(long, env = "RINGCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Number of pinned core threads [default: the CPUs this process may use].
    #[arg(long, env = "RINGCAST_CORES")]
    pub cores: Option<usize>,

    /// IO backend: io_uring, epoll, or auto (io_uring where the kernel allows it, else epoll,
    /// with a log line saying why).
    #[arg(long, env = "RINGCAST_IO", value_enum, default_value = "auto")]
    pub io: IoChoice,

    /// Largest inbound message after reassembly; larger ones are closed with 1009.
    #[arg(long, env = "RINGCAST_MAX_MESSAGE", default_value = "64KiB", value_parser = parse_size)]
    pub max_message: usize,

    /// Outbound budget per connection: frames queued and frames in a write not yet completed,
    /// each counted with its 8-byte handle. A client that would exceed it is a slow consumer
    /// and is closed with 1008.
    #[arg(long, env = "RINGCAST_MAX_BACKLOG", default_value = "1MiB", value_parser = parse_size)]
    pub max_backlog: usize,

    /// Memory the whole server may hold for delivery: live broadcast frames (each counted once)
    /// plus every queued frame handle on every core and in the hand-off between cores. Above
    /// it, publishers stop being read (TCP pushes back) until the writers catch up.
    #[arg(long, env = "RINGCAST_FANOUT_BUDGET", default_value = "64MiB", value_parser = parse_size)]
    pub fanout_budget: usize,

    /// A connection holding output that the kernel has not taken any byte of for this long is
    /// stalled and is closed with 1008 (gorilla/websocket's write deadline); in the HTTP phase
    /// (answers a client does not read) it is closed.
    #[arg(long, env = "RINGCAST_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// A publisher kept unread by the fan-out budget for this long is closed with 1013 (try
    /// again later); must exceed --write-timeout, which clears stalled readers first.
    #[arg(long, env = "RINGCAST_PUBLISH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub publish_timeout: Duration,

    /// Most data messages per second one connection may send (burst: one second's worth);
    /// beyond it the connection is closed with 1008 [default: no limit].
    #[arg(long, env = "RINGCAST_MAX_INBOUND_RATE")]
    pub max_inbound_rate: Option<u32>,

    /// Most connections, counted from accept (HTTP phase included); connections beyond it get
    /// HTTP 503 and are closed [default: RLIMIT_NOFILE hard limit minus 128].
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most connections from one client address, counted from accept like --max-connections;
    /// connections beyond it get HTTP 429 and are closed. Behind a proxy every client has the
    /// proxy's address [default: 0, no limit].
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// Messages each room keeps for clients that reconnect with ?since= or join with
    /// ?history= (0: none kept; positions are still told).
    #[arg(long, env = "RINGCAST_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=MAX_HISTORY))]
    pub history: u32,

    /// A room's kept messages expire this long after they were published; a room that kept
    /// none and had no message for this long forgets its offsets (its epoch changes).
    #[arg(long, env = "RINGCAST_HISTORY_TTL", default_value = "5m", value_parser = parse_duration)]
    pub history_ttl: Duration,

    /// Memory all rooms' kept messages may hold (each counted at what it holds); beyond it
    /// the oldest are dropped first.
    #[arg(long, env = "RINGCAST_HISTORY_BUDGET", default_value = "64MiB", value_parser = parse_size)]
    pub history_budget: usize,

    /// Largest HTTP request head (request line and headers); larger ones get 431.
    #[arg(long, env = "RINGCAST_MAX_HEADER_SIZE", default_value = "16KiB", value_parser = parse_size)]
    pub max_header_size: usize,

    /// How often idle clients (no inbound traffic since the last check) are pinged.
    #[arg(long, env = "RINGCAST_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A client silent for this long is closed with 1001; must exceed --ping-interval.
    #[arg(long, env = "RINGCAST_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to wait for clients to take their 1001 close.
    #[arg(long, env = "RINGCAST_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a client may take to send its HTTP request headers (slowloris guard).
    #[arg(long, env = "RINGCAST_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Origin allowed to open WebSockets besides same-host ones (repeatable; "*" allows all).
    /// Requests without an Origin header are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "RINGCAST_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// listen(2) backlog of each core's listening socket.
    #[arg(long, env = "RINGCAST_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,

    /// Enables POST /publish/{room} for requests with "Authorization: Bearer TOKEN" (at least
    /// 16 characters) [default: no publish endpoint].
    #[arg(long, env = "RINGCAST_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// HS256 secret (at least 32 bytes): WebSocket upgrades then need a JWT signed with it
    /// (?token= or "Authorization: Bearer") [default: no JWT check].
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with an RSA (RS256) or EC P-256 (ES256) public key: WebSocket upgrades then
    /// need a JWT signed by its private key (with --jwt-secret: either kind is accepted).
    #[arg(long, env = "RINGCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// With a JWT key: tokens need an `aud` claim that is (or, as an array, contains) this
    /// [default: `aud` not checked].
    #[arg(long, env = "RINGCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// With a JWT key: tokens need an `iss` claim equal to this [default: `iss` not checked].
    #[arg(long, env = "RINGCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH): every node started
    /// with the same broker shares its rooms, across nodes at most once [default: no broker,
    /// this node is on its own].
    #[arg(long, env = "RINGCAST_BROKER", hide_env_values = true)]
    pub broker: Option<String>,

    /// Prefix of each room's Redis channel (room "lobby": channel "ringcast:lobby").
    #[arg(long, env = "RINGCAST_BROKER_PREFIX", default_value = "ringcast:")]
    pub broker_prefix: String,

    /// Messages that may wait to be sent to the broker; beyond it a message is dropped for
    /// every node, this one included (counted): Redis orders every message.
    #[arg(long, env = "RINGCAST_BROKER_QUEUE", default_value_t = 4096)]
    pub broker_queue: usize,

    /// permessage-deflate (RFC 7692): on accepts a client's offer, without context takeover
    /// either way; a room's message is compressed once for all its deflate subscribers, and
    /// what clients send compressed is inflated under --max-message. On by default: measured,
    /// 1 KiB chat JSON to 1,000 deflate clients cost 1.07x the CPU per delivery of plain ones
    /// for 0.49x the bytes, and an idle deflate connection holds nothing more
    /// (results/deflate-2026-12-06-vm); clients that do not offer it see no change.
    #[arg(long, env = "RINGCAST_DEFLATE", value_enum, default_value = "on")]
    pub deflate: Switch,

    /// Messages shorter than this go to deflate clients uncompressed (SIZE, e.g. 256B). A
    /// short chat line barely shrinks and compressing it costs more than the bytes it saves.
    #[arg(long, env = "RINGCAST_DEFLATE_MIN_SIZE", default_value = "256B", value_parser = parse_size)]
    pub deflate_min_size: usize,

    /// zlib compression level, 0 (stored) to 9 (smallest, slowest). A message is compressed
    /// once for all its subscribers, so the level's time is paid per message, its saving per
    /// delivery: 1 KiB of chat JSON shrinks 2.03x at 6 against 1.57x at 1, for ~10-15 µs more
    /// (results/deflate-backends-2026-12-06-vm).
    #[arg(long, env = "RINGCAST_DEFLATE_LEVEL", default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub deflate_level: u32,

    /// Serve HTTPS and wss:// only, with this PEM certificate chain (leaf first). TLS 1.2 and
    /// 1.3, ALPN http/1.1. SIGHUP reads it and --tls-key again (new handshakes get the new
    /// pair; a bad file keeps the old one).
    #[arg(
        long,
        env = "RINGCAST_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(
        long,
        env = "RINGCAST_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

/// An option that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `--deflate-level` and `--deflate-min-size`, with `--deflate on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// zlib level 0-9.
    pub level: u32,
    /// Shorter messages stay plain.
    pub min_size: usize,
}

/// Validated server settings; see [`Cli`] for what each one means.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address every core's SO_REUSEPORT listener binds (port 0: the OS picks one).
    pub listen: SocketAddr,
    /// Number of pinned core threads.
    pub cores: usize,
    /// IO backend choice (`--io`).
    pub io: IoChoice,
    /// Largest reassembled inbound message in bytes (1009 beyond).
    pub max_message: usize,
    /// With `--deflate on`, how messages are compressed for clients that negotiated
    /// permessage-deflate; None: the extension is declined.
    pub deflate: Option<DeflateConfig>,
    /// Outbound byte budget per connection, in-flight frames and handles included (1008 beyond).
    pub max_backlog: usize,
    /// Process-wide bytes held for delivery before publishers stop being read.
    pub fanout_budget: usize,
    /// No write progress for this long while holding output: 1008.
    pub write_timeout: Duration,
    /// A publisher paused by the fan-out budget this long: 1013.
    pub publish_timeout: Duration,
    /// Data messages per second per connection (1008 beyond), if limited.
    pub max_inbound_rate: Option<u32>,
    /// Most concurrent connections, counted from accept (503 beyond).
    pub max_connections: usize,
    /// Most concurrent connections per client address, counted from accept (429 beyond), if
    /// limited.
    pub max_connections_per_ip: Option<u32>,
    /// Messages kept per room for recovery (`--history`).
    pub history: usize,
    /// How long a kept message lives (`--history-ttl`).
    pub history_ttl: Duration,
    /// Memory all kept messages may hold (`--history-budget`).
    pub history_budget: usize,
    /// Largest HTTP request head in bytes (431 beyond).
    pub max_header_size: usize,
    /// Keepalive ping period for connections without inbound traffic.
    pub ping_interval: Duration,
    /// Silence after which a connection is closed with 1001.
    pub idle_timeout: Duration,
    /// Bound on the graceful-shutdown drain.
    pub shutdown_grace: Duration,
    /// HTTP header read timeout.
    pub header_timeout: Duration,
    /// Extra allowed WebSocket origins ("*" = any).
    pub allowed_origins: Vec<String>,
    /// listen(2) backlog per core.
    pub backlog: u32,
    /// Bearer token of POST /publish/{room}; None: no publish endpoint (404).
    pub publish_token: Option<Secret>,
    /// JWT verification at the upgrade; None: upgrades need no token.
    pub jwt: Option<Arc<JwtAuth>>,
    /// The Redis broker shared with other nodes; None: this node is on its own.
    pub broker: Option<BrokerConfig>,
    /// With `--tls-cert`/`--tls-key`: the pair read and checked, and the rustls config every
    /// connection's handshake starts from; None: plaintext HTTP and ws://.
    pub tls: Option<Arc<TlsAcceptor>>,
}

/// `--broker`, `--broker-prefix`, `--broker-queue`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The Redis client, from the URL (checked when the command line is parsed).
    pub client: redis::Client,
    /// Prepended to a room's name to make its channel.
    pub prefix: String,
    /// Messages that may wait for the publish link.
    pub queue: usize,
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap refused an argument (its message names the flag), or --help/--version was asked.
    #[error(transparent)]
    Parse(#[from] clap::Error),
    /// A TLS certificate or key file cannot be served.
    #[error(transparent)]
    Tls(#[from] TlsFileError),
    /// A value parsed but is out of range.
    #[error("invalid value for {flag}: {reason}")]
    Invalid {
        /// The offending flag, e.g. `--idle-timeout`.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Parse like the command line (args WITHOUT the program name), validate.
    pub fn from_args<I, S>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString> + Clone,
    {
        let program = std::iter::once(OsString::from("ringcast"));
        let cli = Cli::try_parse_from(program.chain(args.into_iter().map(Into::into)))?;
        Config::from_cli(cli)
    }

    /// Validate parsed options and fill in the machine-derived defaults.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let cores = cli.cores.unwrap_or_else(default_cores);
        if cores == 0 || cores > 1024 {
            return Err(invalid("--cores", "must be between 1 and 1024"));
        }
        if cli.max_message == 0 {
            return Err(invalid("--max-message", "must be at least 1 byte"));
        }
        let largest_charge = cli
            .max_message
            .checked_add(MAX_FRAME_HEADER + FRAME_HANDLE_BYTES)
            .ok_or_else(|| invalid("--max-message", "is too large"))?;
        if cli.max_backlog < largest_charge {
            return Err(invalid(
                "--max-backlog",
                "must hold at least one message of --max-message bytes plus its header and handle",
            ));
        }
        if cli.fanout_budget == 0 {
            return Err(invalid("--fanout-budget", "must be at least 1 byte"));
        }
        if cli.write_timeout.is_zero() {
            return Err(invalid("--write-timeout", "must be greater than zero"));
        }
        if cli.publish_timeout <= cli.write_timeout {
            return Err(invalid(
                "--publish-timeout",
                "must be greater than --write-timeout",
            ));
        }
        if cli.max_inbound_rate == Some(0) {
            return Err(invalid(
                "--max-inbound-rate",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        if cli.history_ttl.is_zero() {
            return Err(invalid("--history-ttl", "must be greater than zero"));
        }
        if cli.max_header_size < MIN_HEADER_SIZE {
            return Err(invalid("--max-header-size", "must be at least 8KiB"));
        }
        let max_connections = cli.max_connections.unwrap_or_else(default_max_connections);
        if max_connections == 0 {
            return Err(invalid("--max-connections", "must be at least 1"));
        }
        if cli.ping_interval.is_zero() {
            return Err(invalid("--ping-interval", "must be greater than zero"));
        }
        if cli.idle_timeout <= cli.ping_interval {
            return Err(invalid(
                "--idle-timeout",
                "must be greater than --ping-interval",
            ));
        }
        if cli.header_timeout.is_zero() {
            return Err(invalid("--header-timeout", "must be greater than zero"));
        }
        if cli.backlog == 0 {
            return Err(invalid("--backlog", "must be at least 1"));
        }
        if cli
            .publish_token
            .as_ref()
            .is_some_and(|token| token.chars().count() < MIN_PUBLISH_TOKEN)
        {
            return Err(invalid("--publish-token", "must be at least 16 characters"));
        }
        let expected = Expected {
            audience: cli.jwt_audience.as_deref(),
            issuer: cli.jwt_issuer.as_deref(),
        };
        let jwt = JwtAuth::new(
            cli.jwt_secret.as_deref(),
            cli.jwt_public_key.as_deref(),
            expected,
        )
        .map_err(|(flag, reason)| ConfigError::Invalid { flag, reason })?;
        let broker = match &cli.broker {
            Some(url) => Some(broker_config(url, cli.broker_prefix, cli.broker_queue)?),
            None => None,
        };
        let tls = match (cli.tls_cert, cli.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(TlsAcceptor::new(TlsFiles { cert, key })?)),
            // clap requires both or neither.
            _ => None,
        };
        Ok(Config {
            listen: cli.listen,
            cores,
            io: cli.io,
            max_message: cli.max_message,
            deflate: (cli.deflate == Switch::On).then_some(DeflateConfig {
                level: cli.deflate_level,
                min_size: cli.deflate_min_size,
            }),
            max_backlog: cli.max_backlog,
            fanout_budget: cli.fanout_budget,
            write_timeout: cli.write_timeout,
            publish_timeout: cli.publish_timeout,
            max_inbound_rate: cli.max_inbound_rate,
            max_connections,
            // 0 is the documented "no limit".
            max_connections_per_ip: (cli.max_connections_per_ip > 0)
                .then_some(cli.max_connections_per_ip),
            history: cli.history as usize,
            history_ttl: cli.history_ttl,
            history_budget: cli.history_budget,
            max_header_size: cli.max_header_size,
            ping_interval: cli.ping_interval,
            idle_timeout: cli.idle_timeout,
            shutdown_grace: cli.shutdown_grace,
            header_timeout: cli.header_timeout,
            allowed_origins: cli.allowed_origins,
            backlog: cli.backlog,
            publish_token: cli.publish_token.map(Secret::new),
            jwt: jwt.map(Arc::new),
            broker,
            tls,
        })
    }
}

/// Longest value of any duration option. Deadlines are `Instant::now() + option`, which panics
/// past what `Instant` holds (`--shutdown-grace 10000000000000000000s` took a core down at
/// SIGTERM); a day is longer than any timeout or grace period a server needs.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The value parser of every duration option: `ringcast_units`' forms, at most
/// [`MAX_DURATION`]. It shadows `ringcast_units::parse_duration` (not imported here) so an
/// option added with `value_parser = parse_duration` is bounded too; clap names the flag in
/// the error and exits with 2.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = ringcast_units::parse_duration(text)?;
    if duration > MAX_DURATION {
        return Err(format!("`{}` is longer than the maximum, 24h", text.trim()));
    }
    Ok(duration)
}

/// Checks `--broker` (the URL, not yet the server) and `--broker-queue`.
fn broker_config(url: &str, prefix: String, queue: usize) -> Result<BrokerConfig, ConfigError> {
    if queue == 0 {
        return Err(invalid("--broker-queue", "must be at least 1"));
    }
    if url.starts_with("rediss://") {
        return Err(invalid(
            "--broker",
            "rediss:// (TLS) is not supported: use redis:// (on a trusted network, or through a \
             TLS tunnel such as stunnel) or unix:///PATH",
        ));
    }
    let client = redis::Client::open(url).map_err(|err| ConfigError::Invalid {
        flag: "--broker",
        reason: format!("{err}; expected redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH"),
    })?;
    Ok(BrokerConfig {
        client,
        prefix,
        queue,
    })
}

/// Builds a [`ConfigError::Invalid`].
fn invalid(flag: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.to_owned(),
    }
}

/// The CPUs this process may run on (sched_getaffinity, cgroup quota), at least 1.
fn default_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// RLIMIT_NOFILE's hard limit (the server raises its soft limit to it) minus headroom.
fn default_max_connections() -> usize {
    let hard = nofile_hard_limit().unwrap_or(1024 + FD_HEADROOM);
    let usable = hard
        .saturating_sub(FD_HEADROOM)
        .clamp(1, MAX_DERIVED_CONNECTIONS);
    usize::try_from(usable).unwrap_or(usize::MAX)
}

/// The hard RLIMIT_NOFILE, or None if it cannot be read or is unlimited.
fn nofile_hard_limit() -> Option<u64> {
    let (_, hard) = rlimit::Resource::NOFILE.get().ok()?;
    (hard != rlimit::INFINITY).then_some(hard)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit so --max-connections can be reached.
pub fn raise_nofile_limit() -> std::io::Result<()> {
    // Asking for the most there is gets the hard limit (rlimit caps the request at it).
    rlimit::increase_nofile_limit(rlimit::INFINITY).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let config = Config::from_args(Vec::<String>::new()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.max_message, 64 << 10);
        assert_eq!(config.max_backlog, 1 << 20);
        assert_eq!(config.ping_interval, Duration::from_secs(30));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.fanout_budget, 64 << 20);
        assert_eq!(config.write_timeout, Duration::from_secs(10));
        assert_eq!(config.publish_timeout, Duration::from_secs(30));
        assert_eq!(config.max_inbound_rate, None);
        assert_eq!(config.max_connections_per_ip, None);
        assert_eq!(config.max_header_size, 16 << 10);
        assert!(config.cores >= 1);
        assert!(config.max_connections >= 1);
    }

    #[test]
    fn units_are_accepted() {
        let config = Config::from_args([
            "--max-message",
            "16MiB",
            "--max-backlog",
            "64MiB",
            "--ping-interval",
            "500ms",
            "--idle-timeout",
            "2s",
            "--cores",
            "2",
            "--allowed-origin",
            "http://a.example",
            "--allowed-origin",
            "*",
        ])
        .unwrap();
        assert_eq!(config.max_message, 16 << 20);
        assert_eq!(config.ping_interval, Duration::from_millis(500));
        assert_eq!(config.cores, 2);
        assert_eq!(config.allowed_origins, ["http://a.example", "*"]);
    }

    fn error_text(args: &[&str]) -> String {
        Config::from_args(args.iter().copied())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert!(error_text(&["--max-message", "lots"]).contains("--max-message"));
        assert!(error_text(&["--listen", "nowhere"]).contains("--listen"));
        assert!(error_text(&["--ping-interval", "10x"]).contains("--ping-interval"));
        assert!(error_text(&["--cores", "0"]).contains("--cores"));
        assert!(
            error_text(&["--ping-interval", "60s", "--idle-timeout", "30s"])
                .contains("--idle-timeout")
        );
        assert!(
            error_text(&["--max-message", "2MiB", "--max-backlog", "1MiB"])
                .contains("--max-backlog")
        );
        let huge = usize::MAX.to_string();
        assert!(error_text(&["--max-message", &huge]).contains("--max-message"));
        assert!(error_text(&["--max-header-size", "1KiB"]).contains("--max-header-size"));
        assert!(error_text(&["--max-inbound-rate", "0"]).contains("--max-inbound-rate"));
        assert!(
            error_text(&["--write-timeout", "30s", "--publish-timeout", "30s"])
                .contains("--publish-timeout")
        );
        assert!(error_text(&["--publish-token", "short"]).contains("--publish-token"));
        assert!(error_text(&["--jwt-secret", "short"]).contains("--jwt-secret"));
        let missing = error_text(&["--jwt-public-key", "/nonexistent/key.pem"]);
        assert!(missing.contains("--jwt-public-key"), "{missing}");
        let not_pem = error_text(&["--jwt-public-key", "Cargo.toml"]);
        assert!(not_pem.contains("not an RSA or EC public key"), "{not_pem}");
    }

    #[test]
    fn durations_are_bounded_by_one_maximum() {
        let durations = [
            "--write-timeout",
            "--publish-timeout",
            "--ping-interval",
            "--idle-timeout",
            "--shutdown-grace",
            "--header-timeout",
        ];
        for flag in durations {
            for value in ["24h 1ms", "10000000000000000000s"] {
                let text = error_text(&[flag, value]);
                assert!(
                    text.contains(flag) && text.contains("24h"),
                    "{flag} {value}: {text}"
                );
            }
        }
        let longest = Config::from_args(["--idle-timeout", "24h", "--shutdown-grace", "86400"]);
        let longest = longest.unwrap();
        assert_eq!(longest.idle_timeout, MAX_DURATION);
        assert_eq!(longest.shutdown_grace, MAX_DURATION);
    }

    #[test]
    fn broker_urls_are_checked_before_start() {
        let config = Config::from_args(Vec::<String>::new()).unwrap();
        assert!(config.broker.is_none(), "no broker by default");
        let config = Config::from_args(["--broker", "redis://127.0.0.1:6379/2"]).unwrap();
        let broker = config.broker.unwrap();
        assert_eq!((broker.prefix.as_str(), broker.queue), ("ringcast:", 4096));
        assert!(Config::from_args(["--broker", "unix:///run/redis.sock"]).is_ok());
        for bad in ["localhost:6379", "http://127.0.0.1:6379", "redis://[::1"] {
            let text = error_text(&["--broker", bad]);
            assert!(
                text.contains("--broker") && text.contains("redis://"),
                "{bad}: {text}"
            );
        }
        assert!(error_text(&["--broker", "rediss://h:6380"]).contains("TLS"));
        let zero = ["--broker", "redis://h", "--broker-queue", "0"];
        assert!(error_text(&zero).contains("--broker-queue"));
    }

    #[test]
    fn credentials_are_optional_and_not_printed() {
        let config = Config::from_args(Vec::<String>::new()).unwrap();
        assert!(config.publish_token.is_none() && config.jwt.is_none());
        let token = "publish-token-0123456789";
        let secret = "jwt-secret-0123456789abcdefghijklmnop";
        let config = Config::from_args(["--publish-token", token, "--jwt-secret", secret]).unwrap();
        assert!(config
            .publish_token
            .as_ref()
            .unwrap()
            .matches(token.as_bytes()));
        assert!(config.jwt.is_some());
        let printed = format!("{config:?}");
        assert!(
            !printed.contains(token) && !printed.contains(secret),
            "{printed}"
        );
    }
}
