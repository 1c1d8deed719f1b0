//! TLS termination (`--tls-cert`/`--tls-key`): rustls driven through its unbuffered, sans-IO
//! API so that it fits the server's own IO on both backends.
//!
//! - [`TlsAcceptor`]: the process's rustls config, the served pair ([`CertStore`], reloaded on
//!   SIGHUP) and the handshake counters;
//! - [`TlsSession`] (`session.rs`): one connection's state: bytes in, plaintext out; plaintext
//!   in, records out;
//! - [`TlsHttpIo`] (`http_io.rs`): the HTTP phase's adapter, so hyper reads and writes
//!   plaintext over the backend's socket adapter; it hands the session to the WebSocket
//!   phase, where the core's reader decrypts what it reads and the flush step seals each
//!   connection's queued frames in one buffer (`output::Subscriber`).
//!
//! Why this shape (and what kernel TLS would change): docs/ARCHITECTURE.md, "TLS".

mod http_io;
mod identity;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

pub use http_io::{TlsHttpIo, TlsUpgrade};
pub use identity::{CertStore, TlsFileError, TlsFiles};
pub use session::{Received, TlsError, TlsSession};

/// The only application protocol offered in ALPN: the server speaks HTTP/1.1 (the WebSocket
/// upgrade), never h2.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How handshakes ended (`ringcast_tls_handshakes_total{result}`).
#[derive(Debug, Default)]
pub struct HandshakeCounters {
    /// Completed.
    pub ok: AtomicU64,
    /// Failed on the client's bytes (bad records, no common version or cipher, no ALPN match).
    pub failed: AtomicU64,
    /// The connection ended before the handshake completed (timeout, client gone).
    pub incomplete: AtomicU64,
}

impl HandshakeCounters {
    /// Counts one handshake's end.
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every TLS connection of the process starts from.
#[derive(Debug)]
pub struct TlsAcceptor {
    /// TLS 1.2 and 1.3 on the ring provider, ALPN http/1.1, the certificate from `store`.
    config: Arc<ServerConfig>,
    /// The served pair.
    store: Arc<CertStore>,
    /// How handshakes ended.
    handshakes: HandshakeCounters,
}

impl TlsAcceptor {
    /// Reads the pair in `files` and builds the config; fails naming the file and the fault.
    pub fn new(files: TlsFiles) -> Result<Self, TlsFileError> {
        // ring, not aws-lc-rs: see the workspace Cargo.toml and results/tls-2026-12-06-vm.
        // rustls marks it deprecated for lacking the post-quantum X25519MLKEM768 group.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let store = Arc::new(CertStore::open(files.clone(), Arc::clone(&provider))?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| TlsFileError {
                flag: "--tls-cert",
                path: files.cert.clone(),
                reason: format!("no TLS version the crypto provider supports ({err})"),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as _);
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(TlsAcceptor {
            config: Arc::new(config),
            store,
            handshakes: HandshakeCounters::default(),
        })
    }

    /// A session for a newly accepted connection.
    pub fn session(&self) -> Result<TlsSession, TlsError> {
        UnbufferedServerConnection::new(Arc::clone(&self.config)).map(TlsSession::new)
    }

    /// The served pair (reload, expiry).
    pub fn store(&self) -> &CertStore {
        &self.store
    }

    /// How handshakes ended.
    pub fn handshakes(&self) -> &HandshakeCounters {
        &self.handshakes
    }
}
